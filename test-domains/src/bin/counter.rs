//! Prints `count=` (default 10000) numbered lines as fast as it can, then
//! waits until console-dom has put them all on the UART and reports the time
//! it took in busy TSC ticks (the CPU's idle time taken out; under
//! `-icount`: instructions, every domain and the kernel included);
//! with `gaps`, then how often console-dom restarted under it, the writes
//! sent again, and the waits across those restarts (`bench restart`).

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
    domain_runtime::console::flush();
    let start = domain_runtime::time::busy_tsc();
    let pace = test_domains::number("pace_us").unwrap_or(0) * 1000;
    for n in 1..=count {
        println!("counter: {}", n);
        if pace > 0 {
            domain_runtime::time::sleep_ns(pace);
        }
    }
    domain_runtime::console::flush();
    let ticks = domain_runtime::time::busy_tsc() - start;
    println!(
        "counter: {} lines took {} tsc ticks, {} a line",
        count,
        ticks,
        ticks / count.max(1)
    );
    if test_domains::flag("gaps") {
        let (restarts, resent) = domain_runtime::console::restarts();
        let resumed = domain_runtime::console::resumed();
        println!(
            "counter: {} restarts, {} writes sent again; {}",
            restarts,
            resent,
            test_domains::Resumed(&resumed)
        );
    }
}
