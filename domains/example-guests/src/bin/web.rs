//! web: the example network guest. Serves HTTP on port 80 (a page with its
//! uptime and the number of requests it served) and a UDP echo on port 7,
//! through its interface to drvdom-net. Its address: `ip=A.B.C.D/N` and
//! `gw=` on its command line, or DHCP.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use alloc::vec;
use alloc::vec::Vec;
use domain_runtime::net::tcpip::Stack;
use domain_runtime::{println, time};
use example_guests::web;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};

domain_runtime::entry!(run);

/// Connections served at once (some may linger, closing, while their last
/// packets are resent, and a connection attempt finding no listener is
/// refused).
const LISTENERS: usize = 16;
/// A connection whose peer stops answering is dropped after this long,
/// freeing its listener. Long enough to outlast a network that keeps
/// losing packets for a while (drvdom-net restarting again and again, with
/// TCP's resends backing off): at 5 s a connection was sometimes dropped
/// with its answer still unsent, the client seeing an empty reply.
const IDLE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(30);

/// One HTTP connection's socket and the request head read so far.
struct Conn {
    socket: SocketHandle,
    head: Vec<u8>,
    answered: bool,
}

fn run(_: &'static domain_runtime::StartInfo) {
    let mut stack = match Stack::from_command_line() {
        Ok(s) => s,
        Err(e) => {
            println!("web: no network interface: {}", e);
            return;
        }
    };
    let mut conns: Vec<Conn> = (0..LISTENERS)
        .map(|_| {
            let rx = tcp::SocketBuffer::new(vec![0; 4096]);
            let tx = tcp::SocketBuffer::new(vec![0; 8192]);
            Conn {
                socket: stack.sockets.add(tcp::Socket::new(rx, tx)),
                head: Vec::new(),
                answered: false,
            }
        })
        .collect();
    let echo = {
        let meta = || vec![udp::PacketMetadata::EMPTY; 16];
        let rx = udp::PacketBuffer::new(meta(), vec![0; 16 * 1024]);
        let tx = udp::PacketBuffer::new(meta(), vec![0; 16 * 1024]);
        let mut s = udp::Socket::new(rx, tx);
        let _ = s.bind(7);
        stack.sockets.add(s)
    };
    let started = time::now_ns();
    let mut served: u64 = 0;
    let mut announced = false;
    loop {
        stack.poll();
        if !announced {
            if let Some(addr) = stack.address() {
                println!(
                    "web: serving http on {}:80 and udp echo on port 7",
                    addr.address()
                );
                announced = true;
            }
        }
        for c in conns.iter_mut() {
            serve_http(&mut stack, c, started, &mut served);
        }
        let s = stack.sockets.get_mut::<udp::Socket>(echo);
        let mut buf = [0u8; 1500];
        while let Ok((n, meta)) = s.recv_slice(&mut buf) {
            let _ = s.send_slice(&buf[..n], meta.endpoint);
        }
        stack.poll();
        stack.wait(1_000_000_000);
    }
}

/// Moves one connection along: listen, read the head, answer, close.
fn serve_http(stack: &mut Stack, c: &mut Conn, started: u64, served: &mut u64) {
    let s = stack.sockets.get_mut::<tcp::Socket>(c.socket);
    if s.state() == tcp::State::TimeWait {
        // Both sides said all; do not hold the listener for the wait.
        s.abort();
    }
    if !s.is_open() {
        c.head.clear();
        c.answered = false;
        let _ = s.listen(80);
        s.set_timeout(Some(IDLE_TIMEOUT));
        return;
    }
    if c.answered {
        return;
    }
    while s.can_recv() {
        let _ = s.recv(|data| {
            c.head.extend_from_slice(data);
            (data.len(), ())
        });
    }
    if s.state() == tcp::State::CloseWait && c.head.is_empty() {
        // The client closed without asking anything (a port probe): close
        // too, rather than hold a listener until the idle timeout.
        s.close();
        c.answered = true;
        return;
    }
    let peer_done = !s.may_recv() && !c.head.is_empty();
    if web::head_complete(&c.head) || c.head.len() > web::HEAD_MAX || peer_done {
        *served += 1;
        let uptime_ms = (time::now_ns() - started) / 1_000_000;
        let answer = web::respond(&c.head, uptime_ms, *served);
        let _ = s.send_slice(answer.as_bytes());
        s.close();
        c.answered = true;
    }
}
