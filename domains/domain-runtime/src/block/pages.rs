//! A disk's data pages: the pages of ours its backend moves data to and
//! from, each granted to the backend once (persistent grants).
//!
//! Owns: the slots (each one request's pages, which the disk copies the
//! caller's data through), the buffers a caller asked for with
//! [`super::Disk::buffer`] (which the backend fills and empties directly,
//! so I/O through them copies nothing in this domain), where each request
//! in flight has its pages ([`Place`]), and granting every page again to a
//! new backend.

extern crate alloc;
use crate::hypercall as hc;
use alloc::boxed::Box;
use alloc::vec::Vec;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::block::MAX_SEGMENTS;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const PAGE: usize = 4096;
/// Pages a disk's buffers may hold in all (1 MiB).
pub const BUFFER_PAGES: usize = 256;
/// A data page's grant reference while it is granted to nobody (its
/// backend died before the grant).
pub const NO_GRANT: u32 = u32::MAX;

/// A page the backend copies or DMAs to and from.
#[derive(FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(4096))]
pub struct Page([u8; PAGE]);

/// Pages of ours and their grants to the backend.
struct Granted {
    pages: Box<[Page]>,
    grefs: Vec<u32>,
}

impl Granted {
    /// `count` zeroed pages granted (writable) to `backend`. A backend that
    /// died meanwhile leaves them [`NO_GRANT`]: news of its next instance
    /// is coming, and following it grants every page again.
    fn new(count: usize, backend: DomainId) -> Result<Granted> {
        let pages: Box<[Page]> = (0..count).map(|_| Page([0; PAGE])).collect();
        let mut grefs = Vec::with_capacity(count);
        let mut failed = None;
        for page in pages.iter() {
            match hc::grant_create(backend, page.0.as_ptr() as u64, false) {
                Ok(g) => grefs.push(g),
                Err(Error::DeadDomain) => grefs.push(NO_GRANT),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            let mut all_ended = true;
            for &g in grefs.iter().filter(|&&g| g != NO_GRANT) {
                all_ended &= hc::grant_end(g).is_ok();
            }
            if !all_ended {
                // Mapped already: never to be reused.
                core::mem::forget(pages);
            }
            return Err(e);
        }
        Ok(Granted { pages, grefs })
    }
}

/// Where a request's data pages are: a slot's, or a buffer's from one on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Slot(usize),
    Buffer { index: usize, first: usize },
}

/// Every data page of one disk.
pub struct DataPages {
    /// One per request in flight: [`MAX_SEGMENTS`] pages each.
    slots: Vec<Granted>,
    buffers: Vec<Granted>,
}

impl DataPages {
    /// `slots` slots of [`MAX_SEGMENTS`] pages granted to `backend`.
    pub fn new(slots: usize, backend: DomainId) -> Result<DataPages> {
        let mut pages = DataPages {
            slots: Vec::new(),
            buffers: Vec::new(),
        };
        for _ in 0..slots {
            match Granted::new(MAX_SEGMENTS, backend) {
                Ok(slot) => pages.slots.push(slot),
                Err(e) => {
                    // No page is freed while it is granted.
                    if !pages.end_grants() {
                        pages.keep_for_ever();
                    }
                    return Err(e);
                }
            }
        }
        Ok(pages)
    }

    /// A new buffer of `bytes` (whole pages) granted to `backend`; its index.
    pub fn add_buffer(&mut self, bytes: usize, backend: DomainId) -> Result<usize> {
        let count = bytes.div_ceil(PAGE);
        let held: usize = self.buffers.iter().map(|b| b.pages.len()).sum();
        if count == 0 || held + count > BUFFER_PAGES {
            return Err(Error::OutOfResources);
        }
        self.buffers.push(Granted::new(count, backend)?);
        Ok(self.buffers.len() - 1)
    }

    /// Buffer `index`'s bytes, if there is such a buffer.
    pub fn buffer(&self, index: usize) -> Option<&[u8]> {
        self.buffers.get(index).map(|b| b.pages.as_bytes())
    }

    /// Buffer `index`'s bytes to change, if there is such a buffer.
    pub fn buffer_mut(&mut self, index: usize) -> Option<&mut [u8]> {
        self.buffers.get_mut(index).map(|b| b.pages.as_mut_bytes())
    }

    /// The grant of the `i`th page of a request at `place`.
    pub fn gref(&self, place: Place, i: usize) -> u32 {
        match place {
            Place::Slot(s) => self.slots[s].grefs[i],
            Place::Buffer { index, first } => self.buffers[index].grefs[first + i],
        }
    }

    /// Slot `s`'s `i`th page.
    pub fn slot_page(&self, s: usize, i: usize) -> &[u8; PAGE] {
        &self.slots[s].pages[i].0
    }

    /// Slot `s`'s `i`th page, to fill.
    pub fn slot_page_mut(&mut self, s: usize, i: usize) -> &mut [u8; PAGE] {
        &mut self.slots[s].pages[i].0
    }

    /// How many slots there are.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    fn all(&mut self) -> impl Iterator<Item = (&mut u32, &Page)> {
        self.slots
            .iter_mut()
            .chain(self.buffers.iter_mut())
            .flat_map(|g| g.grefs.iter_mut().zip(g.pages.iter()))
    }

    /// Grants every page to `backend`, ending its grant to the backend
    /// before unless `foreign` (the grants are another incarnation's: a
    /// restored domain's). A page whose new grant failed holds
    /// [`NO_GRANT`], so that a later call does not end a reference number
    /// handed out again in between.
    pub fn grant_all(&mut self, backend: DomainId, foreign: bool) -> Result<()> {
        self.all().try_for_each(|(g, page)| {
            let old = core::mem::replace(g, NO_GRANT);
            if !foreign && old != NO_GRANT {
                let _ = hc::grant_end(old);
            }
            *g = hc::grant_create(backend, page.0.as_ptr() as u64, false)?;
            Ok(())
        })
    }

    /// Ends every grant; false if some page is still mapped by its backend
    /// (those pages must never be freed: see [`DataPages::keep_for_ever`]).
    pub fn end_grants(&mut self) -> bool {
        let mut all_ended = true;
        for (&mut g, _) in self.all() {
            if g != NO_GRANT {
                all_ended &= hc::grant_end(g).is_ok();
            }
        }
        all_ended
    }

    /// Leaks every page, so that none is reused while a backend may still
    /// write to it.
    pub fn keep_for_ever(&mut self) {
        for g in self.slots.drain(..).chain(self.buffers.drain(..)) {
            core::mem::forget(g.pages);
        }
    }
}
