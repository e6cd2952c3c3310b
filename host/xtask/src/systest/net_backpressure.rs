//! The NIC's transmit buffers all in flight: drvdom-net waits without
//! spinning, the guest's sends wait in its ring, and when the wire takes
//! frames again every one of them goes out.
//!
//! The NIC is QEMU's `socket` backend connected to a listener of the test
//! that stops reading: once the host's socket buffers are full, QEMU keeps
//! the NIC's transmit buffers until the socket takes bytes again.

use super::harness::{check, tests, Ctx, Machine, Test};
use crate::iso::NET_DRIVER_LINE;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Frames the guest sends: several times what the host's socket buffers
/// hold (a few MiB on loopback), so it is held up for good.
const FRAMES: u64 = 20_000;
/// The guest's interface.
const MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x07, 0x01];
/// How long drvdom-net's CPU time is watched while the NIC is full.
const WATCH: Duration = Duration::from_secs(2);
/// At most this share of `WATCH` in drvdom-net's CPU time (in 10 ms
/// ticks, as charged). Blocked, it wakes only for its heartbeat and runs microseconds;
/// polling the full NIC it would take nearly all of the CPU, as the guest
/// waits too. A tenth is far from both.
const MAX_TICKS: u64 = WATCH.as_millis() as u64 / TICK_MS / 10;
/// The kernel's tick, the unit of `domain list`'s CPU time.
const TICK_MS: u64 = 10;

/// The guest sends flat out to a wire that stops taking frames: while
/// nothing moves for two seconds, drvdom-net's CPU time stays within
/// `MAX_TICKS`; when the listener reads again, every frame drvdom-net took
/// arrives (all `FRAMES` but those still in the guest's 16 transmit pages
/// when it ends).
fn drvdom_net_does_not_spin_while_the_nics_buffers_are_all_in_flight(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let port = listener.local_addr().map_err(|e| e.to_string())?.port();
    let (go, read_now) = mpsc::channel::<()>();
    let wire = std::thread::spawn(move || -> Result<u64, String> {
        let (conn, _) = listener.accept().map_err(|e| e.to_string())?;
        // Not a byte read until the test says.
        read_now
            .recv_timeout(Duration::from_secs(600))
            .map_err(|_| "the test never let the wire read".to_string())?;
        count_frames(conn)
    });
    let mac = MAC.map(|b| format!("{b:02x}")).join(":");
    let sender =
        format!("sender memory=2M vif=mac={mac} send={FRAMES} to=52:55:0a:00:02:02 progress=500");
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        ("net-bench", sender.as_str()),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|q| q.nic_to_socket(port))
        .boot_managed(slot)?;
    // Held up: the count of frames sent stands still for two seconds.
    let sent = |m: &Machine| -> u64 {
        m.lines()
            .iter()
            .filter_map(|l| {
                l.strip_prefix("[2] net-bench: ")?
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .max()
            .unwrap_or(0)
    };
    m.wait_for("[2] net-bench: 500 frames sent", super::harness::BOOT)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = (sent(m), Instant::now());
    while last.1.elapsed() < Duration::from_secs(2) {
        if Instant::now() > deadline {
            return Err(format!(
                "the guest never stopped sending ({} frames)",
                last.0
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
        let now = sent(m);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    check(last.0 < FRAMES, || {
        format!("all {FRAMES} frames went out: the wire never filled")
    })?;
    let (driver, guest) = super::admin::ticks_over(&sock, "drvdom-net", "sender", WATCH)?;
    println!(
        "  held up after {} frames: {driver} ticks of drvdom-net and {guest} of the guest in {WATCH:?}",
        last.0
    );
    check(sent(m) == last.0, || {
        "frames went out while the wire was not read".to_string()
    })?;
    check(driver <= MAX_TICKS, || {
        format!(
            "drvdom-net took {driver} ticks of {WATCH:?} waiting for the NIC (at most {MAX_TICKS})"
        )
    })?;
    go.send(())
        .map_err(|_| "the wire's reader is gone".to_string())?;
    // The guest's count is of frames put in its ring; drvdom-net's, as the
    // interface leaves when the guest ends, of those it took.
    m.wait_for(
        &format!("[2] net-bench: sent {FRAMES} frames"),
        super::harness::BOOT * 2,
    )?;
    let left = m.wait_for(
        "[1] drvdom-net: domain 2 vif 0 left the switch (sent ",
        super::harness::BOOT,
    )?;
    let taken: u64 = left
        .split("(sent ")
        .nth(1)
        .and_then(|t| t.split(',').next()?.parse().ok())
        .ok_or_else(|| format!("no count in {left:?}"))?;
    let arrived = wire
        .join()
        .map_err(|_| "the wire's reader panicked".to_string())??;
    println!("  {taken} frames taken by drvdom-net, {arrived} on the wire");
    check(arrived == taken && taken + 16 >= FRAMES, || {
        format!(
            "the guest sent {FRAMES} frames; drvdom-net took {taken}; {arrived} reached the wire"
        )
    })
}

/// Reads QEMU's framing (a 4-byte big-endian length, then the frame) until
/// `FRAMES` of the guest's full-size frames came or the stream stalls for
/// 30 s; returns how many came.
fn count_frames(mut conn: TcpStream) -> Result<u64, String> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let mut frames = 0;
    let mut frame = vec![0u8; 65536];
    while frames < FRAMES {
        let mut len = [0u8; 4];
        if conn.read_exact(&mut len).is_err() {
            break;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > frame.len() {
            return Err(format!("a frame of {len} bytes on the wire"));
        }
        conn.read_exact(&mut frame[..len])
            .map_err(|e| format!("the wire broke mid-frame: {e}"))?;
        if len == 1514 && frame[6..12] == MAC {
            frames += 1;
        }
    }
    Ok(frames)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![drvdom_net_does_not_spin_while_the_nics_buffers_are_all_in_flight]
}
