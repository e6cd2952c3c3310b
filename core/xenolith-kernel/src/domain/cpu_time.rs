//! A domain's CPU time as `DomainInfo` and `VcpuInfo` report it (`domain
//! list`, `top`, `vcpu-list`): the time the scheduler charged its vCPUs,
//! to the TSC tick at each switch and tick (`sched::Entity::used_tsc`),
//! plus what a vCPU on a CPU has run since; in scheduler ticks of 10 ms.
//!
//! Owns: the one rule that makes the figure stand still while the domain
//! is paused (or stopped). A pause returns before its vCPUs have left
//! their CPUs (the kick is on its way), and they are charged as they
//! leave; the time between the pause and the unpause is left out, so a
//! paused domain's CPU time does not move from the moment the pause
//! returned.

use super::{CpuTime, Domain, Vcpu};

/// What the domain's vCPUs ran up to TSC `now`.
fn used_until(d: &Domain, now: u64) -> u64 {
    d.existing_vcpus()
        .map(|v| vcpu_tsc(v, now))
        .fold(0u64, u64::wrapping_add)
}

/// The domain's CPU time at TSC `now`, in TSC ticks.
pub fn reported_tsc(d: &Domain, now: u64) -> u64 {
    match d.cpu_time {
        CpuTime::Counting { left_out } => used_until(d, now).saturating_sub(left_out),
        CpuTime::Frozen { at } => at,
    }
}

/// The domain stopped running at `now` (paused, suspended, crashed, shut
/// down): its figure stays what it is now.
pub fn freeze(d: &mut Domain, now: u64) {
    if let CpuTime::Counting { .. } = d.cpu_time {
        d.cpu_time = CpuTime::Frozen {
            at: reported_tsc(d, now),
        };
    }
}

/// The domain runs again from `now`: what its vCPUs were charged since it
/// was frozen is left out.
pub fn thaw(d: &mut Domain, now: u64) {
    if let CpuTime::Frozen { at } = d.cpu_time {
        d.cpu_time = CpuTime::Counting {
            left_out: used_until(d, now).saturating_sub(at),
        };
    }
}

/// One vCPU's charged time up to `now` (not frozen: `vcpu-list` shows
/// what each ran), in TSC ticks.
pub fn vcpu_tsc(v: &Vcpu, now: u64) -> u64 {
    let since = if v.loaded_on.is_some() {
        now.saturating_sub(v.sched.charged_to)
    } else {
        0
    };
    v.sched.used_tsc.wrapping_add(since)
}

/// TSC ticks in the reporting unit: scheduler ticks of 10 ms.
pub fn in_ticks(tsc: u64) -> u64 {
    tsc / crate::arch::time::tsc_per_tick().max(1)
}
