//! `cargo xtask bench blk`: the block path from a guest through drvdom-blk
//! against the same workload issued by drvdom-blk on the raw device, in the
//! same run on the same image (ratios, as these machines are noisy), then
//! the instructions per 4 KiB request under `-icount`.

use crate::iso::Module;
use crate::qemu::{Config, Machine};
use crate::{build, host_tools, iso};
use std::time::Duration;

const MIB: u64 = 16;
const RANDOM: u64 = 2000;

/// `(ns, tsc)` of a result line; `extra` is the number before "notifications", if any.
fn figures(m: &Machine, marker: &str) -> Result<(f64, f64, Option<f64>), String> {
    let line = m.wait_for(marker, Duration::from_secs(900))?;
    let words: Vec<&str> = line.split_whitespace().collect();
    let before = |unit: &str| -> Option<f64> {
        let i = words.iter().position(|w| *w == unit)?;
        words.get(i.checked_sub(1)?)?.parse().ok()
    };
    let ns = before("ns").ok_or_else(|| format!("no ns in {line:?}"))?;
    let tsc = before("tsc").ok_or_else(|| format!("no tsc in {line:?}"))?;
    Ok((ns, tsc, before("notifications")))
}

fn boot(icount: bool) -> Result<Machine, String> {
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let image = dir.join("blk.img");
    std::fs::write(&image, vec![0u8; 64 << 20]).map_err(|e| e.to_string())?;
    let mods = [
        Module {
            path: build::domain(&domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        },
        Module {
            path: build::domain(&domains, "drvdom-blk"),
            cmdline: format!(
                "drvdom-blk mem=2048 pci=00:04.0 dma=512 vdisk=bench:all bench_raw mib={MIB} random={RANDOM}"
            ),
        },
        Module {
            path: build::domain(&domains, "disk-bench"),
            cmdline: format!("disk-bench mem=4096 mib={MIB} random={RANDOM} disk=bench:xvda:w"),
        },
    ];
    let iso = iso::build(&kernel, "", &mods, &dir.join("blk.iso"))?;
    let mut config = Config::new(&iso).disk(&image);
    if icount {
        config = config.icount();
    }
    config.spawn()
}

pub fn run() -> Result<(), String> {
    host_tools::ensure()?;
    let m = boot(false)?;
    let raw_read = figures(&m, "drvdom-blk: raw seq-read")?;
    let raw_write = figures(&m, "drvdom-blk: raw seq-write")?;
    let raw_random = figures(&m, "drvdom-blk: raw random-read")?;
    let read = figures(&m, "disk-bench: seq-read")?;
    let write = figures(&m, "disk-bench: seq-write")?;
    let random = figures(&m, "disk-bench: random-read")?;
    drop(m);
    let m = boot(true)?;
    let raw_icount = figures(&m, "drvdom-blk: raw random-read")?;
    let icount = figures(&m, "disk-bench: random-read")?;
    let mibps = |ns: f64| (MIB as f64) / (ns / 1e9);
    let iops = |ns: f64| (RANDOM as f64) / (ns / 1e9);
    println!(
        "| workload (TCG, one run) | raw, in drvdom-blk | guest, through the ring | guest / raw |"
    );
    println!("|---|---|---|---|");
    for (what, raw, guest, f) in [
        (
            "sequential read, 64 KiB calls (MiB/s)",
            raw_read.0,
            read.0,
            &mibps as &dyn Fn(f64) -> f64,
        ),
        (
            "sequential write, 64 KiB calls (MiB/s)",
            raw_write.0,
            write.0,
            &mibps,
        ),
        ("random 4 KiB reads (IOPS)", raw_random.0, random.0, &iops),
    ] {
        let (r, g) = (f(raw), f(guest));
        println!("| {what} | {r:.1} | {g:.1} | {:.2} |", g / r);
    }
    let per = |tsc: f64| tsc / RANDOM as f64;
    println!(
        "| instructions per random 4 KiB read (-icount, all domains) | {:.0} | {:.0} | {:.2} |",
        per(raw_icount.1),
        per(icount.1),
        per(icount.1) / per(raw_icount.1)
    );
    println!(
        "| notifications per request, random reads (one in flight) | | {:.2} | |",
        random.2.unwrap_or(f64::NAN) / RANDOM as f64
    );
    Ok(())
}
