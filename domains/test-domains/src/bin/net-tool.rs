//! Uses its network interface as its command line says; each result is one
//! line.
//!
//! TCP (through the runtime's smoltcp stack; address from `ip=`/`gw=`):
//! - `sink=PORT`: accepts one connection, reads until the peer closes,
//!   prints the byte count and CRC-32 (with `notify`, then broadcasts a
//!   UDP datagram to port 9);
//! - `source=A.B.C.D:PORT bytes=N`: connects, sends N pseudo-random bytes,
//!   closes, prints the count and CRC-32.
//!
//! With `check=stream` on both ends (benchmarks, where the per-byte work of
//! a CRC-32 would be a third of what is timed) the source sends a known
//! stream ([`Stream`]) and the sink compares every byte with it instead.
//!
//! `connect_after=MS` waits that long before connecting (for a backend to
//! die in between: the interface is to follow its next instance).
//!
//! Raw frames (EtherType 0x88b5, for switch tests):
//! - `listen`: broadcasts `ready` every 100 ms until it hears a `hello`,
//!   printing every test frame it receives;
//! - `announce peers=N`: waits for `ready` from N interfaces, then
//!   broadcasts one `hello` from its own MAC, one `spoofed` from a MAC that
//!   is not its own, and one `bye` from its own.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use alloc::vec;
use domain_runtime::ipc_abi::proto::net::{Mac, MacText};
use domain_runtime::net::tcpip::{parse_ipv4, Stack};
use domain_runtime::net::NetFront;
use domain_runtime::{println, time};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};
use test_domains::{flag, number, option, test_frame, test_frame_text as parse};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    if let Some(ms) = number("connect_after") {
        println!("net-tool: connecting in {} ms", ms);
        time::sleep_ns(ms * 1_000_000);
    }
    if flag("listen") || flag("announce") {
        let mut net = match NetFront::connect(0) {
            Ok(n) => n,
            Err(e) => return println!("net-tool: no interface: {}", e),
        };
        if flag("listen") {
            listen(&mut net);
        } else {
            announce(&mut net, number("peers").unwrap_or(1));
        }
        return;
    }
    let mut stack = match Stack::from_command_line() {
        Ok(s) => s,
        Err(e) => return println!("net-tool: no interface: {}", e),
    };
    if let Some(port) = number("sink") {
        sink(&mut stack, port as u16);
    }
    if let Some(to) = option("source") {
        source(&mut stack, to, number("bytes").unwrap_or(1 << 20));
    }
    println!("net-tool: done");
}

fn listen(net: &mut NetFront) {
    let me = net.mac();
    let mut next_ready = 0;
    let mut heard_hello = false;
    loop {
        let now = time::now_ns();
        if !heard_hello && now >= next_ready {
            let _ = net.tx.send(&test_frame(me, "ready"));
            next_ready = now + 100_000_000;
        }
        while let Some(frame) = net.rx.next_frame() {
            if let Some((src, text)) = parse(frame) {
                if text != "ready" {
                    println!("net-tool: frame from {}: {}", MacText(src), text);
                }
                heard_hello |= text == "hello";
            }
        }
        domain_runtime::events::wait_until(net.port(), now + 100_000_000);
    }
}

fn announce(net: &mut NetFront, peers: u64) {
    let me = net.mac();
    let mut ready: heapless::Vec<Mac, 16> = heapless::Vec::new();
    while (ready.len() as u64) < peers {
        while let Some(frame) = net.rx.next_frame() {
            if let Some((src, "ready")) = parse(frame) {
                if !ready.contains(&src) {
                    let _ = ready.push(src);
                }
            }
        }
        domain_runtime::events::wait_until(net.port(), time::now_ns() + 100_000_000);
    }
    println!("net-tool: {} peers ready", ready.len());
    let _ = net.tx.send(&test_frame(me, "hello"));
    let mut forged = me;
    forged[5] ^= 0x55;
    let _ = net.tx.send(&test_frame(forged, "spoofed"));
    let _ = net.tx.send(&test_frame(me, "bye"));
    println!(
        "net-tool: sent hello from {} and spoofed from {}",
        MacText(me),
        MacText(forged)
    );
    // Stay, so our own frames could come back (they must not).
    loop {
        while let Some(frame) = net.rx.next_frame() {
            if let Some((src, text)) = parse(frame) {
                if text != "ready" {
                    println!("net-tool: frame from {}: {}", MacText(src), text);
                }
            }
        }
        domain_runtime::events::wait_until(net.port(), time::now_ns() + 1_000_000_000);
    }
}

/// The stream `check=stream` sends and checks: each eight bytes hold
/// their own offset in the stream (a little-endian word, mixed with a
/// constant), so a byte changed, lost, repeated or out of order shows, and
/// either end makes or checks a word in a few instructions (a load or a
/// store, two XORs and an add: the loops below go a word at a time
/// whenever the stream is at a word's start).
struct Stream {
    /// Bytes of the stream made or checked so far.
    at: u64,
}

const MIX: u64 = 0x9e37_79b9_7f4a_7c15;

impl Stream {
    fn new() -> Stream {
        Stream { at: 0 }
    }

    /// The stream's byte at offset `at`.
    fn byte(at: u64) -> u8 {
        ((at & !7) ^ MIX).to_le_bytes()[(at & 7) as usize]
    }

    /// Writes the stream's next bytes into `out`.
    fn fill(&mut self, out: &mut [u8]) {
        let head = self.head(out.len());
        for b in &mut out[..head] {
            *b = Self::byte(self.at);
            self.at += 1;
        }
        let mut words = out[head..].chunks_exact_mut(8);
        for w in &mut words {
            w.copy_from_slice(&(self.at ^ MIX).to_le_bytes());
            self.at += 8;
        }
        for b in words.into_remainder() {
            *b = Self::byte(self.at);
            self.at += 1;
        }
    }

    /// Whether `data` is the stream's next bytes (it moves on either way).
    fn check(&mut self, data: &[u8]) -> bool {
        let head = self.head(data.len());
        let mut differs = 0u64;
        for &b in &data[..head] {
            differs |= u64::from(b ^ Self::byte(self.at));
            self.at += 1;
        }
        let words = data[head..].chunks_exact(8);
        let tail = words.remainder();
        for w in words {
            let got = u64::from_le_bytes(w.try_into().expect("eight bytes"));
            differs |= got ^ (self.at ^ MIX);
            self.at += 8;
        }
        for &b in tail {
            differs |= u64::from(b ^ Self::byte(self.at));
            self.at += 1;
        }
        differs == 0
    }

    /// Bytes of `len` before the stream is at a word's start.
    fn head(&self, len: usize) -> usize {
        (((8 - self.at % 8) % 8) as usize).min(len)
    }
}

/// A TCP socket with buffers big enough to keep a window open.
fn tcp_socket(stack: &mut Stack) -> smoltcp::iface::SocketHandle {
    let rx = tcp::SocketBuffer::new(vec![0; 64 * 1024]);
    let tx = tcp::SocketBuffer::new(vec![0; 64 * 1024]);
    stack.sockets.add(tcp::Socket::new(rx, tx))
}

fn sink(stack: &mut Stack, port: u16) {
    let h = tcp_socket(stack);
    let _ = stack.sockets.get_mut::<tcp::Socket>(h).listen(port);
    println!("net-tool: listening on port {}", port);
    let streamed = option("check") == Some("stream");
    let mut stream = Stream::new();
    // The first byte that was not the stream's.
    let mut differs: Option<u64> = None;
    let mut crc = crc32fast::Hasher::new();
    let mut total: u64 = 0;
    let mut connected = false;
    let mut began = 0;
    loop {
        stack.poll();
        let s = stack.sockets.get_mut::<tcp::Socket>(h);
        // `may_recv` is false before the handshake ends, so only an
        // established connection's end counts.
        if !connected && s.may_recv() {
            began = time::now_ns();
        }
        connected |= s.may_recv();
        while s.can_recv() {
            let _ = s.recv(|data| {
                if !streamed {
                    crc.update(data);
                } else if !stream.check(data) && differs.is_none() {
                    differs = Some(total);
                }
                total += data.len() as u64;
                (data.len(), ())
            });
        }
        if connected && !s.may_recv() {
            s.close();
            break;
        }
        stack.wait(100_000_000);
    }
    // Said before the close goes out (below), which takes up to 100 ms
    // that are not the transfer's: a host timing the transfer waits for
    // these lines.
    match (streamed, differs) {
        (false, _) => println!(
            "net-tool: received {} bytes crc32 {:08x}",
            total,
            crc.finalize()
        ),
        (true, None) => println!("net-tool: received {} bytes, every one the stream's", total),
        (true, Some(at)) => println!(
            "net-tool: received {} bytes, not the stream's from the chunk at byte {}",
            total, at
        ),
    }
    println!("net-tool: receiving took {} ns", time::now_ns() - began);
    println!(
        "net-tool: frames up to {} bytes (MTU {})",
        stack.dev.rx.largest,
        stack.dev.mtu()
    );
    println!(
        "net-tool: {} frames lost for want of transmit pages",
        stack.dev.tx.lost
    );
    for _ in 0..10 {
        stack.poll();
        stack.wait(10_000_000);
    }
    if flag("notify") {
        broadcast_udp(stack, 9, b"done");
    }
}

/// Sends one UDP datagram to 255.255.255.255:`port`.
fn broadcast_udp(stack: &mut Stack, port: u16, data: &[u8]) {
    let meta = || vec![udp::PacketMetadata::EMPTY; 2];
    let rx = udp::PacketBuffer::new(meta(), vec![0; 256]);
    let tx = udp::PacketBuffer::new(meta(), vec![0; 256]);
    let mut s = udp::Socket::new(rx, tx);
    let _ = s.bind(port);
    let h = stack.sockets.add(s);
    let to = IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::BROADCAST), port);
    let _ = stack.sockets.get_mut::<udp::Socket>(h).send_slice(data, to);
    for _ in 0..10 {
        stack.poll();
        stack.wait(10_000_000);
    }
    println!("net-tool: broadcast to udp port {}", port);
}

fn endpoint(text: &str) -> Option<IpEndpoint> {
    let (ip, port) = text.split_once(':')?;
    let addr = parse_ipv4(ip)?;
    Some(IpEndpoint::new(IpAddress::Ipv4(addr), port.parse().ok()?))
}

fn source(stack: &mut Stack, to: &str, bytes: u64) {
    let Some(remote) = endpoint(to) else {
        return println!("net-tool: source={} is not A.B.C.D:PORT", to);
    };
    let h = tcp_socket(stack);
    // A peer that is not listening yet refuses: try again, as clients do.
    let mut attempt = 0u16;
    loop {
        let local = 49152 + attempt;
        let cx = stack.iface.context();
        if let Err(e) = stack
            .sockets
            .get_mut::<tcp::Socket>(h)
            .connect(cx, remote, local)
        {
            return println!("net-tool: cannot connect to {}: {}", to, e);
        }
        while matches!(
            stack.sockets.get::<tcp::Socket>(h).state(),
            tcp::State::SynSent | tcp::State::SynReceived
        ) {
            stack.poll();
            stack.wait(100_000_000);
        }
        if stack.sockets.get::<tcp::Socket>(h).is_active() || attempt >= 50 {
            break;
        }
        attempt += 1;
        stack.sockets.get_mut::<tcp::Socket>(h).abort();
        time::sleep_ns(200_000_000);
    }
    let began = time::now_ns();
    let streamed = option("check") == Some("stream");
    let mut stream = Stream::new();
    let mut crc = crc32fast::Hasher::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut sent: u64 = 0;
    let mut chunk = [0u8; 4096];
    let mut pending = 0..0;
    loop {
        stack.poll();
        let s = stack.sockets.get_mut::<tcp::Socket>(h);
        let all_queued = sent >= bytes && pending.is_empty();
        if !s.is_open() {
            if all_queued {
                break;
            }
            return println!("net-tool: connection to {} closed after {} bytes", to, sent);
        }
        while s.can_send() && sent < bytes {
            if streamed {
                // Made where the socket keeps it: no copy on the way in.
                let left = (bytes - sent) as usize;
                let queued = s.send(|room| {
                    let n = room.len().min(left);
                    stream.fill(&mut room[..n]);
                    (n, n)
                });
                match queued {
                    Ok(n) if n > 0 => sent += n as u64,
                    _ => break,
                }
                continue;
            }
            if pending.is_empty() {
                let n = (bytes - sent).min(chunk.len() as u64) as usize;
                for b in chunk[..n].iter_mut() {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    *b = x as u8;
                }
                crc.update(&chunk[..n]);
                pending = 0..n;
            }
            match s.send_slice(&chunk[pending.clone()]) {
                Ok(n) => {
                    pending.start += n;
                    sent += n as u64;
                }
                Err(_) => break,
            }
        }
        if all_queued {
            s.close();
            if s.send_queue() == 0 {
                break;
            }
        }
        stack.wait(100_000_000);
    }
    for _ in 0..10 {
        stack.poll();
        stack.wait(10_000_000);
    }
    println!(
        "net-tool: {} frames lost for want of transmit pages",
        stack.dev.tx.lost
    );
    if streamed {
        println!("net-tool: sent {} bytes of the stream", sent);
    } else {
        println!("net-tool: sent {} bytes crc32 {:08x}", sent, crc.finalize());
    }
    println!("net-tool: sending took {} ns", time::now_ns() - began);
}

#[cfg(test)]
mod tests {
    use super::{Stream, MIX};

    #[test]
    fn the_stream_is_the_same_in_any_pieces_and_a_changed_byte_shows() {
        let mut whole = [0u8; 1000];
        Stream::new().fill(&mut whole);
        let mut pieces = [0u8; 1000];
        let mut s = Stream::new();
        let mut at = 0;
        for len in [1, 7, 8, 3, 64, 5, 900, 12].iter().cycle() {
            let end = (at + len).min(pieces.len());
            s.fill(&mut pieces[at..end]);
            at = end;
            if at == pieces.len() {
                break;
            }
        }
        assert_eq!(whole, pieces);
        let mut s = Stream::new();
        assert!(s.check(&whole[..13]) && s.check(&whole[13..500]));
        let mut bad = whole;
        bad[700] ^= 1;
        assert!(!s.check(&bad[500..]));
        assert!(whole.iter().any(|&b| b != whole[0]), "not a constant");
        // The stream's definition: the word at offset 8k is 8k ^ MIX.
        assert_eq!(whole[..8], MIX.to_le_bytes());
        assert_eq!(whole[16..24], (16 ^ MIX).to_le_bytes());
    }
}
