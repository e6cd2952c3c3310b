//! A domain's memory changing while it runs, as Xen's balloon driver
//! changes a guest's: frames it gives back from its heap, frames it takes
//! again there up to the maximum the control domain set.
//!
//! Owns: `MemoryRelease` (unmap, forget on every CPU, free: exactly the
//! frame given back, never one another domain may still reach through a
//! grant), `MemoryPopulate` (a fresh zeroed frame where one was given
//! back, within the maximum) and `DomainSetMaxMem`; the domain's
//! `memory_kib` follows each page.

use super::Kernel;
use crate::arch::addrspace::{Access, Kind};
use crate::frame_pool::FrameAllocator;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::{HEAP_BASE, MIN_DOMAIN_KIB, PAGE_SIZE};

/// Whether `va` is a page of domain `index`'s heap.
fn in_heap(k: &Kernel, index: usize, va: u64) -> Result<(), Error> {
    let d = k.domain(index).ok_or(Error::NoSuchDomain)?;
    if d.is_hvm() {
        return Err(Error::PermissionDenied);
    }
    let end = HEAP_BASE + d.heap_pages * PAGE_SIZE;
    if va.is_multiple_of(PAGE_SIZE) && (HEAP_BASE..end).contains(&va) {
        Ok(())
    } else {
        Err(Error::InvalidArgument)
    }
}

/// `MemoryRelease`: domain `index` gives back its heap page at `va`.
pub fn release(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    va: u64,
) -> Result<(), Error> {
    in_heap(k, index, va)?;
    let d = k.domain(index).ok_or(Error::NoSuchDomain)?;
    let (frame, _, kind) = d.space.ram_frame(va).ok_or(Error::InvalidArgument)?;
    if kind != Kind::Owned {
        return Err(Error::InvalidArgument);
    }
    // A granted page may be mapped by its grantee, or be mapped later.
    if d.grants.iter().flatten().any(|g| g.frame == frame) {
        return Err(Error::GrantInUse);
    }
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    let frame = d
        .space
        .unmap_owned(frames, va)
        .ok_or(Error::InvalidArgument)?;
    d.memory_kib -= PAGE_SIZE / 1024;
    // Its other vCPUs forget the page before anyone else can get the frame.
    k.shootdown(index);
    if let Err(e) = frames.free(frame) {
        kprintln!("warning: a frame a domain gave back was not freed: {e}");
    }
    Ok(())
}

/// `MemoryPopulate`: domain `index` takes a fresh frame at heap page `va`.
pub fn populate(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
    va: u64,
) -> Result<(), Error> {
    in_heap(k, index, va)?;
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if d.space.translate(va).is_some() {
        return Err(Error::InvalidArgument);
    }
    if d.memory_kib + PAGE_SIZE / 1024 > d.max_kib {
        return Err(Error::OutOfResources);
    }
    let frame = frames.allocate().ok_or(Error::OutOfResources)?;
    crate::arch::addrspace::zero_frame(frame);
    let rw = Access {
        write: true,
        execute: false,
    };
    if d.space
        .map(frames, va, frame.addr(), rw, Kind::Owned)
        .is_err()
    {
        let _ = frames.free(frame);
        return Err(Error::OutOfResources);
    }
    d.memory_kib += PAGE_SIZE / 1024;
    Ok(())
}

/// `DomainSetMaxMem`: the most memory domain `index` may hold.
pub fn set_max(k: &mut Kernel, index: usize, kib: u64) -> Result<(), Error> {
    if !(MIN_DOMAIN_KIB..=super::lifecycle::MAX_DOMAIN_KIB).contains(&kib) {
        return Err(Error::InvalidArgument);
    }
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    d.max_kib = kib;
    Ok(())
}
