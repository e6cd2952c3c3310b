//! `cargo xtask bench blk`: the block path from a guest through drvdom-blk
//! against the same workload issued by drvdom-blk on the raw device, in the
//! same run on the same image (ratios, as these machines are noisy; each
//! the median of seven boots, one with `--short`), the guest's sequential
//! I/O both in a buffer of its disk's and copied to and from its memory, then
//! the instructions per request under `-icount`: the TSC ticks the CPU was
//! busy over the workload (every domain and the kernel; the CPU's idle
//! time while QEMU's device works is not counted, so the figure is a path
//! length and repeats from run to run). `BLKBENCH_ONLY=map` measures the
//! mapped path on `pc` alone; `BLKBENCH_PROFILE=FILE` logs the blocks
//! QEMU runs during the guest's sequential reads (`cargo xtask profile`).
//! Last, the cost of DMA isolation: the mapped path on q35 with its IOMMU,
//! the kernel using it (`iommu=on`) and not (`iommu=off`).

use crate::iso::Module;
use crate::qemu::{Config, Machine};
use crate::{build, host_tools, iso};
use std::time::Duration;

/// MiB each sequential workload moves, random reads (`--short`: few).
fn mib() -> u64 {
    super::setup::sized(16, 1)
}
fn random() -> u64 {
    super::setup::sized(2000, 100)
}

/// `(ns, tsc, notifications)` of a result line (the number before
/// "notifications", if any).
fn figures(m: &Machine, marker: &str) -> Result<(f64, f64, Option<f64>), String> {
    let (ns, tsc, _, notifications) = all_figures(m, marker)?;
    Ok((ns, tsc, notifications))
}

/// The busy TSC ticks of a result line (under `-icount`: instructions).
fn busy(m: &Machine, marker: &str) -> Result<f64, String> {
    all_figures(m, marker)?
        .2
        .ok_or_else(|| format!("no busy ticks after {marker:?}"))
}

/// `(ns, tsc, busy, notifications)` of a result line.
fn all_figures(m: &Machine, marker: &str) -> Result<(f64, f64, Option<f64>, Option<f64>), String> {
    let line = m.wait_for(marker, Duration::from_secs(900))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |unit: &str| -> Option<f64> {
        let i = words.iter().position(|w| *w == unit)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    let ns = before("ns").ok_or_else(|| format!("no ns in {line:?}"))?;
    let tsc = before("tsc").ok_or_else(|| format!("no tsc in {line:?}"))?;
    Ok((ns, tsc, before("busy"), before("notifications")))
}

/// The machine a mode runs on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Platform {
    /// QEMU's default `pc`, no IOMMU.
    Pc,
    /// q35 with `intel-iommu`, the kernel using it or not.
    Q35 { iommu: bool },
}

impl Platform {
    fn name(self) -> &'static str {
        match self {
            Platform::Pc => "",
            Platform::Q35 { iommu: true } => ", q35 IOMMU on",
            Platform::Q35 { iommu: false } => ", q35 iommu=off",
        }
    }
}

fn boot(icount: bool, grant: &str, machine: Platform) -> Result<Machine, String> {
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let image = dir.join("blk.img");
    std::fs::write(&image, vec![0u8; 64 << 20]).map_err(|e| e.to_string())?;
    let (mib, random) = (mib(), random());
    let mods = [
        Module {
            path: build::domain(&domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        },
        Module {
            path: build::domain(&domains, "drvdom-blk"),
            cmdline: format!(
                "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=bench=all bench_raw mib={mib} random={random} grant={grant}"
            ),
        },
        Module {
            path: build::domain(&domains, "disk-bench"),
            cmdline: format!("disk-bench memory=4M mib={mib} random={random} disk=bench,xvda,w"),
        },
    ];
    let cmdline = match machine {
        Platform::Q35 { iommu: false } => "iommu=off",
        _ => "",
    };
    let iso = iso::build(&kernel, cmdline, &mods, &dir.join("blk.iso"))?;
    let mut config = Config::new(&iso).disk(&image);
    if machine != Platform::Pc {
        config = config.iommu();
    }
    if icount {
        config = config.icount();
    }
    if std::env::var_os("BLKBENCH_PROFILE").is_some() {
        config = config.monitor_socket(&dir.join("blk-monitor.sock"));
    }
    config.spawn()
}

/// One boot's wall-clock figures: raw and guest (ns, tsc, notifications)
/// per workload (the guest's sequential ones in its buffer), and the
/// guest's sequential read and write copied to and from its memory.
struct Wall {
    raw: [(f64, f64, Option<f64>); 3],
    guest: [(f64, f64, Option<f64>); 3],
    guest_copied: [(f64, f64, Option<f64>); 2],
}

/// Boots whose wall-clock figures are taken (the median is reported: one
/// boot's ratio moves by a third from one to the next on these machines).
fn wall_boots() -> usize {
    super::setup::sized(7, 1)
}

/// One mode's figures: each boot's wall clock, and icount per request.
struct Figures {
    walls: Vec<Wall>,
    raw_icount: f64,
    guest_icount: f64,
    /// Instructions per 64 KiB sequential read, raw, guest and guest copied (-icount).
    raw_seq_icount: f64,
    guest_seq_icount: f64,
    guest_copied_seq_icount: f64,
}

fn wall(grant: &str, machine: Platform) -> Result<Wall, String> {
    let m = boot(false, grant, machine)?;
    Ok(Wall {
        raw: [
            figures(&m, "drvdom-blk: raw seq-read")?,
            figures(&m, "drvdom-blk: raw seq-write")?,
            figures(&m, "drvdom-blk: raw random-read")?,
        ],
        guest: [
            figures(&m, "disk-bench: seq-read")?,
            figures(&m, "disk-bench: seq-write")?,
            figures(&m, "disk-bench: random-read")?,
        ],
        guest_copied: [
            figures(&m, "disk-bench: copied seq-read")?,
            figures(&m, "disk-bench: copied seq-write")?,
        ],
    })
}

fn measure(grant: &str, machine: Platform) -> Result<Figures, String> {
    let walls = (0..wall_boots())
        .map(|_| wall(grant, machine))
        .collect::<Result<Vec<_>, _>>()?;
    let m = boot(true, grant, machine)?;
    // `BLKBENCH_PROFILE=FILE`: the exec log of the guest's sequential reads.
    if let Ok(log) = std::env::var("BLKBENCH_PROFILE") {
        super::setup::exec_log(&m, "drvdom-blk: raw random-read", 0, &log)?;
    }
    let calls = (mib() * 16) as f64;
    let raw_seq_icount = busy(&m, "drvdom-blk: raw seq-read")? / calls;
    let guest_seq_icount = busy(&m, "disk-bench: seq-read")? / calls;
    let guest_copied_seq_icount = busy(&m, "disk-bench: copied seq-read")? / calls;
    let raw_icount = busy(&m, "drvdom-blk: raw random-read")? / random() as f64;
    let guest_icount = busy(&m, "disk-bench: random-read")? / random() as f64;
    Ok(Figures {
        walls,
        raw_icount,
        guest_icount,
        raw_seq_icount,
        guest_seq_icount,
        guest_copied_seq_icount,
    })
}

pub fn run() -> Result<(), String> {
    host_tools::ensure()?;
    let mibps = |ns: f64| (mib() as f64) / (ns / 1e9);
    let iops = |ns: f64| (random() as f64) / (ns / 1e9);
    println!("| data path | workload (TCG) | raw, in drvdom-blk | guest, through the ring | guest / raw | aim (issue 24) |");
    println!("|---|---|---|---|---|---|");
    let modes = [
        ("copy", Platform::Pc),
        ("map", Platform::Pc),
        ("map", Platform::Q35 { iommu: false }),
        ("map", Platform::Q35 { iommu: true }),
    ];
    // `BLKBENCH_ONLY=map` measures the first mode of that name alone.
    let only = std::env::var("BLKBENCH_ONLY").ok();
    let chosen = modes
        .iter()
        .filter(|(g, _)| only.as_deref().is_none_or(|o| o == *g))
        .take(if only.is_some() { 1 } else { modes.len() });
    for &(grant, machine) in chosen {
        let f = measure(grant, machine)?;
        let grant = format!("{grant}{}", machine.name());
        // (what, (raw, guest) in MiB/s or IOPS) of a boot.
        let rows = |w: &Wall| {
            let seq = |k: usize, guest: f64| (mibps(w.raw[k].0), mibps(guest));
            [
                (
                    "sequential read, 64 KiB calls, guest in its disk buffer (MiB/s)",
                    seq(0, w.guest[0].0),
                ),
                (
                    "sequential write, 64 KiB calls, guest from its disk buffer (MiB/s)",
                    seq(1, w.guest[1].0),
                ),
                (
                    "sequential read, 64 KiB calls, guest copying into its memory (MiB/s)",
                    seq(0, w.guest_copied[0].0),
                ),
                (
                    "sequential write, 64 KiB calls, guest copying from its memory (MiB/s)",
                    seq(1, w.guest_copied[1].0),
                ),
                (
                    "random 4 KiB reads (IOPS)",
                    (iops(w.raw[2].0), iops(w.guest[2].0)),
                ),
            ]
        };
        let boots: Vec<_> = f.walls.iter().map(rows).collect();
        let runs = boots.len();
        for (k, (what, _)) in boots[0].iter().enumerate() {
            let pairs: Vec<(f64, f64)> = boots.iter().map(|b| b[k].1).collect();
            let r = super::setup::spread(pairs.iter().map(|&(raw, _)| raw)).median;
            let g = super::setup::spread(pairs.iter().map(|&(_, guest)| guest)).median;
            let ratio = super::setup::spread(pairs.iter().map(|&(raw, guest)| guest / raw));
            let spread = if runs > 1 {
                format!(" ({:.2}-{:.2})", ratio.low, ratio.high)
            } else {
                String::new()
            };
            let ratio = ratio.median;
            let aim = if k < 2 { "≥ 0.8" } else { "" };
            println!(
                "| grant {grant} | {what}, median of {runs} boots | {r:.1} | {g:.1} | {ratio:.2}{spread} | {aim} |"
            );
        }
        println!(
            "| grant {grant} | instructions per random 4 KiB read (-icount, busy, all domains) | {:.0} | {:.0} | {:.2} | |",
            f.raw_icount,
            f.guest_icount,
            f.guest_icount / f.raw_icount
        );
        println!(
            "| grant {grant} | instructions per 64 KiB sequential read, guest in its disk buffer (-icount, busy, all domains) | {:.0} | {:.0} | {:.2} | |",
            f.raw_seq_icount,
            f.guest_seq_icount,
            f.guest_seq_icount / f.raw_seq_icount
        );
        println!(
            "| grant {grant} | instructions per 64 KiB sequential read, guest copying (-icount, busy, all domains) | {:.0} | {:.0} | {:.2} | |",
            f.raw_seq_icount,
            f.guest_copied_seq_icount,
            f.guest_copied_seq_icount / f.raw_seq_icount
        );
        println!(
            "| grant {grant} | notifications per request, random reads | | {:.2} | | |",
            f.walls[0].guest[2].2.unwrap_or(f64::NAN) / random() as f64
        );
    }
    Ok(())
}
