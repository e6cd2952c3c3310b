//! Prints a heartbeat every 100 ms for ever: proof that it keeps running
//! while other domains crash around it.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::{println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let mut n = 0u64;
    loop {
        time::sleep_ns(100_000_000);
        n += 1;
        println!("survivor: heartbeat {}", n);
    }
}
