//! The kernel's own page tables.
//!
//! Owns: building the kernel half of the address space (physmap, kernel image
//! with per-section permissions, guard pages left unmapped, the device window)
//! and switching CR3 to it. Replaces the boot tables of `boot/entry.S`.
//!
//! Never: maps anything writable and executable; maps a stack guard page.

use super::stacks;
use crate::frame_pool::FrameAllocator as Frames;
use crate::frames::PhysRange;
use crate::layout::{DEVICE_WINDOW, DEVICE_WINDOW_SIZE, KERNEL_VMA, PHYS_OFFSET};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use x86_64::structures::paging::{
    FrameAllocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags as F, PhysFrame,
    Size2MiB, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

const HUGE: u64 = 2 << 20;
/// The boot tables map physical memory below 4 GiB only, so tables built
/// before the switch must come from there.
const BOOT_PHYSMAP_LIMIT: u64 = 1 << 32;

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
}

/// Why the kernel address space could not be built or extended.
pub enum PagingError {
    OutOfFrames,
    /// The device window is full.
    WindowFull,
    /// A mapping collided with an existing one of a different kind.
    Conflict(u64),
}

impl core::fmt::Display for PagingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PagingError::OutOfFrames => f.write_str("out of physical memory for page tables"),
            PagingError::WindowFull => f.write_str("the device window is full"),
            PagingError::Conflict(va) => write!(f, "{va:#x} is already mapped differently"),
        }
    }
}

/// Hands frames to the `x86_64` mapper, optionally only below a limit.
struct FrameSource<'a> {
    frames: &'a mut Frames,
    limit: u64,
}

// SAFETY: every frame returned comes from the kernel allocator, which hands
// each free frame out once and never one that is in use or reserved.
unsafe impl FrameAllocator<Size4KiB> for FrameSource<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let frame = self.frames.allocate_below(self.limit)?;
        Some(PhysFrame::containing_address(PhysAddr::new(frame.addr())))
    }
}

/// The kernel half of the address space, once active.
pub struct KernelSpace {
    mapper: OffsetPageTable<'static>,
    root: u64,
    device_next: u64,
    /// Bytes of physical memory reachable through the physmap.
    pub physmap_bytes: u64,
}

/// What `build_and_switch` did, for the boot log.
pub struct Summary {
    pub text_pages: u64,
    pub rodata_pages: u64,
    pub data_pages: u64,
    pub guard_pages: usize,
}

fn map_err<S: x86_64::structures::paging::PageSize>(e: MapToError<S>, at: u64) -> PagingError {
    match e {
        MapToError::FrameAllocationFailed => PagingError::OutOfFrames,
        _ => PagingError::Conflict(at),
    }
}

/// Loads `pml4` (physical) into CR3.
pub fn load_root(pml4: u64) {
    if pml4 == 0 {
        return;
    }
    // SAFETY: `pml4` is the kernel's root, whose upper half maps the kernel
    // exactly as every other address space does, so the code running now
    // stays mapped across the switch.
    unsafe {
        x86_64::registers::control::Cr3::write(
            x86_64::structures::paging::PhysFrame::containing_address(x86_64::PhysAddr::new(pml4)),
            x86_64::registers::control::Cr3Flags::empty(),
        )
    }
}

/// Builds the kernel address space and switches to it.
///
/// `physmap` lists the physical ranges to map at `PHYS_OFFSET` (RAM and
/// firmware tables); they are mapped in whole 2 MiB pages.
pub fn build_and_switch(
    frames: &mut Frames,
    physmap: &[PhysRange],
) -> Result<(KernelSpace, Summary), PagingError> {
    let pml4_phys = frames
        .allocate_below(BOOT_PHYSMAP_LIMIT)
        .ok_or(PagingError::OutOfFrames)?
        .addr();
    let pml4_ptr = (PHYS_OFFSET + pml4_phys) as *mut PageTable;
    // SAFETY: the frame was just allocated (so nothing else refers to it) and
    // lies below 4 GiB, where the boot physmap maps it writable. It stays
    // allocated for ever as the kernel's root table, so 'static holds.
    let pml4 = unsafe {
        pml4_ptr.write(PageTable::new());
        &mut *pml4_ptr
    };
    // SAFETY: PHYS_OFFSET maps all of physical memory below 4 GiB now (boot
    // tables) and all RAM after the switch (the physmap built here), which is
    // where page-table frames come from.
    let mut mapper = unsafe { OffsetPageTable::new(pml4, VirtAddr::new(PHYS_OFFSET)) };
    let mut source = FrameSource {
        frames,
        limit: BOOT_PHYSMAP_LIMIT,
    };

    let mut physmap_bytes = 0;
    for r in physmap {
        let mut chunk = r.start & !(HUGE - 1);
        while chunk < r.end {
            let page = Page::<Size2MiB>::containing_address(VirtAddr::new(PHYS_OFFSET + chunk));
            let frame = PhysFrame::<Size2MiB>::containing_address(PhysAddr::new(chunk));
            // SAFETY: the physmap aliases RAM as data (NX); the kernel reaches
            // domain and table memory through it by design.
            match unsafe {
                mapper.map_to(
                    page,
                    frame,
                    F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
                    &mut source,
                )
            } {
                Ok(flush) => {
                    flush.ignore();
                    physmap_bytes += HUGE;
                }
                Err(MapToError::PageAlreadyMapped(_)) => {}
                Err(e) => return Err(map_err(e, chunk)),
            }
            chunk += HUGE;
        }
    }

    let guards = stacks::guard_pages();
    let sections = [
        (
            sym(&raw const __text_start),
            sym(&raw const __text_end),
            F::PRESENT,
        ),
        (
            sym(&raw const __rodata_start),
            sym(&raw const __rodata_end),
            F::PRESENT | F::NO_EXECUTE,
        ),
        (
            sym(&raw const __data_start),
            sym(&raw const __data_end),
            F::PRESENT | F::WRITABLE | F::NO_EXECUTE,
        ),
    ];
    let mut counts = [0u64; 3];
    for (i, &(start, end, flags)) in sections.iter().enumerate() {
        let mut va = start & !0xfff;
        while va < end {
            if !guards.contains(&va) {
                let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
                let frame = PhysFrame::containing_address(PhysAddr::new(va - KERNEL_VMA));
                // SAFETY: maps the kernel image onto itself with the section's
                // permissions; text is never writable, data never executable.
                unsafe { mapper.map_to(page, frame, flags, &mut source) }
                    .map_err(|e| map_err(e, va))?
                    .ignore();
                counts[i] += 1;
            }
            va += 4096;
        }
    }

    // Give the device window its PDPT now, so the kernel half that domains
    // copy at creation already contains every later device mapping.
    let window_pdpt = source
        .frames
        .allocate_below(BOOT_PHYSMAP_LIMIT)
        .ok_or(PagingError::OutOfFrames)?
        .addr();
    // SAFETY: a fresh frame below 4 GiB, reachable through the boot physmap.
    unsafe {
        (PHYS_OFFSET as *mut u8)
            .add(window_pdpt as usize)
            .write_bytes(0, 4096)
    };
    let slot = (DEVICE_WINDOW >> 39) as usize & 511;
    mapper.level_4_table_mut()[slot].set_addr(PhysAddr::new(window_pdpt), F::PRESENT | F::WRITABLE);

    // SAFETY: the new tables map all the kernel touches from here on: its image
    // (we run in .text, on the boot stack in .bss), the boot info and all RAM;
    // the identity map and .boot are dropped on purpose (nothing uses them).
    unsafe {
        Cr3::write(
            PhysFrame::containing_address(PhysAddr::new(pml4_phys)),
            Cr3Flags::empty(),
        )
    };
    Ok((
        KernelSpace {
            mapper,
            root: pml4_phys,
            device_next: DEVICE_WINDOW,
            physmap_bytes,
        },
        Summary {
            text_pages: counts[0],
            rodata_pages: counts[1],
            data_pages: counts[2],
            guard_pages: guards.len(),
        },
    ))
}

fn sym(p: *const u8) -> u64 {
    p as u64
}

/// How a device-window mapping is cached.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Caching {
    /// Normal memory (firmware tables).
    WriteBack,
    /// Device registers.
    Uncached,
}

impl KernelSpace {
    /// Maps `len` bytes of physical address space at `phys` into the device
    /// window and returns the virtual address of `phys`.
    pub fn map_device(
        &mut self,
        frames: &mut Frames,
        phys: u64,
        len: u64,
        caching: Caching,
    ) -> Result<u64, PagingError> {
        let first = phys & !0xfff;
        let last = phys
            .checked_add(len.max(1))
            .ok_or(PagingError::WindowFull)?;
        let pages = (last - first).div_ceil(4096);
        let base = self.device_next;
        if base + pages * 4096 > DEVICE_WINDOW + DEVICE_WINDOW_SIZE {
            return Err(PagingError::WindowFull);
        }
        let mut flags = F::PRESENT | F::WRITABLE | F::NO_EXECUTE;
        if caching == Caching::Uncached {
            flags |= F::NO_CACHE | F::WRITE_THROUGH;
        }
        let mut source = FrameSource {
            frames,
            limit: u64::MAX,
        };
        for i in 0..pages {
            let page = Page::<Size4KiB>::containing_address(VirtAddr::new(base + i * 4096));
            let frame = PhysFrame::containing_address(PhysAddr::new(first + i * 4096));
            // SAFETY: the window is fresh virtual space (bump-allocated, never
            // reused) mapped NX; the caller is responsible for what it reads
            // at that device or firmware address, not for memory safety here.
            unsafe { self.mapper.map_to(page, frame, flags, &mut source) }
                .map_err(|e| map_err(e, base + i * 4096))?
                .flush();
        }
        self.device_next = base + pages * 4096;
        Ok(base + (phys - first))
    }

    /// Leaves the next page of the device window unmapped for good (a
    /// guard page under the stack mapped next).
    pub fn skip_guard_page(&mut self) -> Result<(), PagingError> {
        if self.device_next + 4096 > DEVICE_WINDOW + DEVICE_WINDOW_SIZE {
            return Err(PagingError::WindowFull);
        }
        self.device_next += 4096;
        Ok(())
    }

    /// The root table's physical address.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Whether a kernel virtual address is mapped.
    pub fn is_mapped(&self, va: u64) -> bool {
        !matches!(
            self.mapper.translate(VirtAddr::new(va)),
            TranslateResult::NotMapped | TranslateResult::InvalidFrameAddress(_)
        )
    }
}
