//! Kernel time: the periodic tick and the TSC clock.
//!
//! Owns: the tick count, the TSC frequency (calibrated against the PIT at
//! boot), nanoseconds since boot, and the read-only time page every domain
//! maps to read the same clock without a hypercall.

use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts per second.
pub use crate::timer_plan::TICK_HZ;

static TICKS: AtomicU64 = AtomicU64::new(0);
static TSC_HZ: AtomicU64 = AtomicU64::new(1);
static TSC_AT_BOOT: AtomicU64 = AtomicU64::new(0);

/// Called from the timer interrupt.
pub fn tick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

/// Ticks since the timer started.
pub fn ticks() -> u64 {
    TICKS.load(Ordering::Relaxed)
}

/// Sleeps (halting the CPU) until `n` more ticks have passed. Interrupts must be on.
pub fn wait_ticks(n: u64) {
    let target = ticks() + n;
    while ticks() < target {
        x86_64::instructions::hlt();
    }
}

/// Records the TSC frequency and the boot reference point.
pub fn set_tsc(hz: u64, at_boot: u64) {
    TSC_HZ.store(hz.max(1), Ordering::Relaxed);
    TSC_AT_BOOT.store(at_boot, Ordering::Relaxed);
}

/// TSC ticks in one scheduler tick (`TICK_HZ`), for charging CPU time.
#[inline(always)]
pub fn tsc_per_tick() -> u64 {
    TSC_HZ.load(Ordering::Relaxed) / TICK_HZ as u64
}

/// Nanoseconds since boot.
#[inline(always)]
pub fn now_ns() -> u64 {
    page().ns(crate::arch::cpu::rdtsc())
}

/// The time page contents.
#[inline(always)]
pub fn page() -> ipc_abi::shared::TimePage {
    ipc_abi::shared::TimePage {
        tsc_hz: TSC_HZ.load(Ordering::Relaxed),
        tsc_at_boot: TSC_AT_BOOT.load(Ordering::Relaxed),
        idle_tsc: 0,
    }
}

/// TSC when the boot CPU last halted (0: it is not halted), and the ticks
/// it spent halted since boot (the time page's `idle_tsc`).
static HALTED_AT: AtomicU64 = AtomicU64::new(0);
static IDLE_TSC: AtomicU64 = AtomicU64::new(0);

/// TSC ticks the boot CPU was busy (not halted) since boot.
pub fn busy_tsc() -> u64 {
    super::cpu::rdtsc().saturating_sub(IDLE_TSC.load(Ordering::Relaxed))
}

/// The boot CPU halts now (its idle loop, with nothing to run).
pub fn halting() {
    HALTED_AT.store(super::cpu::rdtsc(), Ordering::Relaxed);
}

/// Counts the halt that just ended, if one did; returns the new idle total.
pub fn halt_ended() -> Option<u64> {
    let since = HALTED_AT.swap(0, Ordering::Relaxed);
    if since == 0 {
        return None;
    }
    let total = IDLE_TSC.load(Ordering::Relaxed) + super::cpu::rdtsc().saturating_sub(since);
    IDLE_TSC.store(total, Ordering::Relaxed);
    Some(total)
}
