//! The boot CPU's timer: the periodic tick and the earliest vCPU timer on
//! one one-shot local APIC timer (the other CPUs keep a periodic tick).
//!
//! Owns: when the next tick is due and when the APIC timer is armed for;
//! arming it for the earlier of the two, so that a vCPU's timer fires when
//! it asked, not at the next tick 10 ms later (Linux's timers and the
//! runtime's sleeps were all rounded up so); telling a tick from a
//! deadline. The boot CPU keeps time and fires every vCPU's timer
//! (`trap::fire_timers`); a CPU that sets an earlier deadline sends it the
//! timer's vector. The arithmetic is `timer_plan`'s, pure and host-tested.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::timer_plan::{counts, plan, MIN_AHEAD_NS, TICK_NS};

/// APIC timer counts (divided by 16) per tick, from the calibration.
static COUNTS_PER_TICK: AtomicU32 = AtomicU32::new(0);
/// When the next tick is due (ns since boot).
static NEXT_TICK_NS: AtomicU64 = AtomicU64::new(0);
/// When the APIC timer will fire (ns since boot; `u64::MAX`: not armed).
static ARMED_NS: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether the boot CPU's timer is one-shot yet (before: every interrupt is a tick).
static ONE_SHOT: AtomicBool = AtomicBool::new(false);

/// Switches the boot CPU's timer to one-shot, its first tick one period
/// from now (`per_tick`: the calibrated count for one tick).
pub fn start(per_tick: u32) {
    COUNTS_PER_TICK.store(per_tick, Ordering::Relaxed);
    let now = super::time::now_ns();
    NEXT_TICK_NS.store(now + TICK_NS, Ordering::Relaxed);
    ONE_SHOT.store(true, Ordering::Release);
    arm(now, None);
}

/// The boot CPU's timer interrupt at `now`: whether it is a tick (the next
/// tick's time moves on, steadily, unless far behind). The timer is armed
/// for the next tick; the caller arms it sooner if a deadline asks.
pub fn interrupt(now: u64) -> bool {
    if !ONE_SHOT.load(Ordering::Acquire) {
        return true;
    }
    let next = NEXT_TICK_NS.load(Ordering::Relaxed);
    // A few microseconds early counts: the count was rounded.
    let tick = now + MIN_AHEAD_NS / 4 >= next;
    if tick {
        let following = next + TICK_NS;
        NEXT_TICK_NS.store(
            if following > now {
                following
            } else {
                now + TICK_NS
            },
            Ordering::Relaxed,
        );
    }
    ARMED_NS.store(u64::MAX, Ordering::Relaxed);
    arm(now, None);
    tick
}

/// Arms the boot CPU's timer for the next tick or `earliest`, whichever
/// comes first. Only on the boot CPU (its local APIC).
pub fn arm(now: u64, earliest: Option<u64>) {
    if !ONE_SHOT.load(Ordering::Acquire) {
        return;
    }
    let target = plan(now, NEXT_TICK_NS.load(Ordering::Relaxed), earliest);
    let armed = ARMED_NS.load(Ordering::Relaxed);
    if armed > now && armed <= target {
        return;
    }
    ARMED_NS.store(target, Ordering::Relaxed);
    super::apic::one_shot(counts(
        target - now,
        COUNTS_PER_TICK.load(Ordering::Relaxed),
    ));
}

/// A vCPU's timer now says `deadline`: if the boot CPU's timer would fire
/// after it, it is armed again (here, or by sending the boot CPU the
/// timer's vector). Out of line: inlined into the hypercall path, it made
/// the compiler lay the event path out dearer (the tracing test counts it).
#[inline(never)]
pub fn wants(deadline: u64) {
    if deadline == 0 || !ONE_SHOT.load(Ordering::Acquire) {
        return;
    }
    if deadline >= ARMED_NS.load(Ordering::Relaxed) {
        return;
    }
    if super::syscall::cpu_index() == 0 {
        arm(super::time::now_ns(), Some(deadline));
    } else {
        super::smp::send_vector(0, super::idt::VECTOR_TIMER);
    }
}
