//! How long service stopped, as a frontend saw it: the waits between two
//! answers of a backend that were longer than [`GAP_NS`], and when the
//! first answer after each restart of the backend came, in nanoseconds
//! since boot and in the CPU's busy TSC ticks (instructions under
//! `-icount`); with the kernel's crash time (`CrashRecord::at_ns`) that is
//! the time to service again. For benchmarks and tests.

/// Waits between two answers longer than this are kept.
pub const GAP_NS: u64 = 2_000_000;

/// A frontend's long waits between answers.
#[derive(Default)]
pub struct Gaps {
    last_answer: u64,
    list: heapless::Vec<u64, 64>,
    /// The backend restarted since the last answer.
    restarting: bool,
    resumed: heapless::Vec<(u64, u64), 64>,
}

impl Gaps {
    pub const fn new() -> Gaps {
        Gaps {
            last_answer: 0,
            list: heapless::Vec::new(),
            restarting: false,
            resumed: heapless::Vec::new(),
        }
    }

    /// An answer came at `now` (ns since boot), with the CPU's busy TSC at `busy`.
    pub fn answer(&mut self, now: u64, busy: u64) {
        let waited = now.saturating_sub(self.last_answer);
        if self.last_answer != 0 && waited > GAP_NS {
            let _ = self.list.push(waited);
        }
        if core::mem::take(&mut self.restarting) {
            let _ = self.resumed.push((now, busy));
        }
        self.last_answer = now;
    }

    /// The backend was restarted: the next answer is the new instance's first.
    pub fn restarted(&mut self) {
        self.restarting = true;
    }

    /// The long waits, oldest first.
    pub fn list(&self) -> &[u64] {
        &self.list
    }

    /// When the first answer after each restart came, oldest first:
    /// (ns since boot, busy TSC ticks).
    pub fn resumed(&self) -> &[(u64, u64)] {
        &self.resumed
    }
}

#[cfg(test)]
mod tests {
    use super::{Gaps, GAP_NS};

    #[test]
    fn only_long_waits_are_kept() {
        let mut g = Gaps::new();
        g.answer(1_000, 10);
        g.answer(1_000 + GAP_NS / 2, 20);
        g.answer(10 * GAP_NS, 30);
        assert_eq!(g.list().len(), 1);
        assert!(g.list()[0] > GAP_NS);
        assert!(g.resumed().is_empty());
    }

    #[test]
    fn the_first_answer_after_a_restart_is_noted() {
        let mut g = Gaps::new();
        g.answer(1_000, 100);
        g.restarted();
        g.answer(1_500, 400);
        g.answer(1_600, 450);
        assert_eq!(g.resumed(), &[(1_500, 400)]);
    }
}
