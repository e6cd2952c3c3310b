//! Event channels from the domain's side: the shared event page and waiting.

use core::sync::atomic::Ordering;
use ipc_abi::layout::EVENT_PAGE;
use ipc_abi::shared::{EventPage, PORTS};

/// This domain's event page.
pub fn page() -> &'static EventPage {
    // SAFETY: the kernel maps the event page read-write at EVENT_PAGE in every
    // domain before it starts, for the domain's whole life; EventPage is
    // atomics only, so shared access with the kernel is sound.
    unsafe { &*(EVENT_PAGE as *const EventPage) }
}

/// Takes (clears) the pending bit of `port`; returns whether it was set.
pub fn take(port: u16) -> bool {
    let p = port as usize % PORTS;
    let bit = 1u64 << (p % 64);
    page().pending[p / 64].fetch_and(!bit, Ordering::SeqCst) & bit != 0
}

/// Takes every pending port, calling `f` for each.
pub fn take_all(mut f: impl FnMut(u16)) {
    for w in 0..PORTS / 64 {
        let bits = page().pending[w].swap(0, Ordering::SeqCst);
        for b in 0..64 {
            if bits & (1 << b) != 0 {
                f((w * 64 + b) as u16);
            }
        }
    }
}

/// Blocks until `port` is pending, then takes it.
pub fn wait(port: u16) {
    loop {
        if take(port) {
            return;
        }
        crate::control::absorb(Some(port));
        crate::control::obey();
        crate::hypercall::block();
    }
}

/// Waits until `port` is pending or the clock reaches `deadline_ns`;
/// returns whether the port fired.
pub fn wait_until(port: u16, deadline_ns: u64) -> bool {
    loop {
        if take(port) {
            return true;
        }
        if crate::time::now_ns() >= deadline_ns {
            return false;
        }
        crate::control::absorb(Some(port));
        crate::control::obey();
        let _ = crate::hypercall::set_timer(deadline_ns);
        crate::hypercall::block();
    }
}
