//! Hardware given to a domain: I/O ports, device memory and physical IRQs.
//!
//! Owns: the control domain's grants of hardware to a domain (only before it
//! first runs), the I/O bitmap switch when the running domain changes, and
//! physical IRQ delivery: an IRQ masks its line and raises the bound port;
//! the domain's acknowledgement unmasks it. Nothing here lets a domain reach
//! RAM or a device it was not given.

use super::ports::PortState;
use super::{events, Kernel};
use crate::arch::addrspace::{Access, Kind};
use crate::arch::{gdt, ioapic};
use crate::frame_pool::FrameAllocator;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::{DEVICE_WINDOW, DEVICE_WINDOW_SIZE, MAX_IRQS, PAGE_SIZE};

fn fresh(k: &mut Kernel, index: usize) -> Result<&mut super::Domain, Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if d.started {
        return Err(Error::DomainState);
    }
    Ok(d)
}

/// Gives ports `[first, first + count)` to a domain that has not run yet.
pub fn add_io_ports(k: &mut Kernel, index: usize, first: u64, count: u64) -> Result<(), Error> {
    let range = crate::checks::io_ports(first, count)?;
    let d = fresh(k, index)?;
    d.io_ports.push(range).map_err(|_| Error::OutOfResources)?;
    forget_io_owner(k, index);
    Ok(())
}

/// Maps device memory `[phys, phys + pages * 4096)` into a domain that has not run yet.
pub fn add_mmio(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    phys: u64,
    pages: u64,
    hidden: &dyn Fn(u64) -> bool,
) -> Result<u64, Error> {
    let (_, end) = crate::checks::device_range(phys, pages)?;
    let len = end - phys;
    // Device memory only: never a byte of RAM the allocator manages or the
    // kernel uses, nor the interrupt controllers, timers and firmware.
    if crate::arch::memory::overlaps_ram(phys, end)
        || crate::checks::kernel_device_memory(phys, end)
    {
        return Err(Error::PermissionDenied);
    }
    let d = fresh(k, index)?;
    let va = d.device_next;
    if va + len > DEVICE_WINDOW + DEVICE_WINDOW_SIZE {
        return Err(Error::OutOfResources);
    }
    // Hidden pages (`hidden(offset)`) keep their place, unmapped.
    for i in (0..pages).filter(|&i| !hidden(i * PAGE_SIZE)) {
        d.space
            .map(
                frames,
                va + i * PAGE_SIZE,
                phys + i * PAGE_SIZE,
                Access {
                    write: true,
                    execute: false,
                },
                Kind::Borrowed,
            )
            .map_err(|_| Error::OutOfResources)?;
    }
    d.device_next = va + len;
    Ok(va)
}

/// Lets a domain that has not run yet bind physical IRQ `irq`.
pub fn add_irq(k: &mut Kernel, index: usize, irq: u64) -> Result<(), Error> {
    if irq >= MAX_IRQS {
        return Err(Error::InvalidArgument);
    }
    if k.irq_owner[irq as usize].is_some()
        || k.live()
            .any(|i| k.domain(i).is_some_and(|d| d.irqs & (1 << irq) != 0))
    {
        return Err(Error::PortState);
    }
    fresh(k, index)?.irqs |= 1 << irq;
    Ok(())
}

/// Binds a port of `caller` to an IRQ it was given and unmasks the line.
pub fn bind_pirq(k: &mut Kernel, caller: usize, irq: u64) -> Result<u16, Error> {
    if irq >= MAX_IRQS {
        return Err(Error::InvalidArgument);
    }
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    if d.irqs & (1 << irq) == 0 {
        return Err(Error::PermissionDenied);
    }
    let id = d.id;
    if k.irq_owner[irq as usize].is_some() {
        return Err(Error::PortState);
    }
    let port = k
        .domain_mut(caller)
        .ok_or(Error::NoSuchDomain)?
        .ports
        .open(PortState::Pirq(irq as u8))?;
    k.irq_owner[irq as usize] = Some((caller, id, port));
    ioapic::route(irq as u8, false);
    Ok(port)
}

/// The domain handled the IRQ on `port`: unmask its line.
pub fn ack(k: &mut Kernel, caller: usize, port: u64) -> Result<(), Error> {
    match k
        .domain(caller)
        .ok_or(Error::NoSuchDomain)?
        .ports
        .get(port)?
    {
        PortState::Pirq(irq) => {
            // An MSI is an edge: nothing to unmask.
            if !super::msi::is_msi(irq) {
                ioapic::set_masked(irq, false);
            }
            Ok(())
        }
        _ => Err(Error::PortState),
    }
}

/// A physical IRQ arrived: mask it until acknowledged and tell its owner.
pub fn irq(k: &mut Kernel, irq: u8) {
    if !super::msi::is_msi(irq) {
        ioapic::set_masked(irq, true);
    }
    if let Some((index, id, port)) = k.irq_owner.get(irq as usize).copied().flatten() {
        if k.domain(index).is_some_and(|d| d.id == id) {
            events::raise::<crate::trace::Checked>(k, index, port);
            return;
        }
    }
    stray(irq);
}

/// An IRQ nobody is bound to arrived (a device raising what it was not
/// given, or a line left asserted): said once per IRQ on the kernel log.
#[inline(never)]
fn stray(irq: u8) {
    use core::sync::atomic::{AtomicU64, Ordering};
    static SAID: AtomicU64 = AtomicU64::new(0);
    let bit = 1u64 << (irq % 64);
    if SAID.fetch_or(bit, Ordering::Relaxed) & bit == 0 {
        let vector = if super::msi::is_msi(irq) {
            super::msi::VECTOR_MSI_BASE + (irq - MAX_IRQS as u8)
        } else {
            ioapic::VECTOR_IRQ_BASE + irq
        };
        kprintln!("interrupt: IRQ {irq} (vector {vector:#x}) arrived with nobody bound to it");
    }
}

/// Unbinds a port bound to an IRQ (when it is closed).
pub fn unbind_pirq(k: &mut Kernel, irq: u8) {
    if super::msi::is_msi(irq) {
        return super::msi::unbind(k, irq);
    }
    if let Some(slot) = k.irq_owner.get_mut(irq as usize) {
        *slot = None;
        ioapic::set_masked(irq, true);
    }
}

/// A dying domain gives back every IRQ (masked) and its I/O ports.
pub fn release_all(k: &mut Kernel, index: usize) {
    for irq in 0..super::msi::PIRQS {
        if k.irq_owner[irq].is_some_and(|(i, _, _)| i == index) {
            unbind_pirq(k, irq as u8);
        }
    }
    forget_io_owner(k, index);
}

/// No CPU's I/O bitmap keeps allowing domain `index`'s ports: this CPU's
/// is cleared now, another's before its next domain runs.
fn forget_io_owner(k: &mut Kernel, index: usize) {
    let me = super::this_cpu();
    for (cpu, state) in k.cpus_mut().iter_mut().enumerate() {
        if state.io_owner != Some(index) {
            continue;
        }
        if cpu == me {
            gdt::set_io_ports(me, &[]);
            state.io_owner = None;
        } else {
            state.io_owner = Some(super::IO_STALE);
        }
    }
}

/// Before returning to ring 3 in domain `index`: make the I/O bitmap its own.
pub fn switch_io(k: &mut Kernel, index: usize) {
    let wanted = k.domain(index).is_some_and(|d| !d.io_ports.is_empty());
    match (k.cpu().io_owner, wanted) {
        (Some(o), _) if o == index => {}
        (None, false) => {}
        (_, true) => {
            if let Some(d) = k.domain(index) {
                gdt::set_io_ports(super::this_cpu(), &d.io_ports);
            }
            k.cpu_mut().io_owner = Some(index);
        }
        (Some(_), false) => {
            gdt::set_io_ports(super::this_cpu(), &[]);
            k.cpu_mut().io_owner = None;
        }
    }
}

/// Whether domain `index` was given all of COM1's ports.
pub fn holds_com1(k: &Kernel, index: usize) -> bool {
    let base = crate::console::com1_base() as u32;
    k.domain(index).is_some_and(|d| {
        d.io_ports
            .iter()
            .any(|&(first, count)| first as u32 <= base && first as u32 + count as u32 >= base + 8)
    })
}

/// The console domain takes COM1 over; the kernel log goes through it from
/// now on. Returns the number of the first kernel log line it must print.
pub fn take_console(k: &mut Kernel, index: usize) -> Result<u64, Error> {
    if !holds_com1(k, index) {
        return Err(Error::PermissionDenied);
    }
    if k.console_owner.is_some_and(|o| o != index) {
        return Err(Error::PortState);
    }
    let id = k.domain(index).map(|d| d.id);
    crate::kprintln!(
        "console: domain {} takes COM1 over; the kernel log goes through it",
        id.map_or(0, |i| i.index())
    );
    k.console_owner = Some(index);
    crate::console::set_direct_com1(false);
    k.console_unread = crate::klog::next_seq();
    Ok(k.console_unread)
}

/// The console domain ends the line it wrote on COM1 and stores `value` at
/// `addr` in its memory, in one step: a domain dies only between its own
/// instructions, and this call is one, so either the line has its end and
/// the mark, or neither (see `Hypercall::ConsoleLineDone`). The mark is
/// stored first: a bad address changes nothing.
pub fn console_line_done(k: &Kernel, index: usize, addr: u64, value: u64) -> Result<(), Error> {
    if k.console_owner != Some(index) {
        return Err(Error::PermissionDenied);
    }
    if !addr.is_multiple_of(8) {
        return Err(Error::InvalidArgument);
    }
    let d = k.domain(index).ok_or(Error::NoSuchDomain)?;
    crate::usermem::copy_to(&d.space, addr, &value.to_le_bytes())?;
    crate::console::end_line_on_com1();
    Ok(())
}

/// The console domain stopped: the kernel writes COM1 itself again, first
/// the log lines the domain had not read (so none is lost).
pub fn release_console(k: &mut Kernel, index: usize) {
    if k.console_owner == Some(index) {
        k.console_owner = None;
        crate::console::set_direct_com1(true);
        let end = crate::klog::next_seq();
        let mut seq = k.console_unread;
        let mut text = [0u8; crate::klog::LINE_MAX];
        while let Some((at, n)) = crate::klog::read(seq, &mut text).filter(|&(at, _)| at < end) {
            if at > seq {
                crate::kprintln!("console: {} kernel log lines lost", at - seq);
            }
            crate::console::reprint_on_com1(&text[..n]);
            seq = at + 1;
        }
        crate::kprintln!(
            "console: the console domain stopped; the kernel writes COM1 itself again"
        );
    }
}
