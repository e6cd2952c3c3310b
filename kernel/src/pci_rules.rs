//! The rules for a driver domain's access to its PCI function's
//! configuration space (pure, host-tested; `domain/pci.rs` applies them).
//!
//! Owns: what a driver's configuration write becomes (the command
//! register's safe bits, BAR sizing without moving a BAR, the capability
//! area; everything else refused) and how big a BAR is from its size mask.

/// Command register bits a driver may change: I/O, memory, bus master, INTx disable.
const COMMAND_BITS: u32 = 0x1 | 0x2 | 0x4 | 0x400;
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

/// Decides what a driver's write of `value` at `offset` does, given the
/// register's `current` value and the BARs' firmware values. Pure (host-tested).
pub fn filter_write(offset: u8, value: u32, current: u32, bar_raw: &[u32; 6]) -> WriteAction {
    if !offset.is_multiple_of(4) {
        return WriteAction::Refused;
    }
    match offset {
        // Status bits are write-one-to-clear: the driver's own value clears what it means to.
        COMMAND => WriteAction::Device(
            (value & 0xffff_0000) | (current & 0xffff & !COMMAND_BITS) | (value & COMMAND_BITS),
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
        o if o >= CAPABILITIES => WriteAction::Device(value),
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

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: [u32; 6] = [0xfebf_0000, 0, 0xc001, 0, 0xfe00_000c, 0];

    #[test]
    fn only_safe_command_bits_change() {
        // Turning on memory and bus master, trying SERR (bit 8), clearing a status bit.
        let w = filter_write(COMMAND, 0x8000_0106, 0x0000_0000, &RAW);
        assert_eq!(w, WriteAction::Device(0x8000_0006));
        // SERR stays as it was either way.
        let w = filter_write(COMMAND, 0x0000_0006, 0x0000_0100, &RAW);
        assert_eq!(w, WriteAction::Device(0x0000_0106));
        let w = filter_write(COMMAND, 0x0000_0000, 0x0000_0107, &RAW);
        assert_eq!(w, WriteAction::Device(0x0000_0100));
    }

    #[test]
    fn bars_can_be_sized_but_never_moved() {
        assert_eq!(
            filter_write(0x10, u32::MAX, 0, &RAW),
            WriteAction::Bar {
                index: 0,
                sizing: true
            }
        );
        assert_eq!(
            filter_write(0x10, 0xfebf_0000, 0, &RAW),
            WriteAction::Bar {
                index: 0,
                sizing: false
            }
        );
        assert_eq!(
            filter_write(0x10, 0x1000_0000, 0, &RAW),
            WriteAction::Refused
        );
        assert_eq!(filter_write(0x30, 0, 0, &RAW), WriteAction::Refused);
        assert_eq!(filter_write(0x3c, 5, 0, &RAW), WriteAction::Refused);
        assert_eq!(filter_write(0x00, 0, 0, &RAW), WriteAction::Refused);
        assert_eq!(filter_write(0x42, 0, 0, &RAW), WriteAction::Refused);
        assert_eq!(filter_write(0x40, 7, 0, &RAW), WriteAction::Device(7));
    }

    #[test]
    fn bar_sizes() {
        assert_eq!(bar_size(0xfebf_0000, 0xffff_c000), 16 * 1024);
        assert_eq!(bar_size(0xc001, 0xffff_ffe1), 32);
        assert_eq!(bar_size(0, 0), 0);
        assert_eq!(bar_size(0xfe00_000c, 0xffff_c00c), 16 * 1024);
    }
}
