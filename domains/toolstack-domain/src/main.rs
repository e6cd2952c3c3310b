//! Domain 0, the control domain: the toolstack. `start.rs` runs it (boot
//! modules and bundle, lifecycle, the broker, the management protocol).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use toolstack_domain::start;

domain_runtime::entry!(run);

fn run(_start: &'static domain_runtime::StartInfo) {
    start::run();
}
