//! A domain's other vCPUs, and reading memory that may not be mapped.
//!
//! Owns: [`start`] (runs a function on another of the domain's vCPUs, on a
//! stack from the heap) and [`probe_read`] (a read that returns `None`
//! instead of crashing the domain when the page is not mapped, through the
//! kernel's fault fixup, which the runtime alone registers). vCPU 0 runs
//! `run`; the others run only what a domain starts on them. They share the
//! heap, the event page and the runtime's state, so code on them uses
//! hypercalls, atomics and the heap, not the frontends (which expect one
//! vCPU).

extern crate alloc;

use crate::hypercall as hc;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, Ordering};
use ipc_abi::hypercall::Result;

/// Bytes of stack a started vCPU gets.
pub const STACK_SIZE: usize = 64 * 1024;

/// vCPUs a domain may have (the kernel's limit).
const MAX_VCPUS: usize = 8;

/// The top of each vCPU's stack once it has one (0: none yet): a vCPU
/// started again after [`stop`] runs on the same one.
static STACK_TOPS: [AtomicU64; MAX_VCPUS] = [const { AtomicU64::new(0) }; MAX_VCPUS];

/// Starts vCPU `vcpu` (1 up to the `vcpus =` it was created with, less
/// one) running `entry(arg)` on a fresh stack (its old one if it ran
/// before and stopped). Nothing is kept on failure.
pub fn start(vcpu: u32, entry: extern "C" fn(u64) -> !, arg: u64) -> Result<()> {
    let kept = STACK_TOPS
        .get(vcpu as usize)
        .map_or(0, |t| t.load(Ordering::Acquire));
    if kept != 0 {
        // Down (the kernel refuses `VcpuUp` while it is up), so nothing
        // runs on it now.
        hc::vcpu_up(vcpu, entry as usize as u64, kept - 8, arg)?;
        return Ok(());
    }
    let stack = alloc::vec![0u8; STACK_SIZE].into_boxed_slice();
    // At a function's first instruction the stack is 8 below a 16-byte
    // boundary, as if a call had pushed a return address.
    let top = (stack.as_ptr() as u64 + STACK_SIZE as u64) & !15;
    hc::vcpu_up(vcpu, entry as usize as u64, top - 8, arg)?;
    // The vCPU runs on it from now on, for the domain's whole life.
    Box::leak(stack);
    if let Some(t) = STACK_TOPS.get(vcpu as usize) {
        t.store(top, Ordering::Release);
    }
    Ok(())
}

/// Stops the calling vCPU (any but vCPU 0) until [`start`] starts it
/// again; what it was running is abandoned (hold no lock here). On vCPU 0
/// it blocks for ever instead.
pub fn stop() -> ! {
    let _ = hc::vcpu_down();
    loop {
        hc::block();
    }
}

core::arch::global_asm!(
    ".section .text.xenolith_probe",
    ".global xenolith_probe_read",
    ".global xenolith_probe_fault",
    ".global xenolith_probe_fixup",
    "xenolith_probe_read:",
    "xenolith_probe_fault:",
    "mov rax, [rdi]",
    "mov edx, 1",
    "ret",
    // The kernel resumes here after a page fault at xenolith_probe_fault,
    // with the faulting address in rax.
    "xenolith_probe_fixup:",
    "xor edx, edx",
    "ret",
);

#[repr(C)]
struct Probed {
    value: u64,
    ok: u64,
}

extern "C" {
    fn xenolith_probe_read(addr: u64) -> Probed;
    static xenolith_probe_fault: u8;
    static xenolith_probe_fixup: u8;
}

/// The restore epoch (`epoch::get`) in which the fixup was registered
/// (`u64::MAX`: never): a restored copy is a new domain, which must
/// register it again.
static FIXUP_EPOCH: AtomicU64 = AtomicU64::new(u64::MAX);

/// Reads the 8-byte word at `addr` (8-aligned, in this domain's half), or
/// `None` if its page is not mapped; any vCPU may call it.
pub fn probe_read(addr: u64) -> Option<u64> {
    if !addr.is_multiple_of(8) {
        return None;
    }
    let epoch = crate::epoch::get() as u64;
    if FIXUP_EPOCH.load(Ordering::Acquire) != epoch {
        let at = core::ptr::addr_of!(xenolith_probe_fault) as u64;
        let to = core::ptr::addr_of!(xenolith_probe_fixup) as u64;
        hc::fault_fixup(at, to).ok()?;
        FIXUP_EPOCH.store(epoch, Ordering::Release);
    }
    // A page fault at its load resumes at its fixup (registered above),
    // which returns with `ok` 0; a mapped word is plain memory of ours.
    // SAFETY: the routine reads one aligned word and touches nothing else.
    let r = unsafe { xenolith_probe_read(addr) };
    (r.ok != 0).then_some(r.value)
}
