//! A domain's vCPUs: starting the secondary ones, pinning, reporting,
//! and the fault fixup a domain may register.
//!
//! Owns: `VcpuUp` (vCPU 0 runs from creation; the domain starts the others
//! itself, as a Xen PV guest does with `VCPUOP_initialise`/`up`) and
//! `VcpuDown` (one stops itself, as a PV guest's `VCPUOP_down`), `DomainPin`
//! (hard affinity per vCPU, honoured at once), `VcpuInfo` (for
//! `domain vcpu-list`) and `FaultFixup`. Every argument is the domain's
//! and is checked here.

use super::lifecycle;
use super::{Kernel, Life, VcpuRef};
use crate::arch::syscall::initial_frame;
use crate::sched;
use ipc_abi::domain::{VcpuInfo, VcpuState};
use ipc_abi::hypercall::Error;
use ipc_abi::layout::USER_LIMIT;

fn vcpu_ref(index: usize, vcpu: u64) -> Result<VcpuRef, Error> {
    Ok(VcpuRef {
        dom: index,
        vcpu: usize::try_from(vcpu).map_err(|_| Error::InvalidArgument)?,
    })
}

/// Starts vCPU `vcpu` of domain `index` (the domain's own call): at `rip`
/// with stack `rsp` and `arg` in rdi, on the least loaded CPU it may use.
pub fn up(
    k: &mut Kernel,
    index: usize,
    vcpu: u64,
    rip: u64,
    rsp: u64,
    arg: u64,
) -> Result<(), Error> {
    if rip >= USER_LIMIT || rsp > USER_LIMIT {
        return Err(Error::InvalidArgument);
    }
    let at = vcpu_ref(index, vcpu)?;
    let loads = k.loads();
    let online = crate::arch::smp::online_mask();
    let start_pass = lifecycle::virtual_time(k);
    let v = k.vcpu_mut(at).ok_or(Error::InvalidArgument)?;
    if v.up {
        return Err(Error::DomainState);
    }
    v.up = true;
    v.frame = initial_frame(rip, rsp, arg);
    v.cpu = sched::least_loaded(&loads, v.affinity & online);
    v.sched.pass = start_pass;
    let min = lifecycle::wake_base(k, at);
    if let Some(v) = k.vcpu_mut(at) {
        v.sched.wake(min);
    }
    trace_event!("dom{=u32} vcpu {=usize} up", k.id_of(index), at.vcpu);
    k.resched_vcpu(at);
    Ok(())
}

/// The calling vCPU `me` stops (not vCPU 0): down, as before its
/// `VcpuUp`; its CPU switches away at once. A later `VcpuUp` starts it
/// afresh (its registers are forgotten), with no timer or event wait left.
#[inline(never)]
pub fn down(k: &mut Kernel, me: VcpuRef) -> Result<(), Error> {
    if me.vcpu == 0 {
        return Err(Error::InvalidArgument);
    }
    let v = k.vcpu_mut(me).ok_or(Error::InvalidArgument)?;
    if v.hvm.is_some() {
        // An HVM vCPU goes down by INIT from another of its vCPUs.
        return Err(Error::PermissionDenied);
    }
    v.up = false;
    v.blocked = false;
    v.timer_deadline = 0;
    v.timer_fired = false;
    trace_event!("dom{=u32} vcpu {=usize} down", k.id_of(me.dom), me.vcpu);
    k.cpu_mut().need_resched = true;
    Ok(())
}

/// Gives every vCPU of domain `index` scheduler weight `weight` and cap
/// `cap` (percent of one CPU, 0: none), from the next tick on.
pub fn set_sched(k: &mut Kernel, index: usize, weight: u64, cap: u64) -> Result<(), Error> {
    if !(1..=65535).contains(&weight) || cap > 100 {
        return Err(Error::InvalidArgument);
    }
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    let per_tick = crate::arch::time::tsc_per_tick();
    for v in d.vcpus.iter_mut() {
        v.sched.set_weight(weight as u32, per_tick);
        v.sched.cap_percent = cap as u8;
    }
    // A vCPU held back by its old cap may run now; one over its new cap stops.
    k.resched(index);
    Ok(())
}

/// Lets vCPU `vcpu` of domain `index` run only on the CPUs in `mask`;
/// moves it at once (to the least loaded of them) if its CPU is not one.
pub fn pin(k: &mut Kernel, index: usize, vcpu: u64, mask: u64) -> Result<(), Error> {
    let allowed = mask & crate::arch::smp::online_mask();
    let at = vcpu_ref(index, vcpu)?;
    if allowed == 0 || k.vcpu(at).is_none() {
        return Err(Error::InvalidArgument);
    }
    let loads = k.loads();
    #[cfg_attr(not(feature = "trace"), allow(unused_variables))]
    let id = k.id_of(index);
    let running = k.domain(index).is_some_and(|d| d.life == Life::Running);
    let v = k.vcpu_mut(at).ok_or(Error::NoSuchDomain)?;
    v.affinity = mask;
    if allowed & (1 << v.cpu) == 0 {
        let to = sched::least_loaded(&loads, allowed);
        trace_event!(
            "dom{=u32} vcpu {=usize} moves from cpu {=usize} to cpu {=usize}",
            id,
            at.vcpu,
            v.cpu,
            to
        );
        v.cpu = to;
        if v.up && !v.blocked && running {
            let min = lifecycle::wake_base(k, at);
            if let Some(v) = k.vcpu_mut(at) {
                v.sched.wake(min);
            }
        }
        // The CPU it was on lets go of it; the one it goes to picks it up.
        k.resched_vcpu(at);
    }
    Ok(())
}

/// Where vCPU `vcpu` of domain `index` runs and may run.
pub fn info(k: &Kernel, index: usize, vcpu: u64) -> Result<VcpuInfo, Error> {
    let v = k
        .vcpu(vcpu_ref(index, vcpu)?)
        .ok_or(Error::InvalidArgument)?;
    let state = match (v.up, v.blocked) {
        (false, _) => VcpuState::Down,
        (true, false) => VcpuState::Runnable,
        (true, true) => VcpuState::Blocked,
    };
    Ok(VcpuInfo {
        cpu: v.cpu as u32,
        state: state as u32,
        affinity: v.affinity & crate::arch::smp::online_mask(),
        cpu_ticks: super::cpu_time::in_ticks(super::cpu_time::vcpu_tsc(
            v,
            crate::arch::cpu::rdtsc(),
        )),
        running: v.loaded_on.is_some() as u32,
        _reserved: 0,
    })
}

/// Registers (or with `(0, 0)` removes) the caller's fault fixup: a page
/// fault at `at` resumes at `to` (`trap::user_exception`). Both must lie in
/// the user half; what they point at is the domain's business.
pub fn set_fault_fixup(k: &mut Kernel, index: usize, at: u64, to: u64) -> Result<(), Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    d.fault_fixup = match (at, to) {
        (0, 0) => None,
        _ if at >= USER_LIMIT || to >= USER_LIMIT => return Err(Error::InvalidArgument),
        pair => Some(pair),
    };
    Ok(())
}
