//! Every ordinary PCI function's BARs, sized once at boot.
//!
//! Owns: the walk of the PCI buses (bus 0, then each bridge's secondary
//! bus), and each header-type-0 function's BAR values and size masks, read
//! with the function's decoding off. The boot CPU does it before any other
//! CPU starts and before any domain runs; afterwards nothing in Xenolith
//! switches a function's decoding off (`pci_rules::filter_write` keeps it
//! on, a dead domain's function loses only bus mastering), so the
//! machine's memory map never changes under a running CPU.
//!
//! Why that matters: sizing at assignment (what the kernel did before)
//! switched a function's decoding off and on while the other CPUs drove
//! their own devices, and every driver's `virtio-drivers` did the same once
//! per BAR. Under QEMU 7.2's multi-threaded TCG a memory access on one CPU
//! racing a memory-map change on another can reach the wrong region (QEMU
//! fixed it in 8.1, "softmmu: Use async_run_on_cpu in tcg_commit"): the
//! NIC's configuration writes and notifications were lost about once in
//! 15-20 two-CPU boots (docs/reliability.md). Sizing at enumeration is
//! also what a real PC wants: an operating system sizes its BARs once.

use heapless::Vec;
use spin::Once;

/// Functions remembered (QEMU's machines have fewer than 10; a large PC a
/// few dozen). Those beyond are left out, and cannot be assigned.
pub const MAX_FUNCTIONS: usize = 64;
const BAR0: u8 = 0x10;
const COMMAND: u8 = 0x04;
/// I/O and memory decoding.
const DECODE: u32 = 0x3;

/// A function's six BAR dwords: (firmware value, size mask).
pub type Bars = [(u32, u32); 6];

/// What the walk found.
#[derive(Debug, Default)]
pub struct Inventory {
    pub functions: Vec<(u16, Bars), MAX_FUNCTIONS>,
    /// Ordinary functions found beyond `MAX_FUNCTIONS`.
    pub left_out: usize,
}

/// Configuration-space access for the walk (the kernel's `arch::pci`, or
/// a test's fake bus).
pub trait ConfigSpace {
    fn read32(&mut self, bdf: u16, offset: u8) -> u32;
    fn write32(&mut self, bdf: u16, offset: u8, value: u32);
}

fn bdf(bus: u8, device: u8, function: u8) -> u16 {
    u16::from(bus) << 8 | u16::from(device) << 3 | u16::from(function)
}

/// Walks bus 0 and every bus behind a bridge (each bus once), sizing each
/// ordinary function's BARs.
pub fn walk(cfg: &mut impl ConfigSpace) -> Inventory {
    let mut found = Inventory::default();
    let mut seen = [false; 256];
    let mut buses: Vec<u8, 256> = Vec::new();
    let _ = buses.push(0);
    seen[0] = true;
    while let Some(bus) = buses.pop() {
        for device in 0..32 {
            let first = bdf(bus, device, 0);
            if cfg.read32(first, 0) & 0xffff == 0xffff {
                continue;
            }
            let multi = (cfg.read32(first, 0x0c) >> 16) & 0x80 != 0;
            for function in 0..if multi { 8 } else { 1 } {
                let at = bdf(bus, device, function);
                if cfg.read32(at, 0) & 0xffff == 0xffff {
                    continue;
                }
                match (cfg.read32(at, 0x0c) >> 16) & 0x7f {
                    0 if found.functions.is_full() => found.left_out += 1,
                    0 => {
                        let bars = size_bars(cfg, at);
                        let _ = found.functions.push((at, bars));
                    }
                    // A PCI-to-PCI bridge: its secondary bus.
                    1 => {
                        let secondary = (cfg.read32(at, 0x18) >> 8) as u8;
                        if !seen[usize::from(secondary)] {
                            seen[usize::from(secondary)] = true;
                            let _ = buses.push(secondary);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    found
}

/// Each BAR's firmware value and size mask, with decoding off meanwhile
/// (a BAR of all ones must not decode); decoding is then as it was.
fn size_bars(cfg: &mut impl ConfigSpace, at: u16) -> Bars {
    let command = cfg.read32(at, COMMAND) & 0xffff;
    cfg.write32(at, COMMAND, command & !DECODE);
    let mut bars = [(0, 0); 6];
    for (i, bar) in bars.iter_mut().enumerate() {
        let offset = BAR0 + 4 * i as u8;
        let raw = cfg.read32(at, offset);
        cfg.write32(at, offset, u32::MAX);
        *bar = (raw, cfg.read32(at, offset));
        cfg.write32(at, offset, raw);
    }
    cfg.write32(at, COMMAND, command);
    bars
}

static INVENTORY: Once<Inventory> = Once::new();

/// Keeps what the boot walk found (the first call wins).
pub fn keep(found: Inventory) -> &'static Inventory {
    INVENTORY.call_once(|| found)
}

/// Function `at`'s BARs as sized at boot; None if the walk did not keep it.
pub fn bars(at: u16) -> Option<Bars> {
    INVENTORY
        .get()?
        .functions
        .iter()
        .find(|(b, _)| *b == at)
        .map(|&(_, bars)| bars)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A function of the fake bus: its id, header type byte, BAR sizes
    /// (0: unused), and for a bridge its secondary bus.
    struct Fake {
        at: u16,
        header: u8,
        sizes: [u32; 6],
        secondary: u8,
        bars: [u32; 6],
        command: u32,
        /// Decoding was off whenever a BAR held all ones.
        sized_blind: bool,
    }

    struct Bus(std::vec::Vec<Fake>);

    impl Bus {
        fn at(&mut self, at: u16) -> Option<&mut Fake> {
            self.0.iter_mut().find(|f| f.at == at)
        }
    }

    impl ConfigSpace for Bus {
        fn read32(&mut self, at: u16, offset: u8) -> u32 {
            let Some(f) = self.at(at) else {
                return u32::MAX;
            };
            match offset {
                0 => 0x1000_1af4,
                COMMAND => f.command,
                0x0c => u32::from(f.header) << 16,
                0x18 => u32::from(f.secondary) << 8,
                o if (BAR0..BAR0 + 24).contains(&o) => f.bars[usize::from((o - BAR0) / 4)],
                _ => 0,
            }
        }

        fn write32(&mut self, at: u16, offset: u8, value: u32) {
            let f = self.at(at).expect("writes only to functions that exist");
            match offset {
                COMMAND => f.command = value,
                o if (BAR0..BAR0 + 24).contains(&o) => {
                    let i = usize::from((o - BAR0) / 4);
                    f.bars[i] = if value == u32::MAX {
                        f.sized_blind &= f.command & DECODE == 0;
                        !f.sizes[i].wrapping_sub(1) & !0xf
                    } else {
                        value
                    };
                }
                _ => panic!("the walk writes only the command register and BARs"),
            }
        }
    }

    fn function(at: u16, header: u8, size: u32, secondary: u8) -> Fake {
        Fake {
            at,
            header,
            sizes: [size, 0, 0, 0, 0, 0],
            secondary,
            bars: [0xfeb0_0000, 0, 0, 0, 0, 0],
            command: 0x7,
            sized_blind: true,
        }
    }

    #[test]
    fn finds_functions_behind_bridges_and_in_multifunction_devices() {
        let mut bus = Bus(vec![
            function(bdf(0, 0, 0), 0, 0x1000, 0),
            // A multi-function device: functions 0 and 2.
            function(bdf(0, 3, 0), 0x80, 0x4000, 0),
            function(bdf(0, 3, 2), 0, 0x1000, 0),
            // Function 1 of a single-function device is never looked at.
            function(bdf(0, 4, 0), 0, 0x1000, 0),
            function(bdf(0, 4, 1), 0, 0x1000, 0),
            // A bridge to bus 2, which holds one device.
            function(bdf(0, 5, 0), 1, 0, 2),
            function(bdf(2, 0, 0), 0, 0x2000, 0),
        ]);
        let found = walk(&mut bus);
        let mut at: std::vec::Vec<u16> = found.functions.iter().map(|(b, _)| *b).collect();
        at.sort();
        assert_eq!(
            at,
            [
                bdf(0, 0, 0),
                bdf(0, 3, 0),
                bdf(0, 3, 2),
                bdf(0, 4, 0),
                bdf(2, 0, 0)
            ]
        );
        let (_, bars) = found
            .functions
            .iter()
            .find(|(b, _)| *b == bdf(2, 0, 0))
            .unwrap();
        assert_eq!(bars[0], (0xfeb0_0000, 0xffff_e000));
        assert_eq!(found.left_out, 0);
    }

    #[test]
    fn sizing_leaves_each_function_as_it_was_and_never_decodes_all_ones() {
        let mut bus = Bus(vec![function(bdf(0, 1, 0), 0, 0x1000, 0)]);
        let _ = walk(&mut bus);
        let f = &bus.0[0];
        assert!(f.sized_blind);
        assert_eq!(f.command, 0x7);
        assert_eq!(f.bars[0], 0xfeb0_0000);
    }

    #[test]
    fn a_bridge_loop_ends_and_too_many_functions_are_counted() {
        // Two bridges pointing at each other's buses, and bus 1 full.
        let mut devices = vec![function(bdf(0, 0, 0), 1, 0, 1)];
        devices.push(function(bdf(1, 0, 0), 1, 0, 0));
        for d in 1..32 {
            for f in 0..8 {
                let header = if f == 0 { 0x80 } else { 0 };
                devices.push(function(bdf(1, d, f), header, 0x1000, 0));
            }
        }
        let found = walk(&mut Bus(devices));
        assert_eq!(found.functions.len(), MAX_FUNCTIONS);
        assert_eq!(found.left_out, 31 * 8 - MAX_FUNCTIONS);
    }
}
