//! The Xenolith domain runtime: what every domain links.
//!
//! Owns: the entry point (`_start` → your `run`), typed hypercall wrappers,
//! the heap (`alloc` works), `println!` on the debug console, event-channel
//! helpers, the clock, and a panic handler that reports the message to the
//! kernel as the crash reason. A domain is a `Cargo.toml`, a `main.rs` that
//! begins with the two lines below, and one line in `xtask/src/build.rs`:
//!
//! ```ignore
//! #![cfg_attr(target_os = "none", no_std, no_main)]
//! domain_runtime::entry!(run);
//! fn run(start: &'static domain_runtime::StartInfo) { /* ... */ }
//! ```
//!
//! On the host the same source builds into a stub binary, so `cargo test` and
//! `cargo clippy` cover every domain's code.

#![no_std]
// Unsafe code lives in the modules allowed it below (the unsafe base: the
// hypercall gate, start-up and heap, shared pages, port I/O, vCPU start);
// the console, block, network and control frontends are safe code on them.
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod block;
pub mod console;
pub mod control;
#[allow(unsafe_code)] // see the module
pub mod events;
pub mod fault;
pub mod gaps;
#[allow(unsafe_code)] // see the module
pub mod grant;
#[allow(unsafe_code)] // see the module
pub mod hypercall;
#[allow(unsafe_code)] // see the module
pub mod io;
pub mod net;
#[allow(unsafe_code)] // see the module
pub mod ring;
#[allow(unsafe_code)] // see the module
mod rt;
pub mod suspend;
#[allow(unsafe_code)] // see the module
pub mod time;
#[allow(unsafe_code)] // see the module
pub mod vcpu;

pub use ipc_abi;
pub use ipc_abi::domain::DomainId;
pub use ipc_abi::shared::StartInfo;
pub use rt::{command_line, heap_in_use, modules, option, start_info};

/// Declares the domain's `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        fn __xenolith_domain_main(start: &'static $crate::StartInfo) {
            $main(start)
        }
        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn(&'static $crate::StartInfo) = $main;
            eprintln!("this is a Xenolith domain: build and boot it with `cargo xtask run`");
        }
    };
}
