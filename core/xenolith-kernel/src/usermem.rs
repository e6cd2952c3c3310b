//! Reading and writing a domain's memory on its behalf.
//!
//! Owns: the only path by which the kernel touches memory a domain named by
//! pointer. Every byte is looked up in that domain's own page tables (user
//! pages only, writable ones for writes, RAM only) and reached through the
//! physmap, so a hostile pointer yields `BadAddress`, never a kernel fault
//! or an access outside the caller. Device memory a driver domain maps is
//! not RAM: the physmap has none of it (a read there faulted the kernel),
//! and a device register is never memory to copy.

use crate::arch::addrspace::AddressSpace;
use crate::arch::memory::copy_between_frames;
use crate::domain::shared_pages::{read_frame, write_frame};
use crate::elf::ImageSource;
use crate::frames::Frame;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::PAGE_SIZE;

use crate::checks::user_range as check_range;
pub use crate::checks::MAX_COPY;

/// Calls `f(frame, offset_in_frame, range_in_buffer)` for each page piece of `[va, va+len)`.
fn for_each_piece(
    space: &AddressSpace,
    va: u64,
    len: u64,
    need_write: bool,
    mut f: impl FnMut(Frame, usize, core::ops::Range<usize>),
) -> Result<(), Error> {
    check_range(va, len)?;
    // Check every page first so a failed copy changes nothing. The first
    // pages' frames are kept for the copy (one of a page or less spans at
    // most two), so a small copy walks the page tables once; nothing can
    // change them in between (the caller holds the kernel's lock).
    let first = va & !(PAGE_SIZE - 1);
    let mut kept: [Option<Frame>; 2] = [None; 2];
    let mut at = first;
    while at < va + len {
        match space.ram_frame(at) {
            Some((frame, writable, _)) if writable || !need_write => {
                if let Some(k) = kept.get_mut(((at - first) / PAGE_SIZE) as usize) {
                    *k = Some(frame);
                }
            }
            _ => return Err(Error::BadAddress),
        }
        at += PAGE_SIZE;
    }
    let mut done = 0u64;
    while done < len {
        let cur = va + done;
        let in_page = (cur % PAGE_SIZE) as usize;
        let n = (PAGE_SIZE - cur % PAGE_SIZE).min(len - done);
        let page = ((cur - first) / PAGE_SIZE) as usize;
        let frame = match kept.get(page).copied().flatten() {
            Some(frame) => frame,
            None => space.ram_frame(cur).ok_or(Error::BadAddress)?.0,
        };
        f(frame, in_page, done as usize..(done + n) as usize);
        done += n;
    }
    Ok(())
}

/// Copies `buf.len()` bytes from the domain's `va`.
pub fn copy_from(space: &AddressSpace, va: u64, buf: &mut [u8]) -> Result<(), Error> {
    for_each_piece(space, va, buf.len() as u64, false, |frame, off, r| {
        read_frame(frame, off, &mut buf[r])
    })
}

/// Copies `data` to the domain's `va` (which must be writable by the domain).
pub fn copy_to(space: &AddressSpace, va: u64, data: &[u8]) -> Result<(), Error> {
    for_each_piece(space, va, data.len() as u64, true, |frame, off, r| {
        write_frame(frame, off, &data[r])
    })
}

/// Copies `len` bytes between the domain's `va` and `frame` at `offset`
/// (within the frame; the caller checked), straight from page to page:
/// into the frame when `to_frame`, else out of it into the domain (whose
/// pages must then be writable). Nothing is copied unless all of `va`'s
/// range is the domain's.
pub fn copy_with_frame(
    space: &AddressSpace,
    va: u64,
    frame: Frame,
    offset: usize,
    len: usize,
    to_frame: bool,
) -> Result<(), Error> {
    for_each_piece(space, va, len as u64, !to_frame, |user, off, r| {
        let at = offset + r.start;
        if to_frame {
            copy_between_frames(user, off, frame, at, r.len())
        } else {
            copy_between_frames(frame, at, user, off, r.len())
        }
    })
}

/// Reads a `#[repr(C)]` plain-data value from the domain.
pub fn read_value<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
    space: &AddressSpace,
    va: u64,
) -> Result<T, Error> {
    let mut v = T::new_zeroed();
    copy_from(space, va, v.as_mut_bytes())?;
    Ok(v)
}

/// An ELF image in a domain's memory, read on demand.
pub struct UserImage<'a> {
    pub space: &'a AddressSpace,
    pub va: u64,
    pub len: u64,
}

impl ImageSource for UserImage<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return false;
        }
        copy_from(self.space, self.va + offset, buf).is_ok()
    }
}
