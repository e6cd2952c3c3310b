//! One virtio split virtqueue (virtio 1.x, 2.7) in this domain's DMA pages.
//!
//! Owns: the descriptor table, the available ring and the used ring, and the
//! list of free descriptors. A request is a chain of [`Buffer`]s (physical
//! address, length, whether the device writes it); [`VirtQueue::add`] links
//! one in, [`VirtQueue::publish`] makes every added chain visible to the
//! device at once, [`VirtQueue::take_used`] returns finished ones.
//!
//! Why not `virtio-drivers`'s queue: it is private to that crate, and its
//! block driver takes one contiguous buffer per request, sends no discard,
//! and has one request in flight at a time (see docs/decisions.md).
//!
//! The only `unsafe` here is volatile access to the queue's page, which the
//! device reads and writes concurrently; the page is a [`DmaPage`], which
//! the queue owns alone for the domain's life.

#![allow(unsafe_code)]

use crate::hal::DmaPage;
use core::sync::atomic::{fence, Ordering};

/// Descriptors in the queue (and most requests that can be in flight).
pub const SIZE: u16 = 128;
const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;
/// `used.flags`: the device asks not to be notified.
const USED_NO_NOTIFY: u16 = 1;

/// Byte offsets in the queue's page: descriptors, then the two rings.
const DESC_AT: usize = 0;
const AVAIL_AT: usize = 16 * SIZE as usize;
const USED_AT: usize = (AVAIL_AT + 6 + 2 * SIZE as usize).next_multiple_of(4);
/// Bytes the queue needs (one page).
pub const BYTES: usize = USED_AT + 6 + 8 * SIZE as usize;
const _: () = assert!(BYTES <= domain_runtime::ipc_abi::layout::PAGE_SIZE as usize);

/// A piece of memory a request moves, by physical address.
#[derive(Clone, Copy, Debug)]
pub struct Buffer {
    pub phys: u64,
    pub len: u32,
    /// The device writes it (a read's data, a status byte).
    pub device_writes: bool,
}

/// The queue, in a page this domain owns for life.
pub struct VirtQueue {
    /// Virtual address of the page.
    base: usize,
    /// Physical address of the page.
    phys: u64,
    free_head: u16,
    free_count: u16,
    /// The next `avail.idx` to publish.
    avail_idx: u16,
    /// Used entries seen so far.
    last_used: u16,
    /// Heads handed to the device and not yet returned.
    outstanding: [bool; SIZE as usize],
}

impl VirtQueue {
    /// A queue over `page`, which it keeps for the domain's life.
    pub fn new(page: DmaPage) -> VirtQueue {
        let q = VirtQueue {
            base: page.address() as usize,
            phys: page.phys(),
            free_head: 0,
            free_count: SIZE,
            avail_idx: 0,
            last_used: 0,
            outstanding: [false; SIZE as usize],
        };
        for i in 0..SIZE {
            q.write_u16(DESC_AT + 16 * i as usize + 14, (i + 1) % SIZE);
        }
        q
    }

    /// Physical addresses of the descriptor table, available and used rings.
    pub fn areas(&self) -> (u64, u64, u64) {
        (
            self.phys + DESC_AT as u64,
            self.phys + AVAIL_AT as u64,
            self.phys + USED_AT as u64,
        )
    }

    /// Descriptors not in use.
    pub fn free(&self) -> usize {
        usize::from(self.free_count)
    }

    /// The head the next [`VirtQueue::add`] will use.
    pub fn next_head(&self) -> u16 {
        self.free_head
    }

    /// Whether the device has finished something not yet taken.
    pub fn has_used(&self) -> bool {
        self.read_u16(USED_AT + 2) != self.last_used
    }

    /// Links `chain` into free descriptors and queues its head (not yet
    /// visible to the device); returns the head, or None if too few are free.
    pub fn add(&mut self, chain: &[Buffer]) -> Option<u16> {
        if chain.is_empty() || chain.len() > usize::from(self.free_count) {
            return None;
        }
        let head = self.free_head;
        let mut at = head;
        for (n, b) in chain.iter().enumerate() {
            let d = DESC_AT + 16 * usize::from(at);
            let next = self.read_u16(d + 14);
            let mut flags = if b.device_writes { DESC_WRITE } else { 0 };
            if n + 1 < chain.len() {
                flags |= DESC_NEXT;
            }
            self.write_u64(d, b.phys);
            self.write_u32(d + 8, b.len);
            self.write_u16(d + 12, flags);
            if n + 1 < chain.len() {
                at = next;
            } else {
                self.free_head = next;
            }
        }
        self.free_count -= chain.len() as u16;
        let slot = AVAIL_AT + 4 + 2 * usize::from(self.avail_idx % SIZE);
        self.write_u16(slot, head);
        self.outstanding[usize::from(head)] = true;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Some(head)
    }

    /// Makes every added chain visible to the device; whether it wants a notification.
    pub fn publish(&mut self) -> bool {
        // The descriptors and ring entries before the index that covers them.
        fence(Ordering::Release);
        self.write_u16(AVAIL_AT + 2, self.avail_idx);
        // The index before reading whether the device wants to hear of it.
        fence(Ordering::SeqCst);
        self.read_u16(USED_AT) & USED_NO_NOTIFY == 0
    }

    /// A finished chain's head and the bytes the device wrote, freeing its
    /// descriptors; None if the device has finished nothing new. An entry
    /// naming a head that is not in flight is skipped.
    pub fn take_used(&mut self) -> Option<(u16, u32)> {
        loop {
            let used_idx = self.read_u16(USED_AT + 2);
            if used_idx == self.last_used {
                return None;
            }
            // The index before the entry it covers.
            fence(Ordering::Acquire);
            let e = USED_AT + 4 + 8 * usize::from(self.last_used % SIZE);
            let id = self.read_u32(e);
            let len = self.read_u32(e + 4);
            self.last_used = self.last_used.wrapping_add(1);
            let head = u16::try_from(id).unwrap_or(SIZE);
            if head < SIZE && self.outstanding[usize::from(head)] {
                self.outstanding[usize::from(head)] = false;
                return Some((self.release(head), len));
            }
        }
    }

    /// Puts the chain starting at `head` back on the free list; returns `head`.
    fn release(&mut self, head: u16) -> u16 {
        // Walk the chain back onto the free list.
        let mut at = head;
        let mut count = 1u16;
        loop {
            let d = DESC_AT + 16 * usize::from(at);
            if self.read_u16(d + 12) & DESC_NEXT == 0 || count > SIZE {
                self.write_u16(d + 14, self.free_head);
                break;
            }
            at = self.read_u16(d + 14) % SIZE;
            count += 1;
        }
        self.free_head = head;
        self.free_count = (self.free_count + count).min(SIZE);
        head
    }

    fn read_u16(&self, off: usize) -> u16 {
        // The device may change it at any time, hence volatile.
        // SAFETY: `off` is a constant 2-aligned offset below `BYTES`, inside
        // the `DmaPage` `new` was given (mapped for life, used by nothing else).
        unsafe { core::ptr::read_volatile((self.base + off) as *const u16) }
    }

    fn read_u32(&self, off: usize) -> u32 {
        // SAFETY: as in `read_u16`, 4-aligned.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    fn write_u16(&self, off: usize, v: u16) {
        // SAFETY: as in `read_u16`; the fields written are the driver's.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u16, v) }
    }

    fn write_u32(&self, off: usize, v: u32) {
        // SAFETY: as in `write_u16`, 4-aligned.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }

    fn write_u64(&self, off: usize, v: u64) {
        // SAFETY: as in `write_u16`, 8-aligned (descriptors are 16 bytes).
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u64, v) }
    }
}
