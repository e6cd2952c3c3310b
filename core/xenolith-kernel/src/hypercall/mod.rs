//! Hypercall dispatch: decode the call and its arguments from the
//! registers, route it to its family, encode the result.
//!
//! Owns: the mapping from each call to the kernel operation that serves it
//! (one line per call in [`route`], each given its
//! `ipc_abi::hypercall::args`). The families: [`console`], [`vcpu`] (what a
//! domain asks for itself: yield, block, timer, shutdown, suspend, its
//! vCPUs), [`events`], [`grants`], [`control`] (the control domain's
//! lifecycle and inspection calls) and [`devices`] (hardware given to driver
//! domains); who may make which call is [`rights`]. Every pointer goes
//! through `usermem`; every id through `Kernel::lookup`; nothing here
//! trusts a value.

mod console;
mod control;
mod devices;
mod events;
mod grants;
mod hvm;
mod rights;
mod vcpu;

use crate::domain::{Kernel, VcpuRef};
use crate::trace::Gate;
use ipc_abi::hypercall::{args, Args, Error, Hypercall};

/// Handles hypercall `number` with argument registers `registers` (rdi,
/// rsi, rdx, r10, r8, r9) for vCPU `me`; returns what goes back in rax
/// (0 or the error) and rdx (the value).
#[inline(always)]
pub fn dispatch<G: Gate>(
    k: &mut Kernel,
    me: VcpuRef,
    number: u64,
    registers: &[u64; 6],
) -> (u64, u64) {
    let result = match Hypercall::from_number(number) {
        None => Err(Error::UnknownCall),
        Some(call) => {
            trace_event!(<G> "dom{=u32} hypercall {}", k.id_of(me.dom), call);
            route::<G>(k, me, call, registers)
        }
    };
    match result {
        Ok(v) => (0, v),
        Err(e) => (e as u64, 0),
    }
}

/// `match` on a call, each arm given the call's own arguments, decoded from
/// the registers by its `args` struct: `Name(a) => f(a)` cannot hand `f`
/// another call's arguments (it would not compile), and a call without an
/// arm does not compile either.
macro_rules! by_call {
    ($call:expr, $registers:expr, { $($name:ident($a:pat) => $body:expr,)* }) => {
        match $call {
            $(Hypercall::$name => {
                let $a = <args::$name as Args>::from_registers($registers);
                $body
            })*
        }
    };
}

/// Each call to the function that serves it. Always inlined, as are the
/// event path's two calls (`EventSend`, `Block`): the kernel with tracing
/// code holds two copies of this path (`trace::Gate`), and left to itself
/// the compiler inlined them less than in the kernel without, which cost
/// tracing-off 3.6% on the event round trip.
#[inline(always)]
fn route<G: Gate>(
    k: &mut Kernel,
    me: VcpuRef,
    call: Hypercall,
    registers: &[u64; 6],
) -> Result<u64, Error> {
    let caller = me.dom;
    by_call!(call, registers, {
        Null(_) => Ok(0),
        ConsoleWrite(a) => console::write(k, caller, a),
        ConsoleRead(a) => console::read(k, caller, a),
        ConsoleTakeover(_) => crate::domain::devices::take_console(k, caller),
        ConsoleLineDone(a) => console::line_done(k, caller, a),
        DebugKeys(a) => console::debug_keys(k, caller, a),

        Yield(_) => vcpu::yield_cpu(k, me),
        Block(_) => vcpu::block(k, me),
        SetTimer(a) => vcpu::set_timer(k, me, a),
        Shutdown(a) => vcpu::shutdown(k, me, a),
        CurrentCpu(_) => Ok(crate::domain::this_cpu() as u64),
        Suspend(_) => vcpu::suspend(k, me),
        VcpuUp(a) => vcpu::up(k, caller, a),
        VcpuDown(_) => vcpu::down(k, me),
        FaultFixup(a) => vcpu::fault_fixup(k, caller, a),

        EventAllocUnbound(a) => events::alloc_unbound(k, caller, a),
        EventBindInterdomain(a) => events::bind_interdomain(k, caller, a),
        EventBindVirq(a) => events::bind_virq(k, caller, a),
        EventSend(a) => events::send::<G>(k, caller, a),
        EventSendBlock(a) => events::send_block::<G>(k, me, a),
        EventClose(a) => events::close(k, caller, a),
        EventUnmask(a) => events::unmask(k, caller, a),
        EventBindPirq(a) => events::bind_pirq(k, caller, a),
        EventBindMsix(a) => events::bind_msix(k, caller, a),
        EventBindMsi(a) => events::bind_msi(k, caller, a),
        PirqAck(a) => events::pirq_ack(k, caller, a),
        PortSends(a) => events::port_sends(k, caller, a),

        GrantCreate(a) => grants::create(k, caller, a),
        GrantEnd(a) => grants::end(k, caller, a),
        GrantMap(a) => grants::map(k, caller, a),
        GrantUnmap(a) => grants::unmap(k, caller, a),
        GrantCopy(a) => grants::copy(k, caller, a),
        GrantCopyBatch(a) => grants::copy_batch(k, caller, a),
        GrantPeek(a) => grants::peek(k, caller, a),

        DomainCreate(a) => control::create(k, caller, a),
        DomainLoadImage(a) => control::load_image(k, caller, a),
        DomainUnpause(a) => control::unpause(k, caller, a),
        DomainPause(a) => control::pause(k, caller, a),
        DomainDestroy(a) => control::destroy(k, caller, a),
        DomainCrash(a) => control::crash(k, caller, a),
        DomainInfo(a) => control::info(k, caller, a),
        DomainSetCmdline(a) => control::set_cmdline(k, caller, a),
        DomainSetEntry(a) => control::set_entry(k, caller, a),
        DomainPin(a) => control::pin(k, caller, a),
        DomainRename(a) => control::rename(k, caller, a),
        DomainSetSched(a) => control::set_sched(k, caller, a),
        MemoryRelease(a) => control::memory_release(k, caller, a),
        MemoryPopulate(a) => control::memory_populate(k, caller, a),
        DomainSetMaxMem(a) => control::set_max_mem(k, caller, a),
        VcpuInfo(a) => control::vcpu_info(k, caller, a),
        DomainPageRead(a) => control::page_read(k, caller, a),
        DomainPageWrite(a) => control::page_write(k, caller, a),
        DomainGetContext(a) => control::get_context(k, caller, a),
        DomainSetContext(a) => control::set_context(k, caller, a),
        KernelStats(a) => control::kernel_stats(k, caller, a),
        TraceRead(a) => control::trace_read(k, caller, a),
        MachinePowerOff(_) => control::power_off(k, caller),

        DomainAddIoPorts(a) => devices::add_io_ports(k, caller, a),
        DomainAddMmio(a) => devices::add_mmio(k, caller, a),
        DomainAddIrq(a) => devices::add_irq(k, caller, a),
        DomainAddPci(a) => devices::add_pci(k, caller, a),
        DomainAddDma(a) => devices::add_dma(k, caller, a),
        PciConfigRead(a) => crate::domain::pci::config_read(k, caller, a.bdf, a.offset),
        PciConfigWrite(a) => devices::pci_config_write(k, caller, a),
        PciBar(a) => crate::domain::pci::bar_va(k, caller, a.bdf, a.bar),
        DmaPhys(a) => crate::domain::pci::dma_phys(k, caller, a.va),
        HvmSetDeviceModel(a) => hvm::set_device_model(k, caller, a),
        HvmServe(a) => hvm::serve(k, caller, a),
        HvmIoDone(a) => hvm::io_done(k, caller, a),
        HvmInterrupt(a) => hvm::interrupt(k, caller, a),
        HvmMsi(a) => hvm::msi(k, caller, a),
        HvmDoorbell(a) => hvm::doorbell(k, caller, a),
        HvmShutdown(a) => hvm::shutdown(k, caller, a),
        HvmGrant(a) => hvm::grant(k, caller, a),
        HvmGrantEnd(a) => hvm::grant_end(k, caller, a),
    })
}
