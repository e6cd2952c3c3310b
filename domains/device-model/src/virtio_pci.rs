//! A virtio 1.x PCI function (virtio 1.x, 4.1) whose registers are all in
//! one I/O BAR: its configuration space (identity, command, the BAR, the
//! interrupt pin, and the vendor capabilities that point Linux's
//! virtio-pci at the common, notification, ISR and device-specific
//! structures), and those structures themselves. Interrupts are INTx
//! (level), raised while the ISR has a bit set, until the driver turns
//! MSI-X on: then each queue (and configuration changes) sends the message
//! of the table entry the driver chose for it. The MSI-X table and its
//! pending bits are in a 64-bit memory BAR (BAR 1) in the guest's MMIO
//! window, which the kernel hands over access by access.
//!
//! Owns: the transport's state (feature negotiation, device status, each
//! queue's registers) and what the driver's accesses mean to the device
//! ([`Event`]). What the device does with its queues is the device's
//! (`virtio_blk.rs`, `virtio_net.rs`). Pure: host-tested.

extern crate alloc;
use crate::virtqueue::{Queue, MAX_SIZE};
use alloc::vec::Vec;

/// Red Hat's virtio vendor ID; modern device IDs are 0x1040 + type.
const VENDOR: u16 = 0x1af4;
const MODERN_BASE: u16 = 0x1040;
/// Bytes of the I/O BAR, and where each structure sits in it.
pub const BAR_SIZE: u16 = 0x100;
const COMMON: u16 = 0x00;
const COMMON_LEN: u16 = 0x38;
const ISR: u16 = 0x38;
const NOTIFY: u16 = 0x40;
const DEVICE: u16 = 0x80;
const DEVICE_LEN: u16 = 0x80;
/// Where the capability list starts in configuration space, and where
/// the MSI-X capability is in it (after the four virtio ones).
const CAPS: u32 = 0x40;
const MSIX_CAP: u32 = 0x88;
/// The memory BAR: its size, where the table and pending bits are in it.
pub const MEMORY_BAR_SIZE: u64 = 0x1000;
const TABLE: u64 = 0;
const PBA: u64 = 0x800;
/// MSI-X Message Control: enable, function mask.
const MSIX_ENABLE: u16 = 1 << 15;
const MSIX_MASK_ALL: u16 = 1 << 14;
/// "No vector" in the common configuration's vector registers.
const NO_VECTOR: u16 = 0xffff;
/// VIRTIO_F_VERSION_1.
pub const VERSION_1: u64 = 1 << 32;
/// Device status bits.
pub const DRIVER_OK: u8 = 4;
const FEATURES_OK: u8 = 8;
/// The command register's enables: I/O space, memory space, bus master,
/// INTx disable.
const CMD_IO: u16 = 1;
const CMD_MEMORY: u16 = 2;
const CMD_WRITABLE: u16 = 0x0407;
const CMD_INTX_DISABLE: u16 = 0x0400;

/// What a driver's access asks of the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    None,
    /// The driver kicked queue N.
    Notify(u16),
    /// The driver reset the device (status 0): forget every request.
    Reset,
    /// The driver finished setting up (DRIVER_OK).
    Ready,
}

/// What kind of virtio device, as the function shows it.
pub struct Identity {
    /// Virtio device type (1 net, 2 block).
    pub device_type: u16,
    /// PCI class code, subclass and programming interface (class << 16 ...).
    pub class: u32,
    pub features: u64,
    pub queues: u16,
}

/// Where a function sits: its I/O BAR, its INTx line, its memory BAR.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub io_base: u16,
    pub irq: u8,
    pub memory: u64,
}

/// One MSI-X table entry: message address, data, and whether masked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    address: u64,
    data: u32,
    masked: bool,
}

pub struct VirtioPci {
    id: Identity,
    /// The PCI INTx line it raises (an ISA IRQ through the 8259s).
    pub irq: u8,
    command: u16,
    bar: u32,
    /// The memory BAR (64-bit, BAR 1 and 2).
    memory: u64,
    msix_control: u16,
    table: Vec<Entry>,
    pending: u64,
    config_vector: u16,
    queue_vectors: Vec<u16>,
    /// MSI messages to send (address, data), taken by [`VirtioPci::messages`].
    outbox: Vec<(u64, u32)>,
    interrupt_line: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    pub driver_features: u64,
    pub status: u8,
    queue_select: u16,
    pub queues: Vec<Queue>,
    isr: u8,
    /// The device-specific configuration (read-only to the driver).
    pub config: [u8; DEVICE_LEN as usize],
}

impl VirtioPci {
    pub fn new(id: Identity, slot: Slot) -> VirtioPci {
        let queues = (0..id.queues).map(|_| Queue::new(MAX_SIZE)).collect();
        let vectors = usize::from(id.queues) + 1;
        let irq = slot.irq;
        VirtioPci {
            command: 0,
            bar: u32::from(slot.io_base) | 1,
            memory: slot.memory,
            msix_control: 0,
            table: alloc::vec![
                Entry {
                    address: 0,
                    data: 0,
                    masked: true
                };
                vectors
            ],
            pending: 0,
            config_vector: NO_VECTOR,
            queue_vectors: alloc::vec![NO_VECTOR; usize::from(id.queues)],
            outbox: Vec::new(),
            id,
            irq,
            interrupt_line: irq,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues,
            isr: 0,
            config: [0; DEVICE_LEN as usize],
        }
    }

    /// Whether the driver set DRIVER_OK (and has not reset the device since).
    pub fn ready(&self) -> bool {
        self.status & DRIVER_OK != 0
    }

    /// A negotiated feature.
    pub fn has(&self, feature: u64) -> bool {
        self.driver_features & feature != 0
    }

    /// The level of its INTx line (none while MSI-X is on).
    pub fn line(&self) -> bool {
        self.isr != 0 && self.command & CMD_INTX_DISABLE == 0 && !self.msix()
    }

    fn msix(&self) -> bool {
        self.msix_control & MSIX_ENABLE != 0
    }

    /// Used buffers were added to the queues in `queues` (bit n: queue n):
    /// the driver is interrupted, by each queue's MSI-X vector or INTx.
    pub fn interrupt(&mut self, queues: u32) {
        if !self.msix() {
            self.isr |= 1;
            return;
        }
        for q in 0..self.queue_vectors.len() {
            if queues & 1 << q != 0 {
                self.signal(self.queue_vectors[q]);
            }
        }
    }

    /// The device needs a reset (a broken queue): the driver is told by a
    /// configuration interrupt with DEVICE_NEEDS_RESET set.
    pub fn needs_reset(&mut self) {
        self.status |= 0x40;
        self.isr |= 2;
        if self.msix() {
            self.signal(self.config_vector);
        }
    }

    /// Vector `v`'s message goes out, or waits as pending while masked.
    fn signal(&mut self, v: u16) {
        let Some(e) = self.table.get(usize::from(v)).copied() else {
            return;
        };
        if e.masked || self.msix_control & MSIX_MASK_ALL != 0 {
            self.pending |= 1 << v;
        } else {
            self.outbox.push((e.address, e.data));
        }
    }

    /// Pending vectors no longer masked go out.
    fn release_pending(&mut self) {
        if !self.msix() || self.msix_control & MSIX_MASK_ALL != 0 {
            return;
        }
        for v in 0..self.table.len() {
            if self.pending & 1 << v != 0 && !self.table[v].masked {
                self.pending &= !(1 << v);
                self.outbox
                    .push((self.table[v].address, self.table[v].data));
            }
        }
    }

    /// The MSI messages to send now.
    pub fn messages(&mut self) -> Vec<(u64, u32)> {
        core::mem::take(&mut self.outbox)
    }

    /// The guest-physical range its memory BAR decodes now, if enabled.
    pub fn memory(&self) -> Option<core::ops::Range<u64>> {
        (self.command & CMD_MEMORY != 0 && self.memory != 0)
            .then(|| self.memory..self.memory + MEMORY_BAR_SIZE)
    }

    /// An access to its memory BAR at `offset` (the MSI-X table and the
    /// pending bits); returns what a load reads.
    pub fn mmio(&mut self, offset: u64, size: u32, input: bool, data: u64) -> u64 {
        let entries = self.table.len() as u64;
        match offset {
            o if (TABLE..TABLE + 16 * entries).contains(&o) => {
                let (i, field) = (((o - TABLE) / 16) as usize, (o - TABLE) % 16);
                let e = &mut self.table[i];
                if input {
                    let words = [
                        e.address as u32,
                        (e.address >> 32) as u32,
                        e.data,
                        u32::from(e.masked),
                    ];
                    let lo = u64::from(words[(field / 4) as usize]);
                    let hi = words.get((field / 4) as usize + 1).copied().unwrap_or(0);
                    return if size == 8 {
                        lo | u64::from(hi) << 32
                    } else {
                        lo
                    };
                }
                let mut put = |field: u64, v: u32| match field {
                    0 => e.address = (e.address & !0xffff_ffff) | u64::from(v),
                    4 => e.address = (e.address & 0xffff_ffff) | u64::from(v) << 32,
                    8 => e.data = v,
                    12 => e.masked = v & 1 != 0,
                    _ => {}
                };
                put(field & !3, data as u32);
                if size == 8 {
                    put((field & !3) + 4, (data >> 32) as u32);
                }
                self.release_pending();
                0
            }
            PBA if input => self.pending,
            _ if input => u64::MAX,
            _ => 0,
        }
    }

    /// The port the driver writes a queue's number to, to kick it (while
    /// its I/O BAR decodes).
    pub fn notify_port(&self) -> Option<u16> {
        self.ports().map(|r| r.start + NOTIFY)
    }

    /// The I/O port range its BAR decodes now, if the driver enabled it.
    pub fn ports(&self) -> Option<core::ops::Range<u16>> {
        let base = (self.bar & 0xfffc) as u16;
        (self.command & CMD_IO != 0 && base != 0 && base <= u16::MAX - BAR_SIZE + 1)
            .then(|| base..base + BAR_SIZE)
    }

    /// A configuration-space dword (`at` dword-aligned, below 256).
    pub fn config_dword(&self, at: u32) -> u32 {
        let cap = |next: u32, kind: u32, offset: u16, len: u16| -> [u32; 4] {
            // cap_vndr 0x09, cap_next, cap_len, cfg_type; bar, id, padding;
            // offset; length.
            let cap_len = if kind == 2 { 20 } else { 16 };
            [
                0x09 | next << 8 | cap_len << 16 | kind << 24,
                0,
                u32::from(offset),
                u32::from(len),
            ]
        };
        let caps: [[u32; 4]; 4] = [
            cap(CAPS + 0x10, 1, COMMON, COMMON_LEN),
            cap(CAPS + 0x20, 3, ISR, 1),
            cap(CAPS + 0x30, 4, DEVICE, DEVICE_LEN),
            cap(MSIX_CAP, 2, NOTIFY, 2),
        ];
        match at {
            0x00 => u32::from(VENDOR) | u32::from(MODERN_BASE + self.id.device_type) << 16,
            // Status: a capability list.
            0x04 => u32::from(self.command) | 0x0010 << 16,
            // Revision 1 (modern).
            0x08 => self.id.class << 8 | 1,
            0x10 => self.bar,
            // BAR 1 and 2: 64-bit memory, 4 KiB (the table and pending bits).
            0x14 => self.memory as u32 | 0b100,
            0x18 => (self.memory >> 32) as u32,
            0x2c => u32::from(VENDOR) | 0x1100 << 16,
            0x34 => CAPS,
            // Interrupt line, pin INTA.
            0x3c => u32::from(self.interrupt_line) | 1 << 8,
            // The notification capability's multiplier (0: one address).
            a if a == CAPS + 0x30 + 16 => 0,
            // MSI-X: table size (one vector per queue, one for configuration
            // changes), its place and the pending bits', both in BAR 1.
            MSIX_CAP => {
                let size = self.table.len() as u32 - 1;
                0x11 | (size | u32::from(self.msix_control)) << 16
            }
            a if a == MSIX_CAP + 4 => TABLE as u32 | 1,
            a if a == MSIX_CAP + 8 => PBA as u32 | 1,
            a if (CAPS..CAPS + 0x40).contains(&a) => {
                let i = ((a - CAPS) / 16) as usize;
                caps[i][((a - CAPS) % 16 / 4) as usize]
            }
            _ => 0,
        }
    }

    /// A configuration-space write (`at` the byte written first).
    pub fn config_write(&mut self, at: u32, size: u32, data: u32) {
        match (at, size) {
            (0x04, 2 | 4) => self.command = data as u16 & CMD_WRITABLE,
            (0x10, 4) => self.bar = (data & !(u32::from(BAR_SIZE) - 1)) | 1,
            (0x14, 4) => {
                let low = u64::from(data) & !(MEMORY_BAR_SIZE - 1) & 0xffff_ffff;
                self.memory = (self.memory & !0xffff_ffff) | low;
            }
            (0x18, 4) => self.memory = (self.memory & 0xffff_ffff) | u64::from(data) << 32,
            (a, 2) if a == MSIX_CAP + 2 => self.set_msix_control(data as u16),
            (a, 4) if a == MSIX_CAP => self.set_msix_control((data >> 16) as u16),
            (0x3c, _) => self.interrupt_line = data as u8,
            _ => {}
        }
    }

    fn set_msix_control(&mut self, value: u16) {
        self.msix_control = value & (MSIX_ENABLE | MSIX_MASK_ALL);
        self.release_pending();
    }

    /// An access to its BAR at `offset`; returns what an input reads.
    pub fn io(&mut self, offset: u16, size: u32, input: bool, data: u32) -> (u32, Event) {
        match offset {
            o if (COMMON..COMMON + COMMON_LEN).contains(&o) => {
                if input {
                    (self.common_read(o), Event::None)
                } else {
                    (0, self.common_write(o, data))
                }
            }
            ISR if input => {
                let isr = self.isr;
                self.isr = 0;
                (u32::from(isr), Event::None)
            }
            NOTIFY if !input => (0, Event::Notify(data as u16)),
            o if (DEVICE..DEVICE + DEVICE_LEN).contains(&o) && input => {
                let at = usize::from(o - DEVICE);
                let mut value = 0u32;
                for i in 0..(size as usize).min(4) {
                    value |= u32::from(*self.config.get(at + i).unwrap_or(&0)) << (8 * i);
                }
                (value, Event::None)
            }
            _ => (if input { u32::MAX } else { 0 }, Event::None),
        }
    }

    fn selected(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    fn common_read(&mut self, offset: u16) -> u32 {
        let half = |v: u64, high: bool| (if high { v >> 32 } else { v }) as u32;
        let q = self.queues.get(usize::from(self.queue_select)).copied();
        match offset {
            0x00 => self.device_feature_select,
            0x04 => match self.device_feature_select {
                0 => self.id.features as u32,
                1 => (self.id.features >> 32) as u32,
                _ => 0,
            },
            0x08 => self.driver_feature_select,
            0x0c => match self.driver_feature_select {
                0 => self.driver_features as u32,
                1 => (self.driver_features >> 32) as u32,
                _ => 0,
            },
            0x10 => u32::from(self.config_vector),
            0x1a => u32::from(
                self.queue_vectors
                    .get(usize::from(self.queue_select))
                    .copied()
                    .unwrap_or(NO_VECTOR),
            ),
            0x12 => u32::from(self.id.queues),
            0x14 => u32::from(self.status),
            0x15 => 0,
            0x16 => u32::from(self.queue_select),
            0x18 => q.map_or(0, |q| u32::from(q.size)),
            0x1c => q.map_or(0, |q| u32::from(q.enabled)),
            // Every queue's notification goes to the one address.
            0x1e => 0,
            0x20 | 0x24 => q.map_or(0, |q| half(q.desc, offset == 0x24)),
            0x28 | 0x2c => q.map_or(0, |q| half(q.avail, offset == 0x2c)),
            0x30 | 0x34 => q.map_or(0, |q| half(q.used, offset == 0x34)),
            _ => 0,
        }
    }

    fn common_write(&mut self, offset: u16, data: u32) -> Event {
        let set_half = |v: &mut u64, high: bool| {
            *v = if high {
                (*v & 0xffff_ffff) | u64::from(data) << 32
            } else {
                (*v & !0xffff_ffff) | u64::from(data)
            }
        };
        match offset {
            0x00 => self.device_feature_select = data,
            0x08 => self.driver_feature_select = data,
            0x0c => {
                // Only what the device offers can be taken.
                let offered = match self.driver_feature_select {
                    0 => self.id.features & 0xffff_ffff,
                    1 => self.id.features >> 32,
                    _ => 0,
                };
                let value = u64::from(data) & offered;
                if self.driver_feature_select == 0 {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | value;
                } else if self.driver_feature_select == 1 {
                    self.driver_features = (self.driver_features & 0xffff_ffff) | value << 32;
                }
            }
            0x14 => {
                let status = data as u8;
                if status == 0 {
                    self.reset();
                    return Event::Reset;
                }
                // FEATURES_OK holds only with VERSION_1 (a legacy driver
                // is not served).
                let status = if status & FEATURES_OK != 0 && !self.has(VERSION_1) {
                    status & !FEATURES_OK
                } else {
                    status
                };
                let was_ready = self.ready();
                self.status = status;
                if self.ready() && !was_ready {
                    let event_idx = self.has(crate::virtqueue::EVENT_IDX);
                    for q in self.queues.iter_mut() {
                        q.event_idx = event_idx;
                    }
                    return Event::Ready;
                }
            }
            0x10 => self.config_vector = self.vector(data as u16),
            0x16 => self.queue_select = data as u16,
            0x1a => {
                let v = self.vector(data as u16);
                if let Some(q) = self.queue_vectors.get_mut(usize::from(self.queue_select)) {
                    *q = v;
                }
            }
            0x18 => {
                // A power of two no larger than offered.
                let size = data as u16;
                if let Some(q) = self.selected() {
                    if size.is_power_of_two() && size <= MAX_SIZE && !q.enabled {
                        q.size = size;
                    }
                }
            }
            0x1c => {
                if let Some(q) = self.selected() {
                    q.enabled = data & 1 != 0;
                }
            }
            0x20 | 0x24 => {
                if let Some(q) = self.selected() {
                    set_half(&mut q.desc, offset == 0x24)
                }
            }
            0x28 | 0x2c => {
                if let Some(q) = self.selected() {
                    set_half(&mut q.avail, offset == 0x2c)
                }
            }
            0x30 | 0x34 => {
                if let Some(q) = self.selected() {
                    set_half(&mut q.used, offset == 0x34)
                }
            }
            _ => {}
        }
        Event::None
    }

    /// A vector the driver chose: one the table has, else "none".
    fn vector(&self, v: u16) -> u16 {
        if usize::from(v) < self.table.len() {
            v
        } else {
            NO_VECTOR
        }
    }

    fn reset(&mut self) {
        self.config_vector = NO_VECTOR;
        self.queue_vectors.fill(NO_VECTOR);
        self.status = 0;
        self.driver_features = 0;
        self.isr = 0;
        self.queue_select = 0;
        for q in self.queues.iter_mut() {
            *q = Queue::new(MAX_SIZE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk() -> VirtioPci {
        VirtioPci::new(
            Identity {
                device_type: 2,
                class: 0x01_00_00,
                features: VERSION_1 | 1 << 9,
                queues: 1,
            },
            Slot {
                io_base: 0xc000,
                irq: 10,
                memory: 0x80_0000_0000,
            },
        )
    }

    #[test]
    fn linux_finds_a_modern_virtio_function_and_its_four_structures() {
        let p = blk();
        assert_eq!(p.config_dword(0), 0x1042_1af4);
        assert_eq!(p.config_dword(8) >> 8, 0x01_00_00, "class");
        assert_eq!(p.config_dword(8) & 0xff, 1, "revision 1");
        assert_ne!(p.config_dword(4) & 0x10 << 16, 0, "capability list");
        let mut at = p.config_dword(0x34) & 0xff;
        let mut found = Vec::new();
        let mut msix = 0;
        while at != 0 {
            let head = p.config_dword(at);
            if head & 0xff == 0x11 {
                msix = at;
                at = (head >> 8) & 0xff;
                continue;
            }
            assert_eq!(head & 0xff, 0x09, "vendor capability");
            let kind = head >> 24;
            let (offset, len) = (p.config_dword(at + 8), p.config_dword(at + 12));
            assert!(offset + len <= u32::from(BAR_SIZE));
            found.push(kind);
            at = (head >> 8) & 0xff;
        }
        found.sort();
        assert_eq!(found, [1, 2, 3, 4]);
        // MSI-X: two vectors (configuration, the queue), table and pending
        // bits in BAR 1, a 64-bit memory BAR of one page.
        assert_eq!(p.config_dword(msix) >> 16, 1, "table size 2, off");
        assert_eq!(p.config_dword(msix + 4), 1);
        assert_eq!(p.config_dword(msix + 8), 0x801);
        assert_eq!(p.config_dword(0x14), 0x4, "64-bit memory");
        assert_eq!(p.config_dword(0x18), 0x80);
        assert_eq!(p.config_dword(0x3c), 10 | 1 << 8, "line 10, pin INTA");
    }

    #[test]
    fn the_bar_is_sized_moved_and_decoded_only_with_io_enabled() {
        let mut p = blk();
        assert_eq!(p.ports(), None, "I/O not enabled yet");
        p.config_write(0x10, 4, u32::MAX);
        assert_eq!(p.config_dword(0x10), 0xffff_ff01, "256 bytes of I/O");
        p.config_write(0x10, 4, 0xc100);
        p.config_write(0x04, 2, 1);
        assert_eq!(p.ports(), Some(0xc100..0xc200));
    }

    #[test]
    fn features_are_negotiated_within_the_offer_and_reset_forgets_them() {
        let mut p = blk();
        p.io(0x08, 4, false, 1);
        p.io(0x0c, 4, false, u32::MAX);
        p.io(0x08, 4, false, 0);
        p.io(0x0c, 4, false, u32::MAX);
        assert_eq!(p.driver_features, VERSION_1 | 1 << 9);
        p.io(0x14, 1, false, 0x0b);
        assert_eq!(p.io(0x14, 1, true, 0).0, 0x0b, "FEATURES_OK kept");
        assert_eq!(p.io(0x14, 1, false, 0x0f).1, Event::Ready);
        assert_eq!(p.io(0x14, 1, false, 0).1, Event::Reset);
        assert_eq!(p.driver_features, 0);
        assert_eq!(p.io(0x14, 1, true, 0).0, 0);
    }

    #[test]
    fn without_version_1_features_ok_does_not_hold() {
        let mut p = blk();
        p.io(0x14, 1, false, 0x0b);
        assert_eq!(p.io(0x14, 1, true, 0).0 & 8, 0);
    }

    #[test]
    fn queue_registers_take_64_bit_addresses_in_halves_and_notify_names_the_queue() {
        let mut p = blk();
        p.io(0x16, 2, false, 0);
        p.io(0x20, 4, false, 0x1234_5000);
        p.io(0x24, 4, false, 0x1);
        p.io(0x18, 2, false, 64);
        p.io(0x1c, 2, false, 1);
        assert_eq!(p.queues[0].desc, 0x1_1234_5000);
        assert_eq!(p.queues[0].size, 64);
        assert!(p.queues[0].enabled);
        assert_eq!(p.io(0x40, 2, false, 0).1, Event::Notify(0));
        // A queue that does not exist reads as size 0.
        p.io(0x16, 2, false, 5);
        assert_eq!(p.io(0x18, 2, true, 0).0, 0);
    }

    /// MSI-X as Linux sets it up: memory decode on, the table entries
    /// written (masked until written), the queue's vector chosen, MSI-X on.
    fn with_msix(p: &mut VirtioPci) {
        p.config_write(0x04, 2, 0x7);
        assert_eq!(p.memory(), Some(0x80_0000_0000..0x80_0000_1000));
        for (v, address) in [(0u64, 0xfee0_0000u64), (1, 0xfee0_1000)] {
            p.mmio(16 * v, 4, false, address);
            p.mmio(16 * v + 4, 4, false, 0);
            p.mmio(16 * v + 8, 4, false, 0x40 + v);
            p.mmio(16 * v + 12, 4, false, 0);
        }
        p.io(0x10, 2, false, 0);
        p.io(0x16, 2, false, 0);
        p.io(0x1a, 2, false, 1);
        assert_eq!(p.io(0x1a, 2, true, 0).0, 1);
        p.config_write(MSIX_CAP + 2, 2, u32::from(MSIX_ENABLE));
    }

    #[test]
    fn with_msix_a_queue_sends_its_vectors_message_and_no_line_rises() {
        let mut p = blk();
        with_msix(&mut p);
        p.interrupt(1);
        assert!(!p.line());
        assert_eq!(p.messages(), [(0xfee0_1000, 0x41)]);
        assert!(p.messages().is_empty());
        p.needs_reset();
        assert_eq!(p.messages(), [(0xfee0_0000, 0x40)]);
        // A vector the table does not have reads back as none.
        p.io(0x1a, 2, false, 7);
        assert_eq!(p.io(0x1a, 2, true, 0).0, 0xffff);
    }

    #[test]
    fn a_masked_vector_waits_as_pending_until_unmasked() {
        let mut p = blk();
        with_msix(&mut p);
        p.mmio(16 + 12, 4, false, 1);
        p.interrupt(1);
        assert!(p.messages().is_empty());
        assert_eq!(p.mmio(PBA, 8, true, 0), 0b10);
        p.mmio(16 + 12, 4, false, 0);
        assert_eq!(p.messages(), [(0xfee0_1000, 0x41)]);
        assert_eq!(p.mmio(PBA, 8, true, 0), 0);
        // The function mask holds them all the same way.
        p.config_write(MSIX_CAP + 2, 2, u32::from(MSIX_ENABLE | MSIX_MASK_ALL));
        p.interrupt(1);
        assert!(p.messages().is_empty());
        p.config_write(MSIX_CAP + 2, 2, u32::from(MSIX_ENABLE));
        assert_eq!(p.messages().len(), 1);
        // Reads of the table give back what was written; beyond it, ones.
        assert_eq!(p.mmio(16 + 8, 4, true, 0), 0x41);
        assert_eq!(p.mmio(0x400, 4, true, 0), u64::MAX);
    }

    #[test]
    fn the_line_is_high_until_the_isr_is_read() {
        let mut p = blk();
        p.interrupt(1);
        assert!(p.line());
        assert_eq!(p.io(ISR, 1, true, 0).0, 1);
        assert!(!p.line());
    }
}
