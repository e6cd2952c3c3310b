//! The guest's PCI bus as configuration mechanism #1 shows it (the address
//! register at 0xcf8, the data window at 0xcfc): bus 0 with a host bridge
//! at 00:00.0, which is what Linux looks for before it trusts the
//! mechanism, and the virtio functions (`virtio_pci.rs`) at 00:01.0 on, one
//! device each. An absent function reads all ones; writes to read-only
//! registers are dropped.
//!
//! Pure: host-tested.

/// The host bridge's identity: a generic PCI host bridge (Red Hat's
/// vendor ID 0x1b36, device 0x0008, as QEMU's generic host bridge uses;
/// Linux applies no quirk to it), class 06 00 00.
const HOST_BRIDGE_ID: u32 = 0x0008_1b36;
const HOST_BRIDGE_CLASS: u32 = 0x0600_0000;
/// The address register's enable bit.
const ENABLE: u32 = 1 << 31;

#[derive(Default)]
pub struct Pci {
    address: u32,
    /// The host bridge's command register (memory and I/O enables; it
    /// decodes nothing of its own, but a driver reads back what it set).
    bridge_command: u16,
    /// The virtio functions: device N + 1 on bus 0.
    pub functions: alloc::vec::Vec<crate::virtio_pci::VirtioPci>,
}

impl Pci {
    /// A port access at `offset` (0–7) from 0xcf8; what an input reads.
    pub fn access(&mut self, offset: u16, size: u32, input: bool, data: u32) -> u32 {
        match (offset, size) {
            (0, 4) if input => self.address,
            (0, 4) => {
                // Bits 1:0 read as zero; 30:24 are reserved.
                self.address = data & 0x80ff_fffc;
                0
            }
            // Linux's probe pokes 0xcfb with a byte to tell mechanism #2
            // apart: not the address register.
            (0..=3, _) => u32::MAX,
            (4..=7, _) => {
                let byte = u32::from(offset - 4);
                if input {
                    self.read(byte, size)
                } else {
                    self.write(byte, size, data);
                    0
                }
            }
            _ => u32::MAX,
        }
    }

    /// The function the address register selects and the register offset
    /// within its configuration space (plus `byte`), if enabled.
    fn selected(&self, byte: u32) -> Option<(u32, u32)> {
        if self.address & ENABLE == 0 {
            return None;
        }
        let function = (self.address >> 8) & 0xffff;
        Some((function, (self.address & 0xfc) + byte))
    }

    fn read(&self, byte: u32, size: u32) -> u32 {
        let Some((function, at)) = self.selected(byte) else {
            return u32::MAX;
        };
        let dword = match function {
            // Bus 0, device 0, function 0.
            0 => self.bridge_dword(at & !3),
            f => match self.device(f) {
                Some(d) => self.functions[d].config_dword(at & !3),
                None => u32::MAX,
            },
        };
        let shifted = dword >> ((at & 3) * 8);
        match size {
            1 => shifted & 0xff,
            2 => shifted & 0xffff,
            _ => shifted,
        }
    }

    fn write(&mut self, byte: u32, size: u32, data: u32) {
        let Some((function, at)) = self.selected(byte) else {
            return;
        };
        if function == 0 && at == 4 && size >= 2 {
            // Memory space, I/O space, bus master.
            self.bridge_command = data as u16 & 0x7;
        }
        if let Some(d) = self.device(function) {
            self.functions[d].config_write(at, size, data);
        }
    }

    /// Which virtio function bus/device/function number `f` selects.
    fn device(&self, f: u32) -> Option<usize> {
        let (bus, device, function) = (f >> 8, (f >> 3) & 0x1f, f & 7);
        if bus != 0 || function != 0 || device == 0 {
            return None;
        }
        let d = device as usize - 1;
        (d < self.functions.len()).then_some(d)
    }

    fn bridge_dword(&self, at: u32) -> u32 {
        match at {
            0x00 => HOST_BRIDGE_ID,
            0x04 => u32::from(self.bridge_command),
            0x08 => HOST_BRIDGE_CLASS,
            _ => 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(p: &mut Pci, bus: u32, device: u32, function: u32, reg: u32) {
        let address = ENABLE | bus << 16 | device << 11 | function << 8 | reg;
        p.access(0, 4, false, address);
    }

    #[test]
    fn linux_type1_probe_reads_back_the_enable_bit_and_finds_a_host_bridge() {
        let mut p = Pci::default();
        p.access(3, 1, false, 0x01);
        let saved = p.access(0, 4, true, 0);
        p.access(0, 4, false, 0x8000_0000);
        assert_eq!(p.access(0, 4, true, 0), 0x8000_0000);
        p.access(0, 4, false, saved);
        select(&mut p, 0, 0, 0, 0x08);
        assert_eq!(p.access(4, 4, true, 0) >> 16, 0x0600, "class: host bridge");
        select(&mut p, 0, 0, 0, 0x00);
        assert_eq!(p.access(4, 2, true, 0), 0x1b36);
        assert_eq!(p.access(6, 2, true, 0), 0x0008);
    }

    #[test]
    fn absent_functions_and_a_disabled_address_read_all_ones() {
        let mut p = Pci::default();
        select(&mut p, 0, 3, 0, 0);
        assert_eq!(p.access(4, 4, true, 0), u32::MAX);
        select(&mut p, 1, 0, 0, 0);
        assert_eq!(p.access(4, 4, true, 0), u32::MAX);
        p.access(0, 4, false, 0);
        assert_eq!(p.access(4, 4, true, 0), u32::MAX);
    }

    #[test]
    fn the_command_register_keeps_its_enables_and_ids_stay_read_only() {
        let mut p = Pci::default();
        select(&mut p, 0, 0, 0, 0x04);
        p.access(4, 2, false, 0xffff);
        assert_eq!(p.access(4, 2, true, 0), 0x7);
        select(&mut p, 0, 0, 0, 0x00);
        p.access(4, 4, false, 0x1234_5678);
        assert_eq!(p.access(4, 4, true, 0), HOST_BRIDGE_ID);
    }
}
