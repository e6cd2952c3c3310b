//! The virtual memory layout of every domain (the lower half of its address space).
//!
//! ```text
//! 0x0000_0000_0000_0000  unmapped (null guard)
//! 0x0000_0000_0040_0000  IMAGE_BASE: the ELF image, loaded per program header
//! 0x0000_0000_4000_0000  IMAGE_LIMIT
//! 0x0000_0010_0000_0000  HEAP_BASE: the rest of the memory budget, read-write
//! 0x0000_5000_0000_0000  DEVICE_WINDOW: device memory given at creation, uncached
//! 0x0000_5800_0000_0000  DMA_WINDOW: physically contiguous pages for device DMA (driver domains)
//! 0x0000_6000_0000_0000  MODULE_WINDOW: boot modules, read-only (domain 0 only)
//! 0x0000_7000_0000_0000  GRANT_WINDOW: GRANT_SLOTS pages where granted pages are mapped
//! 0x0000_7fff_ffe0_0000  stack guard page, then the stack (STACK_SIZE) up to STACK_TOP
//! 0x0000_7fff_fff0_0000  START_INFO (read-only), EVENT_PAGE (read-write), TIME_PAGE (read-only)
//! 0x0000_8000_0000_0000  kernel half: not accessible from ring 3
//! ```

/// Page size.
pub const PAGE_SIZE: u64 = 4096;
/// Lowest address an ELF segment may use.
pub const IMAGE_BASE: u64 = 0x40_0000;
/// End of the image region.
pub const IMAGE_LIMIT: u64 = 0x4000_0000;
/// Where the heap (memory budget left after image, stack and shared pages) starts.
pub const HEAP_BASE: u64 = 0x10_0000_0000;
/// Where device memory (MMIO) given to a domain is mapped, in the order given.
pub const DEVICE_WINDOW: u64 = 0x5000_0000_0000;
/// Size of the device window.
pub const DEVICE_WINDOW_SIZE: u64 = 1 << 30;
/// Where a driver domain's DMA pages are mapped (`DomainAddDma`). The
/// window is contiguous to its devices too: byte N of it is at device
/// address `DmaPhys(DMA_WINDOW) + N` (the kernel keeps this with and
/// without an IOMMU), so a driver asks once.
pub const DMA_WINDOW: u64 = 0x5800_0000_0000;
/// Most DMA pages a domain may have (64 MiB).
pub const DMA_MAX_PAGES: u64 = 16 * 1024;
/// Physical IRQs (GSIs) a domain may be given: 0..MAX_IRQS.
pub const MAX_IRQS: u64 = 24;
/// Boot modules handed to domain 0, read-only, one after another (page-aligned).
pub const MODULE_WINDOW: u64 = 0x6000_0000_0000;
/// Where granted pages are mapped.
pub const GRANT_WINDOW: u64 = 0x7000_0000_0000;
/// How many pages the grant window holds.
pub const GRANT_SLOTS: u64 = 256;
/// Top of the initial stack (exclusive).
pub const STACK_TOP: u64 = 0x7fff_ffef_0000;
/// Size of the initial stack.
pub const STACK_SIZE: u64 = 64 * 1024;
/// The start info page ([`crate::shared::StartInfo`]), read-only.
pub const START_INFO: u64 = 0x7fff_fff0_0000;
/// The event page ([`crate::shared::EventPage`]), read-write.
pub const EVENT_PAGE: u64 = START_INFO + PAGE_SIZE;
/// The time page ([`crate::shared::TimePage`]), read-only.
pub const TIME_PAGE: u64 = START_INFO + 2 * PAGE_SIZE;
/// First address of the kernel half.
pub const USER_LIMIT: u64 = 0x8000_0000_0000;
/// Smallest memory budget a domain may have (image, stack, shared pages, a little heap).
pub const MIN_DOMAIN_KIB: u64 = 256;

const _: () = assert!(
    STACK_TOP < START_INFO && GRANT_WINDOW + GRANT_SLOTS * PAGE_SIZE < STACK_TOP - STACK_SIZE
);
const _: () = assert!(TIME_PAGE + PAGE_SIZE <= USER_LIMIT);
