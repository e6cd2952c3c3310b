//! When the boot CPU's one-shot timer fires next (`arch::deadline` arms
//! it): the sooner of the next tick and the earliest vCPU deadline, and
//! how many APIC timer counts that is. Pure: host-tested.

/// Timer interrupts per second (the tick).
pub const TICK_HZ: u32 = 100;
/// Nanoseconds between ticks.
pub const TICK_NS: u64 = 1_000_000_000 / TICK_HZ as u64;
/// The soonest the timer is armed for: a deadline nearer than this fires
/// this much later (an interrupt every few microseconds would be a storm).
pub const MIN_AHEAD_NS: u64 = 20_000;

/// When to arm the timer for, now at `now`: the next tick, or the
/// earliest vCPU deadline if that is sooner (but not sooner than
/// [`MIN_AHEAD_NS`] from now, and never in the past).
pub fn plan(now: u64, next_tick: u64, earliest: Option<u64>) -> u64 {
    let soonest = now + MIN_AHEAD_NS;
    let target = earliest.map_or(next_tick, |e| e.min(next_tick));
    target.max(soonest)
}

/// APIC timer counts for `ns` nanoseconds, at `per_tick` counts a tick
/// (at least one, at most what the register holds).
pub fn counts(ns: u64, per_tick: u32) -> u32 {
    let c = (ns as u128 * per_tick as u128).div_ceil(TICK_NS as u128);
    c.clamp(1, u32::MAX as u128) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_is_armed_for_the_sooner_of_the_tick_and_the_deadline() {
        assert_eq!(plan(1_000_000, 10_000_000, None), 10_000_000);
        assert_eq!(plan(1_000_000, 10_000_000, Some(2_000_000)), 2_000_000);
        assert_eq!(plan(1_000_000, 10_000_000, Some(30_000_000)), 10_000_000);
        // Too near, or already past: a little later, never in the past.
        assert_eq!(plan(1_000_000, 10_000_000, Some(1_000_001)), 1_020_000);
        assert_eq!(plan(1_000_000, 10_000_000, Some(5)), 1_020_000);
        assert_eq!(plan(20_000_000, 10_000_000, None), 20_020_000);
    }

    #[test]
    fn nanoseconds_become_timer_counts() {
        // 62,500 counts a tick (10 ms): 6.25 counts a microsecond.
        assert_eq!(counts(TICK_NS, 62_500), 62_500);
        assert_eq!(counts(1_000_000, 62_500), 6_250);
        assert_eq!(counts(1, 62_500), 1);
        assert_eq!(counts(0, 62_500), 1);
        assert_eq!(counts(u64::MAX, 62_500), u32::MAX);
    }
}
