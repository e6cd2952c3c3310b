//! Which socket a TCP segment is for, where smoltcp would guess wrong.
//!
//! Owns: [`Held`], the connections the stack's sockets hold, noted before
//! each poll, and the one rule it enforces on arriving frames.
//!
//! smoltcp offers a segment to its sockets in the order they were added and
//! the first that accepts it takes it; a listening socket accepts any
//! segment without ACK to its port. A server keeps several sockets
//! listening on one port (smoltcp has no backlog), so when a client sends
//! its SYN again (our SYN-ACK was lost, say while drvdom-net restarted) and
//! a socket added before the one holding that connection is listening
//! again, the listener takes the SYN as a new connection: two sockets then
//! answer one client with different sequence numbers, the client's ACK
//! meets the wrong one first, and that one resets the connection (the
//! client sees an empty reply). Linux looks a segment up among the
//! connections before the listeners; here a SYN without ACK for a
//! connection a socket holds is dropped before smoltcp sees it, which is
//! what the socket holding it would have done (smoltcp's sockets past
//! LISTEN ignore a segment without ACK), so nothing else changes.

extern crate alloc;
use super::checksum;
use alloc::vec::Vec;
use smoltcp::iface::SocketSet;
use smoltcp::socket::{tcp, Socket};
use smoltcp::wire::IpAddress;

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// One connection's ends: (local address, local port, remote address, remote port).
type Ends = ([u8; 4], u16, [u8; 4], u16);

/// The connections the stack's sockets hold.
#[derive(Default)]
pub struct Held {
    ends: Vec<Ends>,
    /// SYNs dropped because a socket already held their connection.
    pub resent_syns: u64,
}

impl Held {
    /// Notes the connections `sockets` hold now: those a segment without
    /// ACK cannot be for (a socket connecting out, `SYN-SENT`, takes a
    /// SYN in a simultaneous open; one in `TIME-WAIT` may be opened anew).
    /// Within one poll a listener never comes before the socket a SYN
    /// went to (the first listener takes it), so noting once a poll is
    /// enough.
    pub fn note(&mut self, sockets: &SocketSet<'_>) {
        use tcp::State::*;
        self.ends.clear();
        for (_, socket) in sockets.iter() {
            let Socket::Tcp(s) = socket else { continue };
            if matches!(s.state(), Closed | Listen | SynSent | TimeWait) {
                continue;
            }
            let (Some(local), Some(remote)) = (s.local_endpoint(), s.remote_endpoint()) else {
                continue;
            };
            let (IpAddress::Ipv4(l), IpAddress::Ipv4(r)) = (local.addr, remote.addr);
            self.ends
                .push((l.octets(), local.port, r.octets(), remote.port));
        }
    }

    /// Whether smoltcp may see `frame`: false for a SYN without ACK of a
    /// connection a socket holds (counted).
    pub fn admits(&mut self, frame: &[u8]) -> bool {
        let Some(ends) = resent_syn_ends(frame) else {
            return true;
        };
        if self.ends.contains(&ends) {
            self.resent_syns += 1;
            return false;
        }
        true
    }
}

/// The ends of `frame`'s connection, from our side, if it is a TCP/IPv4
/// SYN without ACK.
fn resent_syn_ends(frame: &[u8]) -> Option<Ends> {
    let s = checksum::tcp_ipv4(frame)?;
    let tcp = frame.get(s.start..s.end)?;
    if *tcp.get(13)? & (SYN | ACK) != SYN {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([tcp[at], tcp[at + 1]]);
    let (src, dst) = s.addresses();
    Some((dst, port(2), src, port(0)))
}

#[cfg(test)]
mod tests;
