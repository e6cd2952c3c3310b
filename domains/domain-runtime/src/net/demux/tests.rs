//! smoltcp's own sockets and interface, fed frames made by hand: a client
//! whose SYN-ACK was lost sends its SYN again after an earlier listening
//! socket came free. Without [`Held`]'s rule that listener takes the SYN
//! and the connection is reset; with it the connection is made.

use super::Held;
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, IpProtocol, Ipv4Address, Ipv4Packet,
    Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};
use std::collections::VecDeque;
use std::vec;
use std::vec::Vec;

const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];
const SERVER: Ipv4Address = Ipv4Address::new(10, 0, 2, 15);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 0, 2, 2);
const PORT: u16 = 80;

/// Frames on their way to the stack, and those it sent; the rule applied
/// to arriving frames as `tcpip` applies it, or not.
struct Wire {
    to_stack: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    held: Held,
    rule: bool,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push(frame);
        r
    }
}

impl phy::Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        loop {
            let frame = self.to_stack.pop_front()?;
            if !self.rule || self.held.admits(&frame) {
                return Some((Rx(frame), Tx(&mut self.sent)));
            }
        }
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.sent))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514;
        c
    }
}

/// A server with two sockets listening on [`PORT`].
struct Server {
    iface: Interface,
    sockets: SocketSet<'static>,
    wire: Wire,
    listeners: [SocketHandle; 2],
    ms: i64,
}

impl Server {
    fn new(rule: bool) -> Server {
        let mut wire = Wire {
            to_stack: VecDeque::new(),
            sent: Vec::new(),
            held: Held::default(),
            rule,
        };
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(SERVER_MAC)));
        let mut iface = Interface::new(config, &mut wire, Instant::from_millis(0));
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(SERVER), 24));
        });
        let mut sockets = SocketSet::new(Vec::new());
        let mut listener = || {
            let buffer = || tcp::SocketBuffer::new(vec![0; 1024]);
            let mut s = tcp::Socket::new(buffer(), buffer());
            s.listen(PORT).unwrap();
            sockets.add(s)
        };
        let listeners = [listener(), listener()];
        let mut server = Server {
            iface,
            sockets,
            wire,
            listeners,
            ms: 0,
        };
        // The client asks for the server's address: the server learns the
        // client's.
        server.deliver(arp_request());
        server
    }

    /// The client sends `frame`; the stack takes it in. Returns the TCP
    /// segments the stack sent in answer.
    fn deliver(&mut self, frame: Vec<u8>) -> Vec<TcpRepr<'static>> {
        self.wire.to_stack.push_back(frame);
        self.ms += 10;
        self.wire.held.note(&self.sockets);
        let now = Instant::from_millis(self.ms);
        self.iface.poll(now, &mut self.wire, &mut self.sockets);
        self.wire
            .sent
            .drain(..)
            .filter_map(|f| tcp_of(&f))
            .collect()
    }

    fn state(&self, i: usize) -> tcp::State {
        self.sockets.get::<tcp::Socket>(self.listeners[i]).state()
    }
}

/// A segment from the client's `port` to the server's [`PORT`].
fn segment(port: u16, syn: bool, seq: u32, ack: Option<u32>) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: port,
        dst_port: PORT,
        control: if syn {
            TcpControl::Syn
        } else {
            TcpControl::None
        },
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 8192,
        window_scale: None,
        max_seg_size: syn.then_some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: CLIENT,
        dst_addr: SERVER,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress(SERVER_MAC),
        ethertype: EthernetProtocol::Ipv4,
    };
    let mut buf = vec![0; eth.buffer_len() + ip.buffer_len() + tcp.buffer_len()];
    let sums = ChecksumCapabilities::default();
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    ip.emit(&mut packet, &sums);
    let mut segment = TcpPacket::new_unchecked(packet.payload_mut());
    tcp.emit(&mut segment, &CLIENT.into(), &SERVER.into(), &sums);
    buf
}

/// The client's ARP request for the server's address.
fn arp_request() -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: EthernetAddress(CLIENT_MAC),
        source_protocol_addr: CLIENT,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: SERVER,
    };
    let eth = EthernetRepr {
        src_addr: EthernetAddress(CLIENT_MAC),
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut buf = vec![0; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    buf
}

/// The TCP segment in a frame the stack sent (its payload left out).
fn tcp_of(frame: &[u8]) -> Option<TcpRepr<'static>> {
    let frame = EthernetFrame::new_checked(frame).ok()?;
    let packet = Ipv4Packet::new_checked(frame.payload()).ok()?;
    let segment = TcpPacket::new_checked(packet.payload()).ok()?;
    let repr = TcpRepr::parse(
        &segment,
        &packet.src_addr().into(),
        &packet.dst_addr().into(),
        &ChecksumCapabilities::ignored(),
    )
    .ok()?;
    Some(TcpRepr {
        payload: &[],
        ..repr
    })
}

/// Client B's SYN is resent after the socket before its own came free;
/// then B acknowledges the SYN-ACK of the socket that took its first SYN.
/// Returns what the server sent to B after the resent SYN, and the server.
fn resent_syn(rule: bool) -> (Vec<TcpRepr<'static>>, Server) {
    let mut server = Server::new(rule);
    // Client A takes the first listener.
    let answer = server.deliver(segment(1000, true, 100, None));
    let syn_ack = answer
        .iter()
        .find(|s| s.control == TcpControl::Syn)
        .unwrap();
    let a_isn = syn_ack.seq_number.0 as u32;
    server.deliver(segment(1000, false, 101, Some(a_isn.wrapping_add(1))));
    assert_eq!(server.state(0), tcp::State::Established);
    // Client B's SYN goes to the second; its SYN-ACK is lost.
    let answer = server.deliver(segment(2000, true, 500, None));
    let b_isn = answer
        .iter()
        .find(|s| s.control == TcpControl::Syn)
        .unwrap()
        .seq_number
        .0 as u32;
    assert_eq!(server.state(1), tcp::State::SynReceived);
    // A is done: the first listener listens again.
    let first = server.sockets.get_mut::<tcp::Socket>(server.listeners[0]);
    first.abort();
    first.listen(PORT).unwrap();
    server.deliver(Vec::new());
    // B sends its SYN again, then acknowledges the SYN-ACK it finally got.
    let mut to_b = server.deliver(segment(2000, true, 500, None));
    to_b.extend(server.deliver(segment(2000, false, 501, Some(b_isn.wrapping_add(1)))));
    (to_b, server)
}

#[test]
fn without_the_rule_an_earlier_listener_takes_a_resent_syn_and_the_connection_is_reset() {
    // What smoltcp 0.12 does alone (if this starts failing, a newer
    // smoltcp looks connections up first and the rule can go).
    let (to_b, server) = resent_syn(false);
    assert!(
        to_b.iter().any(|s| s.control == TcpControl::Rst),
        "{to_b:?}"
    );
    assert_ne!(server.state(1), tcp::State::Established);
}

#[test]
fn with_the_rule_a_resent_syn_leaves_its_connection_to_its_socket() {
    let (to_b, server) = resent_syn(true);
    assert!(
        to_b.iter().all(|s| s.control != TcpControl::Rst),
        "{to_b:?}"
    );
    assert_eq!(server.state(0), tcp::State::Listen);
    assert_eq!(server.state(1), tcp::State::Established);
    assert_eq!(server.wire.held.resent_syns, 1);
}

#[test]
fn only_a_syn_without_ack_of_a_held_connection_is_kept_out() {
    let mut server = Server::new(true);
    server.deliver(segment(1000, true, 100, None));
    server.wire.held.note(&server.sockets);
    let held = &mut server.wire.held;
    assert!(!held.admits(&segment(1000, true, 100, None)));
    // Another client port, an ACK, and what is not TCP at all pass.
    assert!(held.admits(&segment(1001, true, 100, None)));
    assert!(held.admits(&segment(1000, false, 101, Some(7))));
    assert!(held.admits(&[0u8; 60]));
    assert!(held.admits(&[]));
    assert_eq!(held.resent_syns, 1);
}
