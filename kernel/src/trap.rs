//! What happens when ring 3 enters the kernel, and what runs next.
//!
//! Owns: the `syscall` handler, ring-3 exceptions (which crash only that
//! domain), the timer tick (CPU accounting, one-shot timers, preemption), the
//! choice of the next vCPU and the idle loop. The kernel runs with interrupts
//! off and never blocks: a vCPU that waits simply is not picked.

use crate::arch::idt::TrapFrame;
use crate::arch::syscall::{enter_user, sanitize};
use crate::domain::lifecycle;
use crate::domain::{events, Kernel, Life, KERNEL};
use crate::sched;
use crate::trace::{Checked, Gate, Quiet, Traced};
use core::sync::atomic::{AtomicU64, Ordering};
use ipc_abi::domain::CrashRecord;
use ipc_abi::shared::Virq;
use spin::MutexGuard;

static SCHEDULER_RUNNING: core::sync::atomic::AtomicBool =
    core::sync::atomic::AtomicBool::new(false);

/// Whether domains are being scheduled (ticks before that are only counted).
pub fn scheduler_running() -> bool {
    SCHEDULER_RUNNING.load(core::sync::atomic::Ordering::Relaxed)
}

/// Starts scheduling domains on this CPU. Never returns.
pub fn start() -> ! {
    SCHEDULER_RUNNING.store(true, core::sync::atomic::Ordering::Relaxed);
    idle()
}

/// `syscall` lands here (through `arch/idt.rs`) with the caller's registers.
pub fn syscall(frame: &mut TrapFrame) {
    // Fast path: the null hypercall touches no state, so it takes no lock and
    // cannot change what runs next. The frame is as `syscall` built it.
    if frame.rax == ipc_abi::hypercall::Hypercall::Null as u64 {
        frame.rax = 0;
        frame.rdx = 0;
        return;
    }
    if crate::trace::enabled() {
        hypercall::<Traced>(frame)
    } else {
        hypercall::<Quiet>(frame)
    }
}

/// A hypercall other than the null one, recording events as `G` says.
fn hypercall<G: Gate>(frame: &mut TrapFrame) {
    let mut k = KERNEL.lock();
    match k.cpu().current {
        Some(cur) => crate::hypercall::dispatch::<G>(&mut k, cur, frame),
        None => k.cpu_mut().need_resched = true,
    }
    finish::<G>(k, frame);
}

/// A CPU exception in ring 3: the current domain crashes; everyone else goes on.
pub fn user_exception(frame: &mut TrapFrame, cr2: u64) {
    let mut k = KERNEL.lock();
    if let Some(cur) = k.cpu().current {
        let mut crash = CrashRecord::EMPTY;
        crash.vector = frame.vector;
        crash.error_code = frame.error_code;
        crash.rip = frame.rip;
        crash.address = if frame.vector == 14 { cr2 } else { 0 };
        lifecycle::stop(&mut k, cur, Life::Crashed, Some(crash));
    }
    k.cpu_mut().need_resched = true;
    finish::<Checked>(k, frame);
}

/// The timer interrupt: account, fire timers, and preempt if from ring 3.
pub fn timer_tick(frame: &mut TrapFrame, from_user: bool) {
    let mut k = KERNEL.lock();
    trace_event!("timer tick");
    // The boot CPU keeps time (ticks, cap windows, one-shot timers); every
    // CPU charges the vCPU it runs and reschedules.
    let keeper = crate::domain::this_cpu() == 0;
    if keeper {
        k.now_ticks += 1;
    }
    if keeper && k.now_ticks.is_multiple_of(sched::CAP_WINDOW_TICKS as u64) {
        let live: heapless::Vec<usize, { crate::domain::MAX_DOMAINS }> = k.live().collect();
        for i in live {
            if let Some(d) = k.domain_mut(i) {
                d.vcpu.sched.used_in_window = 0;
            }
        }
    }
    if let Some(cur) = k.cpu().current {
        if let Some(d) = k.domain_mut(cur) {
            d.vcpu.sched.charge_tick();
            d.vcpu.ticks += 1;
        }
    }
    if keeper {
        fire_timers(&mut k);
    }
    balance(&mut k);
    k.cpu_mut().need_resched = true;
    if from_user {
        finish::<Checked>(k, frame);
    }
}

fn fire_timers(k: &mut Kernel) {
    let now = crate::time::now_ns();
    let live: heapless::Vec<usize, { crate::domain::MAX_DOMAINS }> = k.live().collect();
    for i in live {
        let due = k
            .domain(i)
            .is_some_and(|d| d.vcpu.timer_deadline != 0 && d.vcpu.timer_deadline <= now);
        if !due {
            continue;
        }
        let min = lifecycle::wake_base(k, i);
        if let Some(d) = k.domain_mut(i) {
            d.vcpu.timer_deadline = 0;
            // A timer wakes its vCPU even when no port is bound to the VIRQ,
            // and even while the domain is paused (it runs once unpaused).
            if d.vcpu.blocked {
                d.vcpu.blocked = false;
                if d.life == Life::Running {
                    d.vcpu.sched.wake(min);
                    trace_event!("dom{=u32} wakes (timer)", d.id.0);
                    k.resched(i);
                }
            } else {
                d.vcpu.timer_fired = true;
            }
        }
        events::raise_virq(k, i, Virq::Timer);
    }
}

/// Load balancing at each tick: a CPU with nothing runnable in its run
/// queue takes a waiting vCPU from the longest one (`sched::to_pull`).
fn balance(k: &mut Kernel) {
    let me = crate::domain::this_cpu();
    let online = crate::arch::smp::online_mask();
    let mut runnable: heapless::Vec<sched::Waiting, { crate::domain::MAX_DOMAINS }> =
        heapless::Vec::new();
    for i in k.live() {
        if let Some(d) = k.domain(i) {
            if d.life == Life::Running && !d.vcpu.blocked && !d.teardown {
                let _ = runnable.push(sched::Waiting {
                    index: i,
                    cpu: d.vcpu.cpu,
                    affinity: d.vcpu.affinity & online,
                    loaded: d.vcpu.loaded_on.is_some(),
                });
            }
        }
    }
    if let Some(i) = sched::to_pull(me, &runnable) {
        if let Some(d) = k.domain_mut(i) {
            trace_event!(
                "dom{=u32} moves from cpu {=usize} to cpu {=usize}",
                d.id.0,
                d.vcpu.cpu,
                me
            );
            d.vcpu.cpu = me;
        }
    }
}

/// Whether domain `i`'s vCPU may run on this CPU now: running, not
/// blocked, in this CPU's run queue, and not loaded on another CPU (whose
/// frame would not be saved yet).
fn runnable_here(k: &Kernel, i: usize) -> bool {
    let cpu = crate::domain::this_cpu();
    k.domain(i).is_some_and(|d| {
        d.life == Life::Running
            && !d.vcpu.blocked
            && !d.teardown
            && d.vcpu.cpu == cpu
            && d.vcpu.loaded_on.is_none_or(|c| c == cpu)
    })
}

/// Picks from this CPU's run queue: the runnable vCPUs assigned to it.
fn pick_next(k: &Kernel) -> Option<usize> {
    sched::pick(
        k.live()
            .filter(|&i| runnable_here(k, i))
            .filter_map(|i| k.domain(i).map(|d| (i, &d.vcpu.sched))),
    )
}

/// Frees a domain destroyed while this CPU ran it, once this CPU has left
/// its address space.
fn teardown(k: &mut Kernel, index: usize) {
    if let Err(e) = crate::memory::with_frames(|f| lifecycle::destroy(k, f, index)) {
        kprintln!("warning: teardown of a destroyed domain failed: {e}");
    }
}

/// Another CPU asked this one to reschedule.
pub fn resched_ipi(frame: &mut TrapFrame, from_user: bool) {
    if from_user {
        let mut k = KERNEL.lock();
        k.cpu_mut().need_resched = true;
        finish::<Checked>(k, frame);
    }
    // From the kernel (the idle loop's halt): the loop looks again.
}

/// TSC when the CPU last halted (0: it is not halted), and the ticks it
/// spent halted since boot (published on the time page as `idle_tsc`).
static HALTED_AT: AtomicU64 = AtomicU64::new(0);
static IDLE_TSC: AtomicU64 = AtomicU64::new(0);

/// TSC ticks the CPU was busy (not halted) since boot.
pub fn busy_tsc() -> u64 {
    crate::arch::cpu::rdtsc().saturating_sub(IDLE_TSC.load(Ordering::Relaxed))
}

/// Counts the halt that just ended, if one did (the first thing after an
/// interrupt woke the idle CPU, or the idle loop went round).
fn account_idle(k: &Kernel) {
    // The boot CPU's idle time only (APs idle most of the time while every
    // vCPU runs on the boot CPU).
    if crate::domain::this_cpu() != 0 {
        return;
    }
    let since = HALTED_AT.swap(0, Ordering::Relaxed);
    if since == 0 {
        return;
    }
    let total = IDLE_TSC.load(Ordering::Relaxed) + crate::arch::cpu::rdtsc().saturating_sub(since);
    IDLE_TSC.store(total, Ordering::Relaxed);
    if k.time_frame != 0 {
        crate::domain::shared_pages::write_frame(
            k.time_frame,
            ipc_abi::shared::IDLE_TSC_OFFSET,
            &total.to_le_bytes(),
        );
    }
}

/// Decides what returns to ring 3 through `frame`: the same vCPU, another, or none (idle).
fn finish<G: Gate>(mut k: MutexGuard<'_, Kernel>, frame: &mut TrapFrame) {
    account_idle(&k);
    announce_new_log_lines(&mut k);
    let cur = k.cpu().current;
    if let Some(c) = cur {
        if !k.cpu().need_resched && runnable_here(&k, c) {
            sanitize(frame);
            return;
        }
        if let Some(d) = k.domain_mut(c) {
            d.vcpu.frame = frame.clone();
        }
    }
    k.cpu_mut().need_resched = false;
    let leaving = cur.filter(|&c| k.domain(c).is_some_and(|d| d.teardown));
    match pick_next(&k) {
        Some(n) => {
            if cur != Some(n) {
                trace_switch::<G>(&k, cur, Some(n));
            }
            k.set_current(Some(n));
            crate::domain::devices::switch_io(&mut k, n);
            if let Some(d) = k.domain(n) {
                d.space.activate();
                *frame = d.vcpu.frame.clone();
            }
            if let Some(c) = leaving {
                teardown(&mut k, c);
            }
            sanitize(frame);
        }
        None => {
            trace_switch::<G>(&k, cur, None);
            k.set_current(None);
            if let Some(c) = leaving {
                crate::memory::activate_kernel_space();
                teardown(&mut k, c);
            }
            drop(k);
            idle()
        }
    }
}

/// Records a context switch (`None`: the idle loop).
#[cfg_attr(not(feature = "trace"), allow(unused_variables))]
#[inline(always)]
fn trace_switch<G: Gate>(k: &Kernel, from: Option<usize>, to: Option<usize>) {
    match (from, to) {
        (Some(a), Some(b)) => {
            trace_event!(<G> "switch dom{=u32} -> dom{=u32}", k.id_of(a), k.id_of(b))
        }
        (None, Some(b)) => trace_event!(<G> "switch idle -> dom{=u32}", k.id_of(b)),
        (Some(a), None) => trace_event!(<G> "switch dom{=u32} -> idle", k.id_of(a)),
        (None, None) => {}
    }
}

/// A physical IRQ: its owner hears of it; from ring 3 the owner may run next.
pub fn physical_irq(frame: &mut TrapFrame, irq: u8, from_user: bool) {
    let mut k = KERNEL.lock();
    trace_event!("irq {=u8}", irq);
    crate::domain::devices::irq(&mut k, irq);
    if from_user {
        finish::<Checked>(k, frame);
    }
}

/// Turns "the console printed" into the console VIRQ of the control domain
/// (on the boot CPU, where the domains that read the log run).
fn announce_new_log_lines(k: &mut Kernel) {
    if crate::domain::this_cpu() == 0 && crate::klog::take_new_lines() {
        if let Some(c) = k.control_domain() {
            events::raise_virq(k, c, Virq::ConsoleLog);
        }
        if let Some(o) = k.console_owner {
            events::raise_virq(k, o, Virq::ConsoleLog);
        }
    }
}

/// Runs vCPUs until none is runnable, halting the CPU in between. Never returns.
pub fn idle() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        let next = {
            let mut k = KERNEL.lock();
            account_idle(&k);
            announce_new_log_lines(&mut k);
            k.cpu_mut().need_resched = false;
            match pick_next(&k) {
                Some(n) => {
                    trace_switch::<Checked>(&k, None, Some(n));
                    k.set_current(Some(n));
                    crate::domain::devices::switch_io(&mut k, n);
                    k.domain(n).map(|d| {
                        d.space.activate();
                        let mut f = d.vcpu.frame.clone();
                        sanitize(&mut f);
                        f
                    })
                }
                None => {
                    k.set_current(None);
                    // An idle CPU holds no domain's page tables: a domain it
                    // ran, coming back, gets its tables loaded (the TLB
                    // flushed), so no entry for a mapping it replaced on
                    // another CPU meanwhile survives. With one vCPU per
                    // domain that is the whole TLB shootdown: a domain's
                    // tables are live only on the CPU running it, which
                    // flushes its own entries as it unmaps.
                    crate::memory::activate_kernel_space();
                    None
                }
            }
        };
        match next {
            Some(frame) => enter_user(frame),
            None => {
                if crate::domain::this_cpu() == 0 {
                    HALTED_AT.store(crate::arch::cpu::rdtsc(), Ordering::Relaxed);
                }
                x86_64::instructions::interrupts::enable_and_hlt()
            }
        }
    }
}
