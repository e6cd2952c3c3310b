//! Spins for `seconds=` (default 3) of wall time, counting loop iterations,
//! then prints the count: with two spinners, the ratio of their counts is the
//! ratio of the CPU time each got. `then_sleep_ms=N`: then sleeps N ms.
//! `helpers=N` (with `vcpus=N+1`): first starts vCPUs 1 to N, each
//! counting iterations the same way for good, and says `spinner: vCPU k
//! up`; the count printed is then all its vCPUs' (`bench smp`).
//! `hypercalls`: each iteration also makes a `Null` hypercall.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use domain_runtime::{println, time, vcpu};

domain_runtime::entry!(run);

/// What each helper vCPU counted (by vCPU number).
static HELPED: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

extern "C" fn helper(vcpu: u64) -> ! {
    let count = &HELPED[vcpu as usize % HELPED.len()];
    let mut iterations = 0u64;
    loop {
        for _ in 0..1000 {
            iterations = core::hint::black_box(iterations + 1);
        }
        count.store(iterations, Ordering::Relaxed);
    }
}

fn run(_: &'static domain_runtime::StartInfo) {
    for n in 1..=test_domains::number("helpers").unwrap_or(0) as u32 {
        match vcpu::start(n, helper, n as u64) {
            Ok(()) => println!("spinner: vCPU {} up", n),
            Err(e) => println!("spinner: cannot start vCPU {}: {}", n, e),
        }
    }
    let seconds = test_domains::number("seconds").unwrap_or(3);
    let end = time::now_ns() + seconds * 1_000_000_000;
    let mut iterations = 0u64;
    // `hypercalls`: each iteration enters the kernel (a `Null` hypercall),
    // so an NMI often lands on the entry and exit paths.
    let hypercalls = test_domains::flag("hypercalls");
    while time::now_ns() < end {
        for _ in 0..1000 {
            if hypercalls {
                let _ = domain_runtime::hypercall::null();
            }
            iterations = core::hint::black_box(iterations + 1);
        }
    }
    iterations += HELPED
        .iter()
        .map(|h| h.load(Ordering::Relaxed))
        .sum::<u64>();
    println!("spinner: {} thousand iterations", iterations / 1000);
    // `then_sleep_ms=N`: then sleeps (a wait through the runtime, where a
    // suspend request still pending is obeyed) and says so.
    if let Some(ms) = test_domains::number("then_sleep_ms") {
        time::sleep_ns(ms * 1_000_000);
        println!("spinner: slept {} ms", ms);
    }
}
