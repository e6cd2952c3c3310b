//! The management protocol over TCP, through drvdom-net like any guest's
//! traffic (`mgmt-net=A.B.C.D/N:PORT,mac=MAC` on domain 0's command line;
//! `ipc_abi::mgmt_net` has the wire format).
//!
//! Owns: domain 0's own network interface (its rings granted to
//! drvdom-net and announced by domain 0 itself, being the broker, again
//! to each new instance after a restart), smoltcp on it, up to
//! [`MAX_CLIENTS`] connections each with its Noise state (`secure.rs`)
//! and its own session, the host key and the authorised keys from the
//! boot bundle, and refusing what is not authorised (logged once per key).

extern crate alloc;
use super::secure::{Refusal, Secure};
use super::session::Session;
use super::Started_;
use crate::table::Started;
use crate::viewer::Viewer;
use alloc::boxed::Box;
use alloc::vec::Vec;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::{Error, Result};
use domain_runtime::ipc_abi::mgmt_net::{self, Endpoint, Key, KeyText};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind};
use domain_runtime::ipc_abi::proto::net::{NetConnect, NET_VERSION};
use domain_runtime::net::tcpip::Stack;
use domain_runtime::net::{NetFront, Shape};
use domain_runtime::ring::{Grefs, RingPages};
use domain_runtime::{println, DomainId};
use smoltcp::socket::tcp;
use smoltcp::wire::{Ipv4Address, Ipv4Cidr};
use zerocopy::FromZeros;

/// Clients served at once (each holds a socket's buffers and a session).
pub const MAX_CLIENTS: usize = 24;
/// Each socket's send buffer: what may be in flight unacknowledged (a
/// save's pieces go out at the pace of the acknowledgements; 64 KiB held
/// a save of 4 MiB to 1.07 s, 256 KiB 0.69 s; 512 KiB did no better).
const SOCKET_TX_BUFFER: usize = 256 * 1024;
/// Encrypted answers a client may leave unread before it is dropped.
const MAX_BACKLOG: usize = 1 << 20;
/// A client that has not finished its handshake this long after it
/// connected is dropped (idle connections would hold every slot).
const HANDSHAKE_NS: u64 = 10_000_000_000;
/// Refused keys remembered so each is logged once.
const REFUSALS_LOGGED: usize = 16;
/// Domain 0's interface: transmit pages, and a receive page in each slot
/// of its one-page receive ring (each a grant: 42 with the rings, beside
/// one per other domain's control ring; the kernel allows 256).
const TX_PAGES: usize = 8;
const RX_PAGES: usize = 32;
/// Each socket's receive buffer: its window stays below what the receive
/// pages hold (22 full segments), so a burst the window allows is never
/// dropped for want of a page (a dropped segment costs the sender a
/// retransmission timeout).
const SOCKET_RX_BUFFER: usize = 32 * 1024;

/// The network channel.
pub struct NetChannel {
    endpoint: Endpoint,
    private: Key,
    authorised: Vec<Key>,
    /// The interface and its sockets, once drvdom-net runs.
    stack: Option<Stack>,
    clients: Vec<Client>,
    refusals_logged: heapless::Vec<Key, REFUSALS_LOGGED>,
}

/// A listening socket, and its client once one connected.
struct Client {
    handle: smoltcp::iface::SocketHandle,
    link: Option<Box<Link>>,
}

/// A connected client.
struct Link {
    secure: Secure,
    session: Session,
    /// Encrypted bytes not yet taken by the socket.
    wire_out: Vec<u8>,
    /// When it connected (ns since boot).
    since: u64,
}

impl NetChannel {
    /// Starts if domain 0's command line has `mgmt-net=`: reads the keys
    /// from the boot bundle (making a host key if it has none). The
    /// interface connects once drvdom-net runs ([`NetChannel::follow`]).
    pub fn start() -> Option<NetChannel> {
        let line = domain_runtime::command_line();
        let endpoint = match Endpoint::from_command_line(line) {
            Some(e) => e,
            None if line
                .split_whitespace()
                .any(|w| w.starts_with(mgmt_net::WORD)) =>
            {
                println!(
                    "toolstack: {}= is malformed; no management over the network",
                    mgmt_net::WORD
                );
                return None;
            }
            None => return None,
        };
        let bundle = crate::bundle::find();
        let file = |path| bundle.and_then(|b| crate::bundle::file(b, path));
        let text = |path| file(path).and_then(|f| core::str::from_utf8(f).ok());
        let private = match text(mgmt_net::HOST_KEY_PATH) {
            Some(t) => match mgmt_net::parse_key(t) {
                Some(k) => k,
                None => {
                    println!(
                        "toolstack: {} is not a key; no management over the network",
                        mgmt_net::HOST_KEY_PATH
                    );
                    return None;
                }
            },
            None => match super::secure::generate_keypair() {
                Some((private, public)) => {
                    println!(
                        "toolstack: no {} in the boot bundle; made one for this boot, public key {}",
                        mgmt_net::HOST_KEY_PATH,
                        KeyText(&public)
                    );
                    private
                }
                None => {
                    println!("toolstack: no random numbers for a host key; no management over the network");
                    return None;
                }
            },
        };
        let mut authorised = Vec::new();
        for (i, key) in
            mgmt_net::authorized_keys(text(mgmt_net::AUTHORIZED_KEYS_PATH).unwrap_or(""))
                .enumerate()
        {
            match key {
                Ok(k) => authorised.push(k),
                Err(line) => println!(
                    "toolstack: {} line {}: not a key; skipped (entry {})",
                    mgmt_net::AUTHORIZED_KEYS_PATH,
                    line,
                    i + 1
                ),
            }
        }
        println!(
            "toolstack: management over TCP port {} once drvdom-net runs; host key {}, {} authorised client keys",
            endpoint.port,
            KeyText(&super::secure::public_key(&private)),
            authorised.len()
        );
        Some(NetChannel {
            endpoint,
            private,
            authorised,
            stack: None,
            clients: Vec::new(),
            refusals_logged: heapless::Vec::new(),
        })
    }

    /// The event port of the interface, if connected.
    pub fn port(&self) -> Option<u16> {
        self.stack.as_ref().map(|s| s.dev.port())
    }

    /// Connects the interface to drvdom-net when it runs and we are not
    /// connected to that instance (first start, or it was restarted).
    pub fn follow(&mut self, started: &mut [Started]) {
        let Some(backend) = net_dom(started) else {
            return;
        };
        if self
            .stack
            .as_ref()
            .is_some_and(|s| s.dev.backend() == backend)
        {
            return;
        }
        let mac = self.endpoint.mac;
        let mut announce = |rings: &[RingPages], to: DomainId| announce(started, rings, to, mac);
        match self.stack.as_mut() {
            Some(stack) => {
                if let Err(e) = stack.dev.reconnect_to(backend, &mut announce) {
                    println!(
                        "toolstack: our interface cannot reconnect to domain {}: {}",
                        backend, e
                    );
                }
            }
            None => {
                let shape = Shape {
                    vif: 0,
                    mac,
                    mtu: domain_runtime::ipc_abi::proto::net::DEFAULT_MTU,
                    rx_ring_pages: 1,
                    tx_pages: TX_PAGES,
                    rx_pages: RX_PAGES,
                };
                match NetFront::build(shape, backend, &mut announce) {
                    Ok(dev) => self.listen_on(dev),
                    Err(e) => println!(
                        "toolstack: our interface cannot connect to domain {}: {}",
                        backend, e
                    ),
                }
            }
        }
    }

    /// The interface is up: its address, and a listening socket per client.
    fn listen_on(&mut self, dev: NetFront) {
        let mut stack = Stack::on(dev);
        let a = self.endpoint.address;
        let address = Ipv4Address::new(a[0], a[1], a[2], a[3]);
        stack.set_address(Ipv4Cidr::new(address, self.endpoint.prefix), None);
        for _ in 0..MAX_CLIENTS {
            let buffer = |n| tcp::SocketBuffer::new(alloc::vec![0; n]);
            let mut socket = tcp::Socket::new(buffer(SOCKET_RX_BUFFER), buffer(SOCKET_TX_BUFFER));
            // Each acknowledgement at once: the client's window is small.
            socket.set_ack_delay(None);
            socket.set_nagle_enabled(false);
            if socket.listen(self.endpoint.port).is_err() {
                continue;
            }
            let handle = stack.sockets.add(socket);
            self.clients.push(Client { handle, link: None });
        }
        println!(
            "toolstack: serving the management protocol on {}.{}.{}.{} port {}",
            a[0], a[1], a[2], a[3], self.endpoint.port
        );
        self.stack = Some(stack);
    }

    /// Moves frames, accepts and serves clients, sends what they are owed.
    /// `saving_outside`: a save is in progress on another channel.
    pub fn poll(
        &mut self,
        started: &mut Started_,
        viewer: &mut Option<Viewer>,
        saving_outside: bool,
    ) {
        let Some(stack) = self.stack.as_mut() else {
            return;
        };
        stack.poll();
        let port = self.endpoint.port;
        for i in 0..self.clients.len() {
            let saving_elsewhere =
                saving_outside
                    || self.clients.iter().enumerate().any(|(j, c)| {
                        j != i && c.link.as_ref().is_some_and(|l| l.session.saving())
                    });
            let client = &mut self.clients[i];
            let socket = stack.sockets.get_mut::<tcp::Socket>(client.handle);
            if !socket.is_open() {
                // Closed, by the client or by us: what it had under way is undone.
                if let Some(link) = client.link.take() {
                    link.session.close();
                }
                let _ = socket.listen(port);
                continue;
            }
            if client.link.is_none() && socket.state() == tcp::State::Established {
                match Secure::responder(&self.private) {
                    Ok(secure) => {
                        client.link = Some(Box::new(Link {
                            secure,
                            session: Session::new(),
                            wire_out: Vec::new(),
                            since: domain_runtime::time::now_ns(),
                        }))
                    }
                    Err(_) => {
                        socket.abort();
                        continue;
                    }
                }
            }
            let Some(link) = client.link.as_mut() else {
                continue;
            };
            if !link.secure.is_open() && domain_runtime::time::now_ns() > link.since + HANDSHAKE_NS
            {
                socket.abort();
                continue;
            }
            link.session.saving_elsewhere = saving_elsewhere;
            let authorised = |k: &Key| self.authorised.contains(k);
            let mut plain = Vec::new();
            let mut refusal = None;
            while socket.can_recv() && refusal.is_none() {
                let room = link.secure.room();
                let got = socket.recv(|buf| {
                    let n = buf.len().min(room);
                    (n, buf[..n].to_vec())
                });
                match got {
                    Ok(bytes) if !bytes.is_empty() => {
                        let r0 = link.secure.receive(
                            &bytes,
                            &authorised,
                            &mut plain,
                            &mut link.wire_out,
                        );
                        if let Err(r) = r0 {
                            refusal = Some(r);
                        }
                    }
                    _ => break,
                }
                if !plain.is_empty() {
                    link.session.feed(&plain, started, viewer);
                    plain.clear();
                }
            }
            if let Some(r) = refusal {
                log_refusal(&mut self.refusals_logged, r, socket.remote_endpoint());
                socket.abort();
                continue;
            }
            if !flush(link, socket) {
                socket.abort();
            } else if !socket.may_recv() {
                // The client closed its side: the session ends, and so does
                // ours (left half-open, the socket would never listen again).
                if let Some(link) = client.link.take() {
                    link.session.close();
                }
                socket.close();
            }
        }
        stack.poll();
    }

    /// Sends what sessions owe after events outside `poll` (console-dom's
    /// answers, the clock).
    pub fn flush_all(&mut self) {
        let Some(stack) = self.stack.as_mut() else {
            return;
        };
        for client in self.clients.iter_mut() {
            let socket = stack.sockets.get_mut::<tcp::Socket>(client.handle);
            if let Some(link) = client.link.as_mut() {
                if !flush(link, socket) {
                    socket.abort();
                }
            }
        }
        stack.poll();
    }

    /// Every session with a client (console-dom's answers and the clock go to each).
    pub fn sessions(&mut self) -> impl Iterator<Item = &mut Session> {
        self.clients
            .iter_mut()
            .filter_map(|c| c.link.as_mut().map(|l| &mut l.session))
    }

    /// Whether any client's save is in progress.
    pub fn saving(&self) -> bool {
        self.clients
            .iter()
            .any(|c| c.link.as_ref().is_some_and(|l| l.session.saving()))
    }

    /// When smoltcp or a session next needs the clock (ns since boot).
    pub fn deadline(&mut self) -> Option<u64> {
        let stack = self.stack.as_mut()?;
        let tcp = stack
            .poll_delay_ns()
            .map(|d| domain_runtime::time::now_ns() + d);
        let sessions = self
            .clients
            .iter()
            .filter_map(|c| c.link.as_ref()?.session.deadline());
        let handshakes = self
            .clients
            .iter()
            .filter_map(|c| c.link.as_ref().filter(|l| !l.secure.is_open()))
            .map(|l| l.since + HANDSHAKE_NS + 1);
        tcp.into_iter().chain(sessions).chain(handshakes).min()
    }
}

/// Encrypts what the session owes and gives the socket what it takes;
/// false if the client reads too little (it is dropped).
fn flush(link: &mut Link, socket: &mut tcp::Socket<'_>) -> bool {
    if link.session.output_len() > 0 {
        let plain = link.session.take_output();
        if link.secure.send(&plain, &mut link.wire_out).is_err() {
            return false;
        }
    }
    if !link.wire_out.is_empty() && socket.can_send() {
        if let Ok(n) = socket.send_slice(&link.wire_out) {
            link.wire_out.drain(..n);
        }
    }
    link.wire_out.len() <= MAX_BACKLOG
}

/// Says why a client was refused, once per unauthorised key.
fn log_refusal(
    logged: &mut heapless::Vec<Key, REFUSALS_LOGGED>,
    refusal: Refusal,
    from: Option<smoltcp::wire::IpEndpoint>,
) {
    match refusal {
        Refusal::Unauthorised(key) if !logged.contains(&key) => {
            if logged.is_full() {
                logged.remove(0);
            }
            let _ = logged.push(key);
            match from {
                Some(f) => println!(
                    "toolstack: refused a management client from {} with key {}: not authorised",
                    f,
                    KeyText(&key)
                ),
                None => println!(
                    "toolstack: refused a management client with key {}: not authorised",
                    KeyText(&key)
                ),
            }
        }
        Refusal::Unauthorised(_) => {}
        Refusal::Garbled | Refusal::NoRandom => {}
    }
}

/// The running network driver domain.
fn net_dom(started: &[Started]) -> Option<DomainId> {
    started
        .iter()
        .find(|s| s.config.role == Some(domain_config::Role::Net) && !s.reported)
        .map(|s| s.id)
}

/// Grants our rings to `backend` and sends it their `Connect` ourselves
/// (we are the broker): what the broker does with a guest's `Announce`.
fn announce(
    started: &mut [Started],
    rings: &[RingPages],
    backend: DomainId,
    mac: domain_runtime::ipc_abi::proto::net::Mac,
) -> Result<(Grefs, u16)> {
    let link = started
        .iter_mut()
        .find(|s| s.id == backend)
        .and_then(|s| s.control.as_mut())
        .ok_or(Error::DeadDomain)?;
    let mut grefs = Grefs::new();
    let granted = rings.iter().try_for_each(|r| {
        for g in r.grant_to(backend)? {
            grefs.push(g).map_err(|_| Error::InvalidArgument)?;
        }
        Ok(())
    });
    let port = granted.and_then(|()| hc::event_alloc_unbound(DomainId::SELF, backend));
    let port = match port {
        Ok(p) => p,
        Err(e) => {
            for &g in grefs.iter() {
                let _ = hc::grant_end(g);
            }
            return Err(e);
        }
    };
    let mut connect = ControlMessage::new_zeroed();
    connect.op = ControlOp::Connect as u32;
    connect.kind = DeviceKind::Net as u32;
    connect.peer = DomainId(domain_runtime::start_info().domain_id);
    connect.port = u32::from(port);
    connect.pages = grefs.len() as u32;
    connect.version_or_status = NET_VERSION;
    for (slot, g) in connect.grefs.iter_mut().zip(grefs.iter()) {
        *slot = *g;
    }
    NetConnect {
        vif: 0,
        mac,
        mtu: domain_runtime::ipc_abi::proto::net::DEFAULT_MTU,
    }
    .write(&mut connect);
    link.tell(connect);
    Ok((grefs, port))
}
