//! `cargo xtask bench restart`: how long a guest's disk waits when
//! drvdom-blk crashes and the toolstack restarts it. drvdom-blk crashes at
//! every 300th request while a guest reads its disk three times; the guest
//! notes every wait between answers longer than 2 ms (each restart is one)
//! and how many requests it sent again after each reconnection.

use crate::iso::Module;
use crate::qemu::Config;
use crate::{build, host_tools, iso};
use std::time::Duration;

pub fn run() -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let image = dir.join("restart.img");
    std::fs::write(&image, vec![0u8; 16 << 20]).map_err(|e| e.to_string())?;
    let module = |bin: &str, line: &str| Module {
        path: build::domain(&domains, bin),
        cmdline: line.into(),
    };
    let mods = [
        module("toolstack-domain", "toolstack-domain"),
        module(
            "drvdom-blk",
            "drvdom-blk mem=2048 pci=00:04.0 dma=512 vdisk=all:all on_crash=restart restart_limit=1000 crash_after=300",
        ),
        module("disk-tool", "reader mem=4096 sum repeat=3 gaps disk=all:xvda:r"),
    ];
    let iso = iso::build(&kernel, "", &mods, &dir.join("restart.iso"))?;
    let m = Config::new(&iso).disk(&image).spawn()?;
    let line = m
        .wait_for("disk-tool: ", Duration::from_secs(600))
        .and_then(|_| m.wait_for("restarts; waits over 2 ms (us):", Duration::from_secs(600)))?;
    let gaps: Vec<f64> = line
        .split(':')
        .next_back()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .collect();
    let replayed: Vec<f64> = m
        .lines()
        .iter()
        .filter(|l| l.contains("block: disk 0 reconnected"))
        .filter_map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == "requests")?;
            words.get(i.checked_sub(1)?)?.parse().ok()
        })
        .collect();
    // A restart waits at least its 5 ms backoff; shorter waits are not restarts.
    let restarts: Vec<f64> = gaps.iter().copied().filter(|&ms| ms >= 5.0).collect();
    let list: Vec<String> = restarts.iter().map(|ms| format!("{ms:.0}")).collect();
    println!("| drvdom-blk restarts (TCG) | figure |");
    println!("|---|---|");
    println!("| restarts seen by the guest | {} |", replayed.len());
    println!(
        "| the first restart: guest's wait for service, ms (5 ms of it backoff) | {:.1} |",
        restarts.first().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| every restart in order, ms (backoff doubles within 10 s) | {} |",
        list.join(", ")
    );
    println!(
        "| requests sent again per restart (mean) | {:.1} |",
        replayed.iter().sum::<f64>() / replayed.len().max(1) as f64
    );
    Ok(())
}
