//! PCI configuration space through configuration mechanism #1 (ports
//! 0xCF8/0xCFC), which only the kernel reaches (`checks::io_ports` refuses
//! them to domains).
//!
//! Owns: dword reads and writes of a function's configuration space. Which
//! domain may ask for which function, and what it may write, is
//! `domain/pci.rs`.

use spin::Mutex;
use x86_64::instructions::port::Port;

const ADDRESS: u16 = 0xcf8;
const DATA: u16 = 0xcfc;

/// Serialises the address/data pair (one access at a time on every CPU).
static CONFIG: Mutex<()> = Mutex::new(());

fn address(bdf: u16, offset: u8) -> u32 {
    0x8000_0000 | (bdf as u32) << 8 | (offset & 0xfc) as u32
}

/// Reads the dword at `offset` (rounded down to a dword) of function `bdf`.
pub fn read32(bdf: u16, offset: u8) -> u32 {
    let _held = CONFIG.lock();
    // SAFETY: 0xCF8/0xCFC are the PCI configuration ports, which no domain
    // is ever given; the lock keeps the address/data pair together, and a
    // configuration read has no side effect on memory.
    unsafe {
        Port::<u32>::new(ADDRESS).write(address(bdf, offset));
        Port::<u32>::new(DATA).read()
    }
}

/// Writes the dword at `offset` of function `bdf`.
pub fn write32(bdf: u16, offset: u8, value: u32) {
    let _held = CONFIG.lock();
    // SAFETY: as in `read32`; what may be written is decided by the caller
    // (`domain::pci`), which never moves a BAR or reaches another function.
    unsafe {
        Port::<u32>::new(ADDRESS).write(address(bdf, offset));
        Port::<u32>::new(DATA).write(value);
    }
}
