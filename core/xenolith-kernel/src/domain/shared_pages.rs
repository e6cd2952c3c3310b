//! The kernel's side of the pages it shares with a domain.
//!
//! Owns: safe access to a domain's event page (atomic bit operations only) and
//! writes of the start info page. The domain may scribble on its event page at
//! any time; the kernel only performs atomic reads and ORs, and uses what it
//! reads only to decide whether to wake the domain.

pub use crate::arch::memory::{frame_is_zero, read_frame, settle_frame, write_frame};
use crate::frames::Frame;
use crate::layout::phys_to_virt;
use core::sync::atomic::Ordering;
use ipc_abi::shared::{EventPage, StartInfo, PORTS};

fn event_page(frame: Frame) -> &'static EventPage {
    // The page is the domain's, alive while it is in the (locked) table;
    // EventPage is atomics only, so the domain's concurrent writes are fine.
    // SAFETY: `frame` is RAM the physmap maps (a `Frame`): a domain's event page.
    unsafe { &*(phys_to_virt(frame.addr()) as *const EventPage) }
}

/// Sets a port's pending bit; returns whether the port is unmasked.
pub fn set_pending(frame: Frame, port: u16) -> bool {
    let p = port as usize;
    if p >= PORTS {
        return false;
    }
    let page = event_page(frame);
    let bit = 1u64 << (p % 64);
    page.pending[p / 64].fetch_or(bit, Ordering::SeqCst);
    page.mask[p / 64].load(Ordering::SeqCst) & bit == 0
}

/// Clears a port's mask bit; returns whether it is pending.
pub fn unmask(frame: Frame, port: u16) -> bool {
    let p = port as usize;
    if p >= PORTS {
        return false;
    }
    let page = event_page(frame);
    let bit = 1u64 << (p % 64);
    page.mask[p / 64].fetch_and(!bit, Ordering::SeqCst);
    page.pending[p / 64].load(Ordering::SeqCst) & bit != 0
}

/// Clears a port's pending and mask bits (when the port is closed or reused).
pub fn clear(frame: Frame, port: u16) {
    let p = port as usize;
    if p >= PORTS {
        return;
    }
    let page = event_page(frame);
    let bit = 1u64 << (p % 64);
    page.pending[p / 64].fetch_and(!bit, Ordering::SeqCst);
    page.mask[p / 64].fetch_and(!bit, Ordering::SeqCst);
}

/// Whether any unmasked port is pending.
pub fn any_deliverable(frame: Frame) -> bool {
    let page = event_page(frame);
    (0..PORTS / 64)
        .any(|w| page.pending[w].load(Ordering::SeqCst) & !page.mask[w].load(Ordering::SeqCst) != 0)
}

/// Sets doorbell `bit` in a device model's request page (an atomic OR: the
/// device model takes the word with a swap at any time).
pub fn ring_doorbell(frame: Frame, bit: usize) {
    // SAFETY: `frame` is RAM the physmap maps (a `Frame`): the device
    // model's request page, whose `doorbells` word is an aligned AtomicU64
    // at DOORBELLS_OFFSET; the device model's concurrent access is atomic.
    let word = unsafe {
        &*((phys_to_virt(frame.addr()) + ipc_abi::hvm::DOORBELLS_OFFSET as u64)
            as *const core::sync::atomic::AtomicU64)
    };
    word.fetch_or(1 << (bit % 64), Ordering::SeqCst);
}

/// Runs `f` on a start info page (the domain maps it read-only; only the kernel writes it).
pub fn with_start_info<R>(frame: Frame, f: impl FnOnce(&mut StartInfo) -> R) -> R {
    // SAFETY: the start info frame belongs to the domain being set up; the
    // domain maps it read-only, so only the kernel (holding the table lock)
    // writes it; StartInfo is plain data, valid for any bit pattern it holds.
    f(unsafe { &mut *(phys_to_virt(frame.addr()) as *mut StartInfo) })
}
