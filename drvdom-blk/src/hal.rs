//! The glue `virtio-drivers` needs (its `Hal`), over what the kernel gives a
//! driver domain: the DMA window (contiguous pages with known physical
//! addresses) and the BARs of its PCI function mapped in its device window.
//!
//! Owns: every `unsafe` of this domain. Virtqueues live in DMA pages; a
//! buffer the driver shares that is not in the DMA window is bounced through
//! DMA pages (copied in before the device reads it, copied back after it
//! wrote), so the device only ever sees this domain's DMA window.

#![allow(unsafe_code)]

use crate::dma::Pool;
use core::ptr::NonNull;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::layout::{DMA_WINDOW, PAGE_SIZE};
use spin::Mutex;
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

const PAGE: usize = PAGE_SIZE as usize;

/// A memory BAR: physical address, size, where it is mapped here.
#[derive(Clone, Copy)]
pub struct MappedBar {
    pub phys: u64,
    pub size: u64,
    pub va: u64,
}

struct State {
    pool: Pool,
    /// Bounce buffers in use: (physical address, pages).
    bounces: heapless::Vec<(u64, usize), 64>,
    bars: heapless::Vec<MappedBar, 6>,
}

static STATE: Mutex<State> = Mutex::new(State {
    pool: Pool::new(0),
    bounces: heapless::Vec::new(),
    bars: heapless::Vec::new(),
});

/// Sets the DMA window's size and the BARs; before the driver starts.
pub fn init(dma_pages: usize, bars: &[MappedBar]) {
    let mut s = STATE.lock();
    s.pool = Pool::new(dma_pages);
    s.bars.clear();
    for b in bars {
        let _ = s.bars.push(*b);
    }
}

/// A buffer of DMA pages for this domain's own I/O, never given back.
pub fn dma_buffer(bytes: usize) -> Option<&'static mut [u8]> {
    let pages = bytes.div_ceil(PAGE);
    let first = STATE.lock().pool.take(pages)?;
    let va = va_of_page(first);
    // SAFETY: the pool handed this run out once and it is never given back,
    // so the slice is the only reference to it for the domain's life; the
    // window is mapped read-write for that long.
    Some(unsafe { core::slice::from_raw_parts_mut(va as *mut u8, bytes) })
}

fn va_of_page(page: usize) -> u64 {
    DMA_WINDOW + (page * PAGE) as u64
}

fn phys(va: u64) -> u64 {
    // The window is ours for life and the kernel answers for any address in it.
    hc::dma_phys(va).expect("an address in the DMA window")
}

/// The `Hal` of this domain.
pub struct XenolithHal;

// SAFETY: DMA pages come from the window the kernel mapped for this domain's
// whole life, zeroed, each run handed out once until given back; BAR
// addresses translate only within BARs the kernel mapped; shared buffers are
// bounced into DMA pages, so the device never reaches other memory.
unsafe impl Hal for XenolithHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let first = STATE
            .lock()
            .pool
            .take(pages)
            .expect("DMA window exhausted (raise dma= in the configuration)");
        let va = va_of_page(first);
        // SAFETY: the run is ours alone from now on (the pool handed it out
        // once) and lies within the mapped window; zeroed as the trait asks.
        unsafe { core::ptr::write_bytes(va as *mut u8, 0, pages * PAGE) };
        let ptr = NonNull::new(va as *mut u8).expect("the window is not at 0");
        (phys(va) as PhysAddr, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let first = (vaddr.as_ptr() as u64 - DMA_WINDOW) as usize / PAGE;
        STATE.lock().pool.give(first, pages);
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        let paddr = paddr as u64;
        let s = STATE.lock();
        let bar = s
            .bars
            .iter()
            .find(|b| paddr >= b.phys && paddr + size as u64 <= b.phys + b.size)
            .expect("an MMIO range inside a BAR this domain holds");
        NonNull::new((bar.va + (paddr - bar.phys)) as *mut u8).expect("BARs are mapped above 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let va = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        let mut s = STATE.lock();
        let window_end = va_of_page(crate::dma::MAX_PAGES);
        if va >= DMA_WINDOW && va + len as u64 <= window_end {
            return phys(va) as PhysAddr;
        }
        let pages = len.div_ceil(PAGE);
        let first = s
            .pool
            .take(pages)
            .expect("DMA window exhausted (raise dma= in the configuration)");
        let bounce = va_of_page(first);
        if direction != BufferDirection::DeviceToDriver {
            // SAFETY: the caller guarantees `buffer` is valid for reads of
            // `len` bytes; the bounce run is ours alone and at least as long.
            unsafe { core::ptr::copy_nonoverlapping(va as *const u8, bounce as *mut u8, len) };
        }
        let pa = phys(bounce);
        let _ = s.bounces.push((pa, pages));
        pa as PhysAddr
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let va = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        let mut s = STATE.lock();
        let Some(i) = s.bounces.iter().position(|&(pa, _)| pa == paddr as u64) else {
            // Shared in place (a DMA page): nothing to copy.
            return;
        };
        let (pa, pages) = s.bounces.swap_remove(i);
        let first = ((pa - phys(DMA_WINDOW)) / PAGE_SIZE) as usize;
        let bounce = va_of_page(first);
        if direction != BufferDirection::DriverToDevice {
            // SAFETY: the caller guarantees `buffer` is valid for writes of
            // `len` bytes; the bounce run is ours until given back below.
            unsafe { core::ptr::copy_nonoverlapping(bounce as *const u8, va as *mut u8, len) };
        }
        s.pool.give(first, pages);
    }
}
