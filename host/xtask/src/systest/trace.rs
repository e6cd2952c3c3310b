//! System tests of the kernel's trace buffers: `toolstack host trace`, and
//! what tracing costs when it is off.

use super::harness::{boot, check, expect_line, toolstack, Ctx, Machine};
use super::harness::{tests, Test};
use crate::build;
use crate::iso;
use crate::qemu::Config;
use std::io::Read;
use std::time::{Duration, Instant};

/// Two domains ping-pong over an event channel with tracing on; the
/// decoded trace shows each round as the kernel lived it, in order, with
/// timestamps and names, and `--follow` keeps streaming.
fn host_trace_shows_a_ping_pong_as_hypercalls_sends_wakes_and_switches(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("pingpong", "pong rounds=100000000"),
        ("pingpong", "ping evtchn=pong rounds=100000000"),
    ];
    // One CPU: the round below is the one-CPU sequence.
    let (m, sock) = c
        .machine()
        .cmdline("tbuf_size=64")
        .guests(&guests)
        .qemu(|config| config.smp(1))
        .boot_managed(slot)?;
    expect_line(m, "trace: 64 pages per cpu reserved")?;
    let pong = id_of(&expect_line(m, "toolstack: started pong as domain ")?)?;
    let ping = id_of(&expect_line(m, "toolstack: started ping as domain ")?)?;
    let kernel = c.kernel.to_string_lossy().into_owned();
    let (pi, po) = (format!("dom{ping}(ping)"), format!("dom{pong}(pong)"));
    // The trace is read as soon as both run; on a busy host they may not
    // have done ten rounds yet, so read it again (until a deadline) then.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (out, events, rounds) = loop {
        let (code, out) = toolstack(&sock, &["host", "trace", "--kernel", &kernel])?;
        check(code == 0, || format!("host trace: {code} {out}"))?;
        let events: Vec<(u64, String)> = out.lines().filter_map(event).collect();
        let rounds = count_rounds(&events, &pi, &po);
        if rounds >= 10 || Instant::now() > deadline {
            break (out, events, rounds);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    check(rounds >= 10, || {
        let tail: Vec<&str> = out.lines().rev().take(40).collect();
        format!(
            "{rounds} whole rounds in the trace; its end:\n{}",
            tail.join("\n")
        )
    })?;
    check(events.windows(2).all(|w| w[0].0 <= w[1].0), || {
        "events out of time order".into()
    })?;
    // --follow goes on printing what happens after it started.
    let since = events.last().map_or(0, |e| e.0);
    let later = follow_until(&sock, &kernel, since + 1_000_000, Duration::from_secs(30))?;
    check(later, || {
        "host trace --follow showed nothing a second newer".into()
    })
}

/// The domain id at the end of "... as domain N (...".
fn id_of(line: &str) -> Result<u32, String> {
    super::harness::number_after(line, "as domain ")
        .map(|n| n as u32)
        .ok_or_else(|| format!("no domain id in {line:?}"))
}

/// "  S.UUUUUU cpuN text" as (microseconds, text with port numbers as #).
fn event(line: &str) -> Option<(u64, String)> {
    let mut parts = line.trim_start().splitn(3, ' ');
    let (s, us) = parts.next()?.split_once('.')?;
    let micros = s.parse::<u64>().ok()? * 1_000_000 + us.parse::<u64>().ok()?;
    parts.next().filter(|cpu| cpu.starts_with("cpu"))?;
    let words: Vec<&str> = parts.next()?.split(' ').collect();
    let text = words
        .iter()
        .enumerate()
        .map(|(i, w)| match i.checked_sub(1).map(|p| words[p]) {
            Some("port") => "#",
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ");
    Some((micros, text))
}

/// Whole rounds in a row: ping's half then pong's, ignoring events of other
/// domains (ticks, domain 0) in between.
fn count_rounds(events: &[(u64, String)], ping: &str, pong: &str) -> usize {
    let ours: Vec<&str> = events
        .iter()
        .map(|(_, t)| t.as_str())
        .filter(|t| t.contains("(ping)") || t.contains("(pong)"))
        .collect();
    let (mut best, mut run, mut i) = (0, 0, 0);
    while i < ours.len() {
        let round = half(&ours, i, ping, pong).and_then(|j| half(&ours, j, pong, ping));
        match round {
            Some(j) => {
                run += 1;
                best = best.max(run);
                i = j;
            }
            None => {
                run = 0;
                i += 1;
            }
        }
    }
    best
}

/// One half of a round on one CPU, `from` signalling `to`, as the kernel
/// lives it: `from` (back from a `Block` that found the event pending, or
/// not) sends; the kernel marks `to`'s port and wakes it if it was blocked;
/// `from` blocks now or later; the CPU switches to `to`. Returns where the
/// half ends.
fn half(events: &[&str], mut i: usize, from: &str, to: &str) -> Option<usize> {
    let mut step = |line: String, optional: bool| {
        if events.get(i) == Some(&line.as_str()) {
            i += 1;
            true
        } else {
            optional
        }
    };
    let ok = step(format!("{from} hypercall Block"), true)
        && step(format!("{from} hypercall EventSend"), false)
        && step(format!("{from} port # sends to {to} port #"), false)
        && step(format!("{to} vcpu 0 wakes"), true)
        && step(format!("{from} hypercall Block"), true)
        && step(format!("switch {from} -> {to}"), false);
    ok.then_some(i)
}

/// Runs `host trace --follow` until it prints an event at `micros` or later.
fn follow_until(
    sock: &std::path::Path,
    kernel: &str,
    micros: u64,
    limit: Duration,
) -> Result<bool, String> {
    let mut child = std::process::Command::new(build::target_dir().join("debug/toolstack"))
        .arg("--connect")
        .arg(sock)
        .args(["host", "trace", "--follow", "--kernel", kernel])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run toolstack: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut text = String::new();
    let mut seen = false;
    while !seen && start.elapsed() < limit {
        if let Ok(bytes) = rx.recv_timeout(Duration::from_millis(200)) {
            text.push_str(&String::from_utf8_lossy(&bytes));
            seen = text.lines().filter_map(event).any(|(t, _)| t >= micros);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(seen)
}

/// With `tbuf_size=0` (the default) an event round trip takes no more
/// instructions (within 1%) than in a kernel built without any tracing code;
/// with tracing on it takes more (so the measure would see a cost).
fn tracing_off_costs_no_instructions_on_the_event_path(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let plain = build::kernel_without_tracing()?;
    let without = event_round_trip(c, slot, &plain, "")?;
    let off = event_round_trip(c, slot, &c.kernel, "")?;
    let on = event_round_trip(c, slot, &c.kernel, "tbuf_size=4")?;
    println!(
        "event round trip: {without} instructions without tracing code, {off} with it off, {on} on"
    );
    // Off may come out a little cheaper than without tracing code (the
    // compiler inlines a program with both hypercall paths differently); it
    // must never cost more than 1%.
    check(off * 100 <= without * 101, || {
        format!("tracing off costs {off} against {without} instructions without it (over 1%)")
    })?;
    check(on > off + off / 10, || {
        format!("tracing on: {on}, off: {off}: the measure sees no cost")
    })
}

/// Instructions of one event round trip between two domains (`-icount`).
fn event_round_trip(
    c: &Ctx,
    slot: &mut Option<Machine>,
    kernel: &std::path::Path,
    cmdline: &str,
) -> Result<u64, String> {
    let mods = crate::bench::kernel_bench_modules(&c.domains);
    let iso = iso::build(kernel, cmdline, &mods, &c.path("bench.iso"))?;
    let m = boot(&Config::new(&iso).icount(), slot)?;
    let line = expect_line(m, "bench: event round trip: ")?;
    super::harness::number_after(&line, "event round trip: ")
        .ok_or_else(|| format!("no figure in {line:?}"))
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        host_trace_shows_a_ping_pong_as_hypercalls_sends_wakes_and_switches,
        tracing_off_costs_no_instructions_on_the_event_path,
    ]
}
