//! This domain's control ring to the control domain (`ipc_abi::proto::control`).
//!
//! Owns: connecting the ring the control domain set up for this domain (its
//! command line carries `control=DOM:GREF:PORT`: the control domain's id, the
//! grant of the ring page and the control domain's end of the event channel)
//! and request/answer calls over it. This domain is the ring's frontend.

use crate::hypercall as hc;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::control::{ControlMessage, ControlOp, Status};
use ipc_abi::ring::Front;
use spin::Mutex;
use zerocopy::FromZeros;

/// The grant-window slot the control ring is mapped at.
pub const CONTROL_SLOT: u64 = ipc_abi::layout::GRANT_SLOTS - 1;

struct Channel {
    front: Front<'static, ControlMessage, ControlMessage>,
    port: u16,
    next_id: u32,
}

static CHANNEL: Mutex<Option<Channel>> = Mutex::new(None);

/// `control=DOM:GREF:PORT` from the command line.
fn parse(cmdline: &str) -> Option<(DomainId, u32, u16)> {
    let v = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("control="))?;
    let mut it = v.split(':');
    let dom = it.next()?.parse().ok()?;
    let gref = it.next()?.parse().ok()?;
    let port = it.next()?.parse().ok()?;
    Some((DomainId(dom), gref, port))
}

/// Connects the control ring if the command line names one. Called by the runtime before `run`.
pub fn connect_from_command_line() -> Option<Result<()>> {
    let (dom, gref, remote_port) = parse(crate::command_line())?;
    Some(connect(dom, gref, remote_port))
}

fn connect(dom: DomainId, gref: u32, remote_port: u16) -> Result<()> {
    let pages = crate::ring::RingPages::map(dom, &[gref], CONTROL_SLOT)?;
    let port = hc::event_bind_interdomain(dom, remote_port)?;
    let front = Front::init(pages.shared(), 1).map_err(|_| Error::InvalidArgument)?;
    *CHANNEL.lock() = Some(Channel {
        front,
        port,
        next_id: 1,
    });
    hc::event_send(port)?;
    Ok(())
}

/// Whether this domain has a control ring.
pub fn connected() -> bool {
    CHANNEL.lock().is_some()
}

/// Sends one control message and waits for its answer.
pub fn call(mut msg: ControlMessage) -> Result<ControlMessage> {
    let mut guard = CHANNEL.lock();
    let ch = guard.as_mut().ok_or(Error::PortState)?;
    msg.id = ch.next_id;
    ch.next_id = ch.next_id.wrapping_add(1);
    ch.front.push(&msg).map_err(|_| Error::OutOfResources)?;
    if ch.front.publish() {
        hc::event_send(ch.port)?;
    }
    loop {
        match ch.front.pop() {
            Ok(Some(answer)) if answer.id == msg.id => return Ok(answer),
            Ok(Some(_)) => continue, // an answer to something else: not ours to keep (yet)
            Ok(None) => {
                if !ch.front.final_check().map_err(|_| Error::PortState)? {
                    crate::events::wait(ch.port);
                }
            }
            Err(_) => return Err(Error::PortState),
        }
    }
}

/// Tells the control domain this domain is alive; returns its answer's status.
pub fn heartbeat() -> Result<u32> {
    let mut m = ControlMessage::new_zeroed();
    m.op = ControlOp::Heartbeat as u32;
    call(m).map(|a| a.version_or_status)
}

/// The status code of a successful answer.
pub const OK: u32 = Status::Ok as u32;
