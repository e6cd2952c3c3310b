//! The guest's memory as the device model reaches it: pages of the guest
//! granted to this domain in the guest's name (`HvmGrant`) and mapped in
//! its grant window, kept in a small cache so that the virtqueues and the
//! pages Linux reuses stay mapped (the cache of Xen's device models,
//! built on the grant table: decisions.md).
//!
//! Owns: which guest pages are mapped where, evicting the least recently
//! used when the cache is full. An address outside the guest's RAM is
//! refused by the kernel and reported as [`OutsideGuest`]; nothing else
//! of the machine can be reached through it.

extern crate alloc;
use alloc::vec::Vec;
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainId;

const PAGE: u64 = 4096;

/// Guest pages kept mapped at most: the guest's grant table (256 entries)
/// keeps room for the grants the rings need.
pub const CACHED_PAGES: usize = 96;

/// An access that reached beyond the guest's RAM (or that the kernel
/// refused for another reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutsideGuest;

/// Reading and writing guest-physical memory (a trait so that the
/// virtqueue logic is host-tested over a plain buffer).
pub trait Memory {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), OutsideGuest>;
    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), OutsideGuest>;
}

struct Cached {
    frame: u64,
    gref: u32,
    mapping: Mapping,
    used: u64,
}

pub struct GuestMemory {
    guest: DomainId,
    me: DomainId,
    pages: Vec<Cached>,
    /// The entry found last: looked at first (a request's descriptors, its
    /// ring entries and its buffers mostly lie in the page before's).
    last: usize,
    clock: u64,
    /// Pages mapped since start (each a miss of the cache).
    pub mapped: u64,
}

impl GuestMemory {
    pub fn new(guest: DomainId, me: DomainId) -> GuestMemory {
        GuestMemory {
            guest,
            me,
            pages: Vec::with_capacity(CACHED_PAGES),
            last: 0,
            clock: 0,
            mapped: 0,
        }
    }

    /// The cache entry holding guest frame `frame` (its address / 4096),
    /// mapped now if it was not.
    fn page(&mut self, frame: u64) -> Result<&Cached, OutsideGuest> {
        self.clock += 1;
        let hit = match self.pages.get(self.last) {
            Some(c) if c.frame == frame => Some(self.last),
            _ => self.pages.iter().position(|c| c.frame == frame),
        };
        if let Some(i) = hit {
            self.last = i;
            self.pages[i].used = self.clock;
            return Ok(&self.pages[i]);
        }
        let slot = if self.pages.len() < CACHED_PAGES {
            self.pages.len() as u64
        } else {
            let oldest = (0..self.pages.len())
                .min_by_key(|&i| self.pages[i].used)
                .ok_or(OutsideGuest)?;
            let old = self.pages.swap_remove(oldest);
            let slot = old.mapping.slot();
            let _ = old.mapping.unmap();
            let _ = hc::hvm_grant_end(self.guest, old.gref);
            slot
        };
        let gpa = frame.checked_mul(PAGE).ok_or(OutsideGuest)?;
        let gref = hc::hvm_grant(self.guest, gpa, self.me, false).map_err(|_| OutsideGuest)?;
        let mapping = match Mapping::map(self.guest, gref, slot) {
            Ok(m) => m,
            Err(_) => {
                let _ = hc::hvm_grant_end(self.guest, gref);
                return Err(OutsideGuest);
            }
        };
        self.mapped += 1;
        self.pages.push(Cached {
            frame,
            gref,
            mapping,
            used: self.clock,
        });
        self.last = self.pages.len() - 1;
        Ok(self.pages.last().expect("just pushed"))
    }

    /// Each page-sized piece of `[gpa, gpa + len)`: (its page, offset in
    /// it, offset in the access, bytes).
    fn pieces(gpa: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize, usize)> {
        let mut done = 0usize;
        core::iter::from_fn(move || {
            if done >= len {
                return None;
            }
            let at = gpa.wrapping_add(done as u64);
            let in_page = (at % PAGE) as usize;
            let n = (len - done).min(PAGE as usize - in_page);
            let piece = (at / PAGE, in_page, done, n);
            done += n;
            Some(piece)
        })
    }
}

impl Memory for GuestMemory {
    fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), OutsideGuest> {
        gpa.checked_add(buf.len() as u64).ok_or(OutsideGuest)?;
        for (frame, in_page, at, n) in Self::pieces(gpa, buf.len()) {
            self.page(frame)?
                .mapping
                .read_bytes(in_page, &mut buf[at..at + n]);
        }
        Ok(())
    }

    fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), OutsideGuest> {
        gpa.checked_add(buf.len() as u64).ok_or(OutsideGuest)?;
        for (frame, in_page, at, n) in Self::pieces(gpa, buf.len()) {
            self.page(frame)?
                .mapping
                .write_bytes(in_page, &buf[at..at + n]);
        }
        Ok(())
    }
}
