//! DMA remapping (Intel VT-d) as pure rules: reading the ACPI DMAR table,
//! the layout of device addresses the kernel hands out, the encoding of
//! root, context and second-level entries, and the decoding of a fault
//! record. Host-tested; the registers are `arch/vtd.rs`'s, the tables of
//! each driver domain `domain/dma_space.rs`'s.
//!
//! Owns: what a device of a driver domain may address. Device addresses
//! (I/O virtual addresses) are not physical addresses: a driver domain's
//! DMA memory is at [`DMA_IOVA`] onwards and each slot of its grant window
//! at [`GRANT_IOVA`] + slot × 4 KiB, whatever frames lie behind them. So a
//! device can reach exactly the pages its domain has there, and an address
//! a driver makes up reaches nothing.

use ipc_abi::layout::{DMA_MAX_PAGES, GRANT_SLOTS, PAGE_SIZE};

/// Where a driver domain's DMA memory starts in its devices' address space.
pub const DMA_IOVA: u64 = 1 << 32;
/// Where its grant window's slots start there.
pub const GRANT_IOVA: u64 = 2 << 32;

// The DMA memory ends before the grant window starts, both lie within
// the narrowest tables (3 levels: 39 bits), and neither reaches down to
// the interrupt range (0xfee00000-0xfeefffff), which is never translated.
const _: () = assert!(DMA_IOVA + DMA_MAX_PAGES * PAGE_SIZE <= GRANT_IOVA);
const _: () = assert!(GRANT_IOVA + GRANT_SLOTS * PAGE_SIZE <= 1 << 39);
const _: () = assert!(DMA_IOVA > 0xfeef_ffff);

/// The device address of byte `offset` of the DMA memory.
pub fn dma_iova(offset: u64) -> Option<u64> {
    (offset < DMA_MAX_PAGES * PAGE_SIZE).then_some(DMA_IOVA + offset)
}

/// The device address of byte `offset` of grant window slot `slot`.
pub fn grant_iova(slot: u64, offset: u64) -> Option<u64> {
    (slot < GRANT_SLOTS && offset < PAGE_SIZE).then_some(GRANT_IOVA + slot * PAGE_SIZE + offset)
}

/// Register offsets (VT-d specification, chapter 10).
pub mod reg {
    pub const CAP: usize = 0x08;
    pub const ECAP: usize = 0x10;
    pub const GCMD: usize = 0x18;
    pub const GSTS: usize = 0x1c;
    pub const RTADDR: usize = 0x20;
    pub const CCMD: usize = 0x28;
    pub const FSTS: usize = 0x34;
    pub const FECTL: usize = 0x38;
    pub const FEDATA: usize = 0x3c;
    pub const FEADDR: usize = 0x40;
    pub const FEUADDR: usize = 0x44;
    /// The invalidation queue: its tail and address.
    pub const IQT: usize = 0x88;
    pub const IQA: usize = 0x90;
    /// The interrupt remapping table's address.
    pub const IRTA: usize = 0xb8;

    /// GCMD/GSTS: translation enable, root table pointer set, queued
    /// invalidation enable, interrupt remapping enable, interrupt table
    /// pointer set.
    pub const TE: u32 = 1 << 31;
    pub const SRTP: u32 = 1 << 30;
    pub const QIE: u32 = 1 << 26;
    pub const IRE: u32 = 1 << 25;
    pub const SIRTP: u32 = 1 << 24;
    /// Compatibility-format interrupts allowed: never set by the kernel (a
    /// message in the old format would bypass interrupt remapping).
    pub const CFI: u32 = 1 << 23;
    /// GCMD bits a command must not repeat from GSTS: the one-shot
    /// commands, and CFI, which a command thereby turns off.
    pub const ONE_SHOT: u32 = SRTP | 1 << 29 | 1 << 27 | SIRTP | CFI;

    /// CCMD: invalidate, global granularity.
    pub const CCMD_ICC: u64 = 1 << 63;
    pub const CCMD_GLOBAL: u64 = 1 << 61;
    /// IOTLB register: invalidate, global / domain-selective granularity,
    /// drain reads and writes.
    pub const IOTLB_IVT: u64 = 1 << 63;
    pub const IOTLB_GLOBAL: u64 = 1 << 60;
    pub const IOTLB_DOMAIN: u64 = 2 << 60;
    pub const IOTLB_DRAIN: u64 = 3 << 48;

    /// FSTS: primary fault overflow, primary pending fault, invalidation
    /// queue error.
    pub const FSTS_PFO: u32 = 1;
    pub const FSTS_PPF: u32 = 1 << 1;
    pub const FSTS_IQE: u32 = 1 << 4;
}

/// Invalidation queue descriptors (128-bit; specification 6.5.2), and the
/// queue the kernel gives a unit: one page, 256 descriptors.
pub mod queue {
    /// IQA for a queue at `page`: 128-bit descriptors, 256 of them.
    pub fn address(page: u64) -> u64 {
        page & !0xfff
    }

    /// Descriptors in the queue's page.
    pub const LEN: usize = 256;

    /// Empty the context cache, for every device.
    pub fn contexts() -> [u64; 2] {
        [0x1 | 1 << 4, 0]
    }

    /// Empty the IOTLB of remapping domain `did`, or of all (`None`),
    /// draining reads and writes in flight.
    pub fn iotlb(did: Option<u16>) -> [u64; 2] {
        let granularity = match did {
            Some(d) => 2 << 4 | u64::from(d) << 16,
            None => 1 << 4,
        };
        [0x2 | granularity | 1 << 6 | 1 << 7, 0]
    }

    /// Empty the interrupt entry cache, every entry.
    pub fn interrupt_entries() -> [u64; 2] {
        [0x4, 0]
    }

    /// When every descriptor before it is done, write `data` at physical
    /// `status` (4-byte aligned).
    pub fn wait(status: u64, data: u32) -> [u64; 2] {
        [0x5 | 1 << 5 | u64::from(data) << 32, status & !3]
    }
}

/// What CAP and ECAP say of a remapping unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Second-level table depth the kernel uses: 3 (39-bit) or 4 (48-bit).
    pub levels: u8,
    /// Where the IOTLB registers are.
    pub iotlb: usize,
    /// Where the fault recording registers are, and how many.
    pub fault_records: usize,
    pub fault_count: usize,
    /// Whether the unit writes its tables back to memory without snooping
    /// caches (then every table write must be flushed: not supported).
    pub coherent: bool,
    /// Remapping domain numbers it supports (CAP.ND: 2^(4 + 2 ND)).
    pub domains: u32,
    /// It offers queued invalidation (ECAP.QI) and interrupt remapping
    /// (ECAP.IR; which the specification only offers with QI).
    pub queued: bool,
    pub interrupt_remapping: bool,
}

/// Reads CAP and ECAP; `None` for a unit the kernel cannot drive (no
/// 3- or 4-level second-level tables).
pub fn caps(cap: u64, ecap: u64) -> Option<Caps> {
    let sagaw = (cap >> 8) & 0x1f;
    let levels = if sagaw & 0b00100 != 0 {
        4
    } else if sagaw & 0b00010 != 0 {
        3
    } else {
        return None;
    };
    Some(Caps {
        levels,
        iotlb: ((ecap >> 8) & 0x3ff) as usize * 16,
        fault_records: ((cap >> 24) & 0x3ff) as usize * 16,
        fault_count: ((cap >> 40) & 0xff) as usize + 1,
        coherent: ecap & 1 != 0,
        domains: 1 << (4 + 2 * (cap & 7).min(6)),
        queued: ecap & 1 << 1 != 0,
        interrupt_remapping: ecap & 1 << 3 != 0 && ecap & 1 << 1 != 0,
    })
}

/// A root entry for a bus whose context table is at `context`.
pub fn root_entry(context: u64) -> [u64; 2] {
    [context & !0xfff | 1, 0]
}

/// The context table a root entry points at, if it is present.
pub fn root_context(entry: [u64; 2]) -> Option<u64> {
    (entry[0] & 1 != 0).then_some(entry[0] & 0x000f_ffff_ffff_f000)
}

/// A context entry: translated through the second-level table at `table`
/// (`levels` deep) under remapping domain number `did`.
pub fn context_entry(table: u64, levels: u8, did: u16) -> [u64; 2] {
    let aw = u64::from(levels) - 2;
    [table & !0xfff | 1, aw | u64::from(did) << 8]
}

/// Second-level entry bits: read and write.
pub const SL_READ: u64 = 1;
pub const SL_WRITE: u64 = 1 << 1;
/// The address bits of a second-level entry.
pub const SL_ADDR: u64 = 0x000f_ffff_ffff_f000;

/// An entry pointing at a lower table (every right: the leaf decides).
pub fn sl_table(phys: u64) -> u64 {
    phys & SL_ADDR | SL_READ | SL_WRITE
}

/// A leaf mapping a 4 KiB frame, readable, and writable if `write`.
pub fn sl_leaf(phys: u64, write: bool) -> u64 {
    phys & SL_ADDR | SL_READ | if write { SL_WRITE } else { 0 }
}

/// The index into the table of `level` (1 = the last) for `iova`.
pub fn sl_index(iova: u64, level: u8) -> usize {
    ((iova >> (12 + 9 * (u32::from(level) - 1))) & 511) as usize
}

/// A DMA or interrupt message the unit refused, from a fault recording
/// register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Bus, device and function of the requester.
    pub bdf: u16,
    /// The device address it used (for an interrupt fault, 0).
    pub address: u64,
    pub write: bool,
    pub reason: u8,
    /// For an interrupt fault, the remapping entry the message named.
    pub interrupt: Option<u16>,
}

/// Decodes a fault recording register (its low and high 64 bits), if it
/// holds a fault (its F bit).
pub fn fault(lo: u64, hi: u64) -> Option<Fault> {
    if hi >> 63 == 0 {
        return None;
    }
    let reason = (hi >> 32) as u8;
    // Reasons 0x20 and up are interrupt remapping's: the record's FI field
    // then holds the entry's index in its top 16 bits.
    let interrupt = (reason >= 0x20).then_some((lo >> 48) as u16);
    Some(Fault {
        bdf: hi as u16,
        address: if interrupt.is_some() { 0 } else { lo & !0xfff },
        // T: 0 a write, 1 a read (an interrupt message is a write).
        write: (hi >> 62) & 1 == 0 || interrupt.is_some(),
        reason,
        interrupt,
    })
}

/// What a fault reason means (the specification's words, shortened).
pub fn reason_text(reason: u8) -> &'static str {
    match reason {
        1 => "no root entry for the bus",
        2 => "no context entry for the device",
        3 => "a context entry is invalid",
        4 => "address beyond the translated width",
        5 => "write to a page not mapped writable",
        6 => "read of a page not mapped readable",
        7 => "address not mapped",
        8 | 9 => "a table could not be read",
        10..=12 => "a reserved bit set in a table",
        13 => "translation type blocked",
        0x20 => "a reserved bit set in an interrupt message",
        0x21 => "interrupt entry beyond the table",
        0x22 => "interrupt entry not present",
        0x23 => "the interrupt table could not be read",
        0x24 => "a reserved bit set in an interrupt entry",
        0x25 => "an interrupt message in the compatibility format",
        0x26 => "interrupt entry of another device",
        _ => "another reason",
    }
}

/// One DMA remapping unit (DRHD) of the DMAR table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unit {
    pub base: u64,
    pub segment: u16,
    /// It remaps every device of its segment no other unit lists.
    pub include_all: bool,
}

/// The DMAR table, as far as the kernel uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dmar {
    pub units: heapless::Vec<Unit, 4>,
    /// Endpoints listed under a unit (bus, device, function), and which.
    pub scoped: heapless::Vec<(u16, usize), 32>,
    /// I/O APICs listed under a unit: (APIC id, the source id its
    /// messages carry, which unit).
    pub ioapics: heapless::Vec<(u8, u16, usize), 4>,
}

impl Dmar {
    /// The unit that remaps `bdf` (segment 0): the one listing it, else
    /// the one that takes every other device.
    pub fn unit_for(&self, bdf: u16) -> Option<usize> {
        self.scoped
            .iter()
            .find(|(b, _)| *b == bdf)
            .map(|&(_, u)| u)
            .or_else(|| {
                self.units
                    .iter()
                    .position(|u| u.include_all && u.segment == 0)
            })
    }
}

/// Why a DMAR table was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarError {
    Short,
    BadLength,
    TooMany,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// Header bytes before the remapping structures (the ACPI header, the
/// host address width, flags and reserved bytes).
const DMAR_HEADER: usize = 48;

/// Reads a DMAR table (its whole bytes, header included): the hardware
/// units and the endpoints they list. Whatever the bytes, it returns an
/// error or a table whose every part lay inside them.
pub fn parse_dmar(table: &[u8]) -> Result<Dmar, DmarError> {
    let mut dmar = Dmar::default();
    let mut at = DMAR_HEADER;
    if table.len() < at {
        return Err(DmarError::Short);
    }
    while at + 4 <= table.len() {
        let kind = u16_at(table, at).ok_or(DmarError::Short)?;
        let len = usize::from(u16_at(table, at + 2).ok_or(DmarError::Short)?);
        if len < 4 || at + len > table.len() {
            return Err(DmarError::BadLength);
        }
        let s = &table[at..at + len];
        // Type 0: a DMA remapping hardware unit definition.
        if kind == 0 {
            if len < 16 {
                return Err(DmarError::BadLength);
            }
            let unit = Unit {
                include_all: s[4] & 1 != 0,
                segment: u16_at(s, 6).ok_or(DmarError::Short)?,
                base: u64_at(s, 8).ok_or(DmarError::Short)?,
            };
            let index = dmar.units.len();
            dmar.units.push(unit).map_err(|_| DmarError::TooMany)?;
            scopes(&s[16..], index, &mut dmar)?;
        }
        at += len;
    }
    Ok(dmar)
}

/// The device scopes of unit `index`: PCI endpoints (type 1) and I/O
/// APICs (type 3) straight on their start bus (a one-step path) are
/// recorded; others (bridges, deeper paths) are not needed here.
fn scopes(mut b: &[u8], index: usize, dmar: &mut Dmar) -> Result<(), DmarError> {
    while b.len() >= 2 {
        let (kind, len) = (b[0], usize::from(b[1]));
        if len < 6 || len > b.len() {
            return Err(DmarError::BadLength);
        }
        let path = &b[6..len];
        if path.len() == 2 {
            let bus = u16::from(b[5]);
            let bdf = bus << 8 | u16::from(path[0] & 0x1f) << 3 | u16::from(path[1] & 7);
            match kind {
                1 => dmar
                    .scoped
                    .push((bdf, index))
                    .map_err(|_| DmarError::TooMany)?,
                3 => dmar
                    .ioapics
                    .push((b[4], bdf, index))
                    .map_err(|_| DmarError::TooMany)?,
                _ => {}
            }
        }
        b = &b[len..];
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// The highest device address plus one that `levels` of tables cover.
    fn address_limit(levels: u8) -> u64 {
        1 << (12 + 9 * u32::from(levels))
    }

    /// A DMAR table as QEMU's intel-iommu makes it: one unit for every
    /// device, plus (here) one endpoint listed under a second unit.
    fn table(with_second: bool) -> Vec<u8> {
        let mut t = vec![0u8; DMAR_HEADER];
        t[..4].copy_from_slice(b"DMAR");
        t[36] = 38; // host address width - 1
        let mut drhd = vec![0u8; 16];
        drhd[2] = 16;
        drhd[4] = 1; // INCLUDE_PCI_ALL
        drhd[8..16].copy_from_slice(&0xfed9_0000u64.to_le_bytes());
        t.extend(drhd);
        if with_second {
            let mut drhd = vec![0u8; 16];
            drhd[8..16].copy_from_slice(&0xfed9_1000u64.to_le_bytes());
            // An endpoint at 00:04.0, and I/O APIC 2 at ff:00.0 (QEMU's
            // pseudo-device for its I/O APIC's messages).
            drhd.extend([1, 8, 0, 0, 0, 0, 4, 0]);
            drhd.extend([3, 8, 0, 0, 2, 0xff, 0, 0]);
            drhd[2] = drhd.len() as u8;
            t.extend(drhd);
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        t
    }

    #[test]
    fn qemus_table_gives_one_unit_for_every_device() {
        let d = parse_dmar(&table(false)).unwrap();
        assert_eq!(d.units.len(), 1);
        assert_eq!(d.units[0].base, 0xfed9_0000);
        assert!(d.units[0].include_all);
        assert_eq!(d.unit_for(0x0028), Some(0));
    }

    #[test]
    fn a_listed_endpoint_goes_to_its_unit_and_the_rest_to_the_catch_all() {
        let d = parse_dmar(&table(true)).unwrap();
        assert_eq!(d.units.len(), 2);
        assert_eq!(d.unit_for(0x0020), Some(1)); // 00:04.0
        assert_eq!(d.unit_for(0x0028), Some(0)); // 00:05.0
        assert_eq!(d.ioapics.as_slice(), &[(2, 0xff00, 1)]);
    }

    #[test]
    fn hostile_tables_are_refused_or_read_within_their_bytes() {
        assert_eq!(parse_dmar(&[0; 10]), Err(DmarError::Short));
        let mut t = table(true);
        // A structure claiming more bytes than the table has.
        t[DMAR_HEADER + 2] = 200;
        assert_eq!(parse_dmar(&t), Err(DmarError::BadLength));
        let mut t = table(false);
        t[DMAR_HEADER + 2] = 0;
        assert_eq!(parse_dmar(&t), Err(DmarError::BadLength));
        // Random bytes never panic.
        let mut seed = 0x1234_5678u64;
        for _ in 0..2000 {
            let mut t = table(true);
            for _ in 0..4 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let at = DMAR_HEADER + (seed >> 33) as usize % (t.len() - DMAR_HEADER);
                t[at] = (seed >> 20) as u8;
            }
            let cut = (seed >> 40) as usize % t.len();
            let _ = parse_dmar(&t[..cut.max(1)]);
            let _ = parse_dmar(&t);
        }
    }

    #[test]
    fn capabilities_pick_the_deepest_supported_table_and_find_the_registers() {
        // QEMU's default: 39-bit only, IOTLB at 0xf0, one fault record at 0x220.
        let cap = 0x2 << 8 | (0x220u64 >> 4) << 24;
        let ecap = (0xf0u64 >> 4) << 8;
        let c = caps(cap, ecap).unwrap();
        assert_eq!(
            (c.levels, c.iotlb, c.fault_records, c.fault_count),
            (3, 0xf0, 0x220, 1)
        );
        assert_eq!(caps(0x6 << 8, 0).unwrap().levels, 4);
        // ND = 0: 16 domain numbers; QEMU's ND = 6: 65,536.
        assert_eq!(caps(0x2 << 8, 0).unwrap().domains, 16);
        assert_eq!(caps(0x2 << 8 | 6, 0).unwrap().domains, 1 << 16);
        assert_eq!(caps(0x1 << 8, 0), None);
        // QEMU with intremap=on: QI and IR; IR without QI is not offered.
        let c = caps(0x2 << 8, 1 << 1 | 1 << 3).unwrap();
        assert!(c.queued && c.interrupt_remapping);
        assert!(!caps(0x2 << 8, 1 << 3).unwrap().interrupt_remapping);
        assert_eq!(address_limit(3), 1 << 39);
    }

    #[test]
    fn device_addresses_stay_inside_their_windows_and_the_narrowest_unit() {
        assert_eq!(dma_iova(0), Some(DMA_IOVA));
        assert_eq!(dma_iova(DMA_MAX_PAGES * PAGE_SIZE), None);
        assert_eq!(grant_iova(1, 8), Some(GRANT_IOVA + 4096 + 8));
        assert_eq!(grant_iova(GRANT_SLOTS, 0), None);
        assert_eq!(grant_iova(0, 4096), None);
    }

    #[test]
    fn invalidation_descriptors_are_encoded_as_the_specification_says() {
        assert_eq!(queue::contexts(), [0x11, 0]);
        assert_eq!(queue::iotlb(None), [0xd2, 0]);
        assert_eq!(queue::iotlb(Some(7)), [0x7_00e2, 0]);
        assert_eq!(queue::interrupt_entries(), [0x4, 0]);
        assert_eq!(queue::wait(0x9003, 5), [0x5_0000_0025, 0x9000]);
        assert_eq!(queue::address(0x12_3456), 0x12_3000);
    }

    #[test]
    fn entries_are_encoded_as_the_specification_says() {
        assert_eq!(root_entry(0x5000), [0x5001, 0]);
        assert_eq!(context_entry(0x7000, 3, 9), [0x7001, 1 | 9 << 8]);
        assert_eq!(context_entry(0x7000, 4, 9)[1] & 7, 2);
        assert_eq!(sl_leaf(0x1234_5000, false), 0x1234_5001);
        assert_eq!(sl_leaf(0x1234_5000, true), 0x1234_5003);
        assert_eq!(sl_table(0x8000), 0x8003);
        assert_eq!(sl_index(GRANT_IOVA + 3 * 4096, 1), 3);
        assert_eq!(sl_index(GRANT_IOVA, 3), 8);
    }

    #[test]
    fn a_fault_record_names_the_device_the_address_and_the_direction() {
        assert_eq!(fault(0x1_0000_1000, 0), None);
        let hi = 1 << 63 | 5u64 << 32 | 0x0020;
        assert_eq!(
            fault(0x1_0000_1234, hi),
            Some(Fault {
                bdf: 0x20,
                address: 0x1_0000_1000,
                write: true,
                reason: 5,
                interrupt: None,
            })
        );
        // An interrupt message naming entry 0x45 of another device.
        let f = fault(0x45 << 48, 1 << 63 | 0x26 << 32 | 0x0020).unwrap();
        assert_eq!((f.interrupt, f.address, f.reason), (Some(0x45), 0, 0x26));
        assert_eq!(reason_text(0x26), "interrupt entry of another device");
        let read = fault(0, hi | 1 << 62).unwrap();
        assert!(!read.write);
        assert_eq!(reason_text(5), "write to a page not mapped writable");
    }

    #[test]
    fn a_root_entry_gives_back_its_context_table() {
        assert_eq!(root_context(root_entry(0x1234_5000)), Some(0x1234_5000));
        assert_eq!(root_context([0, 0]), None);
    }
}
