//! Event-channel hypercalls: ports between domains, virtual and physical
//! IRQs, and the send counters `toolstack ring list` reads.

use super::rights::{require_control, self_or_controlled};
use crate::domain::{devices, events, Kernel, VcpuRef};
use crate::trace::Gate;
use ipc_abi::hypercall::{args, Error};
use ipc_abi::shared::Virq;

pub fn alloc_unbound(
    k: &mut Kernel,
    caller: usize,
    a: args::EventAllocUnbound,
) -> Result<u64, Error> {
    let owner = self_or_controlled(k, caller, a.owner)?;
    let remote = k.resolve(caller, a.remote)?;
    events::alloc_unbound(k, owner, remote).map(u64::from)
}

pub fn bind_interdomain(
    k: &mut Kernel,
    caller: usize,
    a: args::EventBindInterdomain,
) -> Result<u64, Error> {
    events::bind_interdomain(k, caller, a.remote, a.remote_port).map(u64::from)
}

pub fn bind_virq(k: &mut Kernel, caller: usize, a: args::EventBindVirq) -> Result<u64, Error> {
    let v = Virq::from_number(a.virq).ok_or(Error::InvalidArgument)?;
    events::bind_virq(k, caller, v).map(u64::from)
}

#[inline(always)]
pub fn send<G: Gate>(k: &mut Kernel, caller: usize, a: args::EventSend) -> Result<u64, Error> {
    events::send::<G>(k, caller, a.port).map(|_| 0)
}

/// `EventSend` and then `Block` (inlined, as `send`): the send's error,
/// if any, returns before anything blocks.
#[inline(always)]
pub fn send_block<G: Gate>(
    k: &mut Kernel,
    me: VcpuRef,
    a: args::EventSendBlock,
) -> Result<u64, Error> {
    events::send::<G>(k, me.dom, a.port)?;
    super::vcpu::block(k, me)
}

pub fn close(k: &mut Kernel, caller: usize, a: args::EventClose) -> Result<u64, Error> {
    events::close(k, caller, a.port).map(|_| 0)
}

pub fn unmask(k: &mut Kernel, caller: usize, a: args::EventUnmask) -> Result<u64, Error> {
    events::unmask(k, caller, a.port).map(|_| 0)
}

pub fn bind_pirq(k: &mut Kernel, caller: usize, a: args::EventBindPirq) -> Result<u64, Error> {
    devices::bind_pirq(k, caller, a.irq).map(u64::from)
}

pub fn bind_msix(k: &mut Kernel, caller: usize, a: args::EventBindMsix) -> Result<u64, Error> {
    crate::domain::msi::bind(k, caller, a.bdf, a.entry).map(u64::from)
}

pub fn bind_msi(k: &mut Kernel, caller: usize, a: args::EventBindMsi) -> Result<u64, Error> {
    crate::domain::msi::bind_msi(k, caller, a.bdf).map(u64::from)
}

pub fn pirq_ack(k: &mut Kernel, caller: usize, a: args::PirqAck) -> Result<u64, Error> {
    devices::ack(k, caller, a.port).map(|_| 0)
}

pub fn port_sends(k: &mut Kernel, caller: usize, a: args::PortSends) -> Result<u64, Error> {
    require_control(k, caller)?;
    let dom = k.resolve(caller, a.dom)?;
    events::sends(k, dom, a.port)
}
