//! `bench boot`: wall-clock times from QEMU start to the banner and from the
//! banner to "ready" (median of several TCG boots), the kernel's instruction
//! count from entry to "ready" under `-icount` (exact), and the kernel ELF size.

use super::setup::median;
use crate::qemu::{Config, Machine};
use crate::{build, host_tools, iso};
use std::time::Duration;

fn tsc_at_ready(m: &Machine) -> Result<u64, String> {
    let line = m.wait_for("xenolith: ready", Duration::from_secs(120))?;
    line.split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no tsc in {line:?}"))
}

pub fn run(runs: usize) -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let iso = iso::build(&kernel, "", &[], &dir.join("boot.iso"))?;
    let (mut to_banner, mut to_ready) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let m = Config::new(&iso).spawn()?;
        let (b, _) = m.wait_for_nth("Xenolith ", 1, Duration::from_secs(60))?;
        let (r, _) = m.wait_for_nth("xenolith: ready", 1, Duration::from_secs(60))?;
        to_banner.push(b);
        to_ready.push(r - b);
    }
    let mut counts = Vec::new();
    for _ in 0..2 {
        let m = Config::new(&iso).icount().spawn()?;
        counts.push(tsc_at_ready(&m)?);
    }
    let size = std::fs::metadata(&kernel).map_err(|e| e.to_string())?.len();
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| QEMU start to banner (TCG, median of {runs}) | {:.1} ms |",
        median(to_banner).as_secs_f64() * 1e3
    );
    println!(
        "| banner to ready (TCG, median of {runs}) | {:.1} ms |",
        median(to_ready).as_secs_f64() * 1e3
    );
    println!(
        "| instructions, kernel entry to ready, less calibration and waits (-icount, 2 runs) | {} / {} |",
        counts[0], counts[1]
    );
    println!("| kernel ELF size | {} KiB |", size / 1024);
    Ok(())
}
