//! `cargo xtask fuzz`: the coverage-guided fuzz targets of `fuzz/`, run
//! with `cargo fuzz` on stable Rust (`--sanitizer none`: no nightly here;
//! Rust's own bounds checks stand in for the address sanitizer).
//!
//! Owns: running one target or all for a while, from the committed corpus
//! (`fuzz/corpus/TARGET`, read only) with new inputs kept in a scratch
//! directory, and reporting runs per second; a crash fails with the input
//! that caused it. The targets themselves are listed once, in
//! `fuzz/Cargo.toml` (`cargo fuzz list`).

use crate::build;
use std::path::PathBuf;
use std::process::Command;

/// What one run did.
pub struct Outcome {
    pub target: String,
    pub runs: u64,
    pub seconds: u64,
}

fn fuzz_dir() -> PathBuf {
    build::root().join("fuzz")
}

/// Every target `fuzz/Cargo.toml` declares.
pub fn targets() -> Result<Vec<String>, String> {
    crate::host_tools::ensure_cargo_fuzz()?;
    let out = Command::new("cargo")
        .args(["fuzz", "list"])
        .current_dir(fuzz_dir())
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo fuzz list: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Fuzzes `target` for `seconds`.
pub fn run(target: &str, seconds: u64) -> Result<Outcome, String> {
    crate::host_tools::ensure_cargo_fuzz()?;
    let corpus = fuzz_dir().join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|e| format!("{}: {e}", corpus.display()))?;
    let scratch = build::target_dir().join("fuzz-scratch").join(target);
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let out = Command::new("cargo")
        .args(["fuzz", "run", "--sanitizer", "none", target])
        .arg(&scratch)
        .arg(&corpus)
        .args([
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ])
        .current_dir(fuzz_dir())
        .output()
        .map_err(|e| format!("cannot run cargo fuzz: {e}"))?;
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = err.lines().rev().take(30).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "fuzz target {target} failed ({}):\n{}",
            out.status,
            tail.join("\n")
        ));
    }
    let runs = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("Done ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .or_else(|| {
            err.lines().find_map(|l| {
                l.strip_prefix("stat::number_of_executed_units:")?
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(0);
    Ok(Outcome {
        target: target.to_string(),
        runs,
        seconds,
    })
}

/// `cargo xtask fuzz TARGET|all --seconds N`: prints a line per target.
pub fn command(target: &str, seconds: u64) -> Result<(), String> {
    let list = if target == "all" {
        targets()?
    } else {
        vec![target.to_string()]
    };
    println!(
        "{:<14} {:>12} {:>8} {:>12}",
        "TARGET", "RUNS", "SECONDS", "RUNS/S"
    );
    for t in &list {
        let o = run(t, seconds)?;
        println!(
            "{:<14} {:>12} {:>8} {:>12}",
            o.target,
            o.runs,
            o.seconds,
            o.runs / o.seconds.max(1)
        );
    }
    Ok(())
}

/// The suite's short run: every target for a few seconds; (passed, failed).
pub fn smoke(seconds: u64) -> (usize, usize) {
    let list = match targets() {
        Ok(l) => l,
        Err(e) => {
            println!("fuzz ... FAILED: {e}");
            return (0, 1);
        }
    };
    let (mut passed, mut failed) = (0, 0);
    for t in &list {
        match run(t, seconds) {
            Ok(o) if o.runs > 0 => {
                println!(
                    "fuzz {} ... ok ({} runs in {} s)",
                    o.target, o.runs, o.seconds
                );
                passed += 1;
            }
            Ok(o) => {
                println!("fuzz {} ... FAILED: no input ran", o.target);
                failed += 1;
            }
            Err(e) => {
                println!("fuzz {t} ... FAILED: {e}");
                failed += 1;
            }
        }
    }
    (passed, failed)
}
