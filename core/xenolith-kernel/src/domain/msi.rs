//! MSI-X and MSI for driver domains' devices, programmed by the kernel: the
//! driver names a table entry of its function (or its MSI capability) and
//! gets an event port; the kernel picks the vector and writes the address
//! and data (the table's pages are never mapped for the driver and the
//! capabilities never writable by it, so it cannot aim its device's
//! interrupts at any other vector or CPU), turns MSI-X (or MSI) on and
//! INTx off. The interrupt comes to the boot CPU and is raised on the
//! port, as an I/O APIC line's is; being edge-triggered it needs no ack.
//! With interrupt remapping on, the message names the slot's remapping
//! entry instead, which the kernel writes for that function alone.
//!
//! Owns: the MSI slots (pirq numbers `MAX_IRQS..MAX_IRQS + MSI_SLOTS`,
//! vectors `VECTOR_MSI_BASE..`), binding one, and letting go of a
//! domain's when it dies.

use super::ports::PortState;
use super::Kernel;
use crate::arch::pci;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::MAX_IRQS;

/// MSI vectors the kernel hands out.
pub const MSI_SLOTS: usize = 32;
/// The first of their vectors (slot `s` is `VECTOR_MSI_BASE + s`).
pub const VECTOR_MSI_BASE: u8 = 0x80;
/// Every pirq number: the I/O APIC's lines, then the MSI slots.
pub const PIRQS: usize = MAX_IRQS as usize + MSI_SLOTS;

/// Message Control (high half of the capability's first dword): enable,
/// function mask.
const MSIX_ENABLE: u32 = 1 << 31;
const MSIX_MASK_ALL: u32 = 1 << 30;
/// MSI's Message Control: enable, the number of messages enabled (bits
/// 22:20; 0 = one), 64-bit addresses, per-vector masking.
const MSI_ENABLE: u32 = 1 << 16;
const MSI_MULTIPLE: u32 = 7 << 20;
const MSI_64BIT: u32 = 1 << 23;
const MSI_MASKABLE: u32 = 1 << 24;

/// What sends an MSI slot's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    None,
    /// An MSI-X table entry, at this physical address.
    MsixEntry(u64),
    /// The MSI capability of a function, at this offset.
    Msi {
        bdf: u16,
        cap: u8,
    },
}
/// Command register: INTx disable.
const INTX_DISABLE: u32 = 1 << 10;

/// Whether pirq `irq` is an MSI slot (not an I/O APIC line).
pub fn is_msi(irq: u8) -> bool {
    usize::from(irq) >= MAX_IRQS as usize && usize::from(irq) < PIRQS
}

/// `EventBindMsix`: entry `entry` of the caller's function `bdf` raises a
/// new port of the caller. Rare: kept out of line, so the hypercall
/// dispatch around the hot calls stays as the compiler inlines it.
#[inline(never)]
pub fn bind(k: &mut Kernel, caller: usize, bdf: u64, entry: u64) -> Result<u16, Error> {
    let (id, held) = function_of(k, caller, bdf)?;
    let (bdf, cap) = (held.bdf, held.caps.msix);
    let layout = held.msix.ok_or(Error::InvalidArgument)?;
    if cap == 0 || entry >= u64::from(layout.entries) {
        return Err(Error::InvalidArgument);
    }
    let (bir, offset, _) = layout.table;
    let bar = *held
        .bars
        .get(usize::from(bir))
        .ok_or(Error::InvalidArgument)?;
    let high = held
        .bars
        .get(usize::from(bir) + 1)
        .filter(|_| bar.raw & 0x6 == 0x4)
        .map_or(0, |b| u64::from(b.raw));
    if bar.raw & 1 != 0 {
        return Err(Error::InvalidArgument);
    }
    let entry_phys = (u64::from(bar.raw & !0xf) | high << 32) + offset + entry * 16;
    let (slot, port, address, data) = open_slot(k, caller, id, bdf)?;
    if !pci::msix_entry_write(entry_phys, address, data, false) {
        close_slot(k, caller, slot, port);
        return Err(Error::OutOfResources);
    }
    k.msi_source[slot] = Source::MsixEntry(entry_phys);
    let control = pci::read32(bdf, cap);
    pci::write32(bdf, cap, (control | MSIX_ENABLE) & !MSIX_MASK_ALL);
    disable_intx(bdf);
    Ok(port)
}

/// `EventBindMsi`: the MSI capability of the caller's function `bdf`
/// raises a new port of the caller (one message). Rare: out of line.
#[inline(never)]
pub fn bind_msi(k: &mut Kernel, caller: usize, bdf: u64) -> Result<u16, Error> {
    let (id, held) = function_of(k, caller, bdf)?;
    let (bdf, cap) = (held.bdf, held.caps.msi);
    // The capability's registers, wherever the device put it: the widest
    // (64-bit, maskable) ends 24 bytes on, within the 256 of the header.
    if cap == 0 || cap > 0xff - 24 || k.msi_source.contains(&Source::Msi { bdf, cap }) {
        return Err(Error::InvalidArgument);
    }
    let (slot, port, address, data) = open_slot(k, caller, id, bdf)?;
    k.msi_source[slot] = Source::Msi { bdf, cap };
    let control = pci::read32(bdf, cap);
    // Off while its message changes; then the address, the data (after a
    // 64-bit address or a 32-bit one), one message, unmasked, on.
    pci::write32(bdf, cap, control & !(MSI_ENABLE | MSI_MULTIPLE));
    pci::write32(bdf, cap + 4, address as u32);
    let data_at = if control & MSI_64BIT != 0 {
        pci::write32(bdf, cap + 8, (address >> 32) as u32);
        cap + 12
    } else {
        cap + 8
    };
    let kept = pci::read32(bdf, data_at) & 0xffff_0000;
    pci::write32(bdf, data_at, kept | data & 0xffff);
    if control & MSI_MASKABLE != 0 {
        pci::write32(bdf, data_at + 4, 0);
    }
    pci::write32(bdf, cap, (control & !MSI_MULTIPLE) | MSI_ENABLE);
    disable_intx(bdf);
    Ok(port)
}

/// The caller's id and its PCI function `bdf` (`PermissionDenied` if it
/// does not hold it).
fn function_of(
    k: &Kernel,
    caller: usize,
    bdf: u64,
) -> Result<(ipc_abi::domain::DomainId, &crate::pci_rules::Assigned), Error> {
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let held = d
        .pci
        .iter()
        .find(|a| u64::from(a.bdf) == bdf)
        .ok_or(Error::PermissionDenied)?;
    Ok((d.id, held))
}

/// Takes a free MSI slot for domain `caller` (`id`) and function `bdf`: a
/// port raised by it, and the message the device is to send. Remapped,
/// the message names the slot's remapping entry, which only this function
/// may use; else it carries the vector and CPU itself.
fn open_slot(
    k: &mut Kernel,
    caller: usize,
    id: ipc_abi::domain::DomainId,
    bdf: u16,
) -> Result<(usize, u16, u64, u32), Error> {
    let slot = (0..MSI_SLOTS)
        .find(|&s| k.irq_owner[MAX_IRQS as usize + s].is_none())
        .ok_or(Error::OutOfResources)?;
    let irq = (MAX_IRQS as usize + slot) as u8;
    let vector = VECTOR_MSI_BASE + slot as u8;
    let port = k
        .domain_mut(caller)
        .ok_or(Error::NoSuchDomain)?
        .ports
        .open(PortState::Pirq(irq))?;
    k.irq_owner[usize::from(irq)] = Some((caller, id, port));
    let (address, data) = if super::dma::set_interrupt(k, u16::from(irq), Some((vector, bdf))) {
        (crate::intr_remap::msi_address(u16::from(irq)), 0)
    } else {
        let apic = crate::arch::smp::apic_id(0);
        (0xfee0_0000 | u64::from(apic) << 12, u32::from(vector))
    };
    Ok((slot, port, address, data))
}

/// Undoes [`open_slot`] for a message that could not be programmed.
fn close_slot(k: &mut Kernel, caller: usize, slot: usize, port: u16) {
    let irq = (MAX_IRQS as usize + slot) as u8;
    k.irq_owner[usize::from(irq)] = None;
    super::dma::set_interrupt(k, u16::from(irq), None);
    if let Some(d) = k.domain_mut(caller) {
        d.ports.free(port);
    }
}

fn disable_intx(bdf: u16) {
    let command = pci::read32(bdf, 0x04) & 0xffff;
    pci::write32(bdf, 0x04, command | INTX_DISABLE);
}

/// Its port closed or its domain gone: the message is masked (an MSI-X
/// entry) or MSI turned off, the remapping entry cleared, the slot free.
pub fn unbind(k: &mut Kernel, irq: u8) {
    let slot = usize::from(irq) - MAX_IRQS as usize;
    k.irq_owner[usize::from(irq)] = None;
    match core::mem::replace(&mut k.msi_source[slot], Source::None) {
        Source::MsixEntry(entry) => {
            pci::msix_entry_write(entry, 0, 0, true);
        }
        Source::Msi { bdf, cap } => {
            let control = pci::read32(bdf, cap);
            pci::write32(bdf, cap, control & !MSI_ENABLE);
        }
        Source::None => {}
    }
    super::dma::set_interrupt(k, u16::from(irq), None);
}

/// A dying domain's functions stop sending MSI-X and MSI messages.
pub fn disable_all(k: &Kernel, index: usize) {
    let Some(d) = k.domain(index) else { return };
    for a in d.pci.iter() {
        if a.caps.msix != 0 {
            let control = pci::read32(a.bdf, a.caps.msix);
            pci::write32(a.bdf, a.caps.msix, control & !MSIX_ENABLE);
        }
        if a.caps.msi != 0 {
            let control = pci::read32(a.bdf, a.caps.msi);
            pci::write32(a.bdf, a.caps.msi, control & !MSI_ENABLE);
        }
    }
}
