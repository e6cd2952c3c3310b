//! When a crashed domain whose policy is `restart` starts again (pure,
//! host-tested).
//!
//! Owns: the backoff and the giving up. A domain's first crash within the
//! window restarts it at once (its guests wait for nothing but the
//! restart); the second waits 5 ms (the hold-off Hubris's supervisor uses),
//! each further one doubles the wait (up to a second), so a driver that
//! dies at start does not spin; one that crashes more than its limit within
//! the window (`restart_limit=N` on its line, default 5, in 10 s) is given
//! up on: its frontends are told the device is gone.

/// Crashes counted within this long of each other.
pub const WINDOW_NS: u64 = 10_000_000_000;
const FIRST_DELAY_NS: u64 = 5_000_000;
const MAX_DELAY_NS: u64 = 1_000_000_000;

/// What to do about a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Start it again at this time (ns since boot).
    RestartAt(u64),
    /// Too many crashes: leave it dead.
    GiveUp,
}

/// One domain's crash history.
#[derive(Clone, Debug, Default)]
pub struct Supervisor {
    recent: heapless::Deque<u64, 32>,
    /// Crashes since it was first started.
    pub crashes: u32,
    /// Restarts carried out.
    pub restarts: u32,
    /// What its last crash was (for `domain info`).
    pub last_crash: heapless::String<96>,
    /// DMA faults of its instances before the running one (`domain info`
    /// adds the running one's).
    pub dma_faults: u64,
}

impl Supervisor {
    /// Keeps what a crash was, for `domain info` after the restart.
    pub fn remember(&mut self, what: &str) {
        self.last_crash.clear();
        for c in what.chars() {
            if self.last_crash.push(c).is_err() {
                break;
            }
        }
    }

    /// It crashed at `now`; `limit` crashes within the window are tolerated.
    pub fn crashed(&mut self, now: u64, limit: usize) -> Decision {
        while self
            .recent
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > WINDOW_NS)
        {
            self.recent.pop_front();
        }
        if self.recent.is_full() {
            self.recent.pop_front();
        }
        let _ = self.recent.push_back(now);
        self.crashes += 1;
        let n = self.recent.len();
        if n > limit {
            return Decision::GiveUp;
        }
        let delay = match n {
            0 | 1 => 0,
            _ => FIRST_DELAY_NS
                .saturating_mul(1 << (n - 2).min(20))
                .min(MAX_DELAY_NS),
        };
        Decision::RestartAt(now + delay)
    }

    /// Crashes within the window that ends at `now`.
    pub fn recent(&self, now: u64) -> usize {
        self.recent
            .iter()
            .filter(|&&t| now.saturating_sub(t) <= WINDOW_NS)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn restarts_back_off_then_give_up() {
        let mut s = Supervisor::default();
        assert_eq!(s.crashed(0, 3), Decision::RestartAt(0));
        assert_eq!(s.crashed(100 * MS, 3), Decision::RestartAt(105 * MS));
        assert_eq!(s.crashed(200 * MS, 3), Decision::RestartAt(210 * MS));
        assert_eq!(s.crashed(300 * MS, 3), Decision::GiveUp);
        assert_eq!(s.crashes, 4);
        assert_eq!(s.recent(300 * MS), 4);
    }

    #[test]
    fn old_crashes_are_forgiven_and_the_wait_is_capped() {
        let mut s = Supervisor::default();
        for i in 0..3 {
            s.crashed(i * MS, 5);
        }
        // Long after: the count starts again.
        assert_eq!(
            s.crashed(WINDOW_NS + 10 * MS, 5),
            Decision::RestartAt(WINDOW_NS + 10 * MS)
        );
        let mut t = WINDOW_NS + 20 * MS;
        let mut last = Decision::GiveUp;
        for _ in 0..30 {
            t += MS;
            last = s.crashed(t, 100);
        }
        assert_eq!(last, Decision::RestartAt(t + 1_000 * MS));
    }
}
