//! The I/O APIC: routing physical IRQs to vectors, masking and unmasking them.
//!
//! Owns: the redirection table of the first I/O APIC the MADT names. An IRQ
//! number here is an ISA IRQ (0–15, translated through the MADT's interrupt
//! source overrides) or a GSI (16–23). Lines start masked; one is unmasked
//! only while a domain has a port bound to it and has acknowledged it.
//! Once interrupt remapping is on (`use_remapping`), an entry names the
//! remapping table's entry for its IRQ instead of a vector and CPU.

use super::paging::Caching;
use crate::intr_remap;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use ipc_abi::layout::MAX_IRQS;

/// First vector used for physical IRQs: IRQ n arrives at `VECTOR_IRQ_BASE + n`.
pub const VECTOR_IRQ_BASE: u8 = 0x40;

static MMIO: AtomicU64 = AtomicU64::new(0);
/// Its redirection entries, and its id (bits 27:24 of its ID register).
static LINES: AtomicU32 = AtomicU32::new(0);
static ID: AtomicU32 = AtomicU32::new(0);
/// Entries name remapping table entries (interrupt remapping is on).
static REMAPPED: AtomicBool = AtomicBool::new(false);

/// How an ISA IRQ reaches the I/O APIC (from the MADT).
#[derive(Clone, Copy, Debug)]
pub struct Override {
    pub irq: u8,
    pub gsi: u32,
    pub active_low: bool,
    pub level: bool,
}

static OVERRIDES: spin::Mutex<heapless::Vec<Override, 16>> = spin::Mutex::new(heapless::Vec::new());

fn reg_write(reg: u32, value: u32) {
    let base = MMIO.load(Ordering::Relaxed);
    if base == 0 {
        return;
    }
    // SAFETY: `base` maps the I/O APIC's register window uncached (set by
    // `init`); IOREGSEL at +0 selects the register IOWIN at +0x10 accesses.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::write_volatile((base + 0x10) as *mut u32, value);
    }
}

fn reg_read(reg: u32) -> u32 {
    let base = MMIO.load(Ordering::Relaxed);
    if base == 0 {
        return 0;
    }
    // SAFETY: as in `reg_write`.
    unsafe {
        core::ptr::write_volatile(base as *mut u32, reg);
        core::ptr::read_volatile((base + 0x10) as *const u32)
    }
}

/// Maps the I/O APIC at `phys`, masks every line and remembers the overrides.
pub fn init(phys: u64, overrides: &[Override]) -> Result<u32, super::paging::PagingError> {
    let va = super::memory::map_physical(phys, 0x20, Caching::Uncached)?;
    MMIO.store(va, Ordering::Relaxed);
    let entries = ((reg_read(1) >> 16) & 0xff) + 1;
    LINES.store(entries, Ordering::Relaxed);
    ID.store((reg_read(0) >> 24) & 0xf, Ordering::Relaxed);
    for i in 0..entries {
        reg_write(0x10 + 2 * i, 1 << 16);
        reg_write(0x11 + 2 * i, 0);
    }
    let mut o = OVERRIDES.lock();
    o.clear();
    for ov in overrides {
        let _ = o.push(*ov);
    }
    Ok(entries)
}

/// The I/O APIC's id, if there is one.
pub fn id() -> Option<u8> {
    (MMIO.load(Ordering::Relaxed) != 0).then(|| ID.load(Ordering::Relaxed) as u8)
}

/// Interrupt remapping is on, with an entry for every IRQ (its number)
/// and the NMI: from now on redirection entries name those (every line
/// masked again here; none is bound before domains run).
pub fn use_remapping() {
    REMAPPED.store(true, Ordering::Relaxed);
    for i in 0..LINES.load(Ordering::Relaxed) {
        let (low, high) = intr_remap::ioapic_entry(0, 0, false, false, false, true);
        reg_write(0x11 + 2 * i, high);
        reg_write(0x10 + 2 * i, low);
    }
}

/// The GSI and polarity/trigger of an IRQ number.
pub fn line(irq: u8) -> (u32, bool, bool) {
    if let Some(o) = OVERRIDES.lock().iter().find(|o| o.irq == irq) {
        return (o.gsi, o.active_low, o.level);
    }
    // ISA IRQs default to edge, active high; PCI GSIs to level, active low.
    if irq < 16 {
        (irq as u32, false, false)
    } else {
        (irq as u32, true, true)
    }
}

/// Routes `irq` to its vector on this CPU, masked or not.
pub fn route(irq: u8, masked: bool) {
    if irq as u64 >= MAX_IRQS {
        return;
    }
    let (gsi, active_low, level) = line(irq);
    if REMAPPED.load(Ordering::Relaxed) {
        let vector = VECTOR_IRQ_BASE + irq;
        let (low, high) =
            intr_remap::ioapic_entry(u16::from(irq), vector, false, active_low, level, masked);
        reg_write(0x11 + 2 * gsi, high);
        reg_write(0x10 + 2 * gsi, low);
        return;
    }
    let mut low = (VECTOR_IRQ_BASE + irq) as u32;
    if active_low {
        low |= 1 << 13;
    }
    if level {
        low |= 1 << 15;
    }
    if masked {
        low |= 1 << 16;
    }
    let dest = super::apic::id() << 24;
    reg_write(0x11 + 2 * gsi, dest);
    reg_write(0x10 + 2 * gsi, low);
}

/// Routes ISA `irq` to this CPU as an NMI (the watchdog's source); false
/// without an I/O APIC.
pub fn route_nmi(irq: u8) -> bool {
    if MMIO.load(Ordering::Relaxed) == 0 {
        return false;
    }
    let (gsi, active_low, level) = line(irq);
    if REMAPPED.load(Ordering::Relaxed) {
        let handle = intr_remap::NMI_HANDLE;
        let (low, high) = intr_remap::ioapic_entry(handle, 0, true, active_low, level, false);
        reg_write(0x11 + 2 * gsi, high);
        reg_write(0x10 + 2 * gsi, low);
        return true;
    }
    // Delivery mode 0b100: NMI (the vector field is ignored).
    let mut low = 0b100 << 8;
    if active_low {
        low |= 1 << 13;
    }
    if level {
        low |= 1 << 15;
    }
    reg_write(0x11 + 2 * gsi, super::apic::id() << 24);
    reg_write(0x10 + 2 * gsi, low);
    true
}

/// Masks or unmasks an IRQ's line.
pub fn set_masked(irq: u8, masked: bool) {
    route(irq, masked);
}
