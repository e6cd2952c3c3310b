//! Grant tables for the kernel's own types: the rules are
//! `crate::grant_table` (pure, model-tested on the host); this module gives
//! them the domain table, address spaces and frame allocator, and copies
//! through grants (`GrantCopy`, `GrantCopyBatch`).

use super::Kernel;
use crate::arch::addrspace::{Access, AddressSpace, Kind};
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;
use crate::grant_table::{self as table, Domains, ForeignMap, Grant, Parts, Space};
use crate::usermem;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;

impl table::Frames for FrameAllocator {
    fn free(&mut self, frame: Frame) {
        let _ = FrameAllocator::free(self, frame);
    }
}

impl Space<FrameAllocator> for AddressSpace {
    fn translate(&self, va: u64) -> Option<(Frame, bool, bool)> {
        AddressSpace::ram_frame(self, va)
            .map(|(frame, write, kind)| (frame, write, kind == Kind::Owned))
    }

    fn map_foreign(
        &mut self,
        frames: &mut FrameAllocator,
        va: u64,
        frame: Frame,
        writable: bool,
    ) -> bool {
        let access = Access {
            write: writable,
            execute: false,
        };
        self.map(frames, va, frame.addr(), access, Kind::Foreign)
            .is_ok()
    }

    fn unmap(&mut self, frames: &mut FrameAllocator, va: u64) {
        AddressSpace::unmap(self, frames, va);
    }
}

impl Domains<FrameAllocator> for Kernel {
    type Space = AddressSpace;

    fn lookup(&self, id: DomainId) -> Result<usize, Error> {
        Kernel::lookup(self, id)
    }

    fn existing(&self, id: DomainId) -> Option<usize> {
        Kernel::existing(self, id)
    }

    fn slots(&self) -> usize {
        self.high_water
    }

    fn id(&self, index: usize) -> Option<DomainId> {
        self.domain(index).map(|d| d.id)
    }

    fn grants(&self, index: usize) -> Option<&[Option<Grant>]> {
        self.domain(index).map(|d| &d.grants[..])
    }

    fn window(&self, index: usize) -> Option<&[Option<ForeignMap>]> {
        self.domain(index).map(|d| &d.window[..])
    }

    fn parts(&mut self, index: usize) -> Option<Parts<'_, AddressSpace>> {
        self.domain_mut(index).map(|d| Parts {
            grants: &mut d.grants[..],
            window: &mut d.window[..],
            space: &mut d.space,
        })
    }

    fn shootdown(&self, index: usize) {
        Kernel::shootdown(self, index);
    }

    fn device_map(
        &mut self,
        frames: &mut FrameAllocator,
        index: usize,
        slot: u64,
        frame: Frame,
        writable: bool,
    ) -> bool {
        super::dma::map_grant(self, frames, index, slot, frame, writable).is_ok()
    }

    fn device_unmap(&mut self, index: usize, slot: u64) {
        super::dma::unmap_grant(self, index, slot);
    }
}

/// Grants a page of `caller` (at `va`) to `grantee`.
pub fn create(
    k: &mut Kernel,
    caller: usize,
    grantee: DomainId,
    va: u64,
    readonly: bool,
) -> Result<u32, Error> {
    table::create::<FrameAllocator, _>(k, caller, grantee, va, readonly)
}

/// Ends a grant of `caller`; refused while it is mapped.
pub fn end(k: &mut Kernel, caller: usize, gref: u64) -> Result<(), Error> {
    table::end::<FrameAllocator, _>(k, caller, gref)
}

/// Maps grant `gref` of `granter` into window `slot` of `caller`.
pub fn map(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    caller: usize,
    granter: DomainId,
    gref: u64,
    slot: u64,
    need_write: bool,
) -> Result<u64, Error> {
    table::map(k, frames, caller, granter, gref, slot, need_write)
}

/// Unmaps window `slot` of `caller`.
pub fn unmap(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    caller: usize,
    slot: u64,
) -> Result<(), Error> {
    table::unmap(k, frames, caller, slot)
}

/// A dying domain: its mappings of others' pages and its grants go.
pub fn release_all(k: &mut Kernel, frames: &mut FrameAllocator, index: usize) {
    table::release_all(k, frames, index)
}

/// Copies between a granted page and `caller`'s memory.
#[allow(clippy::too_many_arguments)]
pub fn copy(
    k: &mut Kernel,
    caller: usize,
    granter: DomainId,
    gref: u64,
    offset: u64,
    local_va: u64,
    len: u64,
    to_grant: bool,
) -> Result<(), Error> {
    crate::checks::within_page(offset, len)?;
    let gi = k.lookup(granter)?;
    let g = table::grant_for::<FrameAllocator, _>(k, caller, gi, gref)?;
    if to_grant && g.readonly {
        return Err(Error::PermissionDenied);
    }
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    // Page to page: no bounce buffer to fill and empty (docs/performance.md).
    usermem::copy_with_frame(
        &d.space,
        local_va,
        g.frame,
        offset as usize,
        len as usize,
        to_grant,
    )
}

/// Copies `len` bytes from one page granted to `caller` to another (the
/// second granted writable), page to page. Both are checked before a
/// byte moves; they may be one page (the copy allows overlap).
pub fn copy_between_grants(
    k: &mut Kernel,
    caller: usize,
    from: (DomainId, u64, u64),
    to: (DomainId, u64, u64),
    len: u64,
) -> Result<(), Error> {
    crate::checks::within_page(from.2, len)?;
    crate::checks::within_page(to.2, len)?;
    let source = table::grant_for::<FrameAllocator, _>(k, caller, k.lookup(from.0)?, from.1)?;
    let target = table::grant_for::<FrameAllocator, _>(k, caller, k.lookup(to.0)?, to.1)?;
    if target.readonly {
        return Err(Error::PermissionDenied);
    }
    crate::arch::memory::copy_between_frames(
        source.frame,
        from.2 as usize,
        target.frame,
        to.2 as usize,
        len as usize,
    );
    Ok(())
}

/// Live grants, and mappings of dead granters' pages (for leak checks).
pub fn live_grants(k: &Kernel) -> u64 {
    table::live_grants::<FrameAllocator, _>(k)
}
