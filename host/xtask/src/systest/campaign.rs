//! The driver-crash campaign: the host crashes console-dom, drvdom-blk and
//! drvdom-net at random moments (`toolstack domain crash`, seeded) while
//! guests print numbered lines, write and read back their disk and take a
//! checksummed TCP stream; afterwards it counts what was lost, duplicated
//! or corrupted (all must be zero) and what the guests saw go wrong.
//! 50 crashes in the suite; `cargo xtask campaign crashes --count N`.

use super::harness::{check, toolstack, Ctx, Machine};
use super::harness::{tests, Test};
use crate::iso::NET_DRIVER_LINE;
use crate::qemu::{free_port, Forward};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DRIVERS: [&str; 3] = ["console-dom", "drvdom-blk", "drvdom-net"];

/// The suite's run.
fn fifty_random_driver_crashes_lose_nothing(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    crashes(c, slot, 0xc0ffee, 50).map(drop)
}

/// Numbers a line prefix carries (`[4] survivor: heartbeat 17`): how many
/// are missing between the first and the last, and how many came twice.
fn lost_and_repeated(numbers: &[u64]) -> (u64, u64) {
    let mut seen = std::collections::BTreeSet::new();
    let mut repeated = 0;
    for &n in numbers {
        if !seen.insert(n) {
            repeated += 1;
        }
    }
    let (Some(&first), Some(&last)) = (seen.first(), seen.last()) else {
        return (0, 0);
    };
    (last - first + 1 - seen.len() as u64, repeated)
}

fn numbers_after(m: &Machine, prefix: &str) -> Vec<u64> {
    // Whole lines only, `prefix` then the number then at most one word: a
    // line console-dom was cut off in (its end never printed, so the next
    // text runs on after it) is sent again whole, and only that one counts.
    m.lines()
        .iter()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter_map(|rest| {
            let mut words = rest.split(' ');
            let n = words.next()?.parse().ok()?;
            match (words.next(), words.next()) {
                (None, _) | (Some("ok" | "FAILED"), None) => Some(n),
                _ => None,
            }
        })
        .collect()
}

/// Runs the campaign; returns its report.
pub fn crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
    seed: u64,
    count: u64,
) -> Result<String, String> {
    let image = c.path("disk.img");
    std::fs::write(&image, vec![0u8; 16 << 20]).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let forwards = [Forward {
        udp: false,
        host_port: port,
        guest: "10.0.2.51".into(),
        guest_port: 5001,
    }];
    let net = format!("{NET_DRIVER_LINE} restart_limit=100000");
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 on_crash=restart restart_limit=100000",
        ),
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart restart_limit=100000",
        ),
        ("drvdom-net", net.as_str()),
        ("survivor", "lines period_ms=50"),
        ("disk-tool", "cycler memory=2M cycles=100000000 disk=whole,xvda,w"),
        (
            "net-tool",
            "sink memory=4M vif=mac=02:00:00:00:06:01 ip=10.0.2.51/24 gw=10.0.2.2 sink=5001",
        ),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(2).disk(&image).nic(&forwards))
        .boot_managed(slot)?;
    m.wait_for("[6] net-tool: listening on port 5001", super::harness::BOOT)?;
    m.wait_for("[5] disk-tool: cycle 1 ", super::harness::BOOT)?;
    m.wait_for("[4] survivor: heartbeat 2", super::harness::BOOT)?;

    // The stream, sent until the crashes are over.
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<(u64, u32), String> {
            let mut conn =
                std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            // A stream that stops moving is a finding, not a hang of the test.
            // It may stand still a while: a driver crashing again soon is
            // restarted after a growing hold-off (up to a second), so at
            // this campaign's rate the NIC is away about a third of the
            // time, and TCP's retransmission backoff (QEMU's user network
            // is the sender) grows with each retransmission lost: one
            // 1,000-crash run stood still 30 s, the limit then, and failed.
            conn.set_write_timeout(Some(Duration::from_secs(120)))
                .map_err(|e| e.to_string())?;
            super::net::send_noise_while(&mut conn, seed, || {
                (!stop.load(Ordering::Relaxed)).then_some(())
            })
        })
    };

    let dom0_heap = |sock: &std::path::Path| -> Result<u64, String> {
        let (code, out) = toolstack(sock, &["host", "info"])?;
        out.lines()
            .find_map(|l| l.strip_prefix("dom0 heap:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .filter(|_| code == 0)
            .ok_or_else(|| format!("host info: {code} {out}"))
    };
    let (free_before, heap_before) = (super::harness::free_kib(&sock)?, dom0_heap(&sock)?);
    let started = Instant::now();
    let mut rng = seed | 1;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut crashed = [0u64; 3];
    let mut refused = 0u64;
    while crashed.iter().sum::<u64>() < count {
        std::thread::sleep(Duration::from_millis(150 + next() % 300));
        let which = (next() % 3) as usize;
        let (code, _) = toolstack(&sock, &["domain", "crash", DRIVERS[which]])?;
        if code == 0 {
            crashed[which] += 1;
        } else {
            // Mid-restart (no domain of that name yet): another moment.
            refused += 1;
        }
    }
    let took = started.elapsed();
    // Let the last restart settle, then end the stream.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let (sent, sent_crc) = sender
        .join()
        .map_err(|_| "the sender panicked".to_string())??;
    let got = m.wait_for("[6] net-tool: received ", super::harness::BOOT * 3)?;
    // The same domains run: the kernel's free memory is what it was, and
    // domain 0's heap too, within a page (it grew a page and a grant with
    // each console-dom restart until its grant table was full, then a page
    // each turn of its loop: 28 MiB in 1,000 crashes).
    let (free_after, heap_after) = (super::harness::free_kib(&sock)?, dom0_heap(&sock)?);
    let (_, list) = toolstack(&sock, &["domain", "list"])?;
    let drivers_running = DRIVERS.iter().all(|d| {
        list.lines()
            .any(|l| l.split_whitespace().nth(1) == Some(d) && l.contains(" running "))
    });
    // Within the page tables of the drivers' grant windows: a backend's
    // mappings there (rings, requests' data pages in flight) take up to
    // three table pages, freed when its last mapping goes, so the count
    // moves with what is in flight at the measurement (seen: one page
    // either way). A leak of a page a crash is 50 pages in the suite's run.
    let kept = free_after.abs_diff(free_before) <= 3 * 3 * 4;
    let stream_ok = got == format!("[6] net-tool: received {sent} bytes crc32 {sent_crc:08x}");
    std::thread::sleep(Duration::from_secs(1));

    let (lines_lost, lines_repeated) =
        lost_and_repeated(&numbers_after(m, "[4] survivor: heartbeat "));
    let cycles = numbers_after(m, "[5] disk-tool: cycle ");
    let (cycles_lost, cycles_repeated) = lost_and_repeated(&cycles);
    let cycles_failed = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("[5] disk-tool: cycle ") && l.ends_with(" FAILED"))
        .count();
    let guest_errors: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| {
            (l.starts_with("[4]") || l.starts_with("[5]") || l.starts_with("[6]"))
                && (l.contains("gone") || l.contains("error") || l.contains("failed"))
        })
        .collect();
    let restarts: Vec<usize> = DRIVERS
        .iter()
        .map(|d| super::harness::restarts_of(m, d))
        .collect();
    let report = format!(
        "campaign: {} crashes in {:.1} s (console-dom {}, drvdom-blk {}, drvdom-net {}; {} asked mid-restart), restarts {:?}; console lines lost {}, repeated {}; disk cycles {}, failed {}, lost {}, repeated {}; stream {} bytes {}; guest-visible errors {}; free memory {} -> {} KiB, domain 0 heap {} -> {} KiB",
        count,
        took.as_secs_f64(),
        crashed[0],
        crashed[1],
        crashed[2],
        refused,
        restarts,
        lines_lost,
        lines_repeated,
        cycles.len(),
        cycles_failed,
        cycles_lost,
        cycles_repeated,
        sent,
        if stream_ok { "intact" } else { "DAMAGED" },
        guest_errors.len(),
        free_before,
        free_after,
        heap_before,
        heap_after
    );
    check(
        lines_lost == 0
            && lines_repeated == 0
            && cycles_failed == 0
            && cycles_lost == 0
            && cycles_repeated == 0
            && stream_ok
            && guest_errors.is_empty()
            && kept
            && heap_after <= heap_before + 4
            // A crash asked for while the driver was already crashed
            // (waiting for its restart) is one restart: near, not equal.
            && restarts
                .iter()
                .zip(crashed)
                .all(|(&r, c)| r as u64 + c / 10 + 1 >= c && (c == 0 || r > 0))
            && drivers_running,
        || format!("{report}\nthe guests: {got}\n{}", guest_errors.join("\n")),
    )?;
    Ok(report)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![fifty_random_driver_crashes_lose_nothing,]
}

#[cfg(test)]
mod tests {
    use super::lost_and_repeated;

    #[test]
    fn gaps_and_repeats_are_counted() {
        assert_eq!(lost_and_repeated(&[3, 4, 5, 6]), (0, 0));
        assert_eq!(lost_and_repeated(&[3, 4, 4, 7]), (2, 1));
        assert_eq!(lost_and_repeated(&[]), (0, 0));
    }
}
