//! Every benchmark in its short form: `cargo xtask bench --short NAME`,
//! the user's own command, must finish and print its table. The figures of
//! a short run are not judged (docs/performance.md keeps the real ones);
//! what is checked is that no bench rots unseen, as `bench net` once did.
//! And `cargo xtask profile LOG`, which reads the logs benches take.

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

/// A bench, the environment it runs with, and what its output must hold.
type BenchOptions = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// The options a bench takes from the environment to measure one thing
/// alone (docs/performance.md uses them), each with a bench in its short
/// form: `(bench, options, what its output must hold)`. The `_PROFILE`
/// options are not here: they log every instruction for seconds, and
/// the profile test below reads such a log.
const OPTIONS: [BenchOptions; 5] = [
    (
        "blk",
        &[("BLKBENCH_ONLY", "map")],
        "| grant map | sequential read",
    ),
    (
        "net",
        &[("NETBENCH_NIC", "1"), ("NETBENCH_LOG", "1")],
        "frames out of the NIC, instructions a frame: raw ",
    ),
    (
        "net",
        &[("NETBENCH_NIC", "wall")],
        "frames out of the NIC, MiB/s, median of 1 boots: raw ",
    ),
    (
        "net",
        &[("NETBENCH_G2G", "4082"), ("NETBENCH_ICOUNT", "1")],
        "guest to guest, MTU 4082: ",
    ),
    (
        "restart",
        &[
            ("RESTARTBENCH_ONLY", "drvdom-net"),
            ("RESTARTBENCH_LOG", "1"),
        ],
        "| drvdom-net",
    ),
];

fn every_bench_option_runs_in_its_short_form(
    _: &Ctx,
    _: &mut Option<Machine>,
) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (bench, options, want) in OPTIONS {
        let out = Command::new(&cargo)
            .current_dir(crate::build::root())
            .args(["xtask", "bench", "--short", bench])
            .envs(options.iter().copied())
            .output()
            .map_err(|e| format!("cannot run cargo xtask bench: {e}"))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        check(
            out.status.success() && stdout.lines().any(|l| l.starts_with(want)),
            || {
                format!(
                    "{options:?} cargo xtask bench --short {bench}: {}, no line starting {want:?}\n{stdout}\n{}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                )
            },
        )?;
    }
    Ok(())
}

/// `cargo xtask profile LOG`, as a user types it, on a log of the kind
/// QEMU writes (`log exec,nochain`) made here from the built binaries:
/// five instructions of the kernel's `syscall_entry`, twenty in a row of
/// `net-tool`'s `run` (which only that binary has at those addresses), and
/// three of an HVM guest (QEMU's SVM flag set). The table must give each
/// its count, so a profile taken by a bench is read right; and a log no
/// binary built now explains must be refused, not misread.
fn cargo_xtask_profile_says_where_a_logs_instructions_went(
    _: &Ctx,
    _: &mut Option<Machine>,
) -> Result<(), String> {
    let kernel = crate::build::kernel()?;
    let domains = crate::build::domains()?;
    // (address, size) of a function, from `nm -S` (an assembly symbol
    // has no size: 0).
    let symbol = |elf: &std::path::Path, name: &str| -> Result<(u64, u64), String> {
        crate::exec_profile::elf_tool("nm", &["-S", "-C"], elf)?
            .lines()
            .find_map(|l| {
                let hex = |t: &str| u64::from_str_radix(t, 16).ok();
                match l.splitn(4, ' ').collect::<Vec<_>>()[..] {
                    [at, size, _, n] if n == name => Some((hex(at)?, hex(size)?)),
                    [at, _, n] if n == name => Some((hex(at)?, 0)),
                    _ => None,
                }
            })
            .ok_or_else(|| format!("no {name} in {}", elf.display()))
    };
    let net_tool = crate::build::domain(&domains, "net-tool");
    let (run, size) = symbol(&net_tool, "net_tool::run")?;
    let starts = crate::exec_profile::instruction_starts(
        &net_tool,
        &[
            &format!("--start-address={run:#x}"),
            &format!("--stop-address={:#x}", run + size),
        ],
    )?;
    // Twenty from the middle (decoded from the function's start, so each
    // is where an instruction really starts).
    let starts: Vec<u64> = starts
        .iter()
        .skip(starts.len() / 2)
        .take(20)
        .copied()
        .collect();
    check(starts.len() == 20, || {
        format!("net_tool::run's instructions: {starts:?}")
    })?;
    let (entry, _) = symbol(&kernel, "syscall_entry")?;
    let line = |pc: u64, flags: u32| {
        format!("Trace 0: 0x7f00 [0000000000000000/{pc:016x}/{flags:08x}/ff020201] \n")
    };
    let mut log: String = (0..5).map(|_| line(entry, 0x00d0_c2b0)).collect();
    log.extend(starts.iter().map(|&pc| line(pc, 0x00d0_c2b3)));
    log.extend((0..3).map(|_| line(0xffff_ffff_8100_0000, 0x00f0_c2b0)));
    let file = crate::build::target_dir().join("profile-test.log");
    std::fs::write(&file, log).map_err(|e| e.to_string())?;
    let profile = |file: &std::path::Path| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        Command::new(&cargo)
            .current_dir(crate::build::root())
            .args(["xtask", "profile"])
            .arg(file)
            .output()
            .map_err(|e| format!("cannot run cargo xtask profile: {e}"))
    };
    let out = profile(&file)?;
    let table = String::from_utf8_lossy(&out.stdout);
    let rows = [
        "| kernel | `syscall_entry` | 5 |",
        "| net-tool | `net_tool::run` | 20 |",
        "| an HVM guest | `?` | 3 |",
    ];
    check(
        out.status.success()
            && table.starts_with("28 instructions")
            && rows.iter().all(|r| table.contains(r)),
        || {
            format!(
                "cargo xtask profile {}: {}\n{table}\n{}",
                file.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        },
    )?;
    // A log of another build (here: domain instructions at an address
    // where no domain built now has one) is refused, not misread.
    let mut stale: String = (0..5).map(|_| line(entry, 0x00d0_c2b0)).collect();
    stale.extend((0..20).map(|i| line(0x1 + i, 0x00d0_c2b3)));
    let file = crate::build::target_dir().join("profile-test-stale.log");
    std::fs::write(&file, stale).map_err(|e| e.to_string())?;
    let out = profile(&file)?;
    let said = String::from_utf8_lossy(&out.stderr);
    check(
        !out.status.success()
            && said.contains("20 of its 20 domain instructions fit no domain built now")
            && said.contains("taken from another build"),
        || {
            format!(
                "cargo xtask profile on a log of another build: {}
{said}",
                out.status
            )
        },
    )
}

/// This file's tests: the benches alone on the host (they want it to
/// themselves), and the profile reader.
pub(super) fn tests() -> Vec<Test> {
    vec![
        Test::alone(
            "every_bench_runs_in_its_short_form_and_prints_its_table",
            every_bench_runs_in_its_short_form_and_prints_its_table,
        ),
        Test::alone(
            "every_bench_option_runs_in_its_short_form",
            every_bench_option_runs_in_its_short_form,
        ),
        Test::new(
            "cargo_xtask_profile_says_where_a_logs_instructions_went",
            cargo_xtask_profile_says_where_a_logs_instructions_went,
        ),
    ]
}
