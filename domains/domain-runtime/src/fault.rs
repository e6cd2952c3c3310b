//! Fault injection for restart tests: when a driver domain crashes itself
//! (what counts as a request is the driver's: a block request, a frame, a
//! console line).
//!
//! Owns: reading `crash_after=N` (crash at the Nth request),
//! `crash_every=N` (crash at a random request among the first N; each new
//! instance draws again, so a driver restarted over and over crashes at
//! random moments) and `hang_after=N` (stop answering anything, heartbeats
//! included, at the Nth request) from the command line.

use crate::option;

/// The request count at which this instance crashes, if it is to.
pub fn crash_point() -> Option<u64> {
    if let Some(n) = option("crash_after").and_then(|v| v.parse().ok()) {
        return Some(n);
    }
    let every: u64 = option("crash_every")?.parse().ok().filter(|&n| n > 0)?;
    Some(1 + draw(crate::time::tsc()) % every)
}

/// The request count at which this instance hangs, if it is to.
pub fn hang_point() -> Option<u64> {
    option("hang_after")?.parse().ok()
}

/// Hangs for good, as a driver stuck in a loop would (only the heartbeat
/// supervisor gets it out).
pub fn hang(who: &str, at: u64) -> ! {
    crate::println!("{}: hang_after={}: hanging as asked", who, at);
    loop {
        crate::hypercall::block();
    }
}

/// A well-mixed number from a seed (SplitMix64's finaliser).
fn draw(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_spread_over_the_range() {
        let mut seen = [false; 10];
        for seed in 0..200 {
            seen[(super::draw(seed * 7919) % 10) as usize] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }
}
