//! The rules for a driver domain's access to its PCI function's
//! configuration space (pure, host-tested; `domain/pci.rs` applies them).
//!
//! Owns: what a driver's configuration write becomes (the command
//! register's safe bits, decoding never switched off, BAR sizing without
//! moving a BAR, the capability
//! area but its MSI and MSI-X capabilities; everything else refused), how
//! big a BAR is from its size mask, and finding the interrupt capabilities
//! in a function's capability list.
//!
//! MSI and MSI-X stay off: with them a driver could make its device write
//! any message to any address in the interrupt range, that is raise any
//! vector on any CPU, NMIs included (no interrupt remapping yet). Devices
//! interrupt by their INTx line, which the kernel routes to the driver.

/// Command register bits a driver may change: I/O, memory, bus master, INTx disable.
const COMMAND_BITS: u32 = DECODE | BUS_MASTER | 0x400;
/// I/O and memory decoding: a driver may switch them on, never off (see
/// `filter_write`).
const DECODE: u32 = 0x1 | 0x2;
pub const BUS_MASTER: u32 = 0x4;
pub const COMMAND: u8 = 0x04;
pub const BAR0: u8 = 0x10;
pub const CAPABILITIES: u8 = 0x40;

/// What a configuration write of a driver becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteAction {
    /// Write this value to the device.
    Device(u32),
    /// BAR dword `index` enters (true) or leaves (false) sizing; the device is not touched.
    Bar {
        index: usize,
        sizing: bool,
    },
    Refused,
}

/// Capability ids of message-signalled interrupts.
pub const CAP_MSI: u8 = 0x05;
pub const CAP_MSIX: u8 = 0x11;
/// Bytes of an MSI capability at most (64-bit address, per-vector masking).
const MSI_BYTES: u8 = 24;
/// Bytes of an MSI-X capability.
const MSIX_BYTES: u8 = 12;

/// Where a function's MSI and MSI-X capabilities are (0: it has none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterruptCaps {
    pub msi: u8,
    pub msix: u8,
}

impl InterruptCaps {
    /// Whether the dword at `offset` lies in one of them.
    fn covers(&self, offset: u8) -> bool {
        let within =
            |cap: u8, len: u8| cap != 0 && offset >= cap && offset < cap.saturating_add(len);
        within(self.msi, MSI_BYTES) || within(self.msix, MSIX_BYTES)
    }
}

/// Walks the capability list from the pointer at 0x34, reading dwords with
/// `read` (whatever the device answers: the walk is bounded and ignores
/// pointers outside the capability area).
pub fn interrupt_caps(status: u32, mut read: impl FnMut(u8) -> u32) -> InterruptCaps {
    let mut caps = InterruptCaps::default();
    // Status bit 4: the function has a capability list.
    if status & (1 << 20) == 0 {
        return caps;
    }
    let mut at = (read(0x34) & 0xfc) as u8;
    for _ in 0..48 {
        if at < CAPABILITIES {
            break;
        }
        let head = read(at);
        match (head & 0xff) as u8 {
            CAP_MSI if caps.msi == 0 => caps.msi = at,
            CAP_MSIX if caps.msix == 0 => caps.msix = at,
            _ => {}
        }
        at = ((head >> 8) & 0xfc) as u8;
    }
    caps
}

/// An MSI-X function's table and pending-bit array: which BAR each is in,
/// at which offset, and how long; and how many entries the table has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MsixLayout {
    pub entries: u16,
    pub table: (u8, u64, u64),
    pub pba: (u8, u64, u64),
}

impl MsixLayout {
    /// Reads it from the capability at `cap` (`read` a configuration dword).
    pub fn read(cap: u8, mut read: impl FnMut(u8) -> u32) -> MsixLayout {
        let control = read(cap) >> 16;
        let entries = (control & 0x7ff) as u16 + 1;
        let table = read(cap.wrapping_add(4));
        let pba = read(cap.wrapping_add(8));
        MsixLayout {
            entries,
            table: (
                (table & 7) as u8,
                u64::from(table & !7),
                u64::from(entries) * 16,
            ),
            pba: (
                (pba & 7) as u8,
                u64::from(pba & !7),
                u64::from(entries).div_ceil(64) * 8,
            ),
        }
    }

    /// Whether page `page` (a byte offset, page aligned) of BAR `bar`
    /// holds any of the table or the pending bits: such a page is never
    /// given to the driver (it could aim the device's interrupts anywhere).
    pub fn hides(&self, bar: u8, page: u64) -> bool {
        [self.table, self.pba]
            .iter()
            .any(|&(b, at, len)| b == bar && len > 0 && page < at + len && at < page + 4096)
    }
}

/// Decides what a driver's write of `value` at `offset` does, given the
/// register's `current` value, the BARs' firmware values and where the
/// interrupt capabilities are. Pure (host-tested).
pub fn filter_write(
    offset: u8,
    value: u32,
    current: u32,
    bar_raw: &[u32; 6],
    caps: InterruptCaps,
) -> WriteAction {
    if !offset.is_multiple_of(4) {
        return WriteAction::Refused;
    }
    match offset {
        // Status bits are write-one-to-clear: the driver's own value clears
        // what it means to. Decoding once on stays on: BAR sizing is
        // emulated, so a driver never needs it off, and switching it changes
        // the memory map under the CPUs driving other devices
        // (`pci_inventory`).
        COMMAND => WriteAction::Device(
            (value & 0xffff_0000)
                | (current & 0xffff & !COMMAND_BITS)
                | (value & COMMAND_BITS)
                | (current & DECODE),
        ),
        // Cache line size and latency timer; never BIST or the header type.
        0x0c => WriteAction::Device((current & 0xffff_0000) | (value & 0xffff)),
        o if (BAR0..BAR0 + 24).contains(&o) => {
            let index = ((o - BAR0) / 4) as usize;
            if value == u32::MAX {
                WriteAction::Bar {
                    index,
                    sizing: true,
                }
            } else if value == bar_raw[index] {
                WriteAction::Bar {
                    index,
                    sizing: false,
                }
            } else {
                WriteAction::Refused
            }
        }
        o if o >= CAPABILITIES && !caps.covers(o) => WriteAction::Device(value),
        _ => WriteAction::Refused,
    }
}

/// Bytes a BAR decodes, from its firmware value and size mask (0: unused).
pub fn bar_size(raw: u32, size_mask: u32) -> u64 {
    let flags = if raw & 1 == 1 { 0x3 } else { 0xf };
    let mask = size_mask & !flags;
    if mask == 0 {
        0
    } else {
        u64::from((!mask).wrapping_add(1))
    }
}

/// What the kernel keeps of a PCI function a domain holds (`domain/pci.rs`
/// uses it):
/// PCI functions one domain may hold.
pub const MAX_PCI: usize = 4;

/// One BAR dword as the firmware left it, and whether the driver is sizing it.
#[derive(Clone, Copy, Debug, Default)]
pub struct BarWord {
    pub(crate) raw: u32,
    pub(crate) size_mask: u32,
    pub(crate) sizing: bool,
    /// Where a memory BAR is mapped in the domain (0: not mapped).
    pub(crate) va: u64,
}

/// A PCI function held by a domain.
#[derive(Clone, Copy, Debug)]
pub struct Assigned {
    pub bdf: u16,
    pub(crate) bars: [BarWord; 6],
    /// Its MSI and MSI-X capabilities, which the driver may not write.
    pub(crate) caps: InterruptCaps,
    /// Where its MSI-X table is, if it has one (never mapped for the driver).
    pub(crate) msix: Option<MsixLayout>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_msix_table_and_its_pending_bits_hide_exactly_their_pages() {
        // QEMU's virtio: 3 entries, the table at 0 and the PBA at 0x800 of BAR 1.
        let regs = |o: u8| match o {
            0x98 => 0x0002_0011,
            0x9c => 0x0000_0001,
            0xa0 => 0x0000_0801,
            _ => 0,
        };
        let l = MsixLayout::read(0x98, regs);
        assert_eq!(l.entries, 3);
        assert_eq!(l.table, (1, 0, 48));
        assert_eq!(l.pba, (1, 0x800, 8));
        assert!(l.hides(1, 0));
        assert!(!l.hides(1, 4096));
        assert!(!l.hides(4, 0));
        // A table in the middle of a register BAR hides its page only.
        let regs = |o: u8| match o {
            0x40 => 0x00ff_0011,
            0x44 => 0x0000_3002,
            0x48 => 0x0000_5002,
            _ => 0,
        };
        let l = MsixLayout::read(0x40, regs);
        assert_eq!(l.entries, 256);
        assert!(!l.hides(2, 0x2000));
        assert!(l.hides(2, 0x3000));
        assert!(!l.hides(2, 0x4000));
        assert!(l.hides(2, 0x5000));
        assert!(!l.hides(2, 0x6000));
    }

    const RAW: [u32; 6] = [0xfebf_0000, 0, 0xc001, 0, 0xfe00_000c, 0];
    const NONE: InterruptCaps = InterruptCaps { msi: 0, msix: 0 };

    /// A function with a power-management capability at 0x40, MSI-X at
    /// 0x50 and MSI at 0x60, as configuration dwords.
    fn config(offset: u8) -> u32 {
        match offset {
            0x34 => 0x40,
            0x40 => 0x0000_5001,
            0x50 => 0x0000_6011,
            0x60 => 0x0000_0005,
            _ => 0,
        }
    }

    #[test]
    fn msi_and_msix_are_found_and_their_writes_refused() {
        let caps = interrupt_caps(1 << 20, config);
        assert_eq!(
            caps,
            InterruptCaps {
                msi: 0x60,
                msix: 0x50
            }
        );
        // MSI-X enable (bit 31 of its first dword), its table offset; MSI's
        // enable, address and data: all refused.
        for offset in [0x50, 0x54, 0x58, 0x60, 0x64, 0x68, 0x6c, 0x74] {
            assert_eq!(
                filter_write(offset, 0x8000_0000, 0, &RAW, caps),
                WriteAction::Refused
            );
        }
        // The power-management capability and what lies past MSI still pass.
        assert_eq!(filter_write(0x44, 3, 0, &RAW, caps), WriteAction::Device(3));
        assert_eq!(filter_write(0x78, 3, 0, &RAW, caps), WriteAction::Device(3));
        // No capability list: nothing found.
        assert_eq!(interrupt_caps(0, config), NONE);
    }

    #[test]
    fn a_looping_or_wild_capability_list_ends() {
        // A list that points at itself, and one that points below 0x40.
        let looped = interrupt_caps(1 << 20, |o| if o == 0x34 { 0x40 } else { 0x4011 });
        assert_eq!(looped, InterruptCaps { msi: 0, msix: 0x40 });
        let wild = interrupt_caps(1 << 20, |o| if o == 0x34 { 0x10 } else { 0x05 });
        assert_eq!(wild, NONE);
    }

    #[test]
    fn only_safe_command_bits_change() {
        // Turning on memory and bus master, trying SERR (bit 8), clearing a status bit.
        let w = filter_write(COMMAND, 0x8000_0106, 0x0000_0000, &RAW, NONE);
        assert_eq!(w, WriteAction::Device(0x8000_0006));
        // SERR stays as it was either way.
        let w = filter_write(COMMAND, 0x0000_0006, 0x0000_0100, &RAW, NONE);
        assert_eq!(w, WriteAction::Device(0x0000_0106));
        // Bus mastering and INTx disable go off; SERR stays.
        let w = filter_write(COMMAND, 0x0000_0000, 0x0000_0504, &RAW, NONE);
        assert_eq!(w, WriteAction::Device(0x0000_0100));
    }

    #[test]
    fn decoding_once_on_stays_on() {
        // A driver turning everything off (as `virtio-drivers` does around
        // each BAR it sizes) stops bus mastering only.
        let w = filter_write(COMMAND, 0x0000_0000, 0x0000_0107, &RAW, NONE);
        assert_eq!(w, WriteAction::Device(0x0000_0103));
        // Memory decoding on, I/O left off: each bit on its own.
        let w = filter_write(COMMAND, 0x0000_0002, 0x0000_0000, &RAW, NONE);
        assert_eq!(w, WriteAction::Device(0x0000_0002));
        let w = filter_write(COMMAND, 0x0000_0004, 0x0000_0001, &RAW, NONE);
        assert_eq!(w, WriteAction::Device(0x0000_0005));
    }

    #[test]
    fn bars_can_be_sized_but_never_moved() {
        assert_eq!(
            filter_write(0x10, u32::MAX, 0, &RAW, NONE),
            WriteAction::Bar {
                index: 0,
                sizing: true
            }
        );
        assert_eq!(
            filter_write(0x10, 0xfebf_0000, 0, &RAW, NONE),
            WriteAction::Bar {
                index: 0,
                sizing: false
            }
        );
        assert_eq!(
            filter_write(0x10, 0x1000_0000, 0, &RAW, NONE),
            WriteAction::Refused
        );
        assert_eq!(filter_write(0x30, 0, 0, &RAW, NONE), WriteAction::Refused);
        assert_eq!(filter_write(0x3c, 5, 0, &RAW, NONE), WriteAction::Refused);
        assert_eq!(filter_write(0x00, 0, 0, &RAW, NONE), WriteAction::Refused);
        assert_eq!(filter_write(0x42, 0, 0, &RAW, NONE), WriteAction::Refused);
        assert_eq!(filter_write(0x40, 7, 0, &RAW, NONE), WriteAction::Device(7));
    }

    #[test]
    fn bar_sizes() {
        assert_eq!(bar_size(0xfebf_0000, 0xffff_c000), 16 * 1024);
        assert_eq!(bar_size(0xc001, 0xffff_ffe1), 32);
        assert_eq!(bar_size(0, 0), 0);
        assert_eq!(bar_size(0xfe00_000c, 0xffff_c00c), 16 * 1024);
    }
}
