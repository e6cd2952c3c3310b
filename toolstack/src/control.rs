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
use domain_runtime::ipc_abi::ring::Back;
use domain_runtime::ring::RingPages;
use domain_runtime::{println, DomainId};

/// One domain's control ring, seen from the control domain.
pub struct Link {
    pub dom: DomainId,
    /// Our end of the event channel.
    pub port: u16,
    pages: RingPages,
    /// The grants of `pages` to the domain.
    grefs: domain_runtime::ring::Grefs,
    back: Option<Back<'static, ControlMessage, ControlMessage>>,
    broken: bool,
    /// The domain's outstanding `Listen`s, answered when there is news for it.
    listens: heapless::Deque<u32, 4>,
    /// News waiting for a `Listen`.
    news: heapless::Deque<ControlMessage, 8>,
    /// An `Announce` waiting for its backend to connect.
    pub awaiting: Option<ControlMessage>,
    /// When the domain's last heartbeat came (ns since boot; 0: none yet).
    pub last_heartbeat: u64,
}

impl Link {
    /// Offers a ring to `dom`; returns it and the `control=...` command-line word.
    pub fn offer(me: DomainId, dom: DomainId) -> Result<(Link, heapless::String<48>)> {
        let pages = RingPages::allocate(1)
            .ok_or(domain_runtime::ipc_abi::hypercall::Error::OutOfResources)?;
        let grefs = pages.grant_to(dom)?;
        let port = hc::event_alloc_unbound(DomainId::SELF, dom)?;
        let mut word = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(
            &mut word,
            format_args!("control={}:{}:{}", me.0, grefs[0], port),
        );
        let link = Link {
            dom,
            port,
            pages,
            grefs,
            back: None,
            broken: false,
            listens: heapless::Deque::new(),
            news: heapless::Deque::new(),
            awaiting: None,
            last_heartbeat: 0,
        };
        Ok((link, word))
    }

    /// The domain is gone: its event channel is closed and the grants of
    /// the ring page end, so neither runs out however many domains come and
    /// go. Returns the link back if a grant is still mapped (the domain is
    /// not yet destroyed); the page itself stays allocated (4 KiB a domain).
    pub fn release(mut self) -> Option<Link> {
        self.back = None;
        let _ = hc::event_close(self.port);
        let mut left = domain_runtime::ring::Grefs::new();
        for &g in self.grefs.iter() {
            if hc::grant_end(g).is_err() {
                let _ = left.push(g);
            }
        }
        if left.is_empty() {
            None
        } else {
            self.grefs = left;
            Some(self)
        }
    }

    /// Serves what the domain sent. Returns the messages for the broker
    /// (`Announce`, `Connected`), which stay unanswered until it acts.
    pub fn serve(&mut self) -> heapless::Vec<ControlMessage, 8> {
        let mut for_broker = heapless::Vec::new();
        if self.broken {
            return for_broker;
        }
        if self.back.is_none() {
            match Back::attach(self.pages.shared()) {
                Ok(b) => {
                    println!("toolstack: domain {} connected its control ring", self.dom);
                    self.back = Some(b);
                }
                Err(_) => return for_broker,
            }
        }
        while let Some(back) = self.back.as_mut() {
            match back.pop() {
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
                    Some(ControlOp::Announce | ControlOp::Connected | ControlOp::Disconnect)
                        if for_broker.len() < 8 =>
                    {
                        let _ = for_broker.push(msg);
                    }
                    Some(_) => self.answer(msg, Status::Unsupported),
                    None => self.answer(msg, Status::Invalid),
                },
                Ok(None) => match back.final_check() {
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
        for_broker
    }

    /// Answers a message with a status (echoing it otherwise).
    pub fn answer(&mut self, msg: ControlMessage, status: Status) {
        let mut a = msg;
        a.version_or_status = status as u32;
        self.push(a);
    }

    fn push(&mut self, msg: ControlMessage) {
        let Some(back) = self.back.as_mut() else {
            return;
        };
        if back.push(&msg).is_err() {
            self.drop_ring();
            return;
        }
        if back.publish() {
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
        self.back = None;
    }
}
