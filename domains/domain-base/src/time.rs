//! The clock: nanoseconds since boot, read from the time page without a hypercall.

use ipc_abi::layout::TIME_PAGE;
use ipc_abi::shared::TimePage;

/// The raw time-stamp counter (under QEMU `-icount`, retired instructions).
pub fn tsc() -> u64 {
    // SAFETY: rdtsc only reads a counter; the kernel leaves CR4.TSD clear.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// TSC ticks the CPU was busy (not halted) since boot: under `-icount`,
/// instructions retired by every domain and the kernel.
pub fn busy_tsc() -> u64 {
    // SAFETY: as in `now_ns`; the kernel updates `idle_tsc` (an aligned
    // u64, so never torn) after each halt, hence the volatile read.
    let idle =
        unsafe { core::ptr::addr_of!((*(TIME_PAGE as *const TimePage)).idle_tsc).read_volatile() };
    tsc().saturating_sub(idle)
}

/// Nanoseconds since boot.
pub fn now_ns() -> u64 {
    // SAFETY: the kernel maps the time page read-only at TIME_PAGE in every
    // domain; it is plain data written once at boot.
    let page = unsafe { &*(TIME_PAGE as *const TimePage) };
    page.ns(tsc())
}

/// A stamp of this boot of the machine (the TSC when the kernel started):
/// two boots almost never share it.
pub fn boot_stamp() -> u64 {
    // SAFETY: as in `now_ns`.
    let page = unsafe { &*(TIME_PAGE as *const TimePage) };
    page.tsc_at_boot
}
