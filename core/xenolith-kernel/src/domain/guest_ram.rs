//! An HVM guest's RAM, given at creation and filled in as it is first
//! touched.
//!
//! Owns: reserving a guest's RAM and the nested page tables it may need
//! when the guest is created (the frame allocator then counts them as
//! used, so the guest holds all its memory from the start, as every
//! domain does), and populating a piece of it (zeroed frames, mapped
//! read-write-execute) when the guest's first access faults, domain 0
//! writes its image there, or a page of it is granted or written by the
//! kernel. What is still reserved goes back when the guest is destroyed.
//!
//! Why: zeroing all of a guest's RAM at creation touched every page of the
//! machine's memory it was given; where that memory is itself a guest's
//! (QEMU on a host that backs its RAM on first touch, the project's own
//! test machines) a 256 MiB guest took 2.3 s to create, most of it the
//! host's page faults, where Linux touches a fraction of its RAM booting.

use super::Kernel;
use crate::arch::addrspace::{Access, Kind};
use crate::frame_pool::FrameAllocator;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::PAGE_SIZE;

/// Pages populated at once around a first touch: one fault for 64 KiB
/// (Linux touches its memory in runs; a fault costs an exit).
const CHUNK_PAGES: u64 = 16;

/// Frames to reserve for `pages` pages of RAM from guest-physical 0 and
/// the nested page tables that map them (one table per 512 pages, per
/// 512 of those, and the top levels).
pub fn frames_for(pages: u64) -> u64 {
    let tables = pages.div_ceil(512) + pages.div_ceil(512 * 512) + 2;
    pages + tables
}

/// Whether `gpa` lies in guest `index`'s RAM.
pub fn is_ram(k: &Kernel, index: usize, gpa: u64) -> bool {
    ram_holding(k, index, gpa).is_ok()
}

/// The size of guest `index`'s RAM, if `gpa` lies in it; `BadAddress` if not.
fn ram_holding(k: &Kernel, index: usize, gpa: u64) -> Result<u64, Error> {
    k.domain(index)
        .filter(|d| d.is_hvm())
        .map(|d| d.memory_kib * 1024)
        .filter(|&ram| gpa < ram)
        .ok_or(Error::BadAddress)
}

/// Populates the pages of guest `index`'s RAM around `gpa` not populated
/// yet (the aligned chunk of [`CHUNK_PAGES`] holding it); `BadAddress` if
/// `gpa` is not its RAM.
pub fn populate_around(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    gpa: u64,
) -> Result<(), Error> {
    let ram = ram_holding(k, index, gpa)?;
    let first = gpa & !(CHUNK_PAGES * PAGE_SIZE - 1);
    let end = (first + CHUNK_PAGES * PAGE_SIZE).min(ram);
    for page in (first..end).step_by(PAGE_SIZE as usize) {
        populate(k, frames, index, page)?;
    }
    Ok(())
}

/// Populates the page of guest `index`'s RAM at `gpa`, if it is not yet;
/// `BadAddress` if `gpa` is not its RAM.
pub fn populate(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    gpa: u64,
) -> Result<(), Error> {
    ram_holding(k, index, gpa)?;
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    let page = gpa & !(PAGE_SIZE - 1);
    if d.space.translate(page).is_some() {
        return Ok(());
    }
    // Its reservation covers the frame and any table the mapping needs
    // (`frames_for`): as much as that may take is given back to the pool
    // for this allocation, and what it did not take is reserved again.
    let lent = d.ram_reserved.min(4);
    frames.unreserve(lent);
    let before = frames.unreserved();
    let mapped = frames
        .allocate()
        .ok_or(Error::OutOfResources)
        .and_then(|f| {
            crate::arch::addrspace::zero_frame(f);
            let rwx = Access {
                write: true,
                execute: true,
            };
            d.space
                .map(frames, page, f.addr(), rwx, Kind::Owned)
                .map_err(|_| {
                    let _ = frames.free(f);
                    Error::OutOfResources
                })
        });
    let used = before - frames.unreserved();
    // Cannot fail: the frames lent are still free (`used` at most `lent`
    // by `frames_for`'s bound, and only this allocation ran).
    let _ = frames.reserve(lent.saturating_sub(used));
    d.ram_reserved -= used.min(d.ram_reserved);
    mapped
}

/// Gives back what guest `index` still holds reserved (it is being
/// destroyed, or was never built).
pub fn release(frames: &mut FrameAllocator, reserved: u64) {
    frames.unreserve(reserved);
}
