//! Kernel time: the periodic tick and the TSC clock.
//!
//! Owns: the tick count, the TSC frequency (calibrated against the PIT at
//! boot), nanoseconds since boot, and the read-only time page every domain
//! maps to read the same clock without a hypercall.

use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 100;

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

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    page().ns(crate::arch::cpu::rdtsc())
}

/// The time page contents.
pub fn page() -> ipc_abi::shared::TimePage {
    ipc_abi::shared::TimePage {
        tsc_hz: TSC_HZ.load(Ordering::Relaxed),
        tsc_at_boot: TSC_AT_BOOT.load(Ordering::Relaxed),
        idle_tsc: 0,
    }
}
