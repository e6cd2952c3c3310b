//! Sharing pages: pages of ours granted to a peer ([`GrantedPages`]), and a
//! peer's granted pages mapped into our grant window ([`Mapping`]), as safe types.

extern crate alloc;
use alloc::boxed::Box;
use alloc::vec::Vec;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Result;

/// One page-aligned page of memory.
#[repr(C, align(4096))]
#[derive(zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::KnownLayout, zerocopy::Immutable)]
pub struct Page(pub [u8; 4096]);

/// Pages of ours granted (read-write, or read-only: [`GrantedPages::read_only`]) to one peer for as long as we live
/// (persistent grants: the peer maps or copies them as often as it likes).
pub struct GrantedPages {
    pages: Box<[Page]>,
    grefs: Vec<u32>,
    /// The restore epoch its grants were made in (`crate::epoch`).
    epoch: u32,
    /// Granted read-only ([`GrantedPages::read_only`]).
    readonly: bool,
}

impl Drop for GrantedPages {
    /// Ends every grant. Pages a peer still maps are never freed: the heap
    /// would hand them out again while the peer can write them. Grants of
    /// an earlier epoch were the saved domain's, not ours: nothing to end.
    fn drop(&mut self) {
        if self.epoch != crate::epoch::get() {
            return;
        }
        let mut held = false;
        for g in self.grefs.drain(..) {
            held |= crate::hypercall::grant_end(g).is_err();
        }
        if held {
            core::mem::forget(core::mem::take(&mut self.pages));
        }
    }
}

impl GrantedPages {
    /// `count` zeroed pages, each granted to `peer`.
    pub fn new(count: usize, peer: DomainId) -> Result<GrantedPages> {
        let mut granted = GrantedPages::ungranted(count);
        granted.regrant(peer, false)?;
        Ok(granted)
    }

    /// `count` zeroed pages granted to nobody yet ([`GrantedPages::regrant`]
    /// grants them).
    pub fn ungranted(count: usize) -> GrantedPages {
        let mut pages = Vec::with_capacity(count);
        pages.resize_with(count, || Page([0; 4096]));
        GrantedPages {
            pages: pages.into_boxed_slice(),
            grefs: Vec::with_capacity(count),
            epoch: crate::epoch::get(),
            readonly: false,
        }
    }

    /// The same pages, granted read-only from now on (pages the peer only
    /// reads, such as a network interface's transmit pages: it cannot write
    /// them, nor can its devices).
    pub fn read_only(mut self) -> GrantedPages {
        self.readonly = true;
        self
    }

    /// Grants every page to `peer` instead (after the old peer died: its
    /// mappings are gone, so the old grants can end). `restored`: the old
    /// grants were another domain's (this is a restored copy), so they are
    /// forgotten, not ended. On failure (`peer` died too) no page is
    /// granted to anyone, and a later call may try the next peer.
    pub fn regrant(&mut self, peer: DomainId, restored: bool) -> Result<()> {
        for g in self.grefs.drain(..) {
            if !restored {
                let _ = crate::hypercall::grant_end(g);
            }
        }
        self.epoch = crate::epoch::get();
        for p in self.pages.iter() {
            match crate::hypercall::grant_create(peer, p.0.as_ptr() as u64, self.readonly) {
                Ok(g) => self.grefs.push(g),
                Err(e) => {
                    for g in self.grefs.drain(..) {
                        let _ = crate::hypercall::grant_end(g);
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub fn gref(&self, i: usize) -> u32 {
        self.grefs[i]
    }

    pub fn page(&self, i: usize) -> &[u8; 4096] {
        &self.pages[i].0
    }

    pub fn page_mut(&mut self, i: usize) -> &mut [u8; 4096] {
        &mut self.pages[i].0
    }

    /// Pages `first..first + count` as one run of bytes (they lie one
    /// after the other).
    pub fn run(&self, first: usize, count: usize) -> &[u8] {
        zerocopy::IntoBytes::as_bytes(&self.pages[first..first + count])
    }

    /// [`GrantedPages::run`], to write.
    pub fn run_mut(&mut self, first: usize, count: usize) -> &mut [u8] {
        zerocopy::IntoBytes::as_mut_bytes(&mut self.pages[first..first + count])
    }

    pub fn len(&self) -> usize {
        self.pages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// A page of another domain, mapped at a window slot for as long as this value lives.
pub struct Mapping {
    slot: u64,
    va: u64,
}

impl Mapping {
    /// Maps grant `gref` of `granter` at window slot `slot`.
    pub fn map(granter: DomainId, gref: u32, slot: u64) -> Result<Mapping> {
        let va = crate::hypercall::grant_map(granter, gref, slot)?;
        Ok(Mapping { slot, va })
    }

    /// The window slot it occupies.
    pub fn slot(&self) -> u64 {
        self.slot
    }

    /// Where the page is mapped.
    pub fn address(&self) -> u64 {
        self.va
    }

    /// Maps grant `gref` of `granter` at `slot` only if it is writable, so
    /// writing it can never fault.
    pub fn map_writable(granter: DomainId, gref: u32, slot: u64) -> Result<Mapping> {
        let va = crate::hypercall::grant_map_writable(granter, gref, slot)?;
        Ok(Mapping { slot, va })
    }

    /// Reads the `index`-th 64-bit word of the page (`index` is taken modulo 512).
    pub fn read_u64(&self, index: usize) -> u64 {
        let p = (self.va as *const u64).wrapping_add(index % 512);
        // SAFETY: the page at `va` stays mapped until `unmap` consumes this Mapping;
        // the read is aligned and within the page; volatile, as the peer may write.
        unsafe { core::ptr::read_volatile(p) }
    }

    /// Writes the `index`-th 64-bit word (a read-only grant faults and crashes this domain).
    pub fn write_u64(&self, index: usize, value: u64) {
        let p = (self.va as *mut u64).wrapping_add(index % 512);
        // SAFETY: as in `read_u64`; the page is another domain's memory, never
        // a Rust object of ours, so writing it cannot break our invariants.
        unsafe { core::ptr::write_volatile(p, value) }
    }

    /// Copies `buf.len()` bytes from `offset` in the page (clamped to the page).
    pub fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        let offset = offset.min(4096);
        let n = buf.len().min(4096 - offset);
        // SAFETY: the page at `va` stays mapped while this Mapping lives and
        // the range lies inside it; the peer may write concurrently, which
        // only makes the bytes stale, never invalid (any bit pattern is a u8).
        unsafe {
            core::ptr::copy_nonoverlapping((self.va as *const u8).add(offset), buf.as_mut_ptr(), n)
        }
    }

    /// Copies `buf` to `offset` in the page (clamped; a read-only grant
    /// faults and crashes this domain).
    pub fn write_bytes(&self, offset: usize, buf: &[u8]) {
        let offset = offset.min(4096);
        let n = buf.len().min(4096 - offset);
        // SAFETY: as in `read_bytes`; the page is another domain's memory,
        // never a Rust object of ours.
        unsafe { core::ptr::copy_nonoverlapping(buf.as_ptr(), (self.va as *mut u8).add(offset), n) }
    }

    /// Unmaps the page.
    pub fn unmap(self) -> Result<u64> {
        crate::hypercall::grant_unmap(self.slot)
    }
}
