//! What happens when ring 3 enters the kernel, and what runs next.
//!
//! Owns: the `syscall` handler, ring-3 exceptions (which crash only that
//! domain), the timer tick (CPU accounting, one-shot timers, preemption), the
//! choice of the next vCPU and the idle loop. The kernel runs with interrupts
//! off and never blocks: a vCPU that waits simply is not picked.

use crate::arch::idt::TrapFrame;
use crate::arch::syscall::sanitize;
use crate::domain::lifecycle;
use crate::domain::{events, Kernel, Life, VcpuRef};
use crate::sched;
use crate::trace::{Checked, Gate, Quiet, Traced};
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

/// `syscall` lands here (through `arch/idt.rs`), the caller's registers
/// saved at `frame` in its vCPU's record. Inlined into `syscall_dispatch`
/// always: whether the compiler does so on its own changed with the size
/// of the dispatcher's other arms (+25 instructions an event round trip
/// once, with tracing compiled in).
#[inline(always)]
pub fn syscall(frame: *mut TrapFrame) {
    // Fast path: the null hypercall touches no state, so it takes no lock and
    // cannot change what runs next.
    if crate::domain::resume::answer_null(frame) {
        return;
    }
    if crate::trace::enabled() {
        hypercall::<Traced>()
    } else {
        hypercall::<Quiet>()
    }
}

/// A hypercall other than the null one, recording events as `G` says.
/// One function per `G` (the dispatch and the hot calls inlined into it),
/// never inlined into `syscall`: what the compiler inlines where then no
/// longer depends on the size of the dispatcher's other arms. The
/// registers are read from, and the result written to, the current
/// vCPU's record, where `syscall` saved them.
#[inline(never)]
fn hypercall<G: Gate>() {
    let mut k = crate::domain::lock();
    match k.current() {
        Some(cur) => {
            if let Some(f) = k.vcpu(cur).map(|v| &v.frame) {
                let (number, registers) = (f.rax, [f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9]);
                let (rax, rdx) = crate::hypercall::dispatch::<G>(&mut k, cur, number, &registers);
                if let Some(v) = k.vcpu_mut(cur) {
                    v.frame.rax = rax;
                    v.frame.rdx = rdx;
                }
            }
        }
        None => k.cpu_mut().need_resched = true,
    }
    finish_in_record::<G>(k);
}

/// A CPU exception in ring 3: the current domain crashes; everyone else goes on.
pub fn user_exception(frame: &mut TrapFrame, cr2: u64) {
    let mut k = crate::domain::lock();
    if let Some(cur) = k.cpu().current {
        let fixup = k.domain(cur).and_then(|d| d.fault_fixup);
        if let Some((_, to)) = fixup.filter(|&(at, _)| frame.vector == 14 && frame.rip == at) {
            // The domain asked for this fault to resume elsewhere (a probe).
            frame.rip = to;
            frame.rax = cr2;
            return finish::<Checked>(k, frame);
        }
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
/// Not a `tick` (the boot CPU's timer firing for a vCPU deadline between
/// ticks): only the timers due fire, and the timer is armed again.
pub fn timer_tick(frame: &mut TrapFrame, from_user: bool, tick: bool) {
    let mut k = crate::domain::lock();
    // The boot CPU keeps time (ticks, cap windows, one-shot timers); every
    // CPU charges the vCPU it runs and reschedules.
    let keeper = crate::domain::this_cpu() == 0;
    if tick {
        trace_event!("timer tick");
        account_tick(&mut k, keeper);
    } else {
        trace_event!("timer deadline");
    }
    if keeper {
        let earliest = fire_timers(&mut k);
        crate::arch::deadline::arm(crate::arch::time::now_ns(), earliest);
    }
    if tick {
        balance(&mut k);
        k.cpu_mut().need_resched = true;
    }
    if from_user {
        finish::<Checked>(k, frame);
    }
}

/// A tick's accounting: the boot CPU's count and cap windows, and the
/// running vCPU's charge.
fn account_tick(k: &mut Kernel, keeper: bool) {
    if keeper {
        k.now_ticks += 1;
    }
    if keeper && k.now_ticks.is_multiple_of(sched::CAP_WINDOW_TICKS as u64) {
        let live: heapless::Vec<usize, { crate::domain::MAX_DOMAINS }> = k.live().collect();
        for i in live {
            if let Some(d) = k.domain_mut(i) {
                d.existing_vcpus_mut()
                    .for_each(|v| v.sched.used_in_window = 0);
            }
        }
    }
    if let Some(cur) = k.current() {
        k.charge_running(cur, crate::arch::cpu::rdtsc());
        // From now its time costs as many times its stride as its domain
        // has vCPUs wanting a CPU (they share the domain's weight).
        let sharers = k.domain(cur.dom).map_or(1, |d| {
            d.existing_vcpus().filter(|v| d.wants_cpu(v)).count() as u32
        });
        if let Some(v) = k.vcpu_mut(cur) {
            v.sched
                .set_share(sharers, crate::arch::time::tsc_per_tick());
            v.sched.ticked();
        }
    }
}

/// Fires every vCPU timer that is due; returns the earliest one left.
fn fire_timers(k: &mut Kernel) -> Option<u64> {
    let now = crate::arch::time::now_ns();
    let mut due: heapless::Vec<VcpuRef, { crate::domain::MAX_DOMAINS }> = heapless::Vec::new();
    let mut earliest = None::<u64>;
    for (at, v) in k.all_vcpus().filter(|(_, v)| v.timer_deadline != 0) {
        if v.timer_deadline <= now {
            let _ = due.push(at);
        } else {
            earliest = Some(earliest.map_or(v.timer_deadline, |e| e.min(v.timer_deadline)));
        }
    }
    for at in due {
        let min = lifecycle::wake_base(k, at);
        let running = k.domain(at.dom).is_some_and(|d| d.life == Life::Running);
        let hvm = k.domain(at.dom).is_some_and(|d| d.is_hvm());
        if let Some(v) = k.vcpu_mut(at) {
            v.timer_deadline = 0;
            // A timer wakes its vCPU even when no port is bound to the VIRQ,
            // and even while the domain is paused (it runs once unpaused).
            if v.blocked {
                v.blocked = false;
                if running {
                    v.sched.wake(min);
                    trace_event!(
                        "dom{=u32} vcpu {=usize} wakes (timer)",
                        k.id_of(at.dom),
                        at.vcpu
                    );
                    k.resched_vcpu(at);
                }
            } else {
                v.timer_fired = true;
                // An HVM vCPU in guest mode elsewhere takes its APIC
                // timer's interrupt at its next exit (`hvm::interrupts`):
                // one is made now. Here, this interrupt made it.
                let here = crate::domain::this_cpu();
                if let Some(cpu) = v.loaded_on.filter(|&c| hvm && c != here) {
                    crate::arch::smp::kick(cpu);
                }
            }
        }
        events::raise_virq(k, at.dom, Virq::Timer);
    }
    earliest
}

/// Load balancing at each tick: a CPU with nothing runnable in its run
/// queue takes a waiting vCPU from the longest one (`sched::to_pull`).
fn balance(k: &mut Kernel) {
    let me = crate::domain::this_cpu();
    let online = crate::arch::smp::online_mask();
    let mut runnable: heapless::Vec<sched::Waiting, { crate::domain::MAX_DOMAINS }> =
        heapless::Vec::new();
    for (at, v) in k.all_vcpus() {
        if k.domain(at.dom).is_some_and(|d| d.wants_cpu(v)) {
            let _ = runnable.push(sched::Waiting {
                index: at.code(),
                cpu: v.cpu,
                affinity: v.affinity & online,
                loaded: v.loaded_on.is_some(),
            });
        }
    }
    if let Some(code) = sched::to_pull(me, &runnable) {
        let at = VcpuRef::from_code(code);
        #[cfg_attr(not(feature = "trace"), allow(unused_variables))]
        let id = k.id_of(at.dom);
        if let Some(v) = k.vcpu_mut(at) {
            trace_event!(
                "dom{=u32} vcpu {=usize} moves from cpu {=usize} to cpu {=usize}",
                id,
                at.vcpu,
                v.cpu,
                me
            );
            v.cpu = me;
        }
    }
}

/// Whether a vCPU may run on this CPU now: its domain running, the vCPU
/// started, not blocked, in this CPU's run queue, and not loaded on another
/// CPU (whose frame would not be saved yet).
#[inline(always)]
fn runnable_here(k: &Kernel, at: VcpuRef) -> bool {
    let cpu = crate::domain::this_cpu();
    let (Some(d), Some(v)) = (k.domain(at.dom), k.vcpu(at)) else {
        return false;
    };
    d.schedulable() && v.runs_on(cpu)
}

/// Picks from this CPU's run queue: the runnable vCPUs assigned to it.
#[inline(always)]
fn pick_next(k: &Kernel) -> Option<VcpuRef> {
    k.pick_here(crate::domain::this_cpu())
}

/// Frees a domain destroyed while this CPU ran it, once this CPU has left
/// its address space.
fn teardown(k: &mut Kernel, index: usize) {
    if let Err(e) = crate::arch::memory::with_frames(|f| lifecycle::destroy(k, f, index)) {
        kprintln!("warning: teardown of a destroyed domain failed: {e}");
    }
}

/// Another CPU asked this one to reschedule.
pub fn resched_ipi(frame: &mut TrapFrame, from_user: bool) {
    let mut k = crate::domain::lock();
    k.cpu_mut().need_resched = true;
    if from_user {
        finish::<Checked>(k, frame);
    }
    // From the kernel (the idle loop's halt, an HVM guest's exit): the
    // loop looks again.
}

/// Runs HVM vCPU `at`, which was just made current on this CPU, from the
/// top of the CPU's stack. Never returns: when it stops running here, the
/// CPU goes on to whatever `run_next` picks.
#[cold]
#[inline(never)]
fn enter_hvm(k: MutexGuard<'_, Kernel>, at: VcpuRef) -> ! {
    drop(k);
    crate::arch::syscall::on_fresh_stack(run_hvm, at.code() as u64)
}

/// The run loop of an HVM vCPU: run it, handle the exit, and again while
/// it may keep the CPU. Its CPU holds its state meanwhile, as a ring-3
/// vCPU's registers are on its CPU's stack while it runs.
extern "C" fn run_hvm(code: u64) -> ! {
    use crate::hvm::run;
    let at = VcpuRef::from_code(code as usize);
    let mut k = crate::domain::lock();
    let Some(mut state) = run::take(&mut k, at) else {
        run_next(k)
    };
    loop {
        run::prepare(&mut k, at, &mut state);
        drop(k);
        run::run(&mut state);
        k = crate::domain::lock();
        run::handle_exit(&mut k, at, &mut state);
        if k.cpu().need_resched || !runnable_here(&k, at) {
            run::put_back(&mut k, at, state);
            run_next(k)
        }
    }
}

/// Whether `at` is an HVM guest's vCPU (it runs under SVM, not in ring 3).
#[inline(always)]
fn is_hvm(k: &Kernel, at: VcpuRef) -> bool {
    k.domain(at.dom).is_some_and(|d| d.is_hvm())
}

/// Leaves the vCPU loaded on this CPU (its state already back in its
/// domain) for whatever the scheduler picks: another vCPU or the idle loop.
/// For the paths that have no trap frame to return through (an HVM
/// vCPU's run loop).
pub fn run_next(k: MutexGuard<'_, Kernel>) -> ! {
    let cur = k.current();
    switch_away::<Checked>(k, cur)
}

/// Loads domain `index`'s address space and I/O port bitmap on this CPU
/// (the bitmap only when it changes: most domains have no ports, and a
/// switch between two of them leaves it alone); returns whether it is an
/// HVM guest. The domain's record is looked up once.
#[inline(always)]
fn load_domain(k: &mut Kernel, index: usize) -> bool {
    let Some(d) = k.domain(index) else {
        return false;
    };
    d.space.activate();
    let (hvm, has_ports) = (d.is_hvm(), !d.io_ports.is_empty());
    let owner = k.cpu().io_owner;
    if owner != Some(index) && (has_ports || owner.is_some()) {
        crate::domain::devices::switch_io(k, index);
    }
    hvm
}

/// Counts the halt that just ended, if one did (the idle loop's first
/// thing each time round, after the interrupt that woke the CPU).
fn account_idle(k: &Kernel) {
    // The boot CPU's idle time only (APs idle most of the time while every
    // vCPU runs on the boot CPU).
    if crate::domain::this_cpu() != 0 {
        return;
    }
    let Some(total) = crate::arch::time::halt_ended() else {
        return;
    };
    if let Some(time_frame) = k.time_frame {
        crate::domain::shared_pages::write_frame(
            time_frame,
            ipc_abi::shared::IDLE_TSC_OFFSET,
            &total.to_le_bytes(),
        );
    }
}

/// Decides what returns to ring 3 after a trap whose registers are in
/// `frame` on the kernel stack: the same vCPU (through `frame`), another,
/// or none (idle). Leaving the vCPU, the frame is saved in its record.
#[inline(always)]
fn finish<G: Gate>(mut k: MutexGuard<'_, Kernel>, frame: &mut TrapFrame) {
    // (No idle time to count here: a trap from ring 3 never ends a halt.
    // The interrupt that wakes a halted CPU returns to the idle loop,
    // which counts it.)
    announce_new_log_lines(&mut k);
    let cur = k.current();
    if let Some(c) = cur {
        if !k.cpu().need_resched && runnable_here(&k, c) {
            sanitize(frame);
            return;
        }
        if let Some(v) = k.vcpu_mut(c) {
            v.frame = frame.clone();
        }
    }
    switch_away::<G>(k, cur)
}

/// `finish` for a hypercall, whose registers `syscall` saved in the
/// caller's record: returning, the entry path restores them from there;
/// leaving the vCPU, there is nothing to save.
#[inline(always)]
fn finish_in_record<G: Gate>(mut k: MutexGuard<'_, Kernel>) {
    announce_new_log_lines(&mut k);
    let cur = k.current();
    if let Some(c) = cur {
        if !k.cpu().need_resched && runnable_here(&k, c) {
            if let Some(v) = k.vcpu_mut(c) {
                sanitize(&mut v.frame);
            }
            return;
        }
    }
    switch_away::<G>(k, cur)
}

/// Runs what the scheduler picks on this CPU instead of `cur` (whose
/// registers are in its record), or the idle loop. Never returns: the
/// vCPU picked, `cur` again included, resumes from its record.
#[inline(always)]
fn switch_away<G: Gate>(mut k: MutexGuard<'_, Kernel>, cur: Option<VcpuRef>) -> ! {
    k.cpu_mut().need_resched = false;
    match pick_next(&k) {
        Some(n) => {
            if cur != Some(n) {
                trace_switch::<G>(&k, cur, Some(n));
            }
            let leaving = k.switch_current(Some(n));
            let hvm = load_domain(&mut k, n.dom);
            if let Some(c) = leaving {
                teardown(&mut k, c);
            }
            if hvm {
                enter_hvm(k, n)
            }
            drop(crate::domain::resume::resume(k, n));
            idle()
        }
        None => {
            trace_switch::<G>(&k, cur, None);
            let leaving = k.switch_current(None);
            // From here no vCPU is loaded on this CPU, so an unmap on
            // another CPU sends it no flush: it must not keep the domain's
            // tables past the lock. (It kept them until `idle` took the
            // lock again; coming back to the same domain in between,
            // `activate` saw the same CR3, skipped the reload and read a
            // replaced mapping: 3 stale reads in one run of the move test.)
            crate::arch::memory::activate_kernel_space();
            if let Some(c) = leaving {
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
fn trace_switch<G: Gate>(k: &Kernel, from: Option<VcpuRef>, to: Option<VcpuRef>) {
    match (from.map(|f| f.dom), to.map(|t| t.dom)) {
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
    let mut k = crate::domain::lock();
    trace_event!("irq {=u8}", irq);
    crate::domain::devices::irq(&mut k, irq);
    if from_user {
        finish::<Checked>(k, frame);
    }
}

/// The IOMMU's fault event: its faults are reported and their devices'
/// owners crashed (`domain::dma`).
pub fn dma_fault(frame: &mut TrapFrame, from_user: bool) {
    let mut k = crate::domain::lock();
    crate::domain::dma::faults(&mut k);
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
        {
            let mut k = crate::domain::lock();
            account_idle(&k);
            announce_new_log_lines(&mut k);
            k.cpu_mut().need_resched = false;
            match pick_next(&k) {
                Some(n) => {
                    trace_switch::<Checked>(&k, None, Some(n));
                    k.set_current(Some(n));
                    crate::domain::devices::switch_io(&mut k, n.dom);
                    if is_hvm(&k, n) {
                        crate::arch::memory::activate_kernel_space();
                        enter_hvm(k, n)
                    }
                    if let Some(d) = k.domain(n.dom) {
                        d.space.activate();
                    }
                    // Back only if `n` was not loaded here: look again.
                    drop(crate::domain::resume::resume(k, n));
                    continue;
                }
                None => {
                    k.set_current(None);
                    // An idle CPU holds no domain's page tables: a domain it
                    // ran, coming back, gets its tables loaded (the TLB
                    // flushed), so no entry for a mapping it replaced on
                    // another CPU meanwhile survives, and an unmap need
                    // only flush the CPUs that have one of the domain's
                    // vCPUs loaded (`domain::shootdown`).
                    crate::arch::memory::activate_kernel_space();
                }
            }
        }
        if crate::domain::this_cpu() == 0 {
            crate::arch::time::halting();
        }
        x86_64::instructions::interrupts::enable_and_hlt()
    }
}
