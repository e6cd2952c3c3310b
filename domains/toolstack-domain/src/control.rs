//! The control domain's end of every domain's control ring, and the broker
//! that introduces frontends to backends (`docs/device-connection.md`).
//!
//! Owns: offering a control ring to a new domain (a page of ours granted to
//! it, and an event channel), attaching once the domain initialised it,
//! answering what it can at once (heartbeats, malformed messages), holding
//! each domain's `Listen`, and handing `Announce`/`Connected` to the broker.
//! Every message is copied out once and checked; a broken ring is dropped.

use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::Result;
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, Status};
use domain_runtime::ring::GrantedBack;
use domain_runtime::{println, DomainId};

/// Messages one control ring gets served in one turn of domain 0's loop.
pub const TURN: usize = 32;
/// Messages for the broker taken from one ring in one turn.
pub const BROKER_BATCH: usize = 8;

/// One domain's control ring, seen from the control domain.
pub struct Link {
    pub dom: DomainId,
    /// Our end of the event channel.
    pub port: u16,
    /// The ring: a page of ours granted to the domain, freed with the link.
    ring: GrantedBack<ControlMessage, ControlMessage>,
    broken: bool,
    /// The domain's outstanding `Listen`s, answered when there is news for it.
    listens: heapless::Deque<u32, 4>,
    /// News waiting for a `Listen`.
    news: heapless::Deque<ControlMessage, 8>,
    /// An `Announce` waiting for its backend to connect.
    pub awaiting: Option<ControlMessage>,
    /// When the domain's last heartbeat came (ns since boot; 0: none yet).
    pub last_heartbeat: u64,
    /// "connected its control ring" was said.
    connected_told: bool,
}

impl Link {
    /// Offers a ring to `dom`; returns it and the `control=...` command-line word.
    pub fn offer(me: DomainId, dom: DomainId) -> Result<(Link, heapless::String<48>)> {
        let (mut ring, gref) = GrantedBack::offer(dom)?;
        let port = match hc::event_alloc_unbound(DomainId::SELF, dom) {
            Ok(port) => port,
            Err(e) => {
                ring.end_grants();
                return Err(e);
            }
        };
        let mut word = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(
            &mut word,
            format_args!("control={}:{}:{}", me.0, gref, port),
        );
        let link = Link {
            dom,
            port,
            ring,
            broken: false,
            listens: heapless::Deque::new(),
            news: heapless::Deque::new(),
            awaiting: None,
            last_heartbeat: 0,
            connected_told: false,
        };
        Ok((link, word))
    }

    /// The domain is gone: its event channel is closed, the grant of the
    /// ring page ends and the page goes back to our heap, so none of them
    /// runs out however many domains come and go. Returns the link back if
    /// the grant is still mapped (the domain is not yet destroyed).
    pub fn release(mut self) -> Option<Link> {
        let _ = hc::event_close(self.port);
        if self.ring.end_grants() {
            None
        } else {
            Some(self)
        }
    }

    /// Serves what the domain sent, at most [`TURN`] messages and
    /// [`BROKER_BATCH`] for the broker (`Announce`, `Connected`...), which
    /// stay unanswered until it acts. Returns those, and whether more
    /// messages wait (the caller comes back after its other duties: a
    /// domain refilling its ring from another CPU cannot hold domain 0).
    pub fn serve(&mut self) -> (heapless::Vec<ControlMessage, BROKER_BATCH>, bool) {
        let mut for_broker = heapless::Vec::new();
        if self.broken {
            return (for_broker, false);
        }
        if !self.ring.attached() {
            return (for_broker, false);
        }
        if !self.connected_told {
            println!("toolstack: domain {} connected its control ring", self.dom);
            self.connected_told = true;
        }
        let mut served = 0;
        while !self.broken {
            if served == TURN || for_broker.is_full() {
                // Left in the ring for the next turn (nothing is refused).
                return (for_broker, true);
            }
            served += 1;
            match self.ring.pop() {
                Ok(Some(msg)) => match msg.check() {
                    Some(ControlOp::Heartbeat) => {
                        self.last_heartbeat = domain_runtime::time::now_ns();
                        self.answer(msg, Status::Ok)
                    }
                    Some(ControlOp::Listen) => {
                        if self.listens.push_back(msg.id).is_err() {
                            self.answer(msg, Status::Denied);
                        }
                        self.deliver_news();
                    }
                    Some(
                        ControlOp::Announce
                        | ControlOp::Connected
                        | ControlOp::Refused
                        | ControlOp::Disconnect,
                    ) => {
                        let _ = for_broker.push(msg);
                    }
                    Some(_) => self.answer(msg, Status::Unsupported),
                    None => self.answer(msg, Status::Invalid),
                },
                Ok(None) => match self.ring.final_check() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(_) => {
                        self.drop_ring();
                        break;
                    }
                },
                Err(_) => {
                    self.drop_ring();
                    break;
                }
            }
        }
        (for_broker, false)
    }

    /// Answers a message with a status (echoing it otherwise).
    pub fn answer(&mut self, msg: ControlMessage, status: Status) {
        let mut a = msg;
        a.version_or_status = status as u32;
        self.push(a);
    }

    fn push(&mut self, msg: ControlMessage) {
        if self.broken || !self.ring.attached() {
            return;
        }
        if self.ring.push(&msg).is_err() {
            self.drop_ring();
            return;
        }
        if self.ring.publish() {
            let _ = hc::event_send(self.port);
        }
    }

    /// Queues news for the domain (sent as the answer to its `Listen`).
    pub fn tell(&mut self, news: ControlMessage) {
        if self.news.push_back(news).is_err() {
            println!(
                "toolstack: domain {} has too much unread news; dropping it",
                self.dom
            );
        }
        self.deliver_news();
    }

    fn deliver_news(&mut self) {
        while !self.news.is_empty() {
            let Some(id) = self.listens.pop_front() else {
                return;
            };
            if let Some(mut n) = self.news.pop_front() {
                n.id = id;
                self.push(n);
            }
        }
    }

    fn drop_ring(&mut self) {
        println!(
            "toolstack: domain {} broke its control ring; ignoring it",
            self.dom
        );
        self.broken = true;
        self.ring.detach();
    }
}

/// The control message asking a domain to hold `kib` of memory (its
/// balloon gives memory back or takes it again: `domain mem-set`).
pub fn balloon_target(kib: u64) -> ControlMessage {
    let mut m = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
    m.op = ControlOp::BalloonTarget as u32;
    m.index = u32::try_from(kib).unwrap_or(u32::MAX);
    m
}
