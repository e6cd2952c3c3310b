//! Prints `count=` (default 10000) numbered lines as fast as it can, then
//! waits until console-dom has put them all on the UART and reports the time
//! it took in busy TSC ticks (the CPU's idle time taken out; under
//! `-icount`: instructions, every domain and the kernel included);
//! with `gaps`, then how often console-dom restarted under it, the writes
//! sent again, and the waits across those restarts (`bench restart`).
//! `dirty_kib=N` fills N KiB of its heap first and prints their checksum
//! every 50 counts (`bench save`, save and restore tests). `helper` (with
//! `vcpus=2`) starts vCPU 1, which counts in memory as fast as it can, and
//! prints its count every 10 lines (`helper H at N`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

use core::sync::atomic::{AtomicU64, Ordering};
use domain_runtime::println;

/// What vCPU 1 counted (with `helper`).
static HELPER: AtomicU64 = AtomicU64::new(0);

extern "C" fn helper(_: u64) -> ! {
    loop {
        HELPER.fetch_add(1, Ordering::Relaxed);
        for _ in 0..1000 {
            core::hint::spin_loop();
        }
    }
}

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
    // `dirty_kib=N`: N KiB of the heap filled with a pattern, their sum
    // printed every 50 counts (a restored copy must print the same).
    let dirty = test_domains::number("dirty_kib").unwrap_or(0) as usize * 1024;
    let mut memory = alloc::vec![0u8; dirty];
    let mut x: u32 = 0x1234_5678;
    for b in memory.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let helping = test_domains::flag("helper");
    if helping {
        domain_runtime::vcpu::start(1, helper, 0).expect("start vCPU 1 (vcpus=2?)");
    }
    for n in 1..=count {
        println!("counter: {}", n);
        if helping && n % 10 == 0 {
            println!(
                "counter: helper {} at {}",
                HELPER.load(Ordering::Relaxed),
                n
            );
        }
        if dirty > 0 && n % 50 == 0 {
            let sum = memory.chunks(4).fold(0u32, |s, w| {
                s.rotate_left(5) ^ u32::from_le_bytes([w[0], w[1], w[2], w[3]])
            });
            println!("counter: memory {:08x} at {}", sum, n);
        }
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
