//! Domain 0, the control domain: the toolstack. `watch.rs` runs it: it starts
//! the boot modules and bundle (`start.rs`), then watches and serves for ever.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use toolstack_domain::watch;

domain_runtime::entry!(run);

fn run(_start: &'static domain_runtime::StartInfo) {
    watch::run();
}
