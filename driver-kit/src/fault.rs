//! Fault injection for restart tests: when a driver domain crashes itself.
//!
//! Owns: reading `crash_after=N` (crash at the Nth request) and
//! `crash_every=N` (crash at a random request among the first N; each new
//! instance draws again, so a driver restarted over and over crashes at
//! random moments) from the command line.

use crate::pci::option;

/// The request count at which this instance crashes, if it is to.
pub fn crash_point() -> Option<u64> {
    if let Some(n) = option("crash_after").and_then(|v| v.parse().ok()) {
        return Some(n);
    }
    let every: u64 = option("crash_every")?.parse().ok().filter(|&n| n > 0)?;
    Some(1 + draw(domain_runtime::time::tsc()) % every)
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
