//! The I/O APIC: routing physical IRQs to vectors, masking and unmasking them.
//!
//! Owns: the redirection table of the first I/O APIC the MADT names. An IRQ
//! number here is an ISA IRQ (0–15, translated through the MADT's interrupt
//! source overrides) or a GSI (16–23). Lines start masked; one is unmasked
//! only while a domain has a port bound to it and has acknowledged it.

use super::paging::Caching;
use core::sync::atomic::{AtomicU64, Ordering};
use ipc_abi::layout::MAX_IRQS;

/// First vector used for physical IRQs: IRQ n arrives at `VECTOR_IRQ_BASE + n`.
pub const VECTOR_IRQ_BASE: u8 = 0x40;

static MMIO: AtomicU64 = AtomicU64::new(0);

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

/// The GSI and polarity/trigger of an IRQ number.
fn line(irq: u8) -> (u32, bool, bool) {
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
