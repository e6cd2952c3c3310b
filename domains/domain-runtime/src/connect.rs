//! Announcing a device's rings to its backend, through the control domain
//! (the sequence is docs/device-connection.md): the ring pages are
//! `domain_base::ring`'s, the conversation is the control ring's.

use crate::ipc_abi::domain::DomainId;
use crate::ipc_abi::hypercall::{Error, Result};
use crate::ring::{Grefs, RingPages};

/// Announces a device whose rings are `rings`, in order (a network
/// device's transmit then receive ring), with one event port for all; see
/// `RingPages::announce`.
pub fn announce(
    rings: &[RingPages],
    backend: DomainId,
    kind: ipc_abi::proto::control::DeviceKind,
    index: u32,
    version: u32,
) -> Result<(Grefs, u16)> {
    let mut grefs = Grefs::new();
    let granted = rings.iter().try_for_each(|r| {
        for g in r.grant_to(backend)? {
            grefs.push(g).map_err(|_| Error::InvalidArgument)?;
        }
        Ok(())
    });
    if let Err(e) = granted {
        // The backend died between two rings' grants: none stays behind.
        for &g in grefs.iter() {
            let _ = crate::hypercall::grant_end(g);
        }
        return Err(e);
    }
    announce_granted(grefs, backend, kind, index, version)
}

/// [`announce`] of ring pages already granted to `backend` as `grefs`; on
/// refusal the grants are ended.
pub fn announce_granted(
    grefs: Grefs,
    backend: DomainId,
    kind: ipc_abi::proto::control::DeviceKind,
    index: u32,
    version: u32,
) -> Result<(Grefs, u16)> {
    use ipc_abi::proto::control::{ControlMessage, ControlOp, Status};
    let port = crate::hypercall::event_alloc_unbound(DomainId::SELF, backend)?;
    let mut m = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
    m.op = ControlOp::Announce as u32;
    m.kind = kind as u32;
    m.index = index;
    m.peer = backend;
    m.port = u32::from(port);
    m.pages = grefs.len() as u32;
    m.version_or_status = version;
    for (slot, g) in m.grefs.iter_mut().zip(grefs.iter()) {
        *slot = *g;
    }
    let refused = match crate::control::call(m) {
        Ok(a) if a.version_or_status == Status::Ok as u32 => return Ok((grefs, port)),
        // The backend died before it accepted: news of it follows (or came).
        Ok(a) if a.version_or_status == Status::Disconnected as u32 => Error::DeadDomain,
        // Another version of the protocol: nothing this frontend can change.
        Ok(a) if a.version_or_status == Status::OtherVersion as u32 => Error::InvalidArgument,
        Ok(_) => Error::PermissionDenied,
        Err(e) => e,
    };
    // Nothing of a refused announcement stays behind.
    let _ = crate::hypercall::event_close(port);
    for &g in grefs.iter() {
        let _ = crate::hypercall::grant_end(g);
    }
    Err(refused)
}
