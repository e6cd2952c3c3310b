//! The in-QEMU hypercall fuzzer (`hc-fuzz`): a short seeded run in the
//! suite, and `cargo xtask fuzz hypercalls --seed S --calls N` for long
//! campaigns. Each run creates the fuzzer from domain 0 beside a domain
//! that keeps printing, and checks afterwards that the kernel is up, the
//! other domain went on, and the kernel's free memory came back exactly
//! once the fuzzer is gone.

use super::harness::{check, toolstack, Ctx, Machine};
use super::harness::{tests, Test};
use std::time::Duration;

/// The suite's run: a fixed seed, so a failure reproduces.
fn hypercall_sequences_from_a_hostile_guest_harm_nobody(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    campaign(c, slot, 0x5eed, 20_000).map(drop)
}

/// Boots, fuzzes, checks; returns the fuzzer's report line.
pub fn campaign(
    c: &Ctx,
    slot: &mut Option<Machine>,
    seed: u64,
    calls: u64,
) -> Result<String, String> {
    let guests = [("survivor", "survivor period_ms=200")];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(2))
        .boot_managed(slot)?;
    m.wait_for("[1] survivor: heartbeat 1", super::harness::BOOT)?;
    let free = || super::harness::free_kib(&sock);
    let before = free()?;
    let image =
        std::fs::read(crate::build::domain(&c.domains, "hc-fuzz")).map_err(|e| e.to_string())?;
    std::fs::write(c.path("hc-fuzz"), image).map_err(|e| e.to_string())?;
    let cfg = c.path("fuzz.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = \"fuzz\"\nkernel = \"hc-fuzz\"\nmemory = 1\non_crash = \"destroy\"\ncmdline = \"seed={seed} calls={calls}\"\n"
        ),
    )
    .map_err(|e| e.to_string())?;
    let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 0, || format!("create the fuzzer: {code} {out}"))?;
    // About 2,000 calls a second under TCG; generous for a loaded machine.
    let patience = Duration::from_secs(60 + calls / 200);
    let report = m.wait_for("hc-fuzz: seed ", patience)?;
    let done = m.wait_for("hc-fuzz: done; ", super::harness::BOOT)?;
    check(done.ends_with("the kernel still answers: Ok(())"), || {
        done.clone()
    })?;
    m.wait_for("(fuzz) shut down", super::harness::BOOT)?;
    // The domain next to it went on printing.
    let beats = m
        .lines()
        .iter()
        .filter(|l| l.contains("survivor: heartbeat"))
        .count();
    m.wait_for_nth("[1] survivor: heartbeat", beats + 3, super::harness::BOOT)?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.starts_with("PANIC") || l.starts_with("exception:")),
        || "the kernel faulted".into(),
    )?;
    // Everything the fuzzer took came back (domain 0 forgets it within a turn).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut after = free()?;
    while after != before && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        after = free()?;
    }
    check(after == before, || {
        format!("free memory {before} KiB before the fuzzer, {after} KiB after it was gone")
    })?;
    Ok(report)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![hypercall_sequences_from_a_hostile_guest_harm_nobody,]
}
