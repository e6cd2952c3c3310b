//! The Xenolith domain runtime: what every domain links.
//!
//! Owns: the device frontends every domain has or may have (the console
//! with `println!`, the control ring to domain 0, disks, network
//! interfaces), suspending for a save, fault injection, and `entry!`. The
//! entry point, heap, typed hypercall wrappers, event channels, grants and
//! clock are `domain-base`, re-exported here, which holds all the unsafe
//! code: this crate forbids it. A domain is a `Cargo.toml`, a `main.rs` that
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
// The unsafe base is `domain-base` (re-exported below): every frontend
// here is safe code on it.
#![forbid(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod backend;
pub mod balloon;
pub mod block;
mod connect;
pub mod console;
pub mod control;
pub mod fault;
pub mod gaps;
pub mod hotplug;
pub mod net;
pub mod suspend;

pub use domain_base::{
    command_line, epoch, events, give_heap_pages, grant, heap_in_use, hypercall, io, ipc_abi,
    modules, option, random, start_info, take_heap_pages, vcpu, DomainId, StartInfo,
};

/// Ring pages (`domain_base::ring`) and announcing them to a backend.
pub mod ring {
    pub use crate::connect::{announce, announce_granted};
    pub use domain_base::ring::*;
}

/// The clock (`domain_base::time`), and sleeping (which serves the control
/// ring meanwhile).
pub mod time {
    pub use domain_base::events::sleep_ns;
    pub use domain_base::time::*;
}

/// What `entry!` runs: connects the control and console rings the command
/// line names, runs the domain's `run`, and lets what it printed last reach
/// the UART before the domain goes (console-dom answers a write only once
/// printed; a restart or give-up is followed).
#[doc(hidden)]
pub fn run_domain(start: &'static StartInfo, run: fn(&'static StartInfo)) {
    match control::connect_from_command_line() {
        Some(Ok(())) => events::set_waiting(events::Waiting {
            port: control::port,
            serve: suspend::serve_while_waiting,
        }),
        Some(Err(e)) => println!("runtime: cannot connect the control ring: {}", e),
        None => {}
    }
    if let Some(Err(e)) = console::connect_from_command_line() {
        println!("runtime: cannot connect the console ring: {}", e);
    }
    run(start);
    console::flush();
}

/// Declares the domain's `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[cfg(target_os = "none")]
        #[no_mangle]
        fn __xenolith_domain_main(start: &'static $crate::StartInfo) {
            $crate::run_domain(start, $main)
        }
        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn(&'static $crate::StartInfo) = $main;
            eprintln!("this is a Xenolith domain: build and boot it with `cargo xtask run`");
        }
    };
}
