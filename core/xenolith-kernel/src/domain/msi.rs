//! MSI-X for driver domains' devices, programmed by the kernel: the driver
//! names a table entry of its function and gets an event port; the
//! kernel picks the vector and writes the entry's address and data (the
//! table's pages are never mapped for the driver, so it cannot aim its
//! device's interrupts at any other vector or CPU), turns MSI-X on and
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
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let id = d.id;
    let held = d
        .pci
        .iter()
        .find(|a| u64::from(a.bdf) == bdf)
        .ok_or(Error::PermissionDenied)?;
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
    let slot = (0..MSI_SLOTS)
        .find(|&s| k.irq_owner[MAX_IRQS as usize + s].is_none())
        .ok_or(Error::OutOfResources)?;
    let irq = (MAX_IRQS as usize + slot) as u8;
    let vector = VECTOR_MSI_BASE + slot as u8;
    // Remapped: the message names the slot's remapping entry, which only
    // this function may use; else it carries the vector and CPU itself.
    let (address, data) = if super::dma::set_interrupt(k, u16::from(irq), Some((vector, bdf))) {
        (crate::intr_remap::msi_address(u16::from(irq)), 0)
    } else {
        let apic = crate::arch::smp::apic_id(0);
        (0xfee0_0000 | u64::from(apic) << 12, u32::from(vector))
    };
    if !pci::msix_entry_write(entry_phys, address, data, false) {
        super::dma::set_interrupt(k, u16::from(irq), None);
        return Err(Error::OutOfResources);
    }
    let port = k
        .domain_mut(caller)
        .ok_or(Error::NoSuchDomain)?
        .ports
        .open(PortState::Pirq(irq))?;
    k.irq_owner[usize::from(irq)] = Some((caller, id, port));
    k.msi_entry[slot] = entry_phys;
    let control = pci::read32(bdf, cap);
    pci::write32(bdf, cap, (control | MSIX_ENABLE) & !MSIX_MASK_ALL);
    let command = pci::read32(bdf, 0x04) & 0xffff;
    pci::write32(bdf, 0x04, command | INTX_DISABLE);
    Ok(port)
}

/// Its port closed or its domain gone: the entry is masked, the slot free.
pub fn unbind(k: &mut Kernel, irq: u8) {
    let slot = usize::from(irq) - MAX_IRQS as usize;
    k.irq_owner[usize::from(irq)] = None;
    let entry = core::mem::take(&mut k.msi_entry[slot]);
    if entry != 0 {
        pci::msix_entry_write(entry, 0, 0, true);
    }
    super::dma::set_interrupt(k, u16::from(irq), None);
}

/// A dying domain's functions stop sending MSI-X messages.
pub fn disable_all(k: &Kernel, index: usize) {
    let Some(d) = k.domain(index) else { return };
    for a in d.pci.iter().filter(|a| a.caps.msix != 0) {
        let control = pci::read32(a.bdf, a.caps.msix);
        pci::write32(a.bdf, a.caps.msix, control & !MSIX_ENABLE);
    }
}
