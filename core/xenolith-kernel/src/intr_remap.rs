//! Interrupt remapping (Intel VT-d) as pure rules: which entry of the
//! remapping table each interrupt source uses, and the encodings of an
//! entry, of a device's MSI message and of an I/O APIC redirection entry
//! that name one. Host-tested; the table and the units are `arch/vtd.rs`'s
//! and `domain/dma.rs`'s.
//!
//! Owns: what a message may raise. With remapping on, an interrupt message
//! carries no vector or destination, only an entry number (a "handle");
//! the entry says the vector and CPU, and which requester may use it (its
//! source id, checked by the unit). So a device can raise only the
//! interrupts the kernel wrote entries for with its source id, and nothing
//! a driver writes in its device changes which.
//!
//! Handles are the kernel's pirq numbers: I/O APIC line `n` uses entry `n`,
//! MSI slot `s` entry `MAX_IRQS + s`; the watchdog's NMI has its own.

use ipc_abi::layout::MAX_IRQS;

/// Entries in the table: one page of 16-byte entries.
pub const ENTRIES: usize = 256;
/// The table's size field in IRTA: 2^(7 + 1) = 256 entries.
pub const SIZE_FIELD: u64 = 7;
/// The entry of the NMI the watchdog routes through the I/O APIC.
pub const NMI_HANDLE: u16 = 255;

// Every pirq has an entry, and the NMI's is none of theirs.
const _: () = assert!(MAX_IRQS as usize + 32 < NMI_HANDLE as usize);
const _: () = assert!((NMI_HANDLE as usize) < ENTRIES);

/// How an entry delivers its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Fixed delivery of a vector.
    Vector(u8),
    /// A non-maskable interrupt (the vector is not used).
    Nmi,
}

/// A present remapping table entry: `delivery` to the CPU with xAPIC id
/// `apic` (physical destination), edge- or level-triggered, usable only by
/// requester `source` (every bit of its source id compared), or by any
/// requester when `None`.
pub fn entry(delivery: Delivery, apic: u8, level: bool, source: Option<u16>) -> [u64; 2] {
    let (mode, vector) = match delivery {
        Delivery::Vector(v) => (0u64, v),
        Delivery::Nmi => (0b100, 0),
    };
    let lo = 1 // present
        | u64::from(level) << 4
        | mode << 5
        | u64::from(vector) << 16
        // xAPIC mode: the destination id is bits 15:8 of the field at 63:32.
        | u64::from(apic) << 40;
    // SVT = 1: verify the whole source id (SQ = 0).
    let hi = source.map_or(0, |sid| u64::from(sid) | 1 << 18);
    [lo, hi]
}

/// The MSI address that names entry `handle` (remappable format, no
/// subhandle); its data is 0.
pub fn msi_address(handle: u16) -> u64 {
    0xfee0_0000 | u64::from(handle & 0x7fff) << 5 | 1 << 4 | u64::from(handle >> 15) << 2
}

/// The I/O APIC redirection entry (low and high dwords) that names entry
/// `handle`. The vector must be the entry's too: the I/O APIC matches an
/// end of interrupt to its line by it.
pub fn ioapic_entry(
    handle: u16,
    vector: u8,
    nmi: bool,
    active_low: bool,
    level: bool,
    masked: bool,
) -> (u32, u32) {
    let low = u32::from(vector)
        | if nmi { 0b100 << 8 } else { 0 }
        | u32::from(handle >> 15) << 11
        | u32::from(active_low) << 13
        | u32::from(level) << 15
        | u32::from(masked) << 16;
    let high = 1 << 16 | u32::from(handle & 0x7fff) << 17;
    (low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_says_vector_cpu_trigger_and_requester() {
        let [lo, hi] = entry(Delivery::Vector(0x81), 0, false, Some(0x0020));
        assert_eq!(lo, 1 | 0x81 << 16);
        assert_eq!(hi, 0x0020 | 1 << 18);
        let [lo, hi] = entry(Delivery::Vector(0x44), 3, true, None);
        assert_eq!(lo, 1 | 1 << 4 | 0x44 << 16 | 3 << 40);
        assert_eq!(hi, 0);
        let [lo, _] = entry(Delivery::Nmi, 0, false, None);
        assert_eq!(lo, 1 | 0b100 << 5);
    }

    #[test]
    fn messages_name_entries_in_the_remappable_format() {
        assert_eq!(msi_address(0), 0xfee0_0010);
        assert_eq!(msi_address(5), 0xfee0_00b0);
        assert_eq!(msi_address(0x8001), 0xfee0_0034);
        let (low, high) = ioapic_entry(4, 0x44, false, false, false, true);
        assert_eq!((low, high), (0x44 | 1 << 16, 1 << 16 | 4 << 17));
        let (low, _) = ioapic_entry(NMI_HANDLE, 0, true, true, true, false);
        assert_eq!(low, 0b100 << 8 | 1 << 13 | 1 << 15);
    }
}
