//! The unsafe base of every Xenolith domain: the code that touches raw
//! memory, registers and the `syscall` instruction, behind safe functions.
//!
//! Owns: the entry point and heap (`rt`), the hypercall gate
//! (`hypercall`), the pages the kernel shares (`events`: the event page and
//! waiting; `time`: the time page), grant mappings (`grant`, `ring`: ring
//! pages granted or mapped), port I/O (`io`), starting vCPUs and probing
//! memory (`vcpu`), restore epochs (`epoch`), the CPU's random numbers
//! (`random`). Nothing here knows a device
//! protocol: the console, block, network and control frontends are
//! `domain-runtime`, safe code on this crate, which re-exports it; domains
//! use `domain-runtime`.

#![no_std]
// Unsafe code lives in the modules allowed it below; `epoch` needs none.
#![deny(unsafe_code)]

#[cfg(test)]
extern crate std;

pub mod epoch;
#[allow(unsafe_code)] // see the module
pub mod events;
#[allow(unsafe_code)] // see the module
pub mod grant;
#[allow(unsafe_code)] // see the module
pub mod hypercall;
#[allow(unsafe_code)] // see the module
pub mod io;
#[allow(unsafe_code)] // see the module
pub mod random;
#[allow(unsafe_code)] // see the module
pub mod ring;
#[allow(unsafe_code)] // see the module
mod rt;
#[allow(unsafe_code)] // see the module
pub mod time;
#[allow(unsafe_code)] // see the module
pub mod vcpu;

pub use ipc_abi;
pub use ipc_abi::domain::DomainId;
pub use ipc_abi::shared::StartInfo;
pub use rt::{
    command_line, give_heap_pages, heap_in_use, modules, option, start_info, take_heap_pages,
    HeapPages,
};
