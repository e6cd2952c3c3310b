//! Xenolith kernel: memory, scheduling and event channels, and nothing else.
//!
//! On bare metal (`target_os = "none"`) this is the kernel image GRUB boots.
//! On the host it builds only the pure modules, so `cargo test` covers them;
//! the host binary itself just says how to build the real thing.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![cfg_attr(not(target_os = "none"), allow(dead_code))]
// Unsafe code lives in the modules allowed it below, each block argued by a
// `SAFETY:` comment; the compiler refuses it anywhere else.
#![deny(unsafe_code)]

mod aml_s5;
mod channels;
mod checks;
mod cmdline;
mod dma_remap;
mod elf;
mod frame_pool;
mod frames;
mod grant_table;
mod intr_remap;
mod layout;
mod pci_inventory;
mod pci_rules;
mod sched;
mod timer_plan;
mod watchdog;

#[cfg(target_os = "none")]
#[allow(unsafe_code)] // see the module
mod arch;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // see the module
mod boot;
#[cfg(target_os = "none")]
#[allow(unsafe_code)] // the panic path's forced unlock
#[macro_use]
mod console;
// After `console` (it prints with kprintln!), before the users of trace_event!.
#[allow(unsafe_code)] // the per-CPU trace rings (`trace::sink`)
#[macro_use]
mod trace;
#[cfg(target_os = "none")]
mod dom0;
#[cfg(target_os = "none")]
mod domain;
// After `trace`: its exits are traced.
mod hvm;
#[cfg(target_os = "none")]
mod hypercall;
#[cfg(target_os = "none")]
mod klog;
mod panic;
#[cfg(target_os = "none")]
mod trap;
#[cfg(target_os = "none")]
mod usermem;
#[cfg(target_os = "none")]
mod vectors;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the Xenolith kernel runs on bare metal: build and boot it with `cargo xtask run`");
    std::process::exit(2);
}
