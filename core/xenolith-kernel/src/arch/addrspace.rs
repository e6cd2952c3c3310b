//! Domain address spaces: page tables only the kernel writes.
//!
//! Owns: one PML4 per domain whose upper half is the kernel's (shared,
//! supervisor-only) and whose lower half maps the domain's own frames,
//! granted foreign frames and (for domain 0) boot modules. Software bits in
//! each leaf say which kind a mapping is, so teardown frees exactly the
//! domain's own frames and page tables and nothing else.

use crate::frame_pool::FrameAllocator as Frames;
use crate::frames::Frame;
/// Bytes in a page.
const PAGE: u64 = 4096;
use crate::layout::{phys_to_virt, PHYS_OFFSET};
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    mapper::CleanUp, FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page, PageTable,
    PageTableFlags as F, PhysFrame, Size4KiB, Translate,
};
use x86_64::{PhysAddr, VirtAddr};

/// Software bit: the frame belongs to this domain and is freed with it.
const OWNED: F = F::BIT_9;
/// Software bit: a granted frame of another domain.
const FOREIGN: F = F::BIT_10;

/// Who owns the frame behind a user mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The domain's own memory; freed when the domain is destroyed.
    Owned,
    /// A page granted by another domain; never freed through this mapping.
    Foreign,
    /// Boot module bytes lent read-only; never freed.
    Borrowed,
}

/// Access rights of a user mapping.
#[derive(Clone, Copy, Debug)]
pub struct Access {
    pub write: bool,
    pub execute: bool,
}

/// Why a mapping failed.
#[derive(Debug, PartialEq, Eq)]
pub enum MapError {
    OutOfFrames,
    AlreadyMapped,
    NotUser,
}

struct Source<'a>(&'a mut Frames);

// SAFETY: frames come from the kernel allocator, each handed out once.
unsafe impl FrameAllocator<Size4KiB> for Source<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame<Size4KiB>> {
        let f = self.0.allocate()?;
        zero_frame(f);
        Some(PhysFrame::containing_address(PhysAddr::new(f.addr())))
    }
}

/// Gives emptied page-table frames back to the allocator.
struct Release<'a>(&'a mut Frames);

impl FrameDeallocator<Size4KiB> for Release<'_> {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame<Size4KiB>) {
        // SAFETY: a page-table frame `Source` took from the allocator.
        let _ = self
            .0
            .free(unsafe { Frame::of_ram(frame.start_address().as_u64()) });
    }
}

pub use super::memory::zero_frame;

/// A domain's page tables: either a ring-3 address space under the
/// kernel's half, or (`nested`) the nested page table of an HVM guest,
/// mapping guest-physical addresses with no kernel half at all.
pub struct AddressSpace {
    pml4: u64,
    nested: bool,
}

fn table(phys: u64) -> &'static mut PageTable {
    // SAFETY: `phys` is a page-table frame owned by an address space (or the
    // kernel's root); the physmap maps it; callers hold the domain table lock,
    // so no two references to the same table are live at once.
    unsafe { &mut *(phys_to_virt(phys) as *mut PageTable) }
}

impl AddressSpace {
    /// A new address space with the kernel half of `kernel_pml4` and an empty lower half.
    pub fn new(frames: &mut Frames, kernel_pml4: u64) -> Result<AddressSpace, MapError> {
        let root = frames.allocate().ok_or(MapError::OutOfFrames)?;
        zero_frame(root);
        let pml4 = root.addr();
        let (new, kernel) = (table(pml4), table(kernel_pml4));
        for i in 256..512 {
            new[i] = kernel[i].clone();
        }
        Ok(AddressSpace {
            pml4,
            nested: false,
        })
    }

    /// A new, empty nested page table for an HVM guest. The CPU walks it
    /// for guest-physical addresses (every walk a user access, so every
    /// entry is `USER_ACCESSIBLE`); the kernel never runs on it.
    pub fn nested(frames: &mut Frames) -> Result<AddressSpace, MapError> {
        let root = frames.allocate().ok_or(MapError::OutOfFrames)?;
        zero_frame(root);
        Ok(AddressSpace {
            pml4: root.addr(),
            nested: true,
        })
    }

    /// Moves the tables out of `self`, which is left mapping and owning
    /// nothing (a domain's record about to be freed keeps no copy).
    pub fn take(&mut self) -> AddressSpace {
        AddressSpace {
            pml4: core::mem::take(&mut self.pml4),
            nested: self.nested,
        }
    }

    /// Whether this is an HVM guest's nested page table.
    #[inline(always)]
    pub fn is_nested(&self) -> bool {
        self.nested
    }

    /// The root's physical address (for the VMCB's nested CR3).
    pub fn root(&self) -> u64 {
        self.pml4
    }

    fn mapper(&self) -> OffsetPageTable<'static> {
        // SAFETY: see `table`; the physmap offset maps every page-table frame.
        unsafe { OffsetPageTable::new(table(self.pml4), VirtAddr::new(PHYS_OFFSET)) }
    }

    /// Maps one user page.
    pub fn map(
        &mut self,
        frames: &mut Frames,
        va: u64,
        phys: u64,
        access: Access,
        kind: Kind,
    ) -> Result<(), MapError> {
        if va >= ipc_abi::layout::USER_LIMIT || !va.is_multiple_of(4096) {
            return Err(MapError::NotUser);
        }
        let mut flags = F::PRESENT | F::USER_ACCESSIBLE;
        if access.write {
            flags |= F::WRITABLE;
        }
        if !access.execute {
            flags |= F::NO_EXECUTE;
        }
        flags |= match kind {
            Kind::Owned => OWNED,
            Kind::Foreign => FOREIGN,
            Kind::Borrowed => F::empty(),
        };
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let frame = PhysFrame::containing_address(PhysAddr::new(phys));
        // SAFETY: a user-half mapping of a frame the caller owns or may lend;
        // the domain cannot reach the kernel half through it.
        let result = unsafe {
            self.mapper().map_to_with_table_flags(
                page,
                frame,
                flags,
                F::PRESENT | F::WRITABLE | F::USER_ACCESSIBLE,
                &mut Source(frames),
            )
        };
        match result {
            Ok(flush) => {
                flush.flush();
                Ok(())
            }
            Err(MapToError::FrameAllocationFailed) => Err(MapError::OutOfFrames),
            Err(_) => Err(MapError::AlreadyMapped),
        }
    }

    /// Removes a mapping of the domain's own memory (`Kind::Owned`) and
    /// returns its frame, which the caller now owns; `None` (and nothing
    /// changed) for another kind or an unmapped address.
    pub fn unmap_owned(&mut self, frames: &mut Frames, va: u64) -> Option<Frame> {
        match self.translate(va)? {
            (_, _, Kind::Owned) => {}
            _ => return None,
        }
        let (phys, _) = self.unmap(frames, va)?;
        // SAFETY: an `Owned` mapping is always of a frame the allocator gave
        // this domain (`map` is told so only for those).
        Some(unsafe { Frame::of_ram(phys) })
    }

    /// Removes a user mapping and any page table it leaves empty; returns the frame and its kind.
    pub fn unmap(&mut self, frames: &mut Frames, va: u64) -> Option<(u64, Kind)> {
        let (phys, _, kind) = self.translate(va)?;
        let page = Page::<Size4KiB>::containing_address(VirtAddr::new(va));
        let mut mapper = self.mapper();
        match mapper.unmap(page) {
            Ok((_, flush)) => {
                flush.flush();
                // SAFETY: the lower half's tables are this address space's own
                // (never shared); the range is one user page, so the kernel
                // half is never touched.
                unsafe {
                    mapper.clean_up_addr_range(
                        Page::range_inclusive(page, page),
                        &mut Release(frames),
                    )
                };
                Some((phys, kind))
            }
            Err(UnmapError::PageNotMapped) | Err(_) => None,
        }
    }

    /// The frame of RAM behind a user address, whether the domain may write
    /// it and its kind, if it is mapped for ring 3 and is RAM (not a
    /// device's memory, which is never read or written as memory).
    pub fn ram_frame(&self, va: u64) -> Option<(Frame, bool, Kind)> {
        let (phys, writable, kind) = self.translate(va)?;
        let page = phys & !(PAGE - 1);
        if !super::memory::overlaps_ram(page, page + PAGE) {
            return None;
        }
        // SAFETY: RAM (checked just above) that this domain maps as its
        // memory: its own frames, boot modules or a page granted to it.
        Some((unsafe { Frame::of_ram(page) }, writable, kind))
    }

    /// The frame, writability and kind behind a user address, if mapped for ring 3.
    pub fn translate(&self, va: u64) -> Option<(u64, bool, Kind)> {
        if va >= ipc_abi::layout::USER_LIMIT {
            return None;
        }
        match self.mapper().translate(VirtAddr::new(va)) {
            TranslateResult::Mapped {
                frame,
                offset,
                flags,
            } if flags.contains(F::USER_ACCESSIBLE) => {
                let kind = if flags.contains(OWNED) {
                    Kind::Owned
                } else if flags.contains(FOREIGN) {
                    Kind::Foreign
                } else {
                    Kind::Borrowed
                };
                Some((
                    frame.start_address().as_u64() + offset,
                    flags.contains(F::WRITABLE),
                    kind,
                ))
            }
            _ => None,
        }
    }

    /// The first page of the domain's own memory at or above `from` and
    /// below `limit`: its address and frame. Empty tables are skipped
    /// whole, so a sparse gigabyte costs a few entries, not 262,144 lookups.
    pub fn next_owned(&self, from: u64, limit: u64) -> Option<(u64, Frame)> {
        let limit = limit.min(ipc_abi::layout::USER_LIMIT);
        let mut va = from.next_multiple_of(4096);
        // Bytes one entry covers at each level, from the root down.
        const SPAN: [u64; 4] = [1 << 39, 1 << 30, 1 << 21, 1 << 12];
        'walk: while va < limit {
            let mut t = self.pml4;
            for (level, span) in SPAN.iter().enumerate() {
                let index = ((va >> (39 - 9 * level)) & 511) as usize;
                let e = &table(t)[index];
                let f = e.flags();
                let leaf = level == 3;
                let wanted = f.contains(F::PRESENT | F::USER_ACCESSIBLE)
                    && (!leaf || f.contains(OWNED))
                    && !f.contains(F::HUGE_PAGE);
                if !wanted {
                    // Nothing of ours under this entry: go to the next one.
                    va = (va & !(span - 1)) + span;
                    continue 'walk;
                }
                if leaf {
                    // SAFETY: an `Owned` leaf maps a frame the allocator
                    // gave this domain.
                    return Some((va, unsafe { Frame::of_ram(e.addr().as_u64()) }));
                }
                t = e.addr().as_u64();
            }
        }
        None
    }

    /// Calls `each(frame)` for every page of the domain's own memory in
    /// `[from, limit)`, rising: one walk down to each table of pages, then
    /// its entries in turn (not a walk a page, as `next_owned`).
    pub fn for_each_owned(&self, from: u64, limit: u64, mut each: impl FnMut(Frame)) {
        let limit = limit.min(ipc_abi::layout::USER_LIMIT);
        let mut va = from.next_multiple_of(4096);
        // Bytes one entry covers at each level above the pages', from the root.
        const SPAN: [u64; 3] = [1 << 39, 1 << 30, 1 << 21];
        'walk: while va < limit {
            let mut t = self.pml4;
            for (level, span) in SPAN.iter().enumerate() {
                let e = &table(t)[((va >> (39 - 9 * level)) & 511) as usize];
                let f = e.flags();
                if !f.contains(F::PRESENT | F::USER_ACCESSIBLE) || f.contains(F::HUGE_PAGE) {
                    va = (va & !(span - 1)) + span;
                    continue 'walk;
                }
                t = e.addr().as_u64();
            }
            let pages = table(t);
            let end = ((va | ((1 << 21) - 1)) + 1).min(limit);
            while va < end {
                let e = &pages[((va >> 12) & 511) as usize];
                if e.flags().contains(F::PRESENT | F::USER_ACCESSIBLE | OWNED) {
                    // SAFETY: an `Owned` leaf maps a frame the allocator
                    // gave this domain.
                    each(unsafe { Frame::of_ram(e.addr().as_u64()) });
                }
                va += 4096;
            }
        }
    }

    /// Makes this the active address space (reloading CR3, which drops
    /// every non-global TLB entry, unless it already is).
    #[inline(always)]
    pub fn activate(&self) {
        if self.nested {
            // The guest's table is the VMCB's business; the kernel runs on its own.
            return super::memory::activate_kernel_space();
        }
        let (current, _) = Cr3::read();
        if current.start_address().as_u64() != self.pml4 {
            // SAFETY: the kernel half is identical in every address space, so
            // the kernel keeps running; the lower half is this domain's.
            unsafe {
                Cr3::write(
                    PhysFrame::containing_address(PhysAddr::new(self.pml4)),
                    Cr3Flags::empty(),
                )
            }
        }
    }

    /// Frees every owned frame and every page table of the lower half, and the root.
    /// Foreign mappings must have been removed first. Returns the frames freed.
    pub fn destroy(self, frames: &mut Frames, kernel_pml4: u64) -> u64 {
        // Never tear down the tables the CPU is using.
        let (current, _) = Cr3::read();
        if current.start_address().as_u64() == self.pml4 {
            // SAFETY: the kernel's own root maps the same kernel half.
            unsafe {
                Cr3::write(
                    PhysFrame::containing_address(PhysAddr::new(kernel_pml4)),
                    Cr3Flags::empty(),
                )
            }
        }
        let mut freed = 0;
        let mut free = |frames: &mut Frames, f: u64| {
            // SAFETY: a frame this space owned (marked `OWNED`) or one of
            // its page tables, all taken from the allocator.
            if frames.free(unsafe { Frame::of_ram(f) }).is_ok() {
                freed += 1;
            }
        };
        let l4 = table(self.pml4);
        for i4 in 0..256 {
            let e4 = &l4[i4];
            if !e4.flags().contains(F::PRESENT) {
                continue;
            }
            let pdpt = e4.addr().as_u64();
            for e3 in table(pdpt).iter() {
                if !e3.flags().contains(F::PRESENT) {
                    continue;
                }
                let pd = e3.addr().as_u64();
                for e2 in table(pd).iter() {
                    if !e2.flags().contains(F::PRESENT) {
                        continue;
                    }
                    let pt = e2.addr().as_u64();
                    for e1 in table(pt).iter() {
                        if e1.flags().contains(F::PRESENT | OWNED) {
                            free(frames, e1.addr().as_u64());
                        }
                    }
                    free(frames, pt);
                }
                free(frames, pd);
            }
            free(frames, pdpt);
        }
        free(frames, self.pml4);
        freed
    }
}
