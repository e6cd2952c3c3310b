//! ACPI tables through the `acpi` crate: the CPUs and I/O APICs of the MADT,
//! and the reset and power-off controls of the FADT and DSDT.
//!
//! Owns: the `AcpiHandler` that maps tables (physmap or device window) and the
//! reduction of the tables to [`Platform`], a plain value the rest of the
//! kernel uses. Tables are read once, at boot.

use super::paging::Caching;
use acpi::address::{AddressSpace, GenericAddress};
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use core::ptr::NonNull;

#[derive(Clone, Copy)]
struct Handler;

impl AcpiHandler for Handler {
    unsafe fn map_physical_region<T>(&self, phys: usize, size: usize) -> PhysicalMapping<Self, T> {
        let va =
            super::memory::map_physical(phys as u64, size as u64, Caching::WriteBack).unwrap_or(0);
        let ptr = NonNull::new(va as *mut T).unwrap_or(NonNull::dangling());
        // SAFETY: `va` maps `size` bytes at `phys` for ever (window mappings are
        // never removed), as PhysicalMapping requires; only an exhausted window
        // (impossible with a few boot tables) would leave the pointer dangling.
        unsafe { PhysicalMapping::new(phys, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// A register the firmware describes: an I/O port or a memory address.
#[derive(Clone, Copy, Debug)]
pub enum Register {
    Port(u16),
    Memory(u64),
}

fn register(g: &GenericAddress) -> Option<Register> {
    match g.address_space {
        AddressSpace::SystemIo if g.address != 0 && g.address <= 0xffff => {
            Some(Register::Port(g.address as u16))
        }
        AddressSpace::SystemMemory if g.address != 0 => Some(Register::Memory(g.address)),
        _ => None,
    }
}

/// What the kernel needs from ACPI.
#[derive(Default)]
pub struct Platform {
    /// APIC ids of enabled (or online-capable) processors.
    pub cpu_apic_ids: heapless::Vec<u32, 256>,
    pub io_apics: usize,
    /// Physical address of the first I/O APIC (GSI base 0).
    pub io_apic_address: Option<u64>,
    /// ISA IRQs that reach the I/O APIC on another GSI or with other polarity.
    pub overrides: heapless::Vec<super::ioapic::Override, 16>,
    /// FADT reset register and value, if the firmware supports reset through it.
    pub reset: Option<(Register, u8)>,
    /// PM1a/PM1b control ports and the S5 sleep types, for soft-off.
    pub pm1a_control: Option<u16>,
    pub pm1b_control: Option<u16>,
    pub s5: Option<(u8, u8)>,
    /// SMI command port and the value that switches the chipset to ACPI mode.
    pub acpi_enable: Option<(u16, u8)>,
    /// The DMA remapping units (VT-d), if the firmware describes any.
    pub dmar: Option<Result<crate::dma_remap::Dmar, crate::dma_remap::DmarError>>,
}

/// The DMAR table's header, for finding it (its body is read as bytes by
/// `dma_remap::parse_dmar`).
#[repr(C, packed)]
struct DmarTable {
    header: acpi::sdt::SdtHeader,
}

// SAFETY: `DmarTable` is the standard header the table starts with, under
// the DMAR signature, as the trait requires.
unsafe impl acpi::AcpiTable for DmarTable {
    const SIGNATURE: acpi::sdt::Signature = acpi::sdt::Signature::DMAR;

    fn header(&self) -> &acpi::sdt::SdtHeader {
        &self.header
    }
}

/// Why ACPI could not be read: the crate's own error.
pub struct AcpiError(acpi::AcpiError);

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Reads the tables found through the RSDP at physical `rsdp`.
pub fn read(rsdp: u64) -> Result<Platform, AcpiError> {
    // SAFETY: `rsdp` is the address of an RSDP (from the multiboot2 RSDP tag,
    // which GRUB copied from the firmware); the crate validates its checksum
    // and every table's before use.
    let tables = unsafe { AcpiTables::from_rsdp(Handler, rsdp as usize) }.map_err(AcpiError)?;
    let mut p = Platform::default();
    if let Ok(madt) = tables.find_table::<Madt>() {
        for entry in madt.get().entries() {
            match entry {
                // flags bit 0: enabled; bit 1: online capable.
                MadtEntry::LocalApic(e) if e.flags & 3 != 0 => {
                    let _ = p.cpu_apic_ids.push(e.apic_id as u32);
                }
                MadtEntry::LocalX2Apic(e) if e.flags & 3 != 0 => {
                    let _ = p.cpu_apic_ids.push(e.x2apic_id);
                }
                MadtEntry::IoApic(e) => {
                    p.io_apics += 1;
                    let (addr, base) = (e.io_apic_address, e.global_system_interrupt_base);
                    if base == 0 && p.io_apic_address.is_none() {
                        p.io_apic_address = Some(addr as u64);
                    }
                }
                MadtEntry::InterruptSourceOverride(e) => {
                    let (irq, gsi, flags) = (e.irq, e.global_system_interrupt, e.flags);
                    let _ = p.overrides.push(super::ioapic::Override {
                        irq,
                        gsi,
                        active_low: flags & 0b11 == 0b11,
                        level: (flags >> 2) & 0b11 == 0b11,
                    });
                }
                _ => {}
            }
        }
    }
    if let Ok(fadt) = tables.find_table::<Fadt>() {
        let fadt = fadt.get();
        let flags = fadt.flags;
        if flags.supports_system_reset_via_fadt() {
            if let Some(reg) = fadt.reset_register().ok().as_ref().and_then(register) {
                p.reset = Some((reg, fadt.reset_value));
            }
        }
        let port_of = |g: Option<GenericAddress>| match g.as_ref().and_then(register) {
            Some(Register::Port(p)) => Some(p),
            _ => None,
        };
        p.pm1a_control = port_of(fadt.pm1a_control_block().ok());
        p.pm1b_control = port_of(fadt.pm1b_control_block().ok().flatten());
        let smi = fadt.smi_cmd_port;
        if smi != 0 && smi <= 0xffff && fadt.acpi_enable != 0 {
            p.acpi_enable = Some((smi as u16, fadt.acpi_enable));
        }
    }
    if let Ok(dmar) = tables.find_table::<DmarTable>() {
        let len = dmar.get().header.length as u64;
        let phys = dmar.physical_start() as u64;
        if let Ok(va) = super::memory::map_physical(phys, len, Caching::WriteBack) {
            // SAFETY: `va` maps the whole DMAR table (its address and length
            // from the header the crate validated), read-only while parsed.
            let body = unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) };
            p.dmar = Some(crate::dma_remap::parse_dmar(body));
        }
    }
    if let Ok(dsdt) = tables.dsdt() {
        let len = dsdt.length as u64;
        if let Ok(va) = super::memory::map_physical(dsdt.address as u64, len, Caching::WriteBack) {
            // SAFETY: `va` maps the DSDT body (address and length from the
            // validated table header) read-only for the duration of the scan.
            let body = unsafe { core::slice::from_raw_parts(va as *const u8, len as usize) };
            p.s5 = crate::aml_s5::find_s5(body);
        }
    }
    Ok(p)
}
