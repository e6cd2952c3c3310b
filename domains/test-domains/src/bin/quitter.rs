//! Prints through its console ring, disconnects it, and prints again through
//! the debug console.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::{console, println};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    println!("quitter: before (ring {})", console::ring_connected());
    console::flush();
    let result = console::disconnect();
    println!(
        "quitter: after {:?} (ring {})",
        result,
        console::ring_connected()
    );
}
