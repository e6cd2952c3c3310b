//! The kernel's virtual address layout, in one place.
//!
//! ```text
//! 0xffff_8000_0000_0000  physmap: physical RAM at PHYS_OFFSET + address (RW, NX)
//! 0xffff_c000_0000_0000  device window: MMIO and firmware tables mapped on demand (UC)
//! 0xffff_ffff_8000_0000  kernel image (code model "kernel"), loaded at 2 MiB physical
//! ```
//! The lower half belongs to domains (issue 3).

/// Where all of physical memory appears in the kernel half.
pub const PHYS_OFFSET: u64 = 0xffff_8000_0000_0000;
/// Start of the window where device registers and firmware tables are mapped.
pub const DEVICE_WINDOW: u64 = 0xffff_c000_0000_0000;
/// Size of the device window.
pub const DEVICE_WINDOW_SIZE: u64 = 1 << 30;
/// Virtual address the kernel image is linked at, minus its physical address.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

/// The kernel virtual address of a physical address in RAM.
pub const fn phys_to_virt(phys: u64) -> u64 {
    PHYS_OFFSET + phys
}
