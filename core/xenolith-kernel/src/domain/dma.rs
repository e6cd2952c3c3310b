//! DMA isolation: what each driver domain's devices may reach through the
//! IOMMU, kept in step with what the domain holds.
//!
//! Owns: starting the remapping units the DMAR table names (per
//! `iommu=`), giving each domain that is given a PCI function or DMA
//! memory its own device address space (`dma_space.rs`) and pointing its
//! functions' context entries at it; mapping its DMA memory and each grant
//! it maps into its window (read-only grants read-only), and unmapping a
//! grant with the IOTLB emptied **before** the grant table may free or
//! reuse the frame (the order the TLB shootdown keeps); taking it all
//! away when the domain dies; and DMA faults: each reported once on the
//! kernel log, counted in the owner's `domain info`, and the owner crashed
//! (its restart policy then applies). And interrupt remapping: its table,
//! shared by every unit, with the I/O APIC's entries written at boot and
//! an MSI slot's when it is bound (`msi.rs`), each usable only by its
//! source.

use super::dma_space::DmaSpace;
use super::{lifecycle, Kernel, Life};
use crate::arch::vtd;
use crate::cmdline::IommuMode;
use crate::dma_remap::{self as rules, Dmar, DmarError};
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;
use crate::intr_remap::{self as intr, Delivery};
use ipc_abi::domain::{CrashRecord, DmaIsolation};
use ipc_abi::hypercall::Error;

/// The IOMMU as the kernel drives it.
pub struct Iommu {
    dmar: Dmar,
    units: heapless::Vec<vtd::Unit, 4>,
    /// Table depth every unit accepts.
    levels: u8,
    /// Remapping domain numbers every unit supports.
    domains: u32,
    /// The interrupt remapping table, when every unit remaps interrupts.
    interrupts: Option<Frame>,
}

/// At boot: starts the units per `mode`; returns what `host info` says.
pub fn start(
    k: &mut Kernel,
    dmar: Option<Result<Dmar, DmarError>>,
    mode: IommuMode,
) -> DmaIsolation {
    if mode == IommuMode::Off {
        kprintln!("warning: iommu: off (iommu=off): driver domains' devices can reach all memory");
        return DmaIsolation::OffByOption;
    }
    let dmar = match dmar {
        Some(Ok(d)) if !d.units.is_empty() => d,
        Some(Err(e)) => {
            kprintln!("warning: iommu: the DMAR table is malformed ({e:?}): DMA is NOT isolated");
            return DmaIsolation::NoIommu;
        }
        _ => {
            kprintln!(
                "warning: iommu: none found (no DMAR table): driver domains' devices can reach \
                 all memory; DMA is NOT isolated{}",
                if mode == IommuMode::Force {
                    " (iommu=force: no PCI function will be given)"
                } else {
                    ""
                }
            );
            return DmaIsolation::NoIommu;
        }
    };
    let mut units = heapless::Vec::new();
    for (i, u) in dmar.units.iter().enumerate() {
        match vtd::Unit::start(u.base) {
            Ok(unit) => {
                let listed = dmar.scoped.iter().filter(|&&(_, of)| of == i).count();
                kprintln!(
                    "iommu: VT-d unit at {:#x}: DMA translation on ({}-level tables; {} devices listed{})",
                    u.base,
                    unit.caps.levels,
                    listed,
                    if u.include_all {
                        ", and every other"
                    } else {
                        ""
                    }
                );
                let _ = units.push(unit);
            }
            Err(e) => {
                kprintln!(
                    "warning: iommu: VT-d unit at {:#x} not used: {e}; DMA is NOT isolated",
                    u.base
                );
                for started in units.iter() {
                    vtd::Unit::stop(started);
                }
                return DmaIsolation::Failed;
            }
        }
    }
    let levels = units.iter().map(|u| u.caps.levels).min().unwrap_or(3);
    let domains = units.iter().map(|u| u.caps.domains).min().unwrap_or(16);
    let apic = crate::arch::apic::id();
    for u in units.iter() {
        u.fault_interrupt(crate::arch::idt::VECTOR_DMA_FAULT, apic);
    }
    let mut iommu = Iommu {
        dmar,
        units,
        levels,
        domains,
        interrupts: None,
    };
    match remap_interrupts(&mut iommu) {
        Ok(()) => kprintln!(
            "iommu: interrupt remapping on: each device raises only the interrupts given to it"
        ),
        Err(why) => kprintln!(
            "warning: iommu: interrupt remapping off ({why}): a device could raise any interrupt"
        ),
    }
    k.iommu = Some(iommu);
    DmaIsolation::On
}

/// Turns interrupt remapping on in every unit, or in none: a table with
/// entries for the I/O APIC's lines and the watchdog's NMI (usable only by
/// the I/O APIC, by the source id the DMAR table gives it), the units
/// pointed at it, then the I/O APIC's redirection entries switched to
/// name entries. MSI slots get theirs when bound.
fn remap_interrupts(iommu: &mut Iommu) -> Result<(), &'static str> {
    use crate::arch::ioapic;
    if !iommu.units.iter().all(|u| u.caps.interrupt_remapping) {
        return Err("not offered by every unit");
    }
    let ioapic_id = ioapic::id().ok_or("no I/O APIC")?;
    let source = iommu
        .dmar
        .ioapics
        .iter()
        .find(|&&(id, _, _)| id == ioapic_id)
        .map(|&(_, sid, _)| sid)
        .ok_or("the DMAR table does not name the I/O APIC")?;
    let table = crate::arch::memory::with_frames(|f| f.allocate()).ok_or("no memory")?;
    crate::arch::addrspace::zero_frame(table);
    let apic = crate::arch::smp::apic_id(0) as u8;
    for irq in 0..ipc_abi::layout::MAX_IRQS as u8 {
        let (_, _, level) = ioapic::line(irq);
        let vector = Delivery::Vector(ioapic::VECTOR_IRQ_BASE + irq);
        vtd::write_entry(
            table,
            usize::from(irq),
            intr::entry(vector, apic, level, Some(source)),
        );
    }
    let (_, _, level) = ioapic::line(0);
    let nmi = intr::entry(Delivery::Nmi, apic, level, Some(source));
    vtd::write_entry(table, usize::from(intr::NMI_HANDLE), nmi);
    for i in 0..iommu.units.len() {
        if !iommu.units[i].remap_interrupts(table) {
            for u in iommu.units[..=i].iter() {
                u.stop_remapping_interrupts();
            }
            crate::arch::memory::with_frames(|f| f.free(table)).ok();
            return Err("a unit did not turn it on");
        }
    }
    ioapic::use_remapping();
    iommu.interrupts = Some(table);
    Ok(())
}

/// Remapping entry `handle` (an MSI slot's) now raises `vector` on the
/// boot CPU for device `bdf` alone, or (`None`) nothing; the units' entry
/// caches are emptied before this returns. Returns whether interrupts are
/// remapped at all (else the message must carry the vector itself).
pub fn set_interrupt(k: &mut Kernel, handle: u16, raise: Option<(u8, u16)>) -> bool {
    let Some(iommu) = k.iommu.as_mut() else {
        return false;
    };
    let Some(table) = iommu.interrupts else {
        return false;
    };
    let apic = crate::arch::smp::apic_id(0) as u8;
    let entry = raise.map_or([0, 0], |(vector, bdf)| {
        intr::entry(Delivery::Vector(vector), apic, false, Some(bdf))
    });
    vtd::write_entry(table, usize::from(handle), entry);
    for u in iommu.units.iter_mut() {
        u.invalidate_interrupt_entries();
    }
    true
}

/// Whether a PCI function may be given to a domain at all (`iommu=force`
/// refuses when there is no IOMMU).
pub fn may_assign(k: &Kernel) -> bool {
    !k.iommu_force || k.iommu.is_some()
}

/// Domain `index`'s device address space, made if it has none.
fn space<'a>(
    k: &'a mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
) -> Result<Option<(&'a mut DmaSpace, &'a mut Iommu)>, Error> {
    let (d, iommu) = k.domain_and_iommu(index);
    let Some(iommu) = iommu else {
        return Ok(None);
    };
    let (levels, domains) = (iommu.levels, iommu.domains);
    let d = d.ok_or(Error::NoSuchDomain)?;
    if d.dma_space.is_none() {
        // Remapping domain numbers: the slot's index + 1 (0 is reserved
        // on units with caching mode), within what every unit supports.
        let did = u16::try_from(index + 1)
            .ok()
            .filter(|&did| u32::from(did) < domains)
            .ok_or(Error::OutOfResources)?;
        d.dma_space = Some(DmaSpace::new(frames, levels, did).ok_or(Error::OutOfResources)?);
    }
    Ok(d.dma_space.as_mut().zip(Some(iommu)))
}

/// PCI function `bdf` was given to domain `index`: its DMA goes through
/// the domain's device address space from now on.
pub fn attach(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    bdf: u16,
) -> Result<(), Error> {
    let Some((space, iommu)) = space(k, frames, index)? else {
        return Ok(());
    };
    let entry = rules::context_entry(space.root(), space.levels(), space.did);
    let unit = iommu.dmar.unit_for(bdf).ok_or(Error::PermissionDenied)?;
    let unit = iommu.units.get_mut(unit).ok_or(Error::PermissionDenied)?;
    if unit.set_context(frames, bdf, Some(entry)) {
        Ok(())
    } else {
        Err(Error::OutOfResources)
    }
}

/// Page `page` of domain `index`'s DMA memory is `frame`.
pub fn map_dma_page(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    page: u64,
    frame: Frame,
) -> Result<(), Error> {
    let Some((space, _)) = space(k, frames, index)? else {
        return Ok(());
    };
    let iova = rules::dma_iova(page * 4096).ok_or(Error::InvalidArgument)?;
    if space.map(frames, iova, frame, true) {
        Ok(())
    } else {
        Err(Error::OutOfResources)
    }
}

/// Domain `index` mapped `frame` in grant window slot `slot`: its devices
/// may reach it too (written only if the grant allows).
pub fn map_grant(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    slot: u64,
    frame: Frame,
    write: bool,
) -> Result<(), Error> {
    let has_space = k.domain(index).is_some_and(|d| d.dma_space.is_some());
    if !has_space {
        return Ok(());
    }
    let Some((space, _)) = space(k, frames, index)? else {
        return Ok(());
    };
    let iova = rules::grant_iova(slot, 0).ok_or(Error::InvalidArgument)?;
    if space.map(frames, iova, frame, write) {
        Ok(())
    } else {
        Err(Error::OutOfResources)
    }
}

/// Domain `index` is unmapping grant window slot `slot`: no device of it
/// can reach the page once this returns (the IOTLB emptied).
pub fn unmap_grant(k: &mut Kernel, index: usize, slot: u64) {
    let (Some(d), Some(iommu)) = k.domain_and_iommu(index) else {
        return;
    };
    let Some(space) = d.dma_space.as_mut() else {
        return;
    };
    if let Some(iova) = rules::grant_iova(slot, 0) {
        space.unmap(iova);
        for u in iommu.units.iter_mut() {
            u.invalidate_iotlb(Some(space.did));
        }
    }
}

/// The device address of `offset` in domain `index`'s DMA memory, or of
/// grant window slot `slot`, when its devices are behind the IOMMU.
pub fn device_address(k: &Kernel, index: usize, at: Place) -> Option<u64> {
    k.domain(index)?.dma_space.as_ref()?;
    match at {
        Place::Dma(offset) => rules::dma_iova(offset),
        Place::Grant(slot, offset) => rules::grant_iova(slot, offset),
    }
}

/// Where in a driver domain's memory a device address points.
#[derive(Clone, Copy)]
pub enum Place {
    Dma(u64),
    Grant(u64, u64),
}

/// Domain `index` is going (its devices have lost bus mastering): its
/// functions' context entries go, the caches are emptied, and its tables
/// are freed, all before its memory may be reused.
pub fn release(k: &mut Kernel, frames: &mut FrameAllocator, index: usize) {
    let (Some(d), Some(iommu)) = k.domain_and_iommu(index) else {
        return;
    };
    let Some(space) = d.dma_space.take() else {
        return;
    };
    for a in d.pci.iter() {
        if let Some(u) = iommu.dmar.unit_for(a.bdf) {
            if let Some(unit) = iommu.units.get_mut(u) {
                unit.set_context(frames, a.bdf, None);
            }
        }
    }
    for u in iommu.units.iter_mut() {
        u.invalidate_iotlb(Some(space.did));
    }
    space.destroy(frames);
}

/// The fault event interrupt: each recorded fault is said once on the
/// kernel log, counted in its device's owner, and the owner crashed.
pub fn faults(k: &mut Kernel) {
    let Some(iommu) = k.iommu.as_ref() else {
        return;
    };
    let mut found: heapless::Vec<rules::Fault, 16> = heapless::Vec::new();
    for u in iommu.units.iter() {
        for f in u.take_faults() {
            let _ = found.push(f);
        }
    }
    for f in found {
        let owner = k.live().find(|&i| {
            k.domain(i)
                .is_some_and(|d| d.pci.iter().any(|a| a.bdf == f.bdf))
        });
        let (b, dv, func) = (f.bdf >> 8, (f.bdf >> 3) & 0x1f, f.bdf & 7);
        let what = Access(f);
        let Some(i) = owner else {
            kprintln!(
                "iommu: DMA fault: device {b:02x}:{dv:02x}.{func} (no domain's) {what}: {}",
                rules::reason_text(f.reason)
            );
            continue;
        };
        let Some(d) = k.domain_mut(i) else { continue };
        d.dma_faults += 1;
        // Counted always; said once: the rest of the same attempt (a
        // transfer the unit refused piece by piece, before the crash cut
        // the device's bus mastering) comes from a domain already stopped.
        if matches!(d.life, Life::Crashed | Life::Shutdown(_)) {
            continue;
        }
        kprintln!(
            "iommu: DMA fault: domain {} ({}), device {b:02x}:{dv:02x}.{func}, {what}: {}; crashing it",
            d.id,
            d.name,
            rules::reason_text(f.reason)
        );
        let mut c = CrashRecord::EMPTY;
        c.vector = u64::MAX;
        c.address = f.address;
        let mut text: heapless::String<{ ipc_abi::domain::MESSAGE_MAX }> = heapless::String::new();
        let _ = core::fmt::write(
            &mut text,
            format_args!(
                "DMA fault: device {b:02x}:{dv:02x}.{func} {what} ({})",
                rules::reason_text(f.reason)
            ),
        );
        c.message[..text.len()].copy_from_slice(text.as_bytes());
        c.message_len = text.len() as u32;
        lifecycle::stop(k, i, Life::Crashed, Some(c));
    }
}

/// What a refused request was, for the log: "write at 0x...", "read at
/// 0x...", or "interrupt message naming entry N".
struct Access(rules::Fault);

impl core::fmt::Display for Access {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0.interrupt {
            Some(entry) => write!(f, "interrupt message naming entry {entry}"),
            None if self.0.write => write!(f, "write at {:#x}", self.0.address),
            None => write!(f, "read at {:#x}", self.0.address),
        }
    }
}
