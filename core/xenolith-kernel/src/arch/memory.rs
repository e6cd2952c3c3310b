//! The kernel's memory: the frame allocator and the kernel address space.
//!
//! Owns: the one global [`FrameAllocator`] and [`KernelSpace`], behind a lock,
//! and the services built on them (device mappings for drivers inside the kernel).

use crate::arch::paging::{Caching, KernelSpace, PagingError};
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;
use crate::layout::{phys_to_virt, PHYS_OFFSET};
use spin::Mutex;

struct Memory {
    frames: FrameAllocator,
    space: KernelSpace,
}

static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

/// Hands the allocator and the active address space to the global state.
pub fn install(frames: FrameAllocator, space: KernelSpace) {
    *MEMORY.lock() = Some(Memory { frames, space });
}

/// The virtual address of `len` bytes at physical `phys`: through the physmap
/// when it covers them, else a fresh mapping in the device window.
pub fn map_physical(phys: u64, len: u64, caching: Caching) -> Result<u64, PagingError> {
    let mut guard = MEMORY.lock();
    let m = guard.as_mut().ok_or(PagingError::OutOfFrames)?;
    let end = phys.saturating_add(len.max(1)) - 1;
    let in_physmap = caching == Caching::WriteBack
        && phys < PHYS_OFFSET
        && m.space.is_mapped(phys_to_virt(phys))
        && m.space.is_mapped(phys_to_virt(end));
    if in_physmap {
        return Ok(phys_to_virt(phys));
    }
    let Memory { frames, space } = m;
    space.map_device(frames, phys, len, caching)
}

/// A kernel stack of `pages` fresh frames, mapped in the device window above
/// an unmapped guard page; returns its top. (Frames taken for it are kept
/// for good: APs' stacks live as long as the machine.)
pub fn map_stack(pages: u64) -> Option<u64> {
    let mut guard = MEMORY.lock();
    let Memory { frames, space } = guard.as_mut()?;
    let phys = frames.allocate_contiguous(pages)?.first().addr();
    space.skip_guard_page().ok()?;
    let base = space
        .map_device(frames, phys, pages * 4096, Caching::WriteBack)
        .ok()?;
    Some(base + pages * 4096)
}

/// Runs `f` with the frame allocator.
pub fn with_frames<R>(f: impl FnOnce(&mut FrameAllocator) -> R) -> R {
    let mut guard = MEMORY.lock();
    let m = guard
        .as_mut()
        .expect("memory is installed before anything allocates");
    f(&mut m.frames)
}

/// The kernel's root page table (physical).
pub fn kernel_root() -> u64 {
    MEMORY.lock().as_ref().map_or(0, |m| m.space.root())
}

/// Loads the kernel's own page tables on this CPU (an AP leaving its
/// start-up tables, a CPU going idle).
pub fn activate_kernel_space() {
    crate::arch::paging::load_root(kernel_root());
}

/// Bytes of physical memory the frame allocator never hands out (boot modules),
/// as a slice through the physmap.
pub fn reserved_bytes(start: u64, len: u64) -> &'static [u8] {
    // SAFETY: callers pass a boot module's range, which the frame allocator
    // reserved at boot and never frees, and which lies in RAM (physmap).
    // Nothing writes to modules, so a shared 'static slice is sound.
    unsafe { core::slice::from_raw_parts(phys_to_virt(start) as *const u8, len as usize) }
}

/// RAM ranges (usable and firmware memory), recorded once at boot for
/// `overlaps_ram` and read without a lock (every grant copy asks).
static RAM: spin::Once<heapless::Vec<crate::frames::PhysRange, 128>> = spin::Once::new();

/// Records the RAM ranges of the memory map (the first call wins).
pub fn set_ram(ranges: &[crate::frames::PhysRange]) {
    RAM.call_once(|| ranges.iter().copied().take(128).collect());
}

/// Whether `[start, end)` touches RAM, so it must never be handed out as device memory.
pub fn overlaps_ram(start: u64, end: u64) -> bool {
    // Below 1 MiB only the legacy VGA window counts as a device: the rest
    // holds the BIOS data area, the EBDA and the kernel's low reservations.
    let vga = 0xa0000..0xc0000;
    if start < 0x10_0000 && !(vga.contains(&start) && end <= vga.end) {
        return true;
    }
    RAM.get()
        .is_some_and(|ram| ram.iter().any(|r| r.start < end && start < r.end))
}

/// Free physical memory, in bytes.
pub fn free_bytes() -> u64 {
    MEMORY.lock().as_ref().map_or(0, |m| m.frames.free_bytes())
}

/// Writes `bytes` at `offset` in a frame through the physmap (image loading, copies).
pub fn write_frame(frame: Frame, offset: usize, bytes: &[u8]) {
    assert!(offset + bytes.len() <= 4096);
    // SAFETY: the range lies within one frame (checked above) of RAM the
    // physmap maps writable (a `Frame`), which the caller owns or was granted.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            (phys_to_virt(frame.addr()) as *mut u8).add(offset),
            bytes.len(),
        )
    }
}

/// Zeroes a frame through the physmap.
pub fn zero_frame(frame: Frame) {
    // SAFETY: a `Frame` is RAM the physmap maps writable and the kernel may
    // write (its constructors say so); the caller owns it.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame.addr()) as *mut u8, 0, 4096) }
}

/// Makes a frame hold exactly `page` (zeroes if `None`) without writing to
/// it where it already does: of a page, only the eight-byte words that
/// differ are written; a frame not all zeroes is zeroed whole. So a
/// restarted driver's code, loaded into the frames its previous instance
/// had, is only read. Under QEMU's TCG that matters: each
/// write to a frame holding translated code goes the slow way and throws
/// the translations away (`lifecycle::load_into`; docs/performance.md).
pub fn settle_frame(frame: Frame, page: Option<&[u8; 4096]>) {
    let base = phys_to_virt(frame.addr()) as *mut u64;
    match page {
        // The words that differ, found by `repe cmpsq` (under -icount, one
        // instruction a word), each written.
        Some(p) => {
            let mut i = 0;
            while i < 512 {
                // SAFETY: both ranges are words `i..512` of a page: the
                // caller's and one frame of RAM the physmap maps (a `Frame`).
                i += unsafe {
                    equal_words(p.as_ptr().add(i * 8) as *const u64, base.add(i), 512 - i)
                };
                if i < 512 {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&p[i * 8..i * 8 + 8]);
                    // SAFETY: word `i` (below 512) of that frame, which the
                    // caller owns. Volatile: the compiler must not turn the
                    // compare-and-write into an unconditional store.
                    unsafe { base.add(i).write_volatile(u64::from_ne_bytes(w)) };
                    i += 1;
                }
            }
        }
        // Zeroes: most of a fresh domain's heap is zeroes already, found so
        // with one scan; a frame that is not is zeroed whole.
        None if frame_is_zero(frame) => {}
        None => zero_frame(frame),
    }
}

/// How many of the `n` (at least 1) words at `a` and `b` are equal before
/// the first that differs (`n` if none does).
///
/// # Safety
/// `n` words at `a` and at `b` must be readable.
unsafe fn equal_words(a: *const u64, b: *const u64, n: usize) -> usize {
    let (left, equal): (usize, u8);
    // SAFETY: reads the `n` words at each (the caller's promise) and nothing
    // else, upwards (the direction flag is clear, as the ABI keeps it).
    unsafe {
        core::arch::asm!(
            "repe cmpsq",
            "sete {equal}",
            equal = out(reg_byte) equal,
            inout("rcx") n => left,
            inout("rsi") a => _,
            inout("rdi") b => _,
            options(nostack, readonly),
        )
    }
    // `repe` stops after the first pair that differs, or with all compared.
    if equal != 0 {
        n
    } else {
        n - left - 1
    }
}

/// Whether a frame holds only zeroes: one `repe scasq` over it (under
/// `-icount`, one instruction a word; it stops at the first word set).
pub fn frame_is_zero(frame: Frame) -> bool {
    let zero: u8;
    // SAFETY: reads the 512 words of one frame of RAM the physmap maps (a
    // `Frame`) and nothing else: `rcx` counts them, `rdi` walks them
    // upwards (the direction flag is clear, as the ABI keeps it).
    unsafe {
        core::arch::asm!(
            "repe scasq",
            "sete {zero}",
            zero = out(reg_byte) zero,
            inout("rcx") 512u64 => _,
            inout("rdi") phys_to_virt(frame.addr()) => _,
            in("rax") 0u64,
            options(nostack, readonly),
        )
    }
    zero != 0
}

/// Copies `len` bytes from `from` at `from_offset` to `to` at `to_offset`,
/// frame to frame through the physmap (a grant copy, with no bounce).
pub fn copy_between_frames(
    from: Frame,
    from_offset: usize,
    to: Frame,
    to_offset: usize,
    len: usize,
) {
    assert!(from_offset + len <= 4096 && to_offset + len <= 4096);
    // SAFETY: both ranges lie within one frame each (checked above) of RAM
    // the physmap maps writable; `copy` allows them to overlap (a domain
    // may copy within a page it granted itself).
    unsafe {
        core::ptr::copy(
            (phys_to_virt(from.addr()) as *const u8).add(from_offset),
            (phys_to_virt(to.addr()) as *mut u8).add(to_offset),
            len,
        )
    }
}

/// Reads `buf.len()` bytes at `offset` of a frame.
pub fn read_frame(frame: Frame, offset: usize, buf: &mut [u8]) {
    assert!(offset + buf.len() <= 4096);
    // SAFETY: as in `write_frame`, reading.
    unsafe {
        core::ptr::copy_nonoverlapping(
            (phys_to_virt(frame.addr()) as *const u8).add(offset),
            buf.as_mut_ptr(),
            buf.len(),
        )
    }
}
