//! Domain 0, the control domain: starts a domain for every boot module it was
//! given and reports what becomes of each (see `start.rs` for the module line).
//! The real toolstack, with configuration files and the management protocol,
//! is issue 5.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use toolstack_domain::start;

domain_runtime::entry!(run);

fn run(_start: &'static domain_runtime::StartInfo) {
    start::run();
}
