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

/// MSI-X table pages the kernel has mapped (physical page, where):
/// mapped once, kept for ever (a driver restarted a thousand times uses
/// the same page).
static MSIX_PAGES: Mutex<heapless::Vec<(u64, u64), 16>> = Mutex::new(heapless::Vec::new());

/// Writes MSI-X table entry at physical `entry` (16 bytes, in a BAR the
/// kernel keeps from its driver): message `address` and `data`, masked or
/// not. False if its page cannot be mapped.
pub fn msix_entry_write(entry: u64, address: u64, data: u32, masked: bool) -> bool {
    let page = entry & !0xfff;
    let mut pages = MSIX_PAGES.lock();
    let va = match pages.iter().find(|(p, _)| *p == page) {
        Some(&(_, va)) => va,
        None => {
            let Ok(va) = super::memory::map_physical(page, 4096, super::paging::Caching::Uncached)
            else {
                return false;
            };
            if pages.push((page, va)).is_err() {
                return false;
            }
            va
        }
    };
    let at = (va + (entry & 0xfff)) as *mut u32;
    // The entry's four dwords, the vector control (mask) last, so the
    // entry is whole before it is unmasked.
    // SAFETY: `at` is a 16-byte-aligned MSI-X entry in a device page mapped
    // uncached just above, which no domain maps.
    unsafe {
        core::ptr::write_volatile(at.add(3), 1);
        core::ptr::write_volatile(at, address as u32);
        core::ptr::write_volatile(at.add(1), (address >> 32) as u32);
        core::ptr::write_volatile(at.add(2), data);
        core::ptr::write_volatile(at.add(3), masked as u32);
    }
    true
}
