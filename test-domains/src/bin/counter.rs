//! Prints `count=` (default 10000) numbered lines as fast as it can, then stops.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::println;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let count = test_domains::number("count").unwrap_or(10_000);
    println!(
        "counter: ring {}",
        domain_runtime::console::ring_connected()
    );
    for n in 1..=count {
        println!("counter: {}", n);
    }
}
