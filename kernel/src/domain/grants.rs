//! Grant tables: sharing a page with one named domain.
//!
//! Owns: creating and ending grants, mapping granted pages into the grantee's
//! window, copying through a grant, and what happens when either side dies.
//! A granted frame stays allocated while any window maps it. While its
//! granter lives, each grant counts the window slots mapping it and cannot
//! end before they are gone. When the granter dies, its grants go and the
//! frames still mapped are owned by nobody but those slots: each slot
//! records its frame, and the frame is freed when the last slot mapping it,
//! in any domain, is unmapped. A page granted under several refs, or to
//! several domains, is one frame with one set of mappings, so no frame is
//! freed while mapped, whatever order the deaths and unmaps come in.

use super::shared_pages::{read_frame, write_frame};
use super::{ForeignMap, Grant, Kernel};
use crate::arch::addrspace::{Access, Kind};
use crate::frames::FrameAllocator;
use crate::usermem;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::{GRANT_SLOTS, GRANT_WINDOW, PAGE_SIZE};

/// Grants a page of `caller` (at `va`) to `grantee`.
pub fn create(
    k: &mut Kernel,
    caller: usize,
    grantee: DomainId,
    va: u64,
    readonly: bool,
) -> Result<u32, Error> {
    let g = k.lookup(grantee)?;
    if g == caller {
        return Err(Error::InvalidArgument);
    }
    let grantee_id = k.domain(g).ok_or(Error::NoSuchDomain)?.id;
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    if !va.is_multiple_of(PAGE_SIZE) {
        return Err(Error::BadAddress);
    }
    let frame = match d.space.translate(va) {
        // A page the granter may only read is granted read-only or not at all.
        Some((_, false, Kind::Owned)) if !readonly => return Err(Error::PermissionDenied),
        Some((frame, _, Kind::Owned)) => frame,
        _ => return Err(Error::BadAddress),
    };
    let slot = d
        .grants
        .iter()
        .position(Option::is_none)
        .ok_or(Error::OutOfResources)?;
    d.grants[slot] = Some(Grant {
        grantee: grantee_id,
        va,
        frame,
        readonly,
        maps: 0,
    });
    Ok(slot as u32)
}

/// Ends a grant of `caller`; refused while it is mapped.
pub fn end(k: &mut Kernel, caller: usize, gref: u64) -> Result<(), Error> {
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    let entry = d.grants.get_mut(gref as usize).ok_or(Error::BadGrant)?;
    match entry {
        None => Err(Error::BadGrant),
        Some(g) if g.maps > 0 => Err(Error::GrantInUse),
        Some(_) => {
            *entry = None;
            Ok(())
        }
    }
}

/// The live grant `gref` of `granter` to `caller`.
fn grant_for(k: &Kernel, caller: usize, granter: usize, gref: u64) -> Result<Grant, Error> {
    let caller_id = k.domain(caller).ok_or(Error::NoSuchDomain)?.id;
    let d = k.domain(granter).ok_or(Error::NoSuchDomain)?;
    match d.grants.get(gref as usize).copied().flatten() {
        Some(g) if g.grantee == caller_id => Ok(g),
        _ => Err(Error::BadGrant),
    }
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
    if slot >= GRANT_SLOTS {
        return Err(Error::InvalidArgument);
    }
    let gi = k.lookup(granter)?;
    let g = grant_for(k, caller, gi, gref)?;
    if need_write && g.readonly {
        return Err(Error::PermissionDenied);
    }
    let granter_id = k.domain(gi).ok_or(Error::NoSuchDomain)?.id;
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    if d.window[slot as usize].is_some() {
        return Err(Error::SlotState);
    }
    let va = GRANT_WINDOW + slot * PAGE_SIZE;
    d.space
        .map(
            frames,
            va,
            g.frame,
            Access {
                write: !g.readonly,
                execute: false,
            },
            Kind::Foreign,
        )
        .map_err(|_| Error::OutOfResources)?;
    d.window[slot as usize] = Some(ForeignMap {
        granter: granter_id,
        gref: gref as u32,
        frame: g.frame,
    });
    if let Some(Some(entry)) = k.domain_mut(gi).map(|d| &mut d.grants[gref as usize]) {
        entry.maps += 1;
    }
    Ok(va)
}

/// Unmaps window `slot` of `caller`.
pub fn unmap(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    caller: usize,
    slot: u64,
) -> Result<(), Error> {
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    let m = d
        .window
        .get(slot as usize)
        .copied()
        .flatten()
        .ok_or(Error::SlotState)?;
    d.space.unmap(frames, GRANT_WINDOW + slot * PAGE_SIZE);
    d.window[slot as usize] = None;
    // No CPU may reach the page through a stale entry once the grant can
    // end (and an orphan's frame go back to the allocator).
    k.shootdown(caller);
    release(k, frames, m);
    Ok(())
}

/// Mapping `m` went away: a live granter counts it down; a dead granter's
/// frame is freed once no window of any domain maps it any more.
fn release(k: &mut Kernel, frames: &mut FrameAllocator, m: ForeignMap) {
    // A dying granter (its last CPU not yet gone) still owns the frame.
    if let Some(gi) = k.existing(m.granter) {
        match k
            .domain_mut(gi)
            .and_then(|d| d.grants.get_mut(m.gref as usize))
        {
            Some(Some(g)) if g.frame == m.frame => g.maps = g.maps.saturating_sub(1),
            // A grant cannot end while mapped, so this is a reused id (a
            // wrapped generation): keep the frame rather than free one a
            // live domain may own.
            _ => crate::kprintln!(
                "warning: mapping of frame {:#x} outlived its grant; frame kept",
                m.frame
            ),
        }
        return;
    }
    if !mapped_anywhere(k, m.frame) {
        let _ = frames.free(m.frame);
    }
}

/// Whether any live domain's grant window maps `frame` (a walk of every
/// window: only a dead granter's frame needs it, once per unmap).
fn mapped_anywhere(k: &Kernel, frame: u64) -> bool {
    k.live()
        .filter_map(|i| k.domain(i))
        .any(|d| d.window.iter().flatten().any(|m| m.frame == frame))
}

/// A dying domain: unmap everything it mapped from others, and end its
/// grants, taking the frames others still map out of its address space so
/// its teardown does not free them (the last unmap does).
pub fn release_all(k: &mut Kernel, frames: &mut FrameAllocator, index: usize) {
    for slot in 0..GRANT_SLOTS {
        let mapped = k
            .domain(index)
            .is_some_and(|d| d.window[slot as usize].is_some());
        if mapped {
            let _ = unmap(k, frames, index, slot);
        }
    }
    let Some(d) = k.domain_mut(index) else { return };
    for entry in d.grants.iter_mut() {
        if let Some(g) = entry.take() {
            if g.maps > 0 {
                // Several grants of one page unmap it once; the others find it gone.
                d.space.unmap(frames, g.va);
            }
        }
    }
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
    let g = grant_for(k, caller, gi, gref)?;
    if to_grant && g.readonly {
        return Err(Error::PermissionDenied);
    }
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let mut buf = [0u8; PAGE_SIZE as usize];
    let buf = &mut buf[..len as usize];
    if to_grant {
        usermem::copy_from(&d.space, local_va, buf)?;
        write_frame(g.frame, offset as usize, buf);
    } else {
        read_frame(g.frame, offset as usize, buf);
        usermem::copy_to(&d.space, local_va, buf)?;
    }
    Ok(())
}

/// Live grants, and mappings of dead granters' pages (for leak checks).
pub fn live_grants(k: &Kernel) -> u64 {
    let count = |d: &super::Domain| {
        let orphaned = d
            .window
            .iter()
            .flatten()
            .filter(|m| k.existing(m.granter).is_none())
            .count();
        d.grants.iter().flatten().count() + orphaned
    };
    k.live()
        .filter_map(|i| k.domain(i))
        .map(count)
        .sum::<usize>() as u64
}
