//! Running an HVM vCPU: what the scheduler's run loop (`trap.rs`'s
//! `run_hvm`) calls around each `VMRUN`.
//!
//! Owns: moving the vCPU's state between its domain and the CPU running it
//! (the CPU holds it while it runs), the guest TLB flush when a CPU switches
//! guests, and what happens just before each run (`prepare`: its timer and
//! interrupts). What each exit does is `handle.rs`.

pub use super::handle::handle_exit;
use super::vcpu::HvmVcpu;
use crate::arch::svm::{self, off};
use crate::domain::{Kernel, VcpuRef};
use core::sync::atomic::{AtomicU64, Ordering};

/// Per CPU: the VMCB it last ran, so that switching to another guest's
/// vCPU flushes the guest TLB entries of the one ASID all guests share
/// (as does a vCPU's moving between CPUs).
static LAST_VMCB: [AtomicU64; crate::domain::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::domain::MAX_CPUS];

/// Takes HVM vCPU `at`'s state out of its domain, to run it on this CPU
/// (`None`: not an HVM vCPU, or its domain is gone).
pub fn take(k: &mut Kernel, at: VcpuRef) -> Option<HvmVcpu> {
    k.vcpu_mut(at).and_then(|v| v.hvm.take())
}

/// Puts the state back as the vCPU leaves this CPU.
pub fn put_back(k: &mut Kernel, at: VcpuRef, state: HvmVcpu) {
    match k.vcpu_mut(at) {
        Some(v) => v.hvm = Some(state),
        // Nothing is destroyed under a CPU that has it loaded (`destroy`).
        None => unreachable!("an HVM vCPU's domain went while it was loaded"),
    }
}

/// Just before a run, under the kernel lock: fires its timer if due and
/// gives it the interrupt it can take.
pub fn prepare(k: &mut Kernel, at: VcpuRef, state: &mut HvmVcpu) {
    super::interrupts::prepare(k, at, state);
}

/// Runs the guest until its next exit (interrupts off, the kernel lock not held).
pub fn run(state: &mut HvmVcpu) {
    let cpu = crate::domain::this_cpu();
    let vmcb = state.vmcb.phys();
    // Its entries in this CPU's TLB are stale if another guest ran here
    // since, or if it ran elsewhere since (its page tables may have
    // changed there), or if it never ran here (a new VMCB in a frame an
    // old one used).
    let moved = core::mem::replace(&mut state.last_cpu, cpu) != cpu;
    let flush = LAST_VMCB[cpu].swap(vmcb, Ordering::Relaxed) != vmcb || moved;
    state.vmcb.write32(off::TLB_CONTROL, flush as u32);
    // Nothing but the kernel writes the VMCB's control area; a nested
    // page table pointer that changed says something wrote it anyway.
    let (npt, enabled) = (
        state.vmcb.read64(off::N_CR3),
        state.vmcb.read64(off::NP_ENABLE),
    );
    if npt != state.npt || enabled != 1 {
        kprintln!(
            "hvm: BUG: the VMCB at {vmcb:#x} says nested CR3 {npt:#x} (enable {enabled}), not {:#x}",
            state.npt
        );
        state.vmcb.write64(off::N_CR3, state.npt);
        state.vmcb.write64(off::NP_ENABLE, 1);
    }
    svm::run(cpu, &mut state.vmcb, &mut state.state);
    let exit = super::vcpu::RecentExit {
        code: state.vmcb.read64(off::EXIT_CODE),
        rip: state.vmcb.read64(off::RIP),
        info1: state.vmcb.read64(off::EXIT_INFO1),
        cpu: cpu as u8,
        flushed: flush,
        tsc: crate::arch::cpu::rdtsc(),
    };
    let extra = &mut state.state.get_mut().extra;
    extra.recent[extra.recent_next % extra.recent.len()] = exit;
    extra.recent_next = extra.recent_next.wrapping_add(1);
}
