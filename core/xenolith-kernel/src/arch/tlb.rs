//! TLB shootdown: making other CPUs forget translations the kernel removed.
//!
//! Owns: each CPU's flush request and acknowledgement counters and the
//! flush IPI ([`super::idt::VECTOR_TLB_FLUSH`]). The CPU that changed a
//! domain's page tables (it holds the kernel lock) asks every other CPU
//! that has the domain's tables loaded to flush, and waits until each has,
//! before the unmap is reported done or the frame can go back to anyone.
//! A CPU asked to flush may be in ring 3 (the IPI reaches it), halted
//! (likewise) or in the kernel with interrupts off spinning for the kernel
//! lock: the kernel lock (`domain::lock`) calls [`service`] while it spins, so the
//! waiting holder and the spinning CPU cannot deadlock.

use super::cpu::MAX_CPUS;
use core::sync::atomic::{AtomicU64, Ordering};

/// Flushes asked of each CPU, and the last request each has carried out.
static REQUESTED: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];
static DONE: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Makes every CPU in `cpus` (bit n: CPU n) but this one flush its TLB,
/// and returns once all have. Offline CPUs are left out.
pub fn shootdown(cpus: u64) {
    let me = super::syscall::this_cpu();
    let targets = cpus & !(1 << me) & super::smp::online_mask();
    if targets == 0 {
        return;
    }
    let mut want = [0u64; MAX_CPUS];
    for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
        // The page table change is visible before the request (AcqRel): a
        // CPU that sees the request and flushes cannot reload the old entry.
        want[cpu] = REQUESTED[cpu].fetch_add(1, Ordering::AcqRel) + 1;
        super::smp::send_vector(cpu, super::idt::VECTOR_TLB_FLUSH);
    }
    for cpu in (0..MAX_CPUS).filter(|c| targets & (1 << c) != 0) {
        while DONE[cpu].load(Ordering::Acquire) < want[cpu] {
            core::hint::spin_loop();
        }
    }
}

/// Carries out this CPU's pending flush request, if any (from the flush
/// IPI, and from the kernel lock's spin loop).
pub fn service() {
    let me = super::syscall::this_cpu();
    let want = REQUESTED[me].load(Ordering::Acquire);
    // Only this CPU writes its DONE, so the comparison cannot race.
    if DONE[me].load(Ordering::Relaxed) != want {
        x86_64::instructions::tlb::flush_all();
        DONE[me].store(want, Ordering::Release);
    }
}
