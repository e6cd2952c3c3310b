//! Event channels between domains: the rules of binding and closing
//! (pure, host-tested: the model test below drives them over a fake
//! domain table).
//!
//! Owns: opening a port unbound for a named remote, binding to it, and
//! closing either end, which puts the other end back to unbound for the
//! closer (as in Xen, so a restarted peer can bind again); over the
//! [`Domains`] trait, which `domain/events.rs` implements for the kernel
//! (it adds what closing a port does beyond the table: an IRQ line
//! released, the pending bit cleared).

pub mod ports;

use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;
use ports::{PortState, Ports};

/// The domain table as event channels see it.
pub trait Domains {
    /// The slot of a live domain (`DeadDomain`/`NoSuchDomain` otherwise).
    fn lookup(&self, id: DomainId) -> Result<usize, Error>;
    /// The slot of `id` while it exists at all, dying ones included.
    fn existing(&self, id: DomainId) -> Option<usize>;
    fn id(&self, index: usize) -> Option<DomainId>;
    fn ports(&self, index: usize) -> Option<&Ports>;
    fn ports_mut(&mut self, index: usize) -> Option<&mut Ports>;
}

/// Opens a port in `owner`, unbound, waiting for the domain at `remote_index`.
pub fn alloc_unbound<D: Domains>(
    k: &mut D,
    owner: usize,
    remote_index: usize,
) -> Result<u16, Error> {
    let remote_id = k.id(remote_index).ok_or(Error::NoSuchDomain)?;
    k.ports_mut(owner)
        .ok_or(Error::NoSuchDomain)?
        .open(PortState::Unbound { remote: remote_id })
}

/// Binds a new port of `caller` to `remote_port` of `remote`, which must be
/// unbound for the caller.
pub fn bind<D: Domains>(
    k: &mut D,
    caller: usize,
    remote: DomainId,
    remote_port: u64,
) -> Result<u16, Error> {
    let r = k.lookup(remote)?;
    if r == caller {
        return Err(Error::InvalidArgument);
    }
    let caller_id = k.id(caller).ok_or(Error::NoSuchDomain)?;
    let state = k.ports(r).ok_or(Error::NoSuchDomain)?.get(remote_port)?;
    if state != (PortState::Unbound { remote: caller_id }) {
        return Err(Error::PortState);
    }
    let local = k
        .ports_mut(caller)
        .ok_or(Error::NoSuchDomain)?
        .open(PortState::Interdomain {
            remote,
            port: remote_port as u16,
        })?;
    if let Some(peer) = k.ports_mut(r) {
        peer.set(
            remote_port as u16,
            PortState::Interdomain {
                remote: caller_id,
                port: local,
            },
        );
    }
    Ok(local)
}

/// Closes a port of `caller` and returns what it was; an interdomain peer's
/// end goes back to unbound for the caller. A dying peer's too: it still
/// holds its end, and closing that end when it is torn down must not find
/// this port, freed and perhaps opened again for someone else, and undo it.
pub fn close<D: Domains>(k: &mut D, caller: usize, port: u64) -> Result<PortState, Error> {
    let state = k.ports(caller).ok_or(Error::NoSuchDomain)?.get(port)?;
    let caller_id = k.id(caller).ok_or(Error::NoSuchDomain)?;
    if let PortState::Interdomain { remote, port: rp } = state {
        let back = PortState::Interdomain {
            remote: caller_id,
            port: port as u16,
        };
        if let Some(peer) = k.existing(remote).and_then(|r| k.ports_mut(r)) {
            if peer.get(u64::from(rp)) == Ok(back) {
                peer.set(rp, PortState::Unbound { remote: caller_id });
            }
        }
    }
    k.ports_mut(caller)
        .ok_or(Error::NoSuchDomain)?
        .free(port as u16);
    Ok(state)
}

#[cfg(test)]
mod model;
