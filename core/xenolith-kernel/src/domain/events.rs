//! Event channels between domains, and virtual IRQs.
//!
//! Owns: the cross-domain port operations — allocate unbound, bind, send,
//! close, unmask — and raising an event: set the pending bit in the target's
//! event page and, if the port is unmasked and the vCPU blocked, wake it.
//! The binding and closing rules are `crate::channels` (pure,
//! model-tested); this module gives them the kernel's domain table.

use super::ports::PortState;
use super::shared_pages;
use super::{Kernel, Life, VcpuRef};
use crate::trace::{Checked, Gate};
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;
use ipc_abi::shared::Virq;

impl crate::channels::Domains for Kernel {
    fn lookup(&self, id: DomainId) -> Result<usize, Error> {
        Kernel::lookup(self, id)
    }

    fn existing(&self, id: DomainId) -> Option<usize> {
        Kernel::existing(self, id)
    }

    fn id(&self, index: usize) -> Option<DomainId> {
        self.domain(index).map(|d| d.id)
    }

    fn ports(&self, index: usize) -> Option<&super::ports::Ports> {
        self.domain(index).map(|d| &d.ports)
    }

    fn ports_mut(&mut self, index: usize) -> Option<&mut super::ports::Ports> {
        self.domain_mut(index).map(|d| &mut d.ports)
    }
}

/// Opens a port in `owner`, unbound, waiting for the domain at `remote_index`.
pub fn alloc_unbound(k: &mut Kernel, owner: usize, remote_index: usize) -> Result<u16, Error> {
    crate::channels::alloc_unbound(k, owner, remote_index)
}

/// Binds a new port of `caller` to `remote_port` of `remote`, which must be unbound for the caller.
pub fn bind_interdomain(
    k: &mut Kernel,
    caller: usize,
    remote: DomainId,
    remote_port: u64,
) -> Result<u16, Error> {
    crate::channels::bind(k, caller, remote, remote_port)
}

/// Binds a new port of `caller` to a VIRQ. Console and domain-state VIRQs are for the control domain.
pub fn bind_virq(k: &mut Kernel, caller: usize, virq: Virq) -> Result<u16, Error> {
    let log_reader = virq == Virq::ConsoleLog && super::devices::holds_com1(k, caller);
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    // Anyone may bind its timer, and the device-model VIRQ (raised only to
    // a domain serving an HVM guest); the rest need the control right or COM1.
    let anyone = matches!(virq, Virq::Timer | Virq::DeviceModel);
    if !anyone && !d.control && !log_reader {
        return Err(Error::PermissionDenied);
    }
    if d.ports.virq_port(virq).is_some() {
        return Err(Error::PortState);
    }
    d.ports.open(PortState::Virq(virq))
}

/// Signals the peer of an interdomain port. Always inlined: the hypercall
/// path is compiled traced and quiet (`trace::Gate`), and the quiet one
/// must stay the code of a kernel without tracing.
#[inline(always)]
pub fn send<G: Gate>(k: &mut Kernel, caller: usize, port: u64) -> Result<(), Error> {
    let state = k
        .domain(caller)
        .ok_or(Error::NoSuchDomain)?
        .ports
        .get(port)?;
    match state {
        PortState::Interdomain { remote, port: rp } => {
            let r = k.lookup(remote)?;
            trace_event!(
                <G> "dom{=u32} port {=u16} sends to dom{=u32} port {=u16}",
                k.id_of(caller),
                port as u16,
                remote.0,
                rp
            );
            raise::<G>(k, r, rp);
            if let Some(d) = k.domain_mut(caller) {
                d.ports.count_send(port as u16);
            }
            Ok(())
        }
        _ => Err(Error::PortState),
    }
}

/// Notifications sent from `dom`'s `port` and from its interdomain peer's
/// end, packed `sent_here | sent_by_peer << 32` (for `ring list`).
pub fn sends(k: &Kernel, dom: usize, port: u64) -> Result<u64, Error> {
    let d = k.domain(dom).ok_or(Error::NoSuchDomain)?;
    let here = u64::from(d.ports.sent(port as u16));
    let peer = match d.ports.get(port)? {
        PortState::Interdomain { remote, port: rp } => k
            .lookup(remote)
            .ok()
            .and_then(|r| k.domain(r))
            .map_or(0, |p| u64::from(p.ports.sent(rp))),
        _ => 0,
    };
    Ok(here | peer << 32)
}

/// Closes a port of `caller` (the rules: `channels::close`), releasing an
/// IRQ line bound to it and clearing its pending bit.
pub fn close(k: &mut Kernel, caller: usize, port: u64) -> Result<(), Error> {
    let state = crate::channels::close(k, caller, port)?;
    if let PortState::Pirq(irq) = state {
        super::devices::unbind_pirq(k, irq);
    }
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    shared_pages::clear(d.event_page, port as u16);
    Ok(())
}

/// Closes every port of a dying domain.
pub fn close_all(k: &mut Kernel, index: usize) {
    let mut open: heapless::Vec<u16, { ipc_abi::shared::PORTS }> = heapless::Vec::new();
    if let Some(d) = k.domain(index) {
        for (p, _) in d.ports.iter() {
            let _ = open.push(p);
        }
    }
    for p in open {
        let _ = close(k, index, p as u64);
    }
    // Ports of others that were waiting for this domain stay unbound for a
    // stale id; binding with them fails with PortState until they are closed.
}

/// Unmasks a port of `caller` (inlined, as `send`).
#[inline(always)]
pub fn unmask(k: &mut Kernel, caller: usize, port: u64) -> Result<(), Error> {
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    d.ports.get(port)?;
    shared_pages::unmask(d.event_page, port as u16);
    Ok(())
}

/// Makes `port` of domain `index` pending and wakes the domain's blocked
/// vCPUs if it should (they share the event page: any may handle it).
pub fn raise<G: Gate>(k: &mut Kernel, index: usize, port: u16) {
    let Some(d) = k.domain(index) else { return };
    if !shared_pages::set_pending(d.event_page, port) {
        return;
    }
    // Which vCPUs wait, in one pass over the domain's own (usually none:
    // a peer that runs finds the bit itself).
    let mut waiting = 0u64;
    let mut cpus = [0usize; super::MAX_VCPUS];
    for (i, v) in d.existing_vcpus().enumerate().take(super::MAX_VCPUS) {
        waiting |= u64::from(v.blocked) << i;
        cpus[i] = v.cpu;
    }
    if waiting == 0 {
        return;
    }
    let running = d.life == Life::Running;
    while waiting != 0 {
        let vcpu = waiting.trailing_zeros() as usize % super::MAX_VCPUS;
        waiting &= waiting - 1;
        let at = VcpuRef { dom: index, vcpu };
        let min = super::lifecycle::wake_base_on(k, cpus[vcpu]);
        if let Some(v) = k.vcpu_mut(at) {
            v.blocked = false;
            if running {
                v.sched.wake(min);
                let cpus = v.resched_mask();
                trace_event!(<G> "dom{=u32} vcpu {=usize} wakes", k.id_of(index), vcpu);
                k.kick_cpus(cpus);
            }
        }
    }
}

/// Raises a VIRQ in a domain, if it bound a port to it.
pub fn raise_virq(k: &mut Kernel, index: usize, virq: Virq) {
    if let Some(port) = k.domain(index).and_then(|d| d.ports.virq_port(virq)) {
        trace_event!(
            "virq {} to dom{=u32} port {=u16}",
            virq,
            k.id_of(index),
            port
        );
        raise::<Checked>(k, index, port);
    }
}

/// Open ports over all domains (for leak checks).
pub fn open_ports(k: &Kernel) -> u64 {
    k.live()
        .filter_map(|i| k.domain(i))
        .map(|d| d.ports.open_count() as u64)
        .sum()
}
