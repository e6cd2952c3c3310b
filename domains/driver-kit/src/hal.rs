//! The glue `virtio-drivers` needs (its `Hal`), over what the kernel gives a
//! driver domain: the DMA window (contiguous pages with known physical
//! addresses) and the BARs of its PCI function mapped in its device window.
//!
//! Owns: the `unsafe` of handing out DMA pages and mapping BARs. Buffers
//! shared with a device must lie in the DMA window (`dma_buffer`); the
//! `Hal`'s `share` refuses any other, so a device only ever reaches this
//! domain's DMA window (and, through `DmaPhys`, pages granted to it).

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
    bars: heapless::Vec<MappedBar, 6>,
    /// The device address of the window's first byte, once asked: the
    /// window is contiguous to the device (`ipc_abi::layout`), so every
    /// other address in it follows without a hypercall per buffer.
    window_base: Option<u64>,
}

static STATE: Mutex<State> = Mutex::new(State {
    pool: Pool::new(0),
    bars: heapless::Vec::new(),
    window_base: None,
});

/// Sets the DMA window's size and the BARs; before the driver starts.
pub fn init(dma_pages: usize, bars: &[MappedBar]) {
    let mut s = STATE.lock();
    s.pool = Pool::new(dma_pages);
    s.window_base = None;
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

/// A zeroed page of the DMA window that this domain holds for life and
/// nothing else uses: only [`dma_page`] makes one, and it is neither `Copy`
/// nor `Clone`, so what is built on it (a virtqueue) owns it alone.
pub struct DmaPage {
    va: u64,
}

impl DmaPage {
    /// Its address in this domain.
    pub fn address(&self) -> u64 {
        self.va
    }

    /// Its physical address, for the device.
    pub fn phys(&self) -> u64 {
        phys(self.va)
    }
}

/// A page of the DMA window for a structure the device shares, never given back.
pub fn dma_page() -> Option<DmaPage> {
    let first = STATE.lock().pool.take(1)?;
    let va = va_of_page(first);
    // SAFETY: the pool handed this page out once and it is never given back,
    // so nothing else refers to it; the window is mapped read-write for life.
    unsafe { core::ptr::write_bytes(va as *mut u8, 0, PAGE) };
    Some(DmaPage { va })
}

fn va_of_page(page: usize) -> u64 {
    DMA_WINDOW + (page * PAGE) as u64
}

fn phys(va: u64) -> u64 {
    // The window is ours for life and the kernel answers for any address
    // in it; it is contiguous to the device, so one answer serves all.
    let ask = |va| hc::dma_phys(va).expect("an address in the DMA window");
    let (pages, cached) = {
        let s = STATE.lock();
        (s.pool.pages(), s.window_base)
    };
    if !(DMA_WINDOW..va_of_page(pages)).contains(&va) {
        return ask(va);
    }
    let base = cached.unwrap_or_else(|| {
        let base = ask(DMA_WINDOW);
        STATE.lock().window_base = Some(base);
        base
    });
    base + (va - DMA_WINDOW)
}

/// The physical address of a byte of the DMA window (from [`dma_buffer`]).
pub fn phys_of(p: *const u8) -> u64 {
    phys(p as u64)
}

/// The 16-bit word at DMA address `phys` of this domain's window (a
/// virtqueue's index or flags, which the device writes at any time), or
/// None if `phys` is not a 2-aligned address of the window.
pub fn read_shared_u16(phys: u64) -> Option<u16> {
    let (pages, base) = {
        let s = STATE.lock();
        (s.pool.pages(), s.window_base?)
    };
    let offset = phys.checked_sub(base)?;
    if offset % 2 != 0 || offset + 2 > (pages * PAGE) as u64 {
        return None;
    }
    // SAFETY: a 2-aligned address inside the window, which is mapped for
    // the domain's life; any u16 is valid; volatile as the device writes it.
    Some(unsafe { core::ptr::read_volatile((DMA_WINDOW + offset) as *const u16) })
}

/// A byte the device writes (a status byte), read after the device said it
/// is done with it.
pub fn read_device_byte(b: &u8) -> u8 {
    // SAFETY: `b` is a valid reference; volatile because the device wrote
    // it behind the compiler's back.
    unsafe { core::ptr::read_volatile(b) }
}

/// The `Hal` of this domain.
pub struct XenolithHal;

// DMA pages come from the window the kernel mapped for this domain's whole
// life, zeroed, each run handed out once until given back.
// SAFETY: BAR addresses translate only within BARs the kernel mapped; only
// buffers in the DMA window are shared, so the device reaches nothing else.
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

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let va = buffer.as_ptr() as *mut u8 as u64;
        let window_end = va_of_page(crate::dma::MAX_PAGES);
        assert!(
            va >= DMA_WINDOW && va + buffer.len() as u64 <= window_end,
            "only DMA-window buffers are shared with the device"
        );
        phys(va) as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {
        // Shared in place: nothing to copy back.
    }
}
