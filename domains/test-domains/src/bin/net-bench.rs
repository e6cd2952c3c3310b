//! The guest half of `cargo xtask bench net`, with raw frames:
//! - `send=N to=MAC [wait_ready] [together] [progress=K]`: sends N frames of 1,514 bytes to MAC as
//!   fast as the transmit ring takes them (after a receiver said it is
//!   there, with `wait_ready`; at the same time as another sender, with
//!   `together`; a line every K frames with `progress`, with the time); prints nanoseconds, TSC ticks (instructions
//!   under `-icount`) and notifications;
//! - `echo`: sends every test frame addressed to it back to its sender;
//!   `ping=N to=MAC`: N round trips with an echoer, one frame at a time
//!   (the path length of one frame, without drops); a frame with no answer
//!   within a millisecond is sent again (a restarting drvdom-net loses it),
//!   and round trips over 2 ms are listed (a restart shows as one);
//! - `between=N` (with two `vif=`): N round trips from its first
//!   interface to its second and back, resending after a millisecond (both
//!   interfaces must follow every restart of drvdom-net on their own);
//! - `receive`: broadcasts `ready` every 100 ms until frames come, counts
//!   them; when none came for a second, prints how many and the TSC at the
//!   first and the last.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

use domain_runtime::ipc_abi::proto::net::parse_mac;
use domain_runtime::net::{NetFront, SendError};
use domain_runtime::{events, println, time};

domain_runtime::entry!(run);

const ETHERTYPE: [u8; 2] = [0x88, 0xb6];
const FRAME: usize = 1514;

fn run(_: &'static domain_runtime::StartInfo) {
    let mut net = match NetFront::connect(0) {
        Ok(n) => n,
        Err(e) => return println!("net-bench: no interface: {}", e),
    };
    if let Some(n) = test_domains::number("between") {
        match NetFront::connect(1) {
            Ok(mut second) => between(&mut net, &mut second, n),
            Err(e) => println!("net-bench: no second interface: {}", e),
        }
    } else if let Some(n) = test_domains::number("ping") {
        let to = test_domains::option("to")
            .and_then(parse_mac)
            .unwrap_or([0xff; 6]);
        ping(&mut net, n, to);
    } else if test_domains::flag("echo") {
        echo(&mut net);
    } else if let Some(n) = test_domains::number("send") {
        let to = test_domains::option("to")
            .and_then(parse_mac)
            .unwrap_or([0xff; 6]);
        send(&mut net, n, to);
    } else {
        receive(&mut net);
    }
}

fn send(net: &mut NetFront, n: u64, to: [u8; 6]) {
    if test_domains::flag("wait_ready") {
        wait_for_peer(net);
    }
    if test_domains::flag("together") {
        start_together(net);
    }
    let frame = test_frame(net, to);
    let progress = test_domains::number("progress").unwrap_or(0);
    let (t, c) = (time::now_ns(), time::tsc());
    let mut sent = 0;
    // Frames go in bursts of up to BURST, shown to drvdom-net together
    // (one wake-up a burst, as a stack sends what one poll made).
    const BURST: u64 = 32;
    while sent < n {
        net.tx.hold();
        let mut outcome = Ok(());
        for _ in 0..BURST.min(n - sent) {
            outcome = net.tx.send(&frame);
            if outcome.is_err() {
                break;
            }
            sent += 1;
            if progress > 0 && sent.is_multiple_of(progress) {
                println!("net-bench: {} frames sent at {} ns", sent, time::now_ns());
            }
        }
        net.tx.flush();
        match outcome {
            Ok(()) => {}
            Err(SendError::Busy) => {
                events::wait_until(net.port(), time::now_ns() + 1_000_000);
            }
            Err(e) => return println!("net-bench: send failed: {:?}", e),
        }
    }
    println!(
        "net-bench: sent {} frames of {} bytes {} ns {} tsc {} notifications",
        sent,
        FRAME,
        time::now_ns() - t,
        time::tsc() - c,
        net.tx.notified
    );
}

fn receive(net: &mut NetFront) {
    println!("net-bench: receiving");
    let (mut count, mut first, mut last) = (0u64, 0u64, 0u64);
    let mut ready = [0u8; 60];
    ready[..6].copy_from_slice(&[0xff; 6]);
    ready[6..12].copy_from_slice(&net.mac());
    ready[12..14].copy_from_slice(&ETHERTYPE);
    let mut heard = false;
    loop {
        if !heard {
            let _ = net.tx.send(&ready);
        }
        while let Some(f) = net.rx.next_frame() {
            if f.len() >= 14 && f[12..14] == ETHERTYPE {
                last = time::tsc();
                heard = true;
                if count == 0 {
                    first = last;
                }
                count += 1;
            }
        }
        let wait = if heard { 1_000_000_000 } else { 100_000_000 };
        let fired = events::wait_until(net.port(), time::now_ns() + wait);
        if !fired && count > 0 {
            println!(
                "net-bench: received {} frames tsc {} to {}",
                count, first, last
            );
            count = 0;
        }
    }
}

/// Sends a frame to `to` and waits for it to come back, `n` times (after
/// the echoer said it is there); prints nanoseconds and TSC ticks.
fn ping(net: &mut NetFront, n: u64, to: [u8; 6]) {
    wait_for_peer(net);
    let mut frame = test_frame(net, to);
    const RESEND_NS: u64 = 1_000_000;
    let (t, c) = (time::now_ns(), time::tsc());
    let mut gaps = domain_runtime::gaps::Gaps::new();
    let (mut done, mut resent) = (0, 0);
    let mut rounds = alloc::vec::Vec::with_capacity(n as usize);
    let mut round_start = c;
    while done < n {
        frame[14..22].copy_from_slice(&done.to_le_bytes());
        let mut sent_at = time::now_ns();
        if let Err(e) = net.tx.send(&frame) {
            return println!("net-bench: send failed: {:?}", e);
        }
        'back: loop {
            while let Some(f) = net.rx.next_frame() {
                if f.len() >= 22 && f[12..14] == ETHERTYPE && f[14..22] == done.to_le_bytes() {
                    break 'back;
                }
            }
            if time::now_ns() >= sent_at + RESEND_NS {
                // Lost (a restarting backend drops what was in flight): again.
                sent_at = time::now_ns();
                resent += 1;
                if let Err(e) = net.tx.send(&frame) {
                    return println!("net-bench: send failed: {:?}", e);
                }
            }
            let restarts = net.restarts();
            net.wait_until(sent_at + RESEND_NS);
            if net.restarts() != restarts {
                gaps.restarted();
            }
        }
        gaps.answer(time::now_ns(), time::busy_tsc());
        let now = time::tsc();
        rounds.push(now - round_start);
        round_start = now;
        done += 1;
    }
    // The spread of the rounds (under -icount, instructions): a path
    // that takes one of two courses by where a tick fell shows two levels.
    rounds.sort_unstable();
    let at = |q: usize| rounds.get(rounds.len() * q / 4).copied().unwrap_or(0);
    println!(
        "net-bench: rounds by tsc: min {}, quartiles {} {} {}, max {}",
        at(0),
        at(1),
        at(2),
        at(3),
        rounds.last().copied().unwrap_or(0)
    );
    println!(
        "net-bench: {} round trips of {} bytes {} ns {} tsc; {} frames sent again; {}",
        done,
        FRAME,
        time::now_ns() - t,
        time::tsc() - c,
        resent,
        test_domains::Resumed(gaps.resumed())
    );
}

/// N round trips between this domain's two interfaces.
fn between(a: &mut NetFront, b: &mut NetFront, n: u64) {
    let mut resent = 0;
    for seq in 0..n {
        resent += hop(a, b, seq);
        resent += hop(b, a, seq);
    }
    println!(
        "net-bench: {} round trips between my two interfaces, {} frames sent again, backends restarted {} and {} times",
        n,
        resent,
        a.restarts(),
        b.restarts()
    );
}

/// Sends test frame `seq` from `src` to `dst` until `dst` has it (again
/// each millisecond: a restarting drvdom-net loses frames in flight);
/// returns how many times it was sent again.
fn hop(src: &mut NetFront, dst: &mut NetFront, seq: u64) -> u64 {
    const RESEND_NS: u64 = 1_000_000;
    let mut frame = test_frame(src, dst.mac());
    frame[14..22].copy_from_slice(&seq.to_le_bytes());
    let mut resent = 0;
    let mut sent_at = 0;
    loop {
        if time::now_ns() >= sent_at + RESEND_NS {
            if sent_at != 0 {
                resent += 1;
            }
            // `src` may have news of a restart while we waited on `dst`.
            let _ = src.follow_restart();
            let _ = src.tx.send(&frame);
            sent_at = time::now_ns();
        }
        while let Some(f) = dst.rx.next_frame() {
            if f.len() >= 22 && f[12..14] == ETHERTYPE && f[14..22] == seq.to_le_bytes() {
                return resent;
            }
        }
        dst.wait_until(sent_at + RESEND_NS);
    }
}

/// Sends every test frame back to where it came from; says `ready` every
/// 100 ms until the first comes.
fn echo(net: &mut NetFront) {
    println!("net-bench: echoing");
    let mut ready = [0u8; 60];
    ready[..6].copy_from_slice(&[0xff; 6]);
    ready[6..12].copy_from_slice(&net.mac());
    ready[12..14].copy_from_slice(&ETHERTYPE);
    let me = net.mac();
    let mut heard = false;
    let mut back = [0u8; FRAME];
    let mut next_ready = 0;
    loop {
        if !heard && time::now_ns() >= next_ready {
            let _ = net.tx.send(&ready);
            next_ready = time::now_ns() + 100_000_000;
        }
        while let Some(f) = net.rx.next_frame() {
            if f.len() < 14 || f[12..14] != ETHERTYPE || f[..6] != me {
                continue;
            }
            heard = true;
            let n = f.len();
            back[..n].copy_from_slice(f);
            back.copy_within(6..12, 0);
            back[6..12].copy_from_slice(&me);
            let _ = net.tx.send(&back[..n]);
        }
        let until = if heard {
            time::now_ns() + 1_000_000_000
        } else {
            next_ready
        };
        // Follows a restarted drvdom-net too.
        net.wait_until(until);
    }
}

/// Says `ready` (broadcast) every 100 ms until another sender's `ready`
/// comes, and once more after, so two senders with `together` start
/// within about 100 ms of each other.
fn start_together(net: &mut NetFront) {
    let mut ready = [0u8; 60];
    ready[..6].copy_from_slice(&[0xff; 6]);
    ready[6..12].copy_from_slice(&net.mac());
    ready[12..14].copy_from_slice(&ETHERTYPE);
    loop {
        let _ = net.tx.send(&ready);
        let until = time::now_ns() + 100_000_000;
        while time::now_ns() < until {
            while let Some(f) = net.rx.next_frame() {
                if f.len() >= 14 && f[12..14] == ETHERTYPE {
                    let _ = net.tx.send(&ready);
                    return;
                }
            }
            net.wait_until(until);
        }
    }
}

/// Waits until a test frame arrives: the peer says it is there (it repeats
/// until frames come).
fn wait_for_peer(net: &mut NetFront) {
    loop {
        while let Some(f) = net.rx.next_frame() {
            if f.len() >= 14 && f[12..14] == ETHERTYPE {
                return;
            }
        }
        events::wait_until(net.port(), time::now_ns() + 100_000_000);
    }
}

/// A full-size test frame from this interface to `to`.
fn test_frame(net: &NetFront, to: [u8; 6]) -> [u8; FRAME] {
    let mut frame = [0u8; FRAME];
    frame[..6].copy_from_slice(&to);
    frame[6..12].copy_from_slice(&net.mac());
    frame[12..14].copy_from_slice(&ETHERTYPE);
    frame
}
