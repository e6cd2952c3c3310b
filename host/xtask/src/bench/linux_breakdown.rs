//! `bench linux`'s breakdown of a 4 KiB random read at queue depth 1:
//! where the one host CPU was while Linux's reads went through its device
//! model and drvdom-blk, from the kernel's trace (`toolstack host trace`,
//! the command a user runs) of a separate boot with tracing on.
//!
//! Owns: attributing the time between trace events to the domain the
//! CPU ran (the kernel's own work to whoever it worked for, an HVM
//! guest's exits included), and counting per read the switches, the
//! guest's exits and the hypercalls. Tracing makes each event dearer, so
//! the absolute figures are a little above the untraced run's; the split
//! is what this is for.

use std::collections::BTreeMap;
use std::path::Path;

/// The last this long of the random reads is broken down (the trace is
/// read as soon as Linux prints their figure).
const WINDOW_US: u64 = 1_000_000;

/// Per read: microseconds by where the CPU was, and counts.
#[derive(Default)]
pub struct Breakdown {
    pub reads: u64,
    pub micros: BTreeMap<String, f64>,
    pub switches: f64,
    pub exits: f64,
    pub hypercalls: BTreeMap<String, f64>,
}

/// One decoded event: microseconds since boot, its text after the CPU.
fn parse(line: &str) -> Option<(u64, &str)> {
    let mut words = line.split_whitespace();
    let (secs, micros) = words.next()?.split_once('.')?;
    let t = secs.parse::<u64>().ok()? * 1_000_000 + micros.parse::<u64>().ok()?;
    let cpu = words.next()?;
    if cpu != "cpu0" {
        return None;
    }
    let rest = line.split_once(" cpu0 ")?.1;
    Some((t, rest))
}

/// `dom4(linux-dm65539)` -> `linux-dm`; `idle` stays.
fn who(name: &str) -> String {
    let inner = name
        .split_once('(')
        .map_or(name, |(_, n)| n.trim_end_matches(')'));
    inner
        .trim_end_matches(|c: char| c.is_ascii_digit())
        .to_string()
}

/// The breakdown of the reads in the trace `text` (one CPU).
pub fn of_trace(text: &str) -> Result<Breakdown, String> {
    let events: Vec<(u64, &str)> = text.lines().filter_map(parse).collect();
    // A read is a request the device model sends drvdom-blk.
    let is_request = |e: &str| {
        e.split_once(" sends to ")
            .is_some_and(|(from, to)| from.contains("-dm") && to.contains("(drvdom-blk)"))
    };
    let last = events
        .iter()
        .rev()
        .find(|(_, e)| is_request(e))
        .map(|&(t, _)| t)
        .ok_or("no request to drvdom-blk in the trace")?;
    // Whole reads: from the first request of the window to the last.
    let first = events
        .iter()
        .find(|(t, e)| *t >= last.saturating_sub(WINDOW_US) && is_request(e))
        .map_or(last, |&(t, _)| t);
    let mut b = Breakdown::default();
    let mut on = String::from("?");
    let mut previous: Option<u64> = None;
    for &(t, e) in &events {
        if t > last {
            break;
        }
        if t >= first {
            if let Some(p) = previous {
                *b.micros.entry(on.clone()).or_default() += (t - p) as f64;
            }
            previous = Some(t);
            if is_request(e) && t > first {
                b.reads += 1;
            }
            if e.contains(" exit ") {
                b.exits += 1.0;
            }
            if let Some((domain, call)) = e.split_once(" hypercall ") {
                *b.hypercalls
                    .entry(format!("{} {call}", who(domain)))
                    .or_default() += 1.0;
            }
        }
        if let Some(rest) = e.strip_prefix("switch ") {
            if let Some((_, to)) = rest.split_once(" -> ") {
                on = who(to);
                if t >= first {
                    b.switches += 1.0;
                }
            }
        }
    }
    if b.reads < 10 {
        return Err(format!("only {} reads in the trace's last second", b.reads));
    }
    let n = b.reads as f64;
    b.micros.retain(|k, _| k != "?");
    b.micros.values_mut().for_each(|v| *v /= n);
    b.hypercalls.values_mut().for_each(|v| *v /= n);
    b.switches /= n;
    b.exits /= n;
    Ok(b)
}

/// Reads and breaks down the kernel's trace through the management socket
/// `sock`, as soon as Linux has printed its random-read figure.
pub fn measure(sock: &Path, kernel: &Path) -> Result<Breakdown, String> {
    let cli = crate::build::toolstack_command()?;
    let out = std::process::Command::new(cli)
        .arg("--connect")
        .arg(sock)
        .args(["host", "trace", "--kernel"])
        .arg(kernel)
        .output()
        .map_err(|e| format!("cannot run toolstack: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "toolstack host trace: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    of_trace(&String::from_utf8_lossy(&out.stdout))
}

/// Prints the breakdown beside QEMU's own device's time per read.
pub fn print(b: &Breakdown, direct_iops: f64) {
    println!();
    println!(
        "| a 4 KiB random read, 1 host CPU, kernel trace on (last second, {} reads) | us per read |",
        b.reads
    );
    println!("|---|---|");
    let total: f64 = b.micros.values().sum();
    for (k, v) in &b.micros {
        println!("| CPU in {k} | {v:.0} |");
    }
    println!("| total | {total:.0} |");
    println!(
        "| the same read with QEMU's own device (1 / its IOPS) | {:.0} |",
        1e6 / direct_iops.max(1e-9)
    );
    println!(
        "| switches between domains and idle, per read | {:.1} |",
        b.switches
    );
    println!("| Linux vCPU exits, per read | {:.1} |", b.exits);
    for (k, v) in b.hypercalls.iter().filter(|(_, v)| **v >= 0.05) {
        println!("| hypercall {k}, per read | {v:.1} |");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_goes_to_the_domain_the_cpu_ran_and_reads_are_requests() {
        let mut text = String::new();
        // Ten reads of 100 us: 40 in Linux, 20 in the device model, 10 in
        // drvdom-blk, 30 idle.
        for i in 0..12u64 {
            let t = 5_000_000 + i * 100;
            let at = |d: u64| format!("{:>6}.{:06}", (t + d) / 1_000_000, (t + d) % 1_000_000);
            text += &format!("{} cpu0 switch dom3(linux) -> dom4(linux-dm65539)\n", at(0));
            text += &format!(
                "{} cpu0 dom4(linux-dm65539) port 3 sends to dom1(drvdom-blk) port 3\n",
                at(5)
            );
            text += &format!(
                "{} cpu0 switch dom4(linux-dm65539) -> dom1(drvdom-blk)\n",
                at(20)
            );
            text += &format!(
                "{} cpu0 dom1(drvdom-blk) port 3 sends to dom4(linux-dm65539) port 3\n",
                at(28)
            );
            text += &format!("{} cpu0 dom1(drvdom-blk) hypercall Block\n", at(29));
            text += &format!("{} cpu0 switch dom1(drvdom-blk) -> idle\n", at(30));
            text += &format!("{} cpu0 switch idle -> dom3(linux)\n", at(60));
            text += &format!("{} cpu0 dom3(linux) vcpu 0 exit hlt rip 0x1\n", at(99));
        }
        text += "     5.001300 cpu1 timer tick\n";
        let b = of_trace(&text).unwrap();
        assert_eq!(b.reads, 11);
        let get = |k: &str| b.micros.get(k).copied().unwrap_or(0.0);
        assert!((get("linux") - 40.0).abs() < 1.0, "{:?}", b.micros);
        assert!((get("linux-dm") - 20.0).abs() < 1.0, "{:?}", b.micros);
        assert!((get("drvdom-blk") - 10.0).abs() < 1.0, "{:?}", b.micros);
        assert!((get("idle") - 30.0).abs() < 1.0, "{:?}", b.micros);
        assert!((b.switches - 4.0).abs() < 0.01);
        assert!((b.exits - 1.0).abs() < 0.01);
        assert!((b.hypercalls["drvdom-blk Block"] - 1.0).abs() < 0.01);
    }
}
