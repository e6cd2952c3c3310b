//! Granted pages mapped into this domain's grant window, as a safe type.

use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Result;

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

    /// Where the page is mapped.
    pub fn address(&self) -> u64 {
        self.va
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

    /// Unmaps the page.
    pub fn unmap(self) -> Result<u64> {
        crate::hypercall::grant_unmap(self.slot)
    }
}
