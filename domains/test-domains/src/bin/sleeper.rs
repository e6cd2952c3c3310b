//! Sleeps on its one-shot timer `sleeps=` times (default 20) for 25 ms each
//! and reports the worst lateness of a wake-up.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::{println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let sleeps = test_domains::number("sleeps").unwrap_or(20);
    let mut worst = 0;
    for _ in 0..sleeps {
        let deadline = time::now_ns() + 25_000_000;
        hc::set_timer(deadline).expect("set the timer");
        while time::now_ns() < deadline {
            hc::block();
        }
        worst = worst.max(time::now_ns() - deadline);
    }
    println!(
        "sleeper: {} sleeps, worst wake-up {} us late",
        sleeps,
        worst / 1000
    );
}
