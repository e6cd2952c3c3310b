//! Rings in pages: the frontend allocates and grants them, the backend maps them.
//!
//! Owns: turning page-aligned memory (this domain's, or a peer's granted
//! pages in the grant window) into the `ipc_abi::ring::Shared` view the ring
//! logic works on. Ring memory lives as long as the domain: pages a frontend
//! allocates are never freed, and a backend never unmaps a ring it maps, so
//! the `'static` view stays valid. Two owners hand their pages back instead,
//! keeping the view to themselves: [`MappedBack`] (a peer's ring we serve,
//! unmapped on drop) and [`GrantedBack`] (a ring in our own pages a peer
//! drives, freed on drop once the peer can no longer reach them).

use core::sync::atomic::AtomicU64;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::layout::{GRANT_SLOTS, GRANT_WINDOW, PAGE_SIZE};
use ipc_abi::proto::control::MAX_RING_PAGES;
use ipc_abi::ring::{Back, Header, Message, RingError, Shared, HEADER_BYTES};

/// Pages holding a ring, mapped in this domain for its whole life.
#[derive(Clone, Copy)]
pub struct RingPages {
    base: u64,
    pages: u32,
}

/// Grant refs of a ring's pages, in order.
pub type Grefs = heapless::Vec<u32, MAX_RING_PAGES>;

impl RingPages {
    /// Zeroed, page-aligned pages from the heap, never freed.
    pub fn allocate(pages: u32) -> Option<RingPages> {
        if pages == 0 || pages as usize > MAX_RING_PAGES {
            return None;
        }
        let layout = core::alloc::Layout::from_size_align(
            pages as usize * PAGE_SIZE as usize,
            PAGE_SIZE as usize,
        )
        .ok()?;
        let base = alloc_pages(layout)?;
        Some(RingPages { base, pages })
    }

    /// Grants every page to `peer`, read-write.
    pub fn grant_to(&self, peer: DomainId) -> Result<Grefs> {
        let mut grefs = Grefs::new();
        for i in 0..self.pages as u64 {
            let r = crate::hypercall::grant_create(peer, self.base + i * PAGE_SIZE, false)?;
            grefs.push(r).map_err(|_| Error::OutOfResources)?;
        }
        Ok(grefs)
    }

    /// Maps a peer's granted ring pages at consecutive window slots from `first_slot`.
    pub fn map(granter: DomainId, grefs: &[u32], first_slot: u64) -> Result<RingPages> {
        if grefs.is_empty()
            || grefs.len() > MAX_RING_PAGES
            || first_slot + grefs.len() as u64 > GRANT_SLOTS
        {
            return Err(Error::InvalidArgument);
        }
        // Writable or not at all: both ends write the ring (a peer that
        // granted its pages read-only gets `PermissionDenied`, never a
        // backend that faults on its first write).
        for (i, &r) in grefs.iter().enumerate() {
            if let Err(e) = crate::hypercall::grant_map_writable(granter, r, first_slot + i as u64)
            {
                for j in 0..i as u64 {
                    let _ = crate::hypercall::grant_unmap(first_slot + j);
                }
                return Err(e);
            }
        }
        Ok(RingPages {
            base: GRANT_WINDOW + first_slot * PAGE_SIZE,
            pages: grefs.len() as u32,
        })
    }

    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// The address of the first page.
    pub fn address(&self) -> u64 {
        self.base
    }

    /// The ring view of these pages.
    pub fn shared(&self) -> Shared<'static> {
        let words = (self.pages as usize * PAGE_SIZE as usize - HEADER_BYTES) / 8;
        // SAFETY: `base` is `pages` pages mapped read-write for the domain's life
        // (module doc); Header and slots are atomics, valid for any bits a peer
        // writes, aligned at the page start and after the 640-byte header.
        unsafe {
            let header = &*(self.base as *const Header);
            let slots = core::slice::from_raw_parts(
                (self.base + HEADER_BYTES as u64) as *const AtomicU64,
                words,
            );
            Shared::new(header, slots)
        }
    }
}

/// A ring in pages of our own, granted to one peer, which we serve: the
/// control domain's end of each domain's control ring. Its pages go back
/// to the heap when it is dropped, if [`GrantedBack::end_grants`] ended
/// every grant of them first (while the peer may still map one, they are
/// kept: it could write into memory reused for something else).
pub struct GrantedBack<Req: Message, Rsp: Message> {
    back: Option<Back<'static, Req, Rsp>>,
    pages: RingPages,
    /// Grants of the pages not ended yet.
    grefs: Grefs,
}

impl<Req: Message, Rsp: Message> GrantedBack<Req, Rsp> {
    /// One zeroed page granted to `peer`; returns it and the grant ref.
    pub fn offer(peer: DomainId) -> Result<(Self, u32)> {
        let pages = RingPages::allocate(1).ok_or(Error::OutOfResources)?;
        let mut ring = GrantedBack {
            back: None,
            pages,
            grefs: Grefs::new(),
        };
        // From here on a failure drops `ring`, which frees the page.
        ring.grefs = pages.grant_to(peer)?;
        let gref = ring.grefs[0];
        Ok((ring, gref))
    }

    /// Whether we serve the ring: attaches once the peer initialised it.
    pub fn attached(&mut self) -> bool {
        if self.back.is_none() && !self.grefs.is_empty() {
            self.back = Back::attach(self.pages.shared()).ok();
        }
        self.back.is_some()
    }

    /// Stops serving (a broken ring); the pages stay until dropped.
    pub fn detach(&mut self) {
        self.back = None;
    }

    /// Stops serving and ends the grants; true once none is left (the
    /// peer no longer maps the pages, which then go back on drop).
    pub fn end_grants(&mut self) -> bool {
        self.back = None;
        self.grefs
            .retain(|g| crate::hypercall::grant_end(*g).is_err());
        self.grefs.is_empty()
    }

    pub fn pop(&mut self) -> core::result::Result<Option<Req>, RingError> {
        self.back.as_mut().map_or(Ok(None), |b| b.pop())
    }

    pub fn push(&mut self, rsp: &Rsp) -> core::result::Result<(), RingError> {
        self.back.as_mut().map_or(Ok(()), |b| b.push(rsp))
    }

    pub fn publish(&mut self) -> bool {
        self.back.as_mut().is_some_and(|b| b.publish())
    }

    pub fn final_check(&mut self) -> core::result::Result<bool, RingError> {
        self.back.as_mut().map_or(Ok(false), |b| b.final_check())
    }
}

impl<Req: Message, Rsp: Message> Drop for GrantedBack<Req, Rsp> {
    fn drop(&mut self) {
        self.back = None;
        if self.grefs.is_empty() {
            free_pages(self.pages);
        }
    }
}

/// Gives back pages [`RingPages::allocate`] took; only [`GrantedBack`]
/// calls it, when no view of them is left and no peer can map them.
#[cfg(target_os = "none")]
fn free_pages(pages: RingPages) {
    extern crate alloc;
    let size = pages.pages as usize * PAGE_SIZE as usize;
    if let Ok(layout) = core::alloc::Layout::from_size_align(size, PAGE_SIZE as usize) {
        // Only GrantedBack frees, once its view is dropped, the pages were
        // never handed out and every grant of them ended.
        // SAFETY: `base` came from `alloc_pages` with this very layout, and
        // nothing refers to the pages any more (above).
        unsafe { alloc::alloc::dealloc(pages.base as *mut u8, layout) }
    }
}

#[cfg(not(target_os = "none"))]
fn free_pages(_pages: RingPages) {}

#[cfg(target_os = "none")]
fn alloc_pages(layout: core::alloc::Layout) -> Option<u64> {
    extern crate alloc;
    // SAFETY: the layout has a non-zero size (at least one page).
    let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
    (!p.is_null()).then_some(p as u64)
}

#[cfg(not(target_os = "none"))]
fn alloc_pages(_layout: core::alloc::Layout) -> Option<u64> {
    None
}

/// A backend's end of a peer's ring, mapped at window slots this value
/// owns: dropping it unmaps the pages, so the slots can serve another ring.
/// The ring view never leaves this type, so nothing can use it after the
/// pages are gone.
pub struct MappedBack<Req: Message, Rsp: Message> {
    back: Back<'static, Req, Rsp>,
    first_slot: u64,
    pages: u32,
}

impl<Req: Message, Rsp: Message> MappedBack<Req, Rsp> {
    /// Maps `granter`'s ring pages at slots from `first_slot` and attaches
    /// to the ring the frontend initialised there.
    pub fn map(granter: DomainId, grefs: &[u32], first_slot: u64) -> Result<Self> {
        let pages = RingPages::map(granter, grefs, first_slot)?;
        let unmap = |n: u32| {
            for i in 0..n as u64 {
                let _ = crate::hypercall::grant_unmap(first_slot + i);
            }
        };
        match Back::attach(pages.shared()) {
            Ok(back) => Ok(MappedBack {
                back,
                first_slot,
                pages: pages.pages(),
            }),
            Err(_) => {
                unmap(pages.pages());
                Err(Error::InvalidArgument)
            }
        }
    }

    /// The window slots it occupies.
    pub fn slots(&self) -> core::ops::Range<u64> {
        self.first_slot..self.first_slot + self.pages as u64
    }

    pub fn pop(&mut self) -> core::result::Result<Option<Req>, RingError> {
        self.back.pop()
    }

    pub fn pending(&mut self) -> core::result::Result<u32, RingError> {
        self.back.pending()
    }

    pub fn push(&mut self, rsp: &Rsp) -> core::result::Result<(), RingError> {
        self.back.push(rsp)
    }

    pub fn publish(&mut self) -> bool {
        self.back.publish()
    }

    pub fn final_check(&mut self) -> core::result::Result<bool, RingError> {
        self.back.final_check()
    }

    /// Where this end marks requests done (`Header::back_done`).
    pub fn back_done(&self) -> &core::sync::atomic::AtomicU64 {
        self.back.back_done()
    }
}

impl<Req: Message, Rsp: Message> Drop for MappedBack<Req, Rsp> {
    fn drop(&mut self) {
        // `back` is dropped after this body, but it is never used again:
        // it holds only references, and Back has no Drop of its own.
        for slot in self.slots() {
            let _ = crate::hypercall::grant_unmap(slot);
        }
    }
}
