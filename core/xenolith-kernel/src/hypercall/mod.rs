//! Hypercall dispatch: decode the registers into an `ipc_abi::hypercall::Call`,
//! route it to its family, encode the result.
//!
//! Owns: the mapping from each call to the kernel operation that serves it
//! (one line per call in [`route`]) and the rules every family shares
//! ([`require_control`], [`other`]). The families: [`console`], [`vcpu`]
//! (what a domain asks for itself: yield, block, timer, shutdown, suspend,
//! its vCPUs), [`events`], [`grants`], [`control`] (the control domain's
//! lifecycle and inspection calls) and [`devices`] (hardware given to
//! driver domains). Every pointer goes through `usermem`; every id through
//! `Kernel::lookup`; nothing here trusts a value.

mod console;
mod control;
mod devices;
mod events;
mod grants;
mod vcpu;

use crate::arch::idt::TrapFrame;
use crate::domain::{Kernel, VcpuRef};
use crate::trace::Gate;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Call, Error};

/// Handles the hypercall in `frame` for vCPU `me`; writes the result into `frame`.
pub fn dispatch<G: Gate>(k: &mut Kernel, me: VcpuRef, frame: &mut TrapFrame) {
    let registers = [
        frame.rdi, frame.rsi, frame.rdx, frame.r10, frame.r8, frame.r9,
    ];
    let result = match Call::decode(frame.rax, &registers) {
        None => Err(Error::UnknownCall),
        Some(call) => {
            trace_event!(<G> "dom{=u32} hypercall {}", k.id_of(me.dom), call.hypercall());
            route::<G>(k, me, call)
        }
    };
    match result {
        Ok(v) => {
            frame.rax = 0;
            frame.rdx = v;
        }
        Err(e) => {
            frame.rax = e as u64;
            frame.rdx = 0;
        }
    }
}

/// Each call to the function that serves it.
fn route<G: Gate>(k: &mut Kernel, me: VcpuRef, call: Call) -> Result<u64, Error> {
    let caller = me.dom;
    match call {
        Call::Null(_) => Ok(0),
        Call::ConsoleWrite(a) => console::write(k, caller, a),
        Call::ConsoleRead(a) => console::read(k, caller, a),
        Call::ConsoleTakeover(_) => crate::domain::devices::take_console(k, caller),
        Call::ConsoleLineDone(a) => console::line_done(k, caller, a),
        Call::DebugKeys(a) => console::debug_keys(k, caller, a),

        Call::Yield(_) => vcpu::yield_cpu(k, me),
        Call::Block(_) => vcpu::block(k, me),
        Call::SetTimer(a) => vcpu::set_timer(k, me, a),
        Call::Shutdown(a) => vcpu::shutdown(k, me, a),
        Call::CurrentCpu(_) => Ok(crate::domain::this_cpu() as u64),
        Call::Suspend(_) => vcpu::suspend(k, me),
        Call::VcpuUp(a) => vcpu::up(k, caller, a),
        Call::FaultFixup(a) => vcpu::fault_fixup(k, caller, a),

        Call::EventAllocUnbound(a) => events::alloc_unbound(k, caller, a),
        Call::EventBindInterdomain(a) => events::bind_interdomain(k, caller, a),
        Call::EventBindVirq(a) => events::bind_virq(k, caller, a),
        Call::EventSend(a) => events::send::<G>(k, caller, a),
        Call::EventClose(a) => events::close(k, caller, a),
        Call::EventUnmask(a) => events::unmask(k, caller, a),
        Call::EventBindPirq(a) => events::bind_pirq(k, caller, a),
        Call::PirqAck(a) => events::pirq_ack(k, caller, a),
        Call::PortSends(a) => events::port_sends(k, caller, a),

        Call::GrantCreate(a) => grants::create(k, caller, a),
        Call::GrantEnd(a) => grants::end(k, caller, a),
        Call::GrantMap(a) => grants::map(k, caller, a),
        Call::GrantUnmap(a) => grants::unmap(k, caller, a),
        Call::GrantCopy(a) => grants::copy(k, caller, a),
        Call::GrantPeek(a) => grants::peek(k, caller, a),

        Call::DomainCreate(a) => control::create(k, caller, a),
        Call::DomainLoadImage(a) => control::load_image(k, caller, a),
        Call::DomainUnpause(a) => control::unpause(k, caller, a),
        Call::DomainPause(a) => control::pause(k, caller, a),
        Call::DomainDestroy(a) => control::destroy(k, caller, a),
        Call::DomainCrash(a) => control::crash(k, caller, a),
        Call::DomainInfo(a) => control::info(k, caller, a),
        Call::DomainSetCmdline(a) => control::set_cmdline(k, caller, a),
        Call::DomainSetEntry(a) => control::set_entry(k, caller, a),
        Call::DomainPin(a) => control::pin(k, caller, a),
        Call::VcpuInfo(a) => control::vcpu_info(k, caller, a),
        Call::DomainPageRead(a) => control::page_read(k, caller, a),
        Call::DomainPageWrite(a) => control::page_write(k, caller, a),
        Call::DomainGetContext(a) => control::get_context(k, caller, a),
        Call::DomainSetContext(a) => control::set_context(k, caller, a),
        Call::KernelStats(a) => control::kernel_stats(k, caller, a),
        Call::TraceRead(a) => control::trace_read(k, caller, a),
        Call::MachinePowerOff(_) => control::power_off(k, caller),

        Call::DomainAddIoPorts(a) => devices::add_io_ports(k, caller, a),
        Call::DomainAddMmio(a) => devices::add_mmio(k, caller, a),
        Call::DomainAddIrq(a) => devices::add_irq(k, caller, a),
        Call::DomainAddPci(a) => devices::add_pci(k, caller, a),
        Call::DomainAddDma(a) => devices::add_dma(k, caller, a),
        Call::PciConfigRead(a) => crate::domain::pci::config_read(k, caller, a.bdf, a.offset),
        Call::PciConfigWrite(a) => devices::pci_config_write(k, caller, a),
        Call::PciBar(a) => crate::domain::pci::bar_va(k, caller, a.bdf, a.bar),
        Call::DmaPhys(a) => crate::domain::pci::dma_phys(k, caller, a.va),
    }
}

/// Refuses a caller that is not the control domain.
fn require_control(k: &Kernel, caller: usize) -> Result<(), Error> {
    match k.domain(caller) {
        Some(d) if d.control => Ok(()),
        _ => Err(Error::PermissionDenied),
    }
}

/// Resolves a target domain for a control operation: never the caller itself.
fn other(k: &Kernel, caller: usize, id: DomainId) -> Result<usize, Error> {
    require_control(k, caller)?;
    let i = k.lookup(id)?;
    if i == caller {
        return Err(Error::InvalidArgument);
    }
    Ok(i)
}

/// Resolves `id` for a call the control domain may make on anyone and any
/// domain on itself.
fn self_or_controlled(k: &Kernel, caller: usize, id: DomainId) -> Result<usize, Error> {
    let t = k.resolve(caller, id)?;
    if t != caller {
        require_control(k, caller)?;
    }
    Ok(t)
}
