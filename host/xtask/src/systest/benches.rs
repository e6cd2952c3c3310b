//! Every benchmark in its short form: `cargo xtask bench --short NAME`,
//! the user's own command, must finish and print its table. The figures of
//! a short run are not judged (docs/performance.md keeps the real ones);
//! what is checked is that no bench rots unseen, as `bench net` once did.

use super::harness::{check, Ctx, Machine, Test};
use std::process::Command;

/// Every `cargo xtask bench` subcommand.
const BENCHES: [&str; 12] = [
    "boot",
    "kernel",
    "ring",
    "console",
    "toolstack",
    "blk",
    "net",
    "restart",
    "save",
    "smp",
    "linux",
    "hvm",
];

fn every_bench_runs_in_its_short_form_and_prints_its_table(
    _: &Ctx,
    _: &mut Option<Machine>,
) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for bench in BENCHES {
        let started = std::time::Instant::now();
        let out = Command::new(&cargo)
            .current_dir(crate::build::root())
            .args(["xtask", "bench", "--short", bench])
            .output()
            .map_err(|e| format!("cannot run cargo xtask bench: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let table = stdout.lines().filter(|l| l.starts_with('|')).count();
        let separator = stdout.lines().any(|l| l.starts_with("|---"));
        check(out.status.success() && separator && table >= 3, || {
            format!(
                "cargo xtask bench --short {bench}: {} after {:.0} s\n{stdout}\n{}",
                out.status,
                started.elapsed().as_secs_f64(),
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        println!(
            "xtask: bench --short {bench}: a table of {table} lines in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// This file's tests: one, alone on the host (benches want it to themselves).
pub(super) fn tests() -> Vec<Test> {
    vec![Test::alone(
        "every_bench_runs_in_its_short_form_and_prints_its_table",
        every_bench_runs_in_its_short_form_and_prints_its_table,
    )]
}
