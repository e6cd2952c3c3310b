//! Kernel time: the periodic tick counted by the local APIC timer.
//!
//! Owns: the tick count and its rate. The scheduler (issue 3) builds on it.

use core::sync::atomic::{AtomicU64, Ordering};

/// Timer interrupts per second.
pub const TICK_HZ: u32 = 100;

static TICKS: AtomicU64 = AtomicU64::new(0);

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
