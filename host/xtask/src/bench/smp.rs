//! `cargo xtask bench smp`: how a CPU-bound workload scales from 1 to 4 CPUs.
//!
//! Owns: booting the same machine (domain 0 and four `spinner` domains, each
//! counting loop iterations for 3 s of wall time) on 1, 2 and 4 CPUs, and
//! comparing the iterations all four did in all: a throughput ratio within
//! one run of the bench, so the host's speed cancels out. Then the same
//! with one `spinner` domain of four vCPUs (the vCPUs of one domain
//! running in parallel). TCG runs one host
//! thread per emulated CPU, so on a two-core host more than two CPUs cannot
//! add much; the table says how many host cores there were.

use crate::iso::Module;
use crate::qemu::Config;
use crate::{build, iso};
use std::time::Duration;

const SPINNERS: usize = 4;

/// Thousands of iterations `spinners` spinners reported on a machine with `cpus` CPUs.
fn total(iso: &std::path::Path, cpus: u32, spinners: usize) -> Result<u64, String> {
    let m = Config::new(iso).smp(cpus).spawn()?;
    let mut sum = 0;
    for n in 1..=spinners {
        let (_, line) = m.wait_for_nth(" thousand iterations", n, Duration::from_secs(120))?;
        sum += line
            .split("spinner: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| format!("unreadable: {line}"))?;
    }
    Ok(sum)
}

pub fn run() -> Result<(), String> {
    let super::setup::Setup {
        kernel,
        domains,
        dir,
    } = super::setup::setup()?;
    let mut mods = vec![Module {
        path: build::domain(&domains, "toolstack-domain"),
        cmdline: "toolstack-domain".into(),
    }];
    for i in 0..SPINNERS {
        mods.push(Module {
            path: build::domain(&domains, "spinner"),
            cmdline: format!("spin{i} seconds=3"),
        });
    }
    let iso = iso::build(&kernel, "", &mods, &dir.join("smp.iso"))?;
    mods.truncate(1);
    mods.push(Module {
        path: build::domain(&domains, "spinner"),
        cmdline: format!("spin seconds=3 vcpus={SPINNERS} helpers={}", SPINNERS - 1),
    });
    let one_domain = iso::build(&kernel, "", &mods, &dir.join("smp-vcpus.iso"))?;
    let host = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (what, iso, spinners) in [
        (format!("{SPINNERS} spinning domains"), &iso, SPINNERS),
        (
            format!("one domain, {SPINNERS} spinning vCPUs"),
            &one_domain,
            1,
        ),
    ] {
        let one = total(iso, 1, spinners)?.max(1);
        println!("| CPUs ({what}, 3 s, TCG, {host} host cores) | iterations (thousands) | against 1 CPU |");
        println!("|---|---|---|");
        println!("| 1 | {one} | 1.00 |");
        for cpus in [2, 4] {
            let t = total(iso, cpus, spinners)?;
            println!("| {cpus} | {t} | {:.2} |", t as f64 / one as f64);
        }
        println!();
    }
    Ok(())
}
