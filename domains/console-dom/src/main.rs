//! console-dom: the console driver domain.
//!
//! Given COM1's ports and IRQ by the toolstack at creation, it takes COM1
//! over from the kernel and from then on prints the kernel log — the kernel's
//! own lines and the debug-hypercall `[domid]` lines — line by line, so
//! lines never interleave. Lines that scroll out of the kernel log before
//! it reads them are reported, never lost silently. If it dies, the kernel
//! writes COM1 itself again.
//!
//! Every domain started after it gets a console ring (brokered by domain 0):
//! its output is printed whole-line `[domid] ...`, kept in a per-domain
//! history that outlives the domain, and COM1 input (by IRQ) goes to the
//! focused domain; Ctrl-A three times moves the focus.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU32, Ordering};

/// console-dom's own line, prefixed `[ID] console-dom: ` as every domain's
/// lines are prefixed with their id (a `format_args!`).
macro_rules! own {
    ($($arg:tt)*) => {
        format_args!("[{}] console-dom: {}", $crate::me(), format_args!($($arg)*))
    };
}

mod clients;
mod history;
mod relay;

/// This domain's id as consoles show it (its index).
static ME: AtomicU32 = AtomicU32::new(0);

fn me() -> u32 {
    ME.load(Ordering::Relaxed)
}

domain_runtime::entry!(run);

fn run(start: &'static domain_runtime::StartInfo) {
    ME.store(start.domain_id & 0xffff, Ordering::Relaxed);
    relay::run();
}
