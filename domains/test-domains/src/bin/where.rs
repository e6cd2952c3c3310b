//! Reports the CPU it runs on: `where: cpu N` at the start and whenever it
//! changes, looking every 20 ms (or spinning in between with `spin`), for
//! `seconds=` (default 60), then `where: done`. The SMP tests pin it and
//! watch it move.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::{println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let seconds = test_domains::number("seconds").unwrap_or(60);
    let end = time::now_ns() + seconds * 1_000_000_000;
    let mut last = u64::MAX;
    while time::now_ns() < end {
        let cpu = hc::current_cpu();
        if cpu != last {
            println!("where: cpu {}", cpu);
            last = cpu;
        }
        if test_domains::flag("spin") {
            for _ in 0..10_000 {
                core::hint::spin_loop();
            }
        } else {
            // Light on the host: the system tests run two machines at once.
            time::sleep_ns(20_000_000);
        }
    }
    println!("where: done");
}
