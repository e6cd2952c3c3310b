//! The kernel image's own integrity: its boot code, code and read-only
//! data (everything of it that never changes after boot) checksummed at
//! boot and again on request (debug key `i`), so that a write that should
//! never reach them (a device's DMA above all) is seen.
//!
//! Owns: which bytes count (from the image's physical start to the end of
//! its read-only data, read through the physmap) and their checksum.

use crate::layout::{phys_to_virt, KERNEL_VMA};

extern "C" {
    static __kernel_phys_start: u8;
    static __rodata_end: u8;
}

static AT_BOOT: spin::Once<u64> = spin::Once::new();

/// The physical range checked: `[start, end)`.
pub fn range() -> (u64, u64) {
    let start = (&raw const __kernel_phys_start) as u64;
    let end = (&raw const __rodata_end) as u64 - KERNEL_VMA;
    (start, end)
}

/// Where an FNV-1a checksum starts.
pub const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes`, going on from `sum`.
pub fn fnv1a(sum: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(sum, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// FNV-1a over the range, through the physmap.
pub fn checksum() -> u64 {
    let (start, end) = range();
    // SAFETY: the kernel image's physical pages are RAM the physmap maps
    // (they were reserved from the allocator at boot and never freed);
    // reading them has no effect.
    let bytes = unsafe {
        core::slice::from_raw_parts(phys_to_virt(start) as *const u8, (end - start) as usize)
    };
    fnv1a(FNV_START, bytes)
}

/// Records the checksum at boot.
pub fn seal() {
    AT_BOOT.call_once(checksum);
}

/// The checksum now and at boot.
pub fn verify() -> (u64, u64) {
    (checksum(), AT_BOOT.get().copied().unwrap_or(0))
}
