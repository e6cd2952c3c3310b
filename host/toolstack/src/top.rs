//! `toolstack top`: a live view of every domain, refreshed (as `xentop`).
//!
//! Owns: sampling `list` and `host info` every period, turning the CPU-time
//! counters into a share of the period, and drawing a frame (clearing the
//! screen unless in batch mode, where frames follow each other for scripts).

use std::collections::HashMap;
use std::time::{Duration, Instant};
use toolstack::{Client, DomainEntry, Error};

/// Scheduler ticks per second (the `cpu_ticks` unit).
const TICKS_PER_SECOND: f64 = 100.0;

/// How to run `top`.
pub struct Options {
    pub delay: Duration,
    /// Frames to draw (None: until interrupted).
    pub iterations: Option<u32>,
    /// No screen clearing.
    pub batch: bool,
}

/// The CPU share (percent of one CPU) each domain had between two samples.
pub fn cpu_percent(
    before: &HashMap<u32, u64>,
    now: &[DomainEntry],
    elapsed: Duration,
) -> Vec<Option<f64>> {
    let seconds = elapsed.as_secs_f64();
    now.iter()
        .map(|d| {
            let earlier = *before.get(&d.id)?;
            (seconds > 0.0).then(|| {
                d.cpu_ticks.saturating_sub(earlier) as f64 / TICKS_PER_SECOND / seconds * 100.0
            })
        })
        .collect()
}

/// Draws frames until the iterations are done.
pub fn run(client: &mut Client, options: &Options) -> Result<(), Error> {
    let mut before: HashMap<u32, u64> = HashMap::new();
    let mut taken = Instant::now();
    let mut frame = 0u32;
    loop {
        let domains = client.list()?;
        let host = client.host_info()?;
        let now = Instant::now();
        let shares = cpu_percent(&before, &domains, now - taken);
        if !options.batch {
            // Clear the screen and go home.
            print!("\x1b[2J\x1b[H");
        }
        println!(
            "xenolith {}: {} domains, {} KiB free",
            host.version, host.domains, host.free_kib
        );
        println!(
            "{:<4} {:<24} {:<9} {:>10} {:>5} {:>10} {:>6}",
            "ID", "NAME", "STATE", "MEM(KiB)", "VCPUS", "TIME(s)", "CPU%"
        );
        for (d, share) in domains.iter().zip(&shares) {
            let share = share.map_or_else(|| "-".to_string(), |p| format!("{p:.1}"));
            println!(
                "{:<4} {:<24} {:<9} {:>10} {:>5} {:>10.2} {:>6}",
                d.id & 0xffff,
                d.name,
                d.state,
                d.memory_kib,
                d.vcpus,
                d.cpu_ticks as f64 / TICKS_PER_SECOND,
                share
            );
        }
        if options.batch {
            println!();
        }
        frame += 1;
        if options.iterations.is_some_and(|n| frame >= n) {
            return Ok(());
        }
        before = domains.iter().map(|d| (d.id, d.cpu_ticks)).collect();
        taken = now;
        std::thread::sleep(options.delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, cpu_ticks: u64) -> DomainEntry {
        DomainEntry {
            id,
            name: format!("d{id}"),
            state: "running".into(),
            kind: "pv".into(),
            memory_kib: 1024,
            vcpus: 1,
            cpu_ticks,
            restarts: 0,
            weight: 256,
            cap: 0,
            max_kib: 1024,
        }
    }

    #[test]
    fn shares_come_from_tick_deltas_and_new_domains_have_none() {
        let before = HashMap::from([(1, 100), (2, 500)]);
        let now = [entry(1, 150), entry(2, 500), entry(3, 20)];
        let shares = cpu_percent(&before, &now, Duration::from_secs(1));
        assert_eq!(shares, vec![Some(50.0), Some(0.0), None]);
        // A counter that went backwards (a new domain in a reused slot) is not negative.
        let shares = cpu_percent(
            &HashMap::from([(1, 900)]),
            &now[..1],
            Duration::from_secs(2),
        );
        assert_eq!(shares, vec![Some(0.0)]);
    }
}
