//! The clock: nanoseconds since boot, read from the time page without a hypercall.

use ipc_abi::layout::TIME_PAGE;
use ipc_abi::shared::TimePage;

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    // SAFETY: the kernel maps the time page read-only at TIME_PAGE in every
    // domain; it is plain data written once at boot.
    let page = unsafe { &*(TIME_PAGE as *const TimePage) };
    // SAFETY: rdtsc only reads a counter.
    page.ns(unsafe { core::arch::x86_64::_rdtsc() })
}

/// Sleeps for at least `ns` nanoseconds, blocking (the timer wakes the vCPU).
pub fn sleep_ns(ns: u64) {
    let deadline = now_ns().saturating_add(ns);
    while now_ns() < deadline {
        let _ = crate::hypercall::set_timer(deadline);
        crate::hypercall::block();
    }
}
