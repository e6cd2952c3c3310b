//! What a domain asks the kernel for itself: the CPU (yield, block, a
//! timer), to stop (shutdown, suspend), and its vCPUs (start one, fault
//! fixups).

use crate::domain::{lifecycle, saving, vcpus, Kernel, Life, VcpuRef};
use crate::usermem;
use ipc_abi::domain::{CrashRecord, ShutdownReason, MESSAGE_MAX};
use ipc_abi::hypercall::{args, Error};

pub fn yield_cpu(k: &mut Kernel, me: VcpuRef) -> Result<u64, Error> {
    let others = k
        .all_vcpus()
        .filter(|&(at, v)| at != me && v.up)
        .map(|(_, v)| v.sched.pass)
        .max();
    if let (Some(max), Some(v)) = (others, k.vcpu_mut(me)) {
        v.sched.yield_behind(max);
    }
    k.cpu_mut().need_resched = true;
    Ok(0)
}

#[inline(always)]
pub fn block(k: &mut Kernel, me: VcpuRef) -> Result<u64, Error> {
    let event_page = k.domain(me.dom).ok_or(Error::NoSuchDomain)?.event_page;
    let v = k.vcpu_mut(me).ok_or(Error::NoSuchDomain)?;
    if core::mem::take(&mut v.timer_fired) {
        return Ok(0);
    }
    if !crate::domain::shared_pages::any_deliverable(event_page) {
        v.blocked = true;
        k.cpu_mut().need_resched = true;
    }
    Ok(0)
}

/// Out of line: inlined, its timer arming made the compiler lay out the
/// hypercall dispatcher dearer for every call (the tracing test counts it).
#[inline(never)]
pub fn set_timer(k: &mut Kernel, me: VcpuRef, a: args::SetTimer) -> Result<u64, Error> {
    let v = k.vcpu_mut(me).ok_or(Error::NoSuchDomain)?;
    v.timer_deadline = a.deadline_ns;
    v.timer_fired = false;
    crate::arch::deadline::wants(a.deadline_ns);
    Ok(0)
}

pub fn shutdown(k: &mut Kernel, me: VcpuRef, a: args::Shutdown) -> Result<u64, Error> {
    let caller = me.dom;
    let reason = ShutdownReason::from_number(a.reason).ok_or(Error::InvalidArgument)?;
    let mut crash = CrashRecord::EMPTY;
    crash.vector = u64::MAX;
    let len = a.len.min(MESSAGE_MAX as u64) as usize;
    if let Some(d) = k.domain(caller) {
        if len > 0 && usermem::copy_from(&d.space, a.message, &mut crash.message[..len]).is_ok() {
            crash.message_len = len as u32;
        }
        crash.rip = k.vcpu(me).map_or(0, |v| v.frame.rip);
    }
    let life = lifecycle::shutdown_life(reason);
    lifecycle::stop(k, caller, life, (life == Life::Crashed).then_some(crash));
    Ok(0)
}

/// On vCPU 0 only: a restore makes that vCPU's `Suspend` return 1.
pub fn suspend(k: &mut Kernel, me: VcpuRef) -> Result<u64, Error> {
    if me.vcpu != 0 {
        return Err(Error::InvalidArgument);
    }
    saving::suspend(k, me.dom)
}

pub fn up(k: &mut Kernel, caller: usize, a: args::VcpuUp) -> Result<u64, Error> {
    vcpus::up(k, caller, a.vcpu, a.rip, a.rsp, a.arg).map(|()| 0)
}

pub fn down(k: &mut Kernel, me: VcpuRef) -> Result<u64, Error> {
    vcpus::down(k, me).map(|()| 0)
}

pub fn fault_fixup(k: &mut Kernel, caller: usize, a: args::FaultFixup) -> Result<u64, Error> {
    vcpus::set_fault_fixup(k, caller, a.fault_rip, a.fixup_rip).map(|()| 0)
}
