//! Where each domain's state lives: frames of its own, taken from the
//! frame allocator when it is created and given back when it is destroyed.
//!
//! Owns: [`DomainBox`], the one owner of a `Domain` placed in frames
//! reached through the physmap. The kernel's table then holds only
//! pointers (an empty table is all zeroes, so it lies in `.bss`, not in the
//! kernel image), and memory goes to domains that exist: a slot holding a
//! `Domain` inline cost about 17 KiB of the image whether used or not.
//! There is no kernel heap; this is the only place that needs one.

use super::Domain;
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;
use crate::layout::{phys_to_virt, PHYS_OFFSET};
use core::ptr::NonNull;

const PAGE: u64 = 4096;
/// Frames a domain's state takes.
const PAGES: u64 = (core::mem::size_of::<Domain>() as u64).div_ceil(PAGE);

const _: () = assert!(core::mem::align_of::<Domain>() as u64 <= PAGE);

/// A `Domain` in frames of its own, owned by this value alone.
pub struct DomainBox {
    ptr: NonNull<Domain>,
}

// SAFETY: a DomainBox owns its Domain exclusively (like a Box), and Domain
// itself is Send; the kernel table that holds it is behind the kernel lock.
unsafe impl Send for DomainBox {}

/// Frames taken for a domain's state, not filled yet.
pub struct Reserved {
    phys: u64,
}

impl Reserved {
    /// Takes the frames, if there are (the last fallible step of a
    /// creation, so they are always filled).
    pub fn take(frames: &mut FrameAllocator) -> Option<Reserved> {
        frames.allocate_contiguous(PAGES).map(|run| Reserved {
            phys: run.first().addr(),
        })
    }

    /// Fills them with the domain `make` returns, built in place (a
    /// `Domain` is 20 KiB: a copy of it on the way in would cost a kernel
    /// stack that much more).
    #[inline(always)]
    pub fn fill(self, make: impl FnOnce() -> Domain) -> DomainBox {
        let ptr = phys_to_virt(self.phys) as *mut Domain;
        // The frames are PAGES pages (at least size_of::<Domain>() bytes),
        // page aligned (at least Domain's alignment), writable in the physmap.
        // SAFETY: they were allocated for this alone; `write` neither reads
        // nor drops the old contents.
        unsafe { ptr.write(make()) };
        match NonNull::new(ptr) {
            Some(ptr) => DomainBox { ptr },
            None => unreachable!("the physmap does not start at address 0"),
        }
    }
}

fn free(phys: u64, frames: &mut FrameAllocator) {
    for i in 0..PAGES {
        // SAFETY: one of the frames `Reserved::take` got from the allocator.
        let frame = unsafe { Frame::of_ram(phys + i * PAGE) };
        if let Err(e) = frames.free(frame) {
            kprintln!("warning: a domain's state frame was not freed: {e}");
        }
    }
}

impl DomainBox {
    /// Lets `take` move out of the domain what outlives its record, then
    /// gives its frames back. The rest is never read again (a `Domain`
    /// has no `Drop`), so nothing of it is copied.
    pub fn release<R>(
        mut self,
        frames: &mut FrameAllocator,
        take: impl FnOnce(&mut Domain) -> R,
    ) -> R {
        let kept = take(&mut self);
        free(self.ptr.as_ptr() as u64 - PHYS_OFFSET, frames);
        kept
    }
}

impl core::ops::Deref for DomainBox {
    type Target = Domain;

    fn deref(&self) -> &Domain {
        // SAFETY: `ptr` points at a live Domain owned by `self` (see `new`);
        // the shared borrow of `self` keeps it from being changed meanwhile.
        unsafe { self.ptr.as_ref() }
    }
}

impl core::ops::DerefMut for DomainBox {
    fn deref_mut(&mut self) -> &mut Domain {
        // SAFETY: as in `deref`; the unique borrow of `self` makes this the
        // only reference to the Domain.
        unsafe { self.ptr.as_mut() }
    }
}
