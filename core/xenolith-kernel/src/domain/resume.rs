//! Resuming a ring-3 vCPU from the registers saved in its record, read in
//! place: a switch to another vCPU no longer copies its 176-byte frame to
//! the kernel stack first (two copies an event round trip; see
//! docs/performance.md).
//!
//! Owns: the argument that the record may be the stack for the last
//! instructions before `iretq`, after the kernel's lock is released, and
//! for the first ones after `syscall` (the entry saves the caller's
//! registers there: `arch::syscall::set_syscall_frame`), which lets the
//! null hypercall be answered there without the lock.

use super::{Kernel, VcpuRef};
use crate::arch::idt::TrapFrame;
use crate::arch::syscall::sanitize;
use spin::MutexGuard;

/// Returns to ring 3 in vCPU `at`, loaded on this CPU (`set_current`),
/// with the registers its record holds, releasing the kernel's lock.
/// Returns (the lock still held) only if `at` is not a vCPU loaded here.
pub fn resume(mut k: MutexGuard<'_, Kernel>, at: VcpuRef) -> MutexGuard<'_, Kernel> {
    let me = super::this_cpu();
    let frame: *const TrapFrame = match k.vcpu_mut(at) {
        Some(v) if v.loaded_on == Some(me) => {
            sanitize(&mut v.frame);
            &v.frame
        }
        _ => return k,
    };
    drop(k);
    // Why the frame may be read after the unlock: the vCPU is loaded on
    // this CPU (checked under the lock), which keeps its record alive and
    // its frame unwritten until this CPU leaves it at its next trap, after
    // `iretq`: a destroy on another CPU leaves the freeing to this one
    // (`teardown`), only the CPU a vCPU is loaded on saves into its frame,
    // and creation, `vcpu_up` and restore write only frames of vCPUs not
    // loaded. Other CPUs may write the record's other fields meanwhile,
    // never these bytes.
    // SAFETY: the frame is sanitized and stays valid and unwritten (above);
    // interrupts are off, and NMI, #DF and #MC switch to their own stacks.
    unsafe { crate::arch::syscall::resume_user_at(frame) }
}

/// Answers the null hypercall in the registers `syscall` saved at `frame`
/// (in the record of the vCPU loaded on this CPU), without the kernel's
/// lock: it touches no other state and cannot change what runs next.
/// Returns false, having changed nothing, for any other call.
#[inline(always)]
pub fn answer_null(frame: *mut TrapFrame) -> bool {
    // Why no other CPU writes or frees this record while its vCPU is
    // loaded here: see `resume`. On this CPU no reference to it is alive
    // (interrupts are off and the kernel's lock is not taken).
    // SAFETY: `frame` is that loaded vCPU's frame, just written by `syscall`.
    unsafe {
        if (*frame).rax != ipc_abi::hypercall::Hypercall::Null as u64 {
            return false;
        }
        (*frame).rax = 0;
        (*frame).rdx = 0;
    }
    true
}
