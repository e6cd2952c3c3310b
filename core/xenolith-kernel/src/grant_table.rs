//! Grant tables: sharing a page with one named domain (pure, host-tested:
//! the model test below drives it over fake address spaces).
//!
//! Owns: creating and ending grants, mapping granted pages into the
//! grantee's window, and what happens when either side dies, written over
//! three small traits ([`Space`], [`Frames`], [`Domains`]) that
//! `domain/grants.rs` implements for the kernel's own types.
//!
//! A granted frame stays allocated while any window maps it. While its
//! granter lives, each grant counts the window slots mapping it and cannot
//! end before they are gone. When the granter dies, its grants go and the
//! frames still mapped are owned by nobody but those slots: each slot
//! records its frame, and the frame is freed when the last slot mapping it,
//! in any domain, is unmapped. A page granted under several refs, or to
//! several domains, is one frame with one set of mappings, so no frame is
//! freed while mapped, whatever order the deaths and unmaps come in.

use crate::frames::Frame;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::{GRANT_SLOTS, GRANT_WINDOW, PAGE_SIZE};

/// A page a domain granted.
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    pub grantee: DomainId,
    /// The granter's virtual address of the page.
    pub va: u64,
    pub frame: Frame,
    pub readonly: bool,
    /// How many window slots map it now.
    pub maps: u32,
}

/// A window slot's mapping of another domain's page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForeignMap {
    pub granter: DomainId,
    pub gref: u32,
    /// The frame mapped (it outlives the grant if the granter dies first).
    pub frame: Frame,
}

/// What a domain's address space does for grants (page tables come from,
/// and go back to, the allocator `A`).
pub trait Space<A> {
    /// The frame behind user address `va`, whether the domain may write it,
    /// and whether it is the domain's own page (not a foreign mapping).
    /// Only RAM: a device's memory cannot be granted.
    fn translate(&self, va: u64) -> Option<(Frame, bool, bool)>;
    /// Maps another domain's `frame` at `va`; false if it cannot.
    fn map_foreign(&mut self, frames: &mut A, va: u64, frame: Frame, writable: bool) -> bool;
    /// Removes the mapping at `va` (the frame stays allocated).
    fn unmap(&mut self, frames: &mut A, va: u64);
}

/// Where frames go back.
pub trait Frames {
    fn free(&mut self, frame: Frame);
}

/// One domain as grants see it.
pub struct Parts<'a, S> {
    pub grants: &'a mut [Option<Grant>],
    pub window: &'a mut [Option<ForeignMap>],
    pub space: &'a mut S,
}

/// The domain table as grants see it.
pub trait Domains<A: Frames> {
    type Space: Space<A>;
    /// The slot of a live domain (`DeadDomain`/`NoSuchDomain` otherwise).
    fn lookup(&self, id: DomainId) -> Result<usize, Error>;
    /// The slot of `id` while it exists at all, dying ones included (a
    /// dying domain still owns its memory until its last CPU leaves it).
    fn existing(&self, id: DomainId) -> Option<usize>;
    /// Slots to look at (some may be empty).
    fn slots(&self) -> usize;
    fn id(&self, index: usize) -> Option<DomainId>;
    fn grants(&self, index: usize) -> Option<&[Option<Grant>]>;
    fn window(&self, index: usize) -> Option<&[Option<ForeignMap>]>;
    fn parts(&mut self, index: usize) -> Option<Parts<'_, Self::Space>>;
    /// After an unmap in domain `index`: no CPU can reach the page through
    /// a stale TLB entry once this returns.
    fn shootdown(&self, index: usize);
    /// Lets domain `index`'s devices reach `frame`, mapped in its window
    /// slot `slot` (written only if `writable`): behind an IOMMU, at the
    /// slot's device address; nothing to do without one. False if it
    /// cannot (then nothing is mapped for them).
    fn device_map(
        &mut self,
        frames: &mut A,
        index: usize,
        slot: u64,
        frame: Frame,
        writable: bool,
    ) -> bool;
    /// Takes window slot `slot`'s page from domain `index`'s devices: once
    /// this returns, none of them reaches it (their caches emptied).
    fn device_unmap(&mut self, index: usize, slot: u64);
}

/// Grants a page of `caller` (at `va`) to `grantee`.
pub fn create<A: Frames, D: Domains<A>>(
    k: &mut D,
    caller: usize,
    grantee: DomainId,
    va: u64,
    readonly: bool,
) -> Result<u32, Error> {
    let g = k.lookup(grantee)?;
    if g == caller {
        return Err(Error::InvalidArgument);
    }
    let grantee_id = k.id(g).ok_or(Error::NoSuchDomain)?;
    if !va.is_multiple_of(PAGE_SIZE) {
        return Err(Error::BadAddress);
    }
    let d = k.parts(caller).ok_or(Error::NoSuchDomain)?;
    let frame = match d.space.translate(va) {
        // A page the granter may only read is granted read-only or not at all.
        Some((_, false, true)) if !readonly => return Err(Error::PermissionDenied),
        Some((frame, _, true)) => frame,
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
pub fn end<A: Frames, D: Domains<A>>(k: &mut D, caller: usize, gref: u64) -> Result<(), Error> {
    let d = k.parts(caller).ok_or(Error::NoSuchDomain)?;
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
pub fn grant_for<A: Frames, D: Domains<A>>(
    k: &D,
    caller: usize,
    granter: usize,
    gref: u64,
) -> Result<Grant, Error> {
    let caller_id = k.id(caller).ok_or(Error::NoSuchDomain)?;
    let grants = k.grants(granter).ok_or(Error::NoSuchDomain)?;
    match grants.get(gref as usize).copied().flatten() {
        Some(g) if g.grantee == caller_id => Ok(g),
        _ => Err(Error::BadGrant),
    }
}

/// Maps grant `gref` of `granter` into window `slot` of `caller`; returns
/// the address it is mapped at.
pub fn map<A: Frames, D: Domains<A>>(
    k: &mut D,
    frames: &mut A,
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
    let granter_id = k.id(gi).ok_or(Error::NoSuchDomain)?;
    let d = k.parts(caller).ok_or(Error::NoSuchDomain)?;
    if d.window[slot as usize].is_some() {
        return Err(Error::SlotState);
    }
    let va = GRANT_WINDOW + slot * PAGE_SIZE;
    if !d.space.map_foreign(frames, va, g.frame, !g.readonly) {
        return Err(Error::OutOfResources);
    }
    // Its devices reach the page too, with the grant's rights.
    if !k.device_map(frames, caller, slot, g.frame, !g.readonly) {
        if let Some(d) = k.parts(caller) {
            d.space.unmap(frames, va);
        }
        return Err(Error::OutOfResources);
    }
    let d = k.parts(caller).ok_or(Error::NoSuchDomain)?;
    d.window[slot as usize] = Some(ForeignMap {
        granter: granter_id,
        gref: gref as u32,
        frame: g.frame,
    });
    if let Some(Some(Some(entry))) = k.parts(gi).map(|d| d.grants.get_mut(gref as usize)) {
        entry.maps += 1;
    }
    Ok(va)
}

/// Unmaps window `slot` of `caller`.
pub fn unmap<A: Frames, D: Domains<A>>(
    k: &mut D,
    frames: &mut A,
    caller: usize,
    slot: u64,
) -> Result<(), Error> {
    let d = k.parts(caller).ok_or(Error::NoSuchDomain)?;
    let m = d
        .window
        .get(slot as usize)
        .copied()
        .flatten()
        .ok_or(Error::SlotState)?;
    // First out of the devices' reach (before the frame can be freed or
    // reused, as the CPUs' shootdown below).
    k.device_unmap(caller, slot);
    let d = k.parts(caller).ok_or(Error::NoSuchDomain)?;
    d.space.unmap(frames, GRANT_WINDOW + slot * PAGE_SIZE);
    d.window[slot as usize] = None;
    // No CPU may reach the page through a stale entry once the grant can
    // end (and a dead granter's frame go back to the allocator).
    k.shootdown(caller);
    release(k, frames, m);
    Ok(())
}

/// Mapping `m` went away: a live granter counts it down; a dead granter's
/// frame is freed once no window of any domain maps it any more.
fn release<A: Frames, D: Domains<A>>(k: &mut D, frames: &mut A, m: ForeignMap) {
    // A dying granter (its last CPU not yet gone) still owns the frame.
    if let Some(gi) = k.existing(m.granter) {
        if let Some(d) = k.parts(gi) {
            match d.grants.get_mut(m.gref as usize) {
                Some(Some(g)) if g.frame == m.frame => g.maps = g.maps.saturating_sub(1),
                // A grant cannot end while mapped and ids never wrap, so
                // this cannot be; keep the frame rather than free one a
                // live domain may own.
                _ => {}
            }
        }
        return;
    }
    if !mapped_anywhere(k, m.frame) {
        frames.free(m.frame);
    }
}

/// Whether any domain's grant window maps `frame` (a walk of every window:
/// only a dead granter's frame needs it, once per unmap).
fn mapped_anywhere<A: Frames, D: Domains<A>>(k: &D, frame: Frame) -> bool {
    (0..k.slots())
        .filter_map(|i| k.window(i))
        .any(|w| w.iter().flatten().any(|m| m.frame == frame))
}

/// A dying domain: unmap everything it mapped from others, and end its
/// grants, taking the frames others still map out of its address space so
/// its teardown does not free them (the last unmap does).
pub fn release_all<A: Frames, D: Domains<A>>(k: &mut D, frames: &mut A, index: usize) {
    for slot in 0..GRANT_SLOTS {
        let mapped = k
            .window(index)
            .is_some_and(|w| w.get(slot as usize).copied().flatten().is_some());
        if mapped {
            let _ = unmap(k, frames, index, slot);
        }
    }
    let Some(d) = k.parts(index) else { return };
    for entry in d.grants.iter_mut() {
        if let Some(g) = entry.take() {
            if g.maps > 0 {
                // Several grants of one page unmap it once; the others find it gone.
                d.space.unmap(frames, g.va);
            }
        }
    }
}

/// Live grants, and mappings of dead granters' pages (for leak checks).
pub fn live_grants<A: Frames, D: Domains<A>>(k: &D) -> u64 {
    let mut n = 0;
    for i in 0..k.slots() {
        n += k.grants(i).map_or(0, |g| g.iter().flatten().count());
        n += k.window(i).map_or(0, |w| {
            w.iter()
                .flatten()
                .filter(|m| k.existing(m.granter).is_none())
                .count()
        });
    }
    n as u64
}

#[cfg(test)]
mod model;
