//! `bench kernel`: kernel path lengths under `-icount` (null hypercall,
//! event round trip, also with tracing on and without tracing code, creation
//! to first run), the wall time of 1,000 creations, and of a grant map +
//! unmap with and without a TLB shootdown to another CPU; and `bench
//! console`, instructions per console line.

use super::setup::{setup, Setup};
use crate::iso::Module;
use crate::qemu::{Config, Machine};
use crate::{build, iso};
use std::time::Duration;

fn value(m: &Machine, marker: &str) -> Result<u64, String> {
    let line = m.wait_for(marker, Duration::from_secs(300))?;
    line.split(marker)
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no number after {marker:?} in {line:?}"))
}

/// The kernel path-length bench: the bench domain as domain 0, and its
/// image again for the children it creates.
pub fn kernel_bench_modules(domains: &std::path::Path) -> [Module; 2] {
    let bench = build::domain(domains, "bench");
    [
        Module {
            path: bench.clone(),
            cmdline: "bench part=control".into(),
        },
        Module {
            path: bench,
            cmdline: "bench".into(),
        },
    ]
}

pub fn run() -> Result<(), String> {
    let Setup {
        kernel,
        domains,
        dir,
    } = setup()?;
    let mods = kernel_bench_modules(&domains);
    let iso = iso::build(&kernel, "", &mods, &dir.join("kernel.iso"))?;
    let m = Config::new(&iso).icount().spawn()?;
    let null = value(&m, "bench: null hypercall: ")?;
    let event = value(&m, "bench: event round trip: ")?;
    let apart = value(&m, "bench: event round trip, send and block apart: ")?;
    let small = value(&m, "bench: create to first run 1024 KiB: ")?;
    let big = value(&m, "bench: create to first run 65536 KiB: ")?;
    drop(m);
    // The same round trip with tracing on, and in a kernel without tracing code.
    let traced_iso = iso::build(
        &kernel,
        "tbuf_size=4",
        &mods,
        &dir.join("kernel-traced.iso"),
    )?;
    let traced = value(
        &Config::new(&traced_iso).icount().spawn()?,
        "bench: event round trip: ",
    )?;
    let plain = build::kernel_without_tracing()?;
    let plain_iso = iso::build(&plain, "", &mods, &dir.join("kernel-plain.iso"))?;
    let untraced = value(
        &Config::new(&plain_iso).icount().spawn()?,
        "bench: event round trip: ",
    )?;
    // Across two CPUs: under -icount the clock counts every CPU's
    // instructions; without it, TCG wall time.
    let kernel_iso = dir.join("kernel.iso");
    let across = value(
        &Config::new(&kernel_iso).icount().smp(2).spawn()?,
        "bench: event round trip across CPUs: ",
    )?;
    let m = Config::new(&kernel_iso).smp(2).spawn()?;
    let line = m.wait_for(
        "bench: event round trip across CPUs: ",
        Duration::from_secs(300),
    )?;
    let across_ns = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .ok_or_else(|| format!("no time in {line:?}"))?;
    let line = m.wait_for("bench: grant map+unmap: ", Duration::from_secs(300))?;
    let ns = |before: &str| {
        line.split(before)
            .next()
            .and_then(|s| s.split_whitespace().last()?.parse::<u64>().ok())
            .ok_or_else(|| format!("no figure in {line:?}"))
    };
    let (unmap_alone, unmap_shared) = (ns(" ns alone")?, ns(" ns with the other vCPU")?);
    drop(m);
    let mods = [
        Module {
            path: build::domain(&domains, "test-dom0"),
            cmdline: "test-dom0 scenario=churn count=1000".into(),
        },
        Module {
            path: build::domain(&domains, "hello"),
            cmdline: "hello".into(),
        },
    ];
    let iso = iso::build(&kernel, "", &mods, &dir.join("churn.iso"))?;
    let m = Config::new(&iso).spawn()?;
    let churn_ms = value(&m, "churn: 1000 domains created and destroyed in ")?;
    println!("| measure (instructions under -icount unless noted) | value | target |");
    println!("|---|---|---|");
    println!("| null hypercall round trip | {null} | < 150 |");
    println!("| event send to peer wake-up and back, one CPU | {event} | < 1,500 (aim ≤ 1,300) |");
    println!("| the same, the echo's send and block as two hypercalls | {apart} | |");
    println!("| the same, kernel built without tracing code | {untraced} | |");
    println!("| the same, tracing on (tbuf_size=4) | {traced} | |");
    println!(
        "| event round trip between domains on two CPUs (both CPUs' instructions) | {across} | |"
    );
    println!("| the same, TCG wall time | {across_ns} ns | |");
    println!("| grant map + unmap, the domain's only vCPU running (TCG wall time) | {unmap_alone} ns | |");
    println!(
        "| the same while its other vCPU runs on another CPU: flush IPI and wait (TCG wall time) | {unmap_shared} ns ({:.1}×) | |",
        unmap_shared as f64 / unmap_alone.max(1) as f64
    );
    println!("| create + load + unpause to first run, 1 MiB domain | {small} | |");
    println!("| create + load + unpause to first run, 64 MiB domain | {big} | |");
    println!("| 1,000 domains of 1 MiB created and destroyed (TCG wall time; 10 of them run) | {churn_ms} ms | < 1 ms each |");
    Ok(())
}

pub fn console() -> Result<(), String> {
    let Setup {
        kernel,
        domains,
        dir,
    } = setup()?;
    let mods = [
        Module {
            path: build::domain(&domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        },
        Module {
            path: build::domain(&domains, "console-dom"),
            cmdline: "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4".into(),
        },
        Module {
            path: build::domain(&domains, "counter"),
            cmdline: "counter count=2000".into(),
        },
    ];
    let iso = iso::build(&kernel, "", &mods, &dir.join("console.iso"))?;
    let m = Config::new(&iso).icount().spawn()?;
    let line = m.wait_for("counter: 2000 lines took", Duration::from_secs(300))?;
    let per_line: u64 = line
        .split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no figure in {line:?}"))?;
    println!("| measure (instructions under -icount) | value |");
    println!("|---|---|");
    println!("| one console line, `println!` to the UART via the ring and console-dom (2,000 lines, all domains counted) | {per_line} |");
    Ok(())
}
