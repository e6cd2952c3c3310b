//! Prints a heartbeat every `period_ms=` (default 100) for ever: proof that
//! it keeps running (and getting its lines out) while others crash or flood.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::{println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let period = test_domains::number("period_ms").unwrap_or(100) * 1_000_000;
    let mut n = 0u64;
    loop {
        time::sleep_ns(period);
        n += 1;
        println!("survivor: heartbeat {}", n);
    }
}
