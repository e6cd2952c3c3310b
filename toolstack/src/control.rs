//! The control domain's end of every domain's control ring.
//!
//! Owns: offering a control ring to a new domain (a page of ours granted to
//! it, and an event channel), attaching once the domain initialised it, and
//! answering its messages. Every message is copied out once and checked; a
//! malformed one gets an `Invalid` answer, a broken ring is dropped.

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
    back: Option<Back<'static, ControlMessage, ControlMessage>>,
    broken: bool,
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
        Ok((
            Link {
                dom,
                port,
                pages,
                back: None,
                broken: false,
            },
            word,
        ))
    }

    /// Serves what the domain sent; returns how many messages were answered.
    pub fn serve(&mut self) -> usize {
        if self.broken {
            return 0;
        }
        if self.back.is_none() {
            match Back::attach(self.pages.shared()) {
                Ok(b) => {
                    println!("toolstack: domain {} connected its control ring", self.dom);
                    self.back = Some(b);
                }
                Err(_) => return 0,
            }
        }
        let Some(back) = self.back.as_mut() else {
            return 0;
        };
        let mut answered = 0;
        loop {
            match back.pop() {
                Ok(Some(msg)) => {
                    let mut answer = msg;
                    answer.version_or_status = match msg.check() {
                        Some(ControlOp::Heartbeat) => Status::Ok as u32,
                        Some(_) => Status::Unsupported as u32,
                        None => Status::Invalid as u32,
                    };
                    if back.push(&answer).is_err() {
                        break;
                    }
                    answered += 1;
                }
                Ok(None) => match back.final_check() {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(_) => {
                        self.drop_ring();
                        return answered;
                    }
                },
                Err(_) => {
                    self.drop_ring();
                    return answered;
                }
            }
        }
        if back.publish() {
            let _ = hc::event_send(self.port);
        }
        answered
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
