//! The system tests: boot the real ISO in QEMU and check what a user sees.
//!
//! Owns: the runner: it gathers the tests every topic file registers
//! (`tests()`), runs them two at a time (those that need the host alone
//! last, by themselves), prints each result with the serial log of any
//! failure, and ends `cargo xtask test` with the one line `N passed, M
//! failed`. What a test has and uses is `harness.rs`; adding a test is a
//! function in its topic file and its name in that file's `tests!`.

mod admin;
mod benches;
mod blk_maps;
mod block;
mod boot;
mod campaign;
mod console;
mod console_restart;
mod control;
mod debug;
mod dma;
mod harness;
mod hcfuzz;
mod hostile_rings;
mod hvm;
mod kernel;
mod linux;
mod linux_disk;
mod linux_net;
mod net;
mod net_backpressure;
mod net_maps;
mod netmgmt;
mod readme;
mod save;
mod screen;
mod smp;
mod toolstack;
mod top;
mod trace;
mod upload;
mod watchdog;

use crate::qemu::Machine;
use crate::{build, checks, host_tools, Accel};
use harness::{Case, Ctx, Test};
use std::path::Path;
use std::sync::Mutex;

/// How long the suite fuzzes each target.
const FUZZ_SECONDS: u64 = 10;

fn cases() -> Vec<Test> {
    let topics: [fn() -> Vec<Test>; 31] = [
        boot::tests,
        watchdog::tests,
        smp::tests,
        hvm::tests,
        linux::tests,
        linux_disk::tests,
        linux_net::tests,
        kernel::tests,
        screen::tests,
        save::tests,
        control::tests,
        console::tests,
        console_restart::tests,
        toolstack::tests,
        admin::tests,
        benches::tests,
        top::tests,
        block::tests,
        dma::tests,
        net::tests,
        net_backpressure::tests,
        net_maps::tests,
        blk_maps::tests,
        netmgmt::tests,
        debug::tests,
        trace::tests,
        campaign::tests,
        hcfuzz::tests,
        hostile_rings::tests,
        readme::tests,
        upload::tests,
    ];
    topics.iter().flat_map(|tests| tests()).collect()
}

/// Runs everything `cargo xtask test` runs; `only` narrows it to matching system tests.
pub fn run_all(only: Option<&str>, accel: Accel) -> Result<(), String> {
    host_tools::ensure()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    if only.is_none() {
        for (name, check) in [
            ("fmt", checks::fmt as fn() -> Result<(), String>),
            ("clippy", checks::clippy),
            ("doc paths", checks::doc_paths),
            ("import cycles", checks::import_cycles),
        ] {
            match check() {
                Ok(()) => passed += 1,
                Err(e) => {
                    println!("check {name} ... FAILED: {e}");
                    failed += 1;
                }
            }
        }
        match checks::unit_tests() {
            Ok((p, f)) => {
                passed += p;
                failed += f;
            }
            Err(e) => {
                println!("unit tests ... FAILED: {e}");
                failed += 1;
            }
        }
        // Every fuzz target, briefly (`cargo xtask fuzz TARGET` runs longer).
        let (p, f) = crate::fuzz::smoke(FUZZ_SECONDS);
        passed += p;
        failed += f;
    }
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    build::toolstack_command()?;
    let selected: Vec<_> = cases()
        .into_iter()
        .filter(|t| only.is_none_or(|o| t.name.contains(o)))
        .collect();
    println!("xtask: {} system tests (QEMU, {accel:?})", selected.len());
    // Tests that need the host to themselves run last, one at a time.
    let (alone, shared): (Vec<_>, Vec<_>) = selected.into_iter().partition(|t| t.alone);
    let results = Mutex::new((0usize, 0usize));
    let record = |ok: bool| {
        let mut r = results.lock().expect("results lock");
        if ok {
            r.0 += 1;
        } else {
            r.1 += 1;
        }
    };
    let queue = Mutex::new(shared.into_iter());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let next = queue.lock().expect("queue lock").next();
                let Some(t) = next else { return };
                record(run_case(t.name, t.run, &kernel, &domains, accel));
            });
        }
    });
    for t in alone {
        record(run_case(t.name, t.run, &kernel, &domains, accel));
    }
    let (p, f) = *results.lock().expect("results lock");
    passed += p;
    failed += f;
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} failed"))
    }
}

/// `cargo xtask campaign crashes --count N --seed S`: the driver-crash
/// campaign at length; prints its report.
pub fn crash_campaign(seed: u64, count: u64) -> Result<(), String> {
    standalone("campaign-crashes", |ctx, machine| {
        campaign::crashes(ctx, machine, seed, count)
    })
}

/// Prepares what a system test has, outside the suite, and runs `f`.
fn standalone(
    name: &str,
    f: impl FnOnce(&Ctx, &mut Option<Machine>) -> Result<String, String>,
) -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    build::toolstack_command()?;
    let dir = build::target_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ctx = Ctx {
        dir,
        kernel,
        domains,
        accel: Accel::Tcg,
    };
    let mut machine = None;
    let outcome = f(&ctx, &mut machine);
    // The whole serial log, kept for reading after a long run.
    if let Some(m) = machine.as_ref() {
        let path = ctx.path("serial.log");
        if std::fs::write(&path, m.transcript()).is_ok() {
            println!("xtask: the serial log is in {}", path.display());
        }
    }
    match outcome {
        Ok(report) => {
            println!("{report}");
            Ok(())
        }
        Err(e) => {
            let log = machine
                .as_ref()
                .map(Machine::transcript)
                .unwrap_or_default();
            Err(format!("{e}\n--- serial log ---\n{log}"))
        }
    }
}

/// `cargo xtask fuzz hypercalls --seed S --calls N`: one long run of the
/// in-QEMU hypercall fuzzer, with the suite's checks; prints its report.
pub fn hypercall_campaign(seed: u64, calls: u64) -> Result<(), String> {
    standalone("fuzz-hypercalls", |ctx, machine| {
        hcfuzz::campaign(ctx, machine, seed, calls)
    })
}

fn run_case(name: &str, case: Case, kernel: &Path, domains: &Path, accel: Accel) -> bool {
    let dir = build::target_dir().join("systest").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        println!(
            "test {name} ... FAILED: cannot create {}: {e}",
            dir.display()
        );
        return false;
    }
    let ctx = Ctx {
        dir,
        kernel: kernel.to_path_buf(),
        domains: domains.to_path_buf(),
        accel,
    };
    let mut machine = None;
    let result = case(&ctx, &mut machine);
    match result {
        Ok(()) => {
            println!("test {name} ... ok");
            true
        }
        Err(e) => {
            let log = machine
                .as_ref()
                .map(Machine::transcript)
                .unwrap_or_default();
            println!("test {name} ... FAILED: {e}\n--- serial log of {name} ---\n{log}\n--- end of {name} ---");
            false
        }
    }
}
