//! The host's side of a Linux guest's TCP figures: `xenolith-io`'s sink,
//! source and echo servers reached through QEMU's forwarded ports (`bench
//! linux` for its Xenolith and direct machines, `bench net` for the
//! direct Linux guest its Rust guests are compared with). Each failure
//! says which step it was and how far it got.

use crate::qemu::Forward;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

/// The guest ports of `xenolith-io`'s sink, source and echo servers (as
/// Linux's `/init` starts them).
pub const GUEST_PORTS: [u16; 3] = [5001, 5002, 5003];

/// QEMU's forwards from the host's `ports` to the three servers of the
/// guest at `ip`.
pub fn forwards(ports: [u16; 3], ip: &str) -> Vec<Forward> {
    ports
        .iter()
        .zip(GUEST_PORTS)
        .map(|(&host_port, guest_port)| Forward {
            udp: false,
            host_port,
            guest: ip.into(),
            guest_port,
        })
        .collect()
}

/// The line each server prints once it listens (a connection before it
/// gets a reset from QEMU's user network).
pub fn listening(port: u16) -> String {
    format!("xenolith-linux: iobench listening on port {port}")
}

/// How long to wait for any one read.
const PATIENCE: Duration = Duration::from_secs(600);

fn connect(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connecting to port {port}: {e}"))?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Sends `bytes` to the sink at host `port` until the guest answers that
/// it counted them all; the time from connecting to the answer.
pub fn to_guest(port: u16, bytes: usize) -> Result<Duration, String> {
    let mut s = connect(port)?;
    let began = Instant::now();
    let chunk = vec![0x5au8; 1 << 16];
    let mut sent = 0;
    let failed = |e: std::io::Error, sent: usize| {
        let ms = began.elapsed().as_millis();
        format!("TCP host -> guest: {e} ({sent} bytes sent, {ms} ms after connecting)")
    };
    while sent < bytes {
        let n = chunk.len().min(bytes - sent);
        s.write_all(&chunk[..n]).map_err(|e| failed(e, sent))?;
        sent += n;
    }
    s.shutdown(Shutdown::Write).map_err(|e| failed(e, sent))?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| failed(e, sent))?;
    if answer.trim() != bytes.to_string() {
        return Err(format!("the guest counted {answer:?} bytes of {bytes}"));
    }
    Ok(began.elapsed())
}

/// Reads what the source at host `port` sends until it closes, which must
/// be `bytes`; the time from connecting to the close.
pub fn from_guest(port: u16, bytes: usize) -> Result<Duration, String> {
    read_to_close(connect(port)?, bytes)
}

/// Reads `conn` until its peer closes it, which must bring `bytes`; the
/// time that took.
pub fn read_to_close(mut conn: TcpStream, bytes: usize) -> Result<Duration, String> {
    conn.set_read_timeout(Some(PATIENCE))
        .map_err(|e| e.to_string())?;
    let began = Instant::now();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        let n = conn.read(&mut buf).map_err(|e| {
            let ms = began.elapsed().as_millis();
            format!("TCP guest -> host: {e} ({got} bytes received, {ms} ms after connecting)")
        })?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got != bytes {
        return Err(format!("{got} bytes came from the guest, not {bytes}"));
    }
    Ok(began.elapsed())
}

/// 64-byte requests to the echo server at host `port`, each awaiting its
/// answer, for `lasting`; (round trips, the time they took).
pub fn round_trips(port: u16, lasting: Duration) -> Result<(u64, Duration), String> {
    let mut s = connect(port)?;
    let message = [7u8; 64];
    let mut back = [0u8; 64];
    let began = Instant::now();
    let mut n = 0u64;
    while began.elapsed() < lasting {
        let echo = |e: std::io::Error| format!("64-byte round trips: {e} (after {n})");
        s.write_all(&message).map_err(echo)?;
        s.read_exact(&mut back).map_err(echo)?;
        n += 1;
    }
    Ok((n, began.elapsed()))
}
