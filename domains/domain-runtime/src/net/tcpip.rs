//! TCP/IP for a guest, with smoltcp over its network interface.
//!
//! Owns: the smoltcp `Device` of a [`NetFront`], the interface's address
//! (`ip=A.B.C.D/N` and `gw=A.B.C.D` on the command line, or DHCP), and the
//! loop helpers a guest needs: [`Stack::poll`] moves packets and timers,
//! [`Stack::wait`] blocks until a frame arrives or smoltcp's next timer.

extern crate alloc;
use super::demux::Held;
use super::{checksum, NetFront, TxSide, JUMBO_TX_PAGES};
use alloc::vec::Vec;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::net::TX_TCP_CSUM_BLANK;
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{Checksum, Device, DeviceCapabilities, Medium, RxToken, TxToken};
use smoltcp::socket::dhcpv4;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Address, Ipv4Cidr};

/// A frame handed to smoltcp.
pub struct Rx<'a>(&'a [u8]);

/// Room for one frame to send.
pub struct Tx<'a>(&'a mut TxSide);

impl RxToken for Rx<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut f = Some(f);
        // smoltcp leaves the TCP checksum blank (see `capabilities`):
        // drvdom-net fills it in where it is needed.
        let filled = |page: &mut [u8]| {
            let r = (f.take().expect("called once"))(page);
            let flags = match checksum::tcp_ipv4(page) {
                Some(_) => TX_TCP_CSUM_BLANK,
                None => 0,
            };
            (r, flags)
        };
        match self.0.send_flagged(len, filled) {
            Ok(r) => r,
            // Too big or the ring broke: smoltcp still wants its result;
            // the frame is lost, as on a wire.
            Err(_) => {
                self.0.lost += 1;
                let mut scratch = alloc::vec![0u8; len];
                (f.take().expect("not called yet"))(&mut scratch)
            }
        }
    }
}

/// smoltcp's device: the interface, and the connections the sockets held
/// when the poll began (a resent SYN of one of them is kept from
/// listeners: `demux`).
struct Port<'a> {
    dev: &'a mut NetFront,
    held: &'a mut Held,
}

impl Device for Port<'_> {
    type RxToken<'a>
        = Rx<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = Tx<'a>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
        // smoltcp checks no TCP checksum (see `capabilities`): what was not
        // delivered blank by a guest here is checked now.
        let rx = &mut self.dev.rx;
        loop {
            let (frame, blank) = rx.next_frame_blank()?;
            if !(blank || checksum::tcp_ok(frame)) {
                rx.bad_checksums += 1;
            } else if self.held.admits(frame) {
                break;
            }
        }
        Some((Rx(self.dev.rx.last_frame()), Tx(&mut self.dev.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<Tx<'_>> {
        if self.dev.tx.can_send() {
            Some(Tx(&mut self.dev.tx))
        } else {
            None
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        // smoltcp counts the Ethernet header in.
        c.max_transmission_unit =
            usize::from(self.dev.mtu()) + usize::from(ipc_abi::proto::net::ETHERNET_HEADER);
        c.max_burst_size = Some(self.dev.tx.pages());
        // TCP checksums are offloaded: left blank when sent, checked in
        // `receive` only when a frame did not come blank from a guest here.
        c.checksum.tcp = Checksum::None;
        c
    }
}

/// Extra egress passes a poll makes (each sends at most one segment per
/// socket): a burst fills every transmit page (the loop stops when a
/// pass sends nothing or no frame fits).
const EGRESS_ROUNDS: usize = 2 * JUMBO_TX_PAGES;

/// With every transmit page in flight, the longest a stack waits for the
/// backend's answer before looking again (the answer's event comes first
/// unless the backend is gone).
pub const TX_FULL_RECHECK_NS: u64 = 1_000_000;

/// smoltcp's clock: the domain's.
pub fn now() -> Instant {
    Instant::from_micros((crate::time::now_ns() / 1000) as i64)
}

/// An interface with an address, and the sockets on it.
pub struct Stack {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub dev: NetFront,
    /// The connections the sockets hold, noted at each poll (`demux`).
    pub held: Held,
    dhcp: Option<SocketHandle>,
}

/// `A.B.C.D`.
pub fn parse_ipv4(text: &str) -> Option<Ipv4Address> {
    let mut b = [0u8; 4];
    let mut n = 0;
    for part in text.split('.') {
        *b.get_mut(n)? = part.parse().ok()?;
        n += 1;
    }
    (n == 4).then(|| Ipv4Address::new(b[0], b[1], b[2], b[3]))
}

impl Stack {
    /// Connects interface 0 and gives it the address the command line
    /// names (`ip=A.B.C.D/N`, optional `gw=A.B.C.D`), or asks DHCP.
    pub fn from_command_line() -> Result<Stack> {
        let mut stack = Stack::on(NetFront::connect(0)?);
        let option = |key: &str| {
            crate::command_line()
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        match option("ip") {
            Some(text) => {
                let (addr, len) = text.split_once('/').unwrap_or((text, "24"));
                let addr = parse_ipv4(addr).ok_or(Error::InvalidArgument)?;
                let len: u8 = len.parse().map_err(|_| Error::InvalidArgument)?;
                stack.set_address(Ipv4Cidr::new(addr, len), option("gw").and_then(parse_ipv4));
            }
            None => {
                let socket = dhcpv4::Socket::new();
                stack.dhcp = Some(stack.sockets.add(socket));
            }
        }
        Ok(stack)
    }

    /// An interface on `dev`, with no address yet ([`Stack::set_address`]).
    pub fn on(mut dev: NetFront) -> Stack {
        // Its pages take blank TCP checksums from now on (each as it is
        // posted again): `receive` checks the others.
        dev.rx.takes_blank_checksums = true;
        let mac = EthernetAddress(dev.mac());
        let config = Config::new(HardwareAddress::Ethernet(mac));
        let mut held = Held::default();
        let mut port = Port {
            dev: &mut dev,
            held: &mut held,
        };
        let iface = Interface::new(config, &mut port, now());
        Stack {
            iface,
            sockets: SocketSet::new(Vec::new()),
            dev,
            held,
            dhcp: None,
        }
    }

    /// Gives the interface its address and, if any, its default route.
    pub fn set_address(&mut self, cidr: Ipv4Cidr, gateway: Option<Ipv4Address>) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            let _ = addrs.push(IpCidr::Ipv4(cidr));
        });
        match gateway {
            Some(gw) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(gw);
            }
            None => self
                .iface
                .routes_mut()
                .remove_default_ipv4_route()
                .map_or((), |_| ()),
        }
    }

    /// The interface's address, once it has one.
    pub fn address(&self) -> Option<Ipv4Cidr> {
        // Only IPv4 is built in, so every address is one.
        self.iface
            .ip_addrs()
            .iter()
            .map(|IpCidr::Ipv4(c)| *c)
            .next()
    }

    /// Moves frames in and out and runs smoltcp's timers; follows DHCP and
    /// a restarted backend.
    pub fn poll(&mut self) {
        let _ = self.dev.follow_restart();
        // smoltcp sends at most one segment per socket a poll: ask again
        // while it sends and a transmit page is free, and hand the backend
        // the whole burst at once (one wake-up, not one per segment).
        self.dev.tx.hold();
        let t = now();
        self.held.note(&self.sockets);
        let mut port = Port {
            dev: &mut self.dev,
            held: &mut self.held,
        };
        let mut sent = self.iface.poll(t, &mut port, &mut self.sockets);
        for _ in 0..EGRESS_ROUNDS {
            if sent == PollResult::None || !port.dev.tx.can_send() {
                break;
            }
            sent = self.iface.poll_egress(t, &mut port, &mut self.sockets);
        }
        self.dev.tx.flush();
        let Some(h) = self.dhcp else { return };
        let event = self
            .sockets
            .get_mut::<dhcpv4::Socket>(h)
            .poll()
            .map(|e| match e {
                dhcpv4::Event::Configured(c) => Some((c.address, c.router)),
                dhcpv4::Event::Deconfigured => None,
            });
        match event {
            Some(Some((address, router))) => {
                self.set_address(address, router);
                crate::println!("net: {} from DHCP", address);
            }
            Some(None) => {
                self.iface.update_ip_addrs(|a| a.clear());
                crate::println!("net: DHCP lease lost");
            }
            None => {}
        }
    }

    /// How long until smoltcp next needs a poll (ns), if it has a timer.
    /// While every transmit page is in flight, "at once" (a socket has
    /// more to send) means when the backend answers, which wakes us: the
    /// delay is then at least [`TX_FULL_RECHECK_NS`], not a loop of
    /// wake-ups that takes the CPU from the backend we wait for.
    pub fn poll_delay_ns(&mut self) -> Option<u64> {
        let delay = self
            .iface
            .poll_delay(now(), &self.sockets)
            .map(|d| d.total_micros() * 1000)?;
        if delay < TX_FULL_RECHECK_NS && !self.dev.tx.can_send() {
            return Some(TX_FULL_RECHECK_NS);
        }
        Some(delay)
    }

    /// Blocks until a frame arrives or smoltcp's next timer is due (at most `max_ns`).
    pub fn wait(&mut self, max_ns: u64) {
        let delay = self.poll_delay_ns().map_or(max_ns, |d| d.min(max_ns));
        if delay == 0 {
            return;
        }
        let deadline = crate::time::now_ns().saturating_add(delay);
        self.dev.wait_until(deadline);
    }
}
