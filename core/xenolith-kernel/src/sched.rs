//! The scheduling policy: proportional share with caps, boost on wake-up.
//!
//! Owns: the arithmetic of who runs next. Each vCPU has a weight; for every
//! tick's worth of CPU time it uses, its `pass` advances by `STRIDE /
//! weight` (stride scheduling, the deterministic form of credit-based
//! proportional share), and the runnable vCPU with the lowest pass runs
//! next. Time is charged as it is used, to the TSC tick, at every switch
//! and every tick: charged by the tick instead (whoever the timer found
//! running paid for the whole tick, as in Xen's credit scheduler), vCPUs
//! that run for microseconds between blocks were charged by chance, and
//! of two guests sending flat out one got half as much again as the
//! other. A vCPU woken from blocking is boosted to the front once (the
//! boost is spent when it is picked), so a sleeper wakes within a tick
//! even against spinners, and a vCPU that wakes another on its CPU hands
//! the CPU over at once unless it was woken itself and not yet picked —
//! but only while it
//! has not had more than its share (its pass is within [`BOOST_WINDOW`] of
//! the least-served vCPU it competes with), as Xen boosts only UNDER
//! vCPUs: two domains that wake each other all the time cannot keep a
//! third out.
//! A cap limits a vCPU to `cap` percent of the ticks of each window.
//! Weight is a domain's, shared by its vCPUs that want the CPU (as Xen's
//! credit scheduler shares a domain's credit among its active vCPUs): a
//! tick of one of k such vCPUs advances its pass k times as far, so a
//! domain with four busy vCPUs gets what a one-vCPU domain of the same
//! weight gets, spread over four CPUs when they are free.
//! Pure: the host tests check the shares.

/// Numerator of the stride; large so small weights keep precision.
const STRIDE: u64 = 1 << 20;
/// Length of the cap accounting window, in ticks.
pub const CAP_WINDOW_TICKS: u32 = 100;
/// The weight a domain gets unless told otherwise (as Xen's credit scheduler).
pub use ipc_abi::domain::DEFAULT_WEIGHT;
/// How far ahead of the least-served a waking vCPU may be and still be
/// boosted: two ticks of a default-weight vCPU.
pub const BOOST_WINDOW: u64 = 2 * (STRIDE / DEFAULT_WEIGHT as u64);

/// Scheduling state of one vCPU.
#[derive(Clone, Copy, Debug)]
pub struct Entity {
    pub weight: u32,
    /// Percent of one CPU per window (at most 100); 0 = no cap.
    pub cap_percent: u8,
    pub pass: u64,
    pub boosted: bool,
    pub used_in_window: u32,
    /// The TSC up to which its CPU time is charged (while it runs).
    pub charged_to: u64,
    /// All the CPU time charged to it, in TSC ticks (what `domain list`
    /// reports, through `domain::cpu_time`, and debug key q). The
    /// entity keeps its 48 bytes with it (the vCPU record, walked on every
    /// switch, does not grow: performance.md, session 22).
    pub used_tsc: u64,
    /// Pass a TSC tick of CPU time costs it, in 2^-32 units: its stride
    /// times the vCPUs its domain's weight is shared by, over a tick's TSC
    /// ticks (set by [`Entity::set_share`]: at creation, a weight change
    /// and each tick; a charge is then one multiplication).
    rate: u64,
    /// What charges left below one unit of pass, in 2^-32 units (so
    /// short runs add up exactly).
    fraction: u32,
}

const _: () = assert!(core::mem::size_of::<Entity>() == 48);

impl Entity {
    /// A vCPU of weight `weight` alone in its domain, on a CPU whose
    /// tick lasts `tsc_per_tick`.
    pub fn new(weight: u32, cap_percent: u32, start_pass: u64, tsc_per_tick: u64) -> Entity {
        let mut e = Entity {
            weight: weight.max(1),
            cap_percent: cap_percent.min(100) as u8,
            pass: start_pass,
            boosted: false,
            used_in_window: 0,
            charged_to: 0,
            used_tsc: 0,
            rate: 0,
            fraction: 0,
        };
        e.set_share(1, tsc_per_tick);
        e
    }

    /// Gives it weight `weight` (its share recomputed for one sharer; the
    /// next tick sets the real count).
    pub fn set_weight(&mut self, weight: u32, tsc_per_tick: u64) {
        self.weight = weight.max(1);
        self.set_share(1, tsc_per_tick);
    }

    /// What its CPU time costs from now: its domain's weight is shared by
    /// `sharers` vCPUs wanting the CPU (itself included).
    pub fn set_share(&mut self, sharers: u32, tsc_per_tick: u64) {
        let stride = u128::from(self.stride()) * u128::from(sharers.max(1));
        let rate = (stride << 32) / u128::from(tsc_per_tick.max(1));
        self.rate = u64::try_from(rate).unwrap_or(u64::MAX);
    }

    fn stride(&self) -> u64 {
        STRIDE / self.weight.max(1) as u64
    }

    /// Whether the cap allows it to run in this window.
    pub fn within_cap(&self) -> bool {
        self.cap_percent == 0
            || self.used_in_window < u32::from(self.cap_percent) * CAP_WINDOW_TICKS / 100
    }

    /// Starts running at TSC `now`: its time is charged from there, and a
    /// wake-up boost is spent (it got what the boost is for: to run next).
    /// Kept until the next tick instead, a vCPU woken by its peer would
    /// stay ahead of that peer when it in turn wakes it, and of two
    /// domains that wake each other each would run on to block rather
    /// than hand over at the send: an event round trip that cost one
    /// wake-up or two, by which one a tick had last interrupted
    /// (performance.md, session 26).
    #[inline(always)]
    pub fn start_running(&mut self, now: u64) {
        self.charged_to = now;
        self.boosted = false;
    }

    /// Charges the CPU time it used since it was last charged, up to TSC
    /// `now`, at the rate [`Entity::set_share`] set.
    #[inline(always)]
    pub fn charge_until(&mut self, now: u64) {
        let used = now.saturating_sub(self.charged_to);
        self.charged_to = now;
        self.used_tsc = self.used_tsc.wrapping_add(used);
        let cost = u128::from(used) * u128::from(self.rate) + u128::from(self.fraction);
        self.fraction = cost as u32;
        // Below 2^64 whole units: `used` is a run's TSC ticks and `rate` a
        // stride (at most 2^20 times 8 sharers) per tick's TSC ticks; pass
        // grows by at most 2^23 a tick and wraps in no lifetime.
        self.pass = self.pass.wrapping_add((cost >> 32) as u64);
    }

    /// A tick found it running: the tick counts against its cap, and its
    /// boost is spent.
    pub fn ticked(&mut self) {
        self.used_in_window = self.used_in_window.saturating_add(1);
        self.boosted = false;
    }

    /// Charges one whole tick (the host tests' unit of CPU time), of
    /// [`TEST_TICK`] TSC ticks.
    #[cfg(test)]
    pub fn charge_tick(&mut self, sharers: u32) {
        self.set_share(sharers, TEST_TICK);
        self.charge_until(self.charged_to + TEST_TICK);
        self.ticked();
    }

    /// Called when the vCPU yields: it goes behind every other runnable vCPU.
    pub fn yield_behind(&mut self, others_max_pass: u64) {
        self.boosted = false;
        self.pass = self.pass.max(others_max_pass.saturating_add(1));
    }

    /// Called when the vCPU wakes: no credit for time asleep (its pass is
    /// at least `base.floor`), and a boost unless it is ahead of the
    /// least-served runnable vCPU of its CPU by more than [`BOOST_WINDOW`].
    pub fn wake(&mut self, base: WakeBase) {
        self.pass = self.pass.max(base.floor);
        self.boosted = base
            .competition
            .is_none_or(|c| self.pass <= c.saturating_add(BOOST_WINDOW));
    }
}

/// What a waking vCPU is measured against.
#[derive(Clone, Copy, Debug)]
pub struct WakeBase {
    /// The scheduler's virtual time (a sleeper is brought up to it).
    pub floor: u64,
    /// The lowest pass among the runnable vCPUs of its CPU, if any.
    pub competition: Option<u64>,
}

#[cfg(test)]
impl WakeBase {
    /// Alone: no floor, no competition.
    pub const ALONE: WakeBase = WakeBase {
        floor: 0,
        competition: None,
    };
}

/// TSC ticks in a tick in the host tests: a power of two, so rates are exact.
#[cfg(test)]
const TEST_TICK: u64 = 1 << 20;

/// Every CPU, as an affinity mask.
pub const ALL_CPUS: u64 = u64::MAX;

/// The CPU in `mask` whose run queue holds the fewest vCPUs (`loads`, by
/// CPU; the lowest-numbered on a tie); CPU 0 if `mask` names none.
pub fn least_loaded(loads: &[usize], mask: u64) -> usize {
    (0..loads.len().min(64))
        .filter(|&c| mask & (1 << c) != 0)
        .min_by_key(|&c| (loads[c], c))
        .unwrap_or(0)
}

/// A runnable vCPU as load balancing sees it.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    pub index: usize,
    /// The CPU whose run queue holds it, and the CPUs it may run on.
    pub cpu: usize,
    pub affinity: u64,
    /// Loaded on a CPU now (its registers are there: it cannot move).
    pub loaded: bool,
}

/// Load balancing, as an idle CPU `me` pulls work: if `me` has no runnable
/// vCPU, one that waits in the longest run queue (two or more runnable),
/// may run on `me` and is not loaded anywhere. The busiest queue gives
/// first; among its vCPUs, the lowest index.
pub fn to_pull(me: usize, runnable: &[Waiting]) -> Option<usize> {
    let queue = |cpu: usize| runnable.iter().filter(|w| w.cpu == cpu).count();
    if queue(me) > 0 {
        return None;
    }
    runnable
        .iter()
        .filter(|w| !w.loaded && w.cpu != me && w.affinity & (1 << me) != 0 && queue(w.cpu) >= 2)
        .max_by_key(|w| (queue(w.cpu), core::cmp::Reverse(w.index)))
        .map(|w| w.index)
}

/// Picks the next entity among `(index, entity)` candidates that are
/// runnable (the host tests' form of [`Best`]).
#[cfg(test)]
pub fn pick<'a>(candidates: impl Iterator<Item = (usize, &'a Entity)>) -> Option<usize> {
    let mut best = Best::default();
    for (i, e) in candidates {
        best.offer(i, e);
    }
    best.choice()
}

/// [`pick`] fed one candidate at a time (the kernel's hot path walks its
/// table in plain loops): a boosted entity first, then the lowest pass,
/// then the lowest index; entities over their cap never.
#[derive(Clone, Copy, Debug, Default)]
pub struct Best {
    key: Option<(bool, u64, usize)>,
}

impl Best {
    pub fn offer(&mut self, index: usize, e: &Entity) {
        let key = (!e.boosted, e.pass, index);
        if e.within_cap() && self.key.is_none_or(|best| key < best) {
            self.key = Some(key);
        }
    }

    pub fn choice(&self) -> Option<usize> {
        self.key.map(|(_, _, index)| index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(index: usize, cpu: usize, affinity: u64, loaded: bool) -> Waiting {
        Waiting {
            index,
            cpu,
            affinity,
            loaded,
        }
    }

    #[test]
    fn an_idle_cpu_pulls_a_waiting_vcpu_from_the_longest_queue() {
        let all = ALL_CPUS;
        // CPU 0 runs 1 and holds 2 and 3 waiting; CPU 1 holds 4 alone.
        let q = [
            w(1, 0, all, true),
            w(2, 0, all, false),
            w(3, 0, all, false),
            w(4, 1, all, true),
        ];
        assert_eq!(to_pull(2, &q), Some(2));
        // Not to a CPU with work, not a loaded one, not outside its affinity.
        assert_eq!(to_pull(1, &q), None);
        let pinned = [w(1, 0, all, true), w(2, 0, 0x1, false)];
        assert_eq!(to_pull(1, &pinned), None);
        let one = [w(1, 0, all, true)];
        assert_eq!(to_pull(1, &one), None);
        // The busiest queue gives first.
        let q = [
            w(1, 0, all, true),
            w(2, 0, all, false),
            w(5, 1, all, true),
            w(6, 1, all, false),
            w(7, 1, all, false),
        ];
        assert_eq!(to_pull(3, &q), Some(6));
    }

    fn run(entities: &mut [Entity], ticks: u32) -> std::vec::Vec<u32> {
        let mut used = std::vec![0u32; entities.len()];
        for t in 0..ticks {
            if t % CAP_WINDOW_TICKS == 0 {
                entities.iter_mut().for_each(|e| e.used_in_window = 0);
            }
            if let Some(i) = pick(entities.iter().enumerate()) {
                entities[i].charge_tick(1);
                used[i] += 1;
            }
        }
        used
    }

    #[test]
    fn weights_one_and_two_share_one_to_two() {
        let mut e = [
            Entity::new(1, 0, 0, TEST_TICK),
            Entity::new(2, 0, 0, TEST_TICK),
        ];
        let used = run(&mut e, 3000);
        assert_eq!(used[0] + used[1], 3000);
        assert!((used[1] as i64 - 2 * used[0] as i64).abs() <= 2, "{used:?}");
    }

    #[test]
    fn a_domain_shares_its_weight_among_its_busy_vcpus() {
        // Entities 0 and 1 are two busy vCPUs of one domain, 2 a one-vCPU
        // domain of the same weight, all competing for one CPU.
        let mut e = [
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
        ];
        let mut used = [0u32; 3];
        for _ in 0..3000 {
            let i = pick(e.iter().enumerate()).unwrap();
            e[i].charge_tick(if i < 2 { 2 } else { 1 });
            used[i] += 1;
        }
        let domain = used[0] + used[1];
        assert!((domain as i64 - used[2] as i64).abs() <= 2, "{used:?}");
        assert!((used[0] as i64 - used[1] as i64).abs() <= 1, "{used:?}");
    }

    #[test]
    fn a_cap_limits_a_spinner_even_when_alone() {
        let mut e = [Entity::new(256, 30, 0, TEST_TICK)];
        let used = run(&mut e, 1000);
        assert_eq!(used[0], 300);
    }

    #[test]
    fn a_woken_entity_runs_next_but_gains_no_credit_for_sleeping() {
        let mut e = [
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
        ];
        for _ in 0..10 {
            let i = pick(e[..2].iter().enumerate()).unwrap();
            e[i].charge_tick(1);
        }
        let min = e[..2].iter().map(|x| x.pass).min().unwrap();
        e[2].wake(WakeBase {
            floor: min,
            competition: Some(min),
        });
        assert_eq!(pick(e.iter().enumerate()), Some(2));
        e[2].charge_tick(1);
        assert!(!e[2].boosted);
        assert!(e[2].pass >= min);
    }

    #[test]
    fn a_boost_is_spent_once_picked_so_a_waker_hands_over() {
        // 0 was woken (boosted) and picked; it wakes 1: 1 runs next.
        let mut e = [
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
        ];
        e[0].wake(WakeBase::ALONE);
        assert_eq!(pick(e.iter().enumerate()), Some(0));
        e[0].start_running(0);
        e[0].charge_until(100);
        let floor = e[0].pass;
        e[1].wake(WakeBase {
            floor,
            competition: Some(floor),
        });
        assert_eq!(pick(e.iter().enumerate()), Some(1));
    }

    #[test]
    fn two_that_wake_each_other_cannot_keep_a_third_out() {
        // 0 and 1 ping-pong: the one that runs wakes the other and blocks.
        // 2 wants the CPU all the time. Whoever is picked is charged a tick.
        let mut e = [
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 0, TEST_TICK),
        ];
        let mut ran = [0u32; 3];
        let mut waiting = 0;
        for _ in 0..1000 {
            let i = pick([(waiting, &e[waiting]), (2, &e[2])].into_iter()).unwrap();
            e[i].charge_tick(1);
            ran[i] += 1;
            if i != 2 {
                waiting = 1 - i;
                let floor = e.iter().map(|x| x.pass).min().unwrap();
                // 2 is always runnable: it is the competition.
                e[waiting].wake(WakeBase {
                    floor,
                    competition: Some(e[2].pass),
                });
            }
        }
        assert!(ran[2] >= 300, "{ran:?}");
    }

    #[test]
    fn new_vcpus_go_to_the_least_loaded_cpu_they_may_use() {
        assert_eq!(least_loaded(&[2, 1, 1, 3], ALL_CPUS), 1);
        assert_eq!(least_loaded(&[2, 1, 1, 3], 0b1001), 0);
        assert_eq!(least_loaded(&[2, 1, 1, 3], 0b1000), 3);
        assert_eq!(least_loaded(&[2, 1, 1, 3], 0), 0);
        assert_eq!(least_loaded(&[0; 8], 1 << 63), 0);
    }

    #[test]
    fn a_yielder_goes_behind_the_others() {
        let mut e = [
            Entity::new(256, 0, 0, TEST_TICK),
            Entity::new(256, 0, 50, TEST_TICK),
        ];
        e[0].wake(WakeBase::ALONE);
        assert_eq!(pick(e.iter().enumerate()), Some(0));
        e[0].yield_behind(50);
        assert_eq!(pick(e.iter().enumerate()), Some(1));
    }

    #[test]
    fn time_is_charged_as_used_even_in_runs_shorter_than_a_unit() {
        // A tick of 2^20 TSC ticks; 2^14 runs of 64 ticks each cost what
        // one run as long as all of them does, fractions and all.
        let mut short = Entity::new(256, 0, 0, TEST_TICK);
        let mut long = Entity::new(256, 0, 0, TEST_TICK);
        for i in 0..(1u64 << 14) {
            short.start_running(i * 1000);
            short.charge_until(i * 1000 + 64);
        }
        long.start_running(0);
        long.charge_until(TEST_TICK);
        assert_eq!(short.pass, long.pass);
        assert_eq!(long.pass, STRIDE / 256);
        assert_eq!((short.used_tsc, long.used_tsc), (64 << 14, TEST_TICK));
        // Two vCPUs of one domain both wanting the CPU pay double.
        let mut shared = Entity::new(256, 0, 0, TEST_TICK);
        shared.set_share(2, TEST_TICK);
        shared.charge_until(TEST_TICK / 2);
        assert_eq!(shared.pass, long.pass);
    }

    #[test]
    fn nothing_runnable_picks_nothing() {
        assert_eq!(pick(core::iter::empty()), None);
    }
}
