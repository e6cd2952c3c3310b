//! What every benchmark starts from, and the statistics they share.

use crate::{build, host_tools};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `--short`: every bench with small sizes and one run of each.
static SHORT: AtomicBool = AtomicBool::new(false);

/// Makes every bench short (`cargo xtask bench --short ...`): the suite
/// runs each so, to check it still runs and prints its table; its figures
/// mean little then.
pub fn set_short(on: bool) {
    SHORT.store(on, Ordering::Relaxed);
}

/// `full`, or `small` in a short run.
pub fn sized<T>(full: T, small: T) -> T {
    if SHORT.load(Ordering::Relaxed) {
        small
    } else {
        full
    }
}

/// What every benchmark starts from: the host tools installed, the kernel
/// and the domains built, and the directory its images and disks go in.
pub struct Setup {
    pub kernel: std::path::PathBuf,
    pub domains: std::path::PathBuf,
    pub dir: std::path::PathBuf,
}

pub fn setup() -> Result<Setup, String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(Setup {
        kernel,
        domains,
        dir,
    })
}

/// The median of some durations.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Figures of several boots: their median, lowest and highest.
pub struct Spread {
    pub median: f64,
    pub low: f64,
    pub high: f64,
}

/// The [`Spread`] of `values` (at least one).
pub fn spread(values: impl IntoIterator<Item = f64>) -> Spread {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    Spread {
        median: v[v.len() / 2],
        low: v[0],
        high: v[v.len() - 1],
    }
}

/// A bench's `..._PROFILE=FILE`: QEMU logs every translation block it runs
/// (`log exec,nochain`) to `FILE` for two seconds from `after` seconds
/// after `marker` (the machine needs a monitor socket; with
/// `XTASK_QEMU_ARGS=-singlestep` a block is one instruction, and `cargo
/// xtask profile FILE` says where they went: performance.md, session 30).
pub fn exec_log(
    m: &crate::qemu::Machine,
    marker: &str,
    after: u64,
    log: &str,
) -> Result<(), String> {
    m.wait_for(marker, Duration::from_secs(900))?;
    std::thread::sleep(Duration::from_secs(after));
    m.monitor(&format!("logfile {log}"))?;
    m.monitor("log exec,nochain")?;
    std::thread::sleep(Duration::from_secs(2));
    m.monitor("log none")?;
    Ok(())
}
