//! PCI functions and DMA memory given to driver domains.
//!
//! Owns: assigning a PCI function to one never-run domain (the control
//! domain asks): its memory BARs mapped into the domain's device window, its
//! I/O BARs given as ports, its INTx line as an IRQ; mediating that domain's
//! configuration-space accesses (the kernel alone has the configuration
//! ports): reads pass through except that BARs are emulated, and writes are
//! limited to the command register's safe bits, BAR sizing and the
//! capability area but MSI and MSI-X, so a driver can neither move a BAR, nor
//! make its device raise an interrupt it was not given, nor touch a function
//! it was not given, nor switch its function's decoding off; stopping the
//! function's DMA when the domain dies; and
//! physically contiguous DMA pages with their physical addresses.
//!
//! Without an IOMMU a driver domain that programs DMA can reach any RAM: it
//! is trusted not to (as a Xen driver domain without VT-d is). What this
//! module guarantees is that no other domain can program a device, and that
//! a dead driver's device stops DMA before its memory is reused.

use super::Kernel;
use crate::arch::addrspace::{Access, Kind};
use crate::arch::pci;
use crate::frame_pool::FrameAllocator;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::{DMA_MAX_PAGES, DMA_WINDOW, GRANT_SLOTS, GRANT_WINDOW, MAX_IRQS, PAGE_SIZE};

use crate::pci_rules::{
    bar_size, filter_write, interrupt_caps, WriteAction, BAR0, BUS_MASTER, COMMAND,
};
use crate::pci_rules::{Assigned, BarWord, MsixLayout};

fn fresh(k: &mut Kernel, index: usize) -> Result<&mut super::Domain, Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if d.started {
        return Err(Error::DomainState);
    }
    Ok(d)
}

/// Gives PCI function `bdf` to a never-run domain.
pub fn assign(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    bdf: u64,
) -> Result<(), Error> {
    let bdf = u16::try_from(bdf).map_err(|_| Error::InvalidArgument)?;
    fresh(k, index)?;
    if !super::dma::may_assign(k) {
        return Err(Error::Disabled);
    }
    if k.live().any(|i| {
        k.domain(i)
            .is_some_and(|d| d.pci.iter().any(|a| a.bdf == bdf))
    }) {
        return Err(Error::DeviceTaken);
    }
    let id = pci::read32(bdf, 0);
    if id & 0xffff == 0xffff {
        return Err(Error::InvalidArgument);
    }
    // Only ordinary functions (header type 0, not a bridge): bridges route
    // other devices' addresses and interrupts.
    let header = (pci::read32(bdf, 0x0c) >> 16) & 0x7f;
    let class = pci::read32(bdf, 0x08) >> 24;
    if header != 0 || class == 0x06 {
        return Err(Error::PermissionDenied);
    }
    // Sized at boot (`pci_inventory`): sizing now would switch its decoding
    // off under the CPUs driving other devices.
    let bars = crate::pci_inventory::bars(bdf)
        .ok_or(Error::OutOfResources)?
        .map(|(raw, size_mask)| BarWord {
            raw,
            size_mask,
            ..BarWord::default()
        });
    let caps = interrupt_caps(pci::read32(bdf, COMMAND), |o| pci::read32(bdf, o));
    let msix = (caps.msix != 0).then(|| MsixLayout::read(caps.msix, |o| pci::read32(bdf, o)));
    let mut held = Assigned {
        bdf,
        bars,
        caps,
        msix,
    };
    map_bars(k, frames, index, &mut held)?;
    // Its DMA reaches only this domain's device address space from now on.
    super::dma::attach(k, frames, index, bdf)?;
    let line = pci::read32(bdf, 0x3c) & 0xff;
    if line != 0 && u64::from(line) < MAX_IRQS {
        // A line another domain holds stays with it (INTx can be shared).
        let _ = super::devices::add_irq(k, index, u64::from(line));
    }
    fresh(k, index)?
        .pci
        .push(held)
        .map_err(|_| Error::OutOfResources)?;
    Ok(())
}

/// Maps memory BARs of at least a page (smaller ones would expose their
/// page's neighbours) and gives I/O BARs as ports.
fn map_bars(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    held: &mut Assigned,
) -> Result<(), Error> {
    let mut i = 0;
    while i < 6 {
        let BarWord { raw, size_mask, .. } = held.bars[i];
        let size = bar_size(raw, size_mask);
        if raw & 1 == 1 {
            if size > 0 {
                super::devices::add_io_ports(k, index, u64::from(raw & !0x3), size)?;
            }
            i += 1;
            continue;
        }
        let wide = raw & 0x6 == 0x4;
        let high = if wide && i < 5 {
            held.bars[i + 1].raw
        } else {
            0
        };
        let phys = u64::from(raw & !0xf) | u64::from(high) << 32;
        if size >= PAGE_SIZE && phys != 0 {
            // The MSI-X table's pages stay the kernel's: a driver writing
            // it could aim its device's interrupts at any vector and CPU.
            let msix = held.msix;
            let hidden = move |page: u64| msix.is_some_and(|m| m.hides(i as u8, page));
            let pages = size.div_ceil(PAGE_SIZE);
            let va = super::devices::add_mmio(k, frames, index, phys, pages, &hidden)?;
            held.bars[i].va = va;
        }
        i += if wide { 2 } else { 1 };
    }
    Ok(())
}

fn held(k: &mut Kernel, caller: usize, bdf: u64) -> Result<&mut Assigned, Error> {
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    d.pci
        .iter_mut()
        .find(|a| u64::from(a.bdf) == bdf)
        .ok_or(Error::PermissionDenied)
}

/// A configuration read by the function's holder.
pub fn config_read(k: &mut Kernel, caller: usize, bdf: u64, offset: u64) -> Result<u64, Error> {
    let offset = u8::try_from(offset).map_err(|_| Error::InvalidArgument)?;
    if !offset.is_multiple_of(4) {
        return Err(Error::InvalidArgument);
    }
    let a = held(k, caller, bdf)?;
    if (BAR0..BAR0 + 24).contains(&offset) {
        let b = a.bars[((offset - BAR0) / 4) as usize];
        return Ok(u64::from(if b.sizing { b.size_mask } else { b.raw }));
    }
    Ok(u64::from(pci::read32(a.bdf, offset)))
}

/// A configuration write by the function's holder, as `filter_write` allows.
pub fn config_write(
    k: &mut Kernel,
    caller: usize,
    bdf: u64,
    offset: u64,
    value: u64,
) -> Result<(), Error> {
    let offset = u8::try_from(offset).map_err(|_| Error::InvalidArgument)?;
    let value = u32::try_from(value).map_err(|_| Error::InvalidArgument)?;
    let a = held(k, caller, bdf)?;
    let raws = a.bars.map(|b| b.raw);
    let current = pci::read32(a.bdf, offset);
    match filter_write(offset, value, current, &raws, a.caps) {
        WriteAction::Device(v) => {
            pci::write32(a.bdf, offset, v);
            Ok(())
        }
        WriteAction::Bar { index, sizing } => {
            a.bars[index].sizing = sizing;
            Ok(())
        }
        WriteAction::Refused => Err(Error::PermissionDenied),
    }
}

/// Where the holder finds memory BAR `bar` mapped.
pub fn bar_va(k: &mut Kernel, caller: usize, bdf: u64, bar: u64) -> Result<u64, Error> {
    let a = held(k, caller, bdf)?;
    match a.bars.get(bar as usize) {
        Some(b) if b.va != 0 => Ok(b.va),
        _ => Err(Error::InvalidArgument),
    }
}

/// A dying domain's functions stop DMA, and the IOMMU forgets them, before
/// its memory is reused.
pub fn release_all(k: &mut Kernel, frames: &mut FrameAllocator, index: usize) {
    super::msi::disable_all(k, index);
    if let Some(d) = k.domain_mut(index) {
        // Bus mastering off stops its DMA. Decoding stays on: switching it
        // off would change the memory map under the CPUs driving other
        // devices (`pci_inventory`), and no domain maps the BARs now.
        for a in d.pci.iter() {
            let command = pci::read32(a.bdf, COMMAND);
            pci::write32(a.bdf, COMMAND, command & 0xffff & !BUS_MASTER);
        }
    }
    super::dma::release(k, frames, index);
    if let Some(d) = k.domain_mut(index) {
        d.pci.clear();
    }
}

/// Gives a never-run domain `pages` physically contiguous, zeroed pages at `DMA_WINDOW`.
pub fn add_dma(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    pages: u64,
) -> Result<(), Error> {
    if pages == 0 || pages > DMA_MAX_PAGES {
        return Err(Error::InvalidArgument);
    }
    let d = fresh(k, index)?;
    if d.dma.is_some() {
        return Err(Error::DomainState);
    }
    let run = frames
        .allocate_contiguous(pages)
        .ok_or(Error::OutOfResources)?;
    for (i, f) in (0..).zip(run.frames()) {
        crate::arch::addrspace::zero_frame(f);
        let access = Access {
            write: true,
            execute: false,
        };
        // Owned: freed with the domain, like the rest of its memory.
        if d.space
            .map(
                frames,
                DMA_WINDOW + i * PAGE_SIZE,
                f.addr(),
                access,
                Kind::Owned,
            )
            .is_err()
        {
            // Frames not yet mapped go back; mapped ones leave with the domain.
            for rest in run.frames().skip(i as usize) {
                let _ = frames.free(rest);
            }
            return Err(Error::OutOfResources);
        }
    }
    d.dma = Some((run.first().addr(), pages));
    for (i, f) in (0..).zip(run.frames()) {
        super::dma::map_dma_page(k, frames, index, i, f)?;
    }
    Ok(())
}

/// The address a device uses for `va` in the caller's DMA window, or for
/// a page of its grant window it mapped (so a device can move a
/// frontend's data in place). Only a domain that holds DMA memory asks.
///
/// Behind the IOMMU it is a device address (`dma_remap`'s layout), which
/// reaches that page and nothing else, with the grant's rights, while it
/// is mapped. Without one it is the physical address: a granted frame
/// stays allocated while mapped, a dying holder's devices lose bus
/// mastering before its windows are unmapped, and read-only grants are
/// refused, since the device could write wherever the address points.
pub fn dma_phys(k: &Kernel, caller: usize, va: u64) -> Result<u64, Error> {
    use super::dma::{device_address, Place};
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let (first, pages) = d.dma.ok_or(Error::PermissionDenied)?;
    let isolated = d.dma_space.is_some();
    if (GRANT_WINDOW..GRANT_WINDOW + GRANT_SLOTS * PAGE_SIZE).contains(&va) {
        let (slot, offset) = ((va - GRANT_WINDOW) / PAGE_SIZE, va % PAGE_SIZE);
        return match d.space.translate(va) {
            Some(_) if isolated => {
                device_address(k, caller, Place::Grant(slot, offset)).ok_or(Error::BadAddress)
            }
            Some((phys, true, Kind::Foreign)) => Ok(phys),
            Some((_, false, Kind::Foreign)) => Err(Error::PermissionDenied),
            _ => Err(Error::BadAddress),
        };
    }
    let offset = va.checked_sub(DMA_WINDOW).ok_or(Error::BadAddress)?;
    if offset >= pages * PAGE_SIZE {
        return Err(Error::BadAddress);
    }
    if isolated {
        return device_address(k, caller, Place::Dma(offset)).ok_or(Error::BadAddress);
    }
    Ok(first + offset)
}
