//! Follows `domain vcpu-set` as a program should: starts a worker on each
//! of its vCPUs (`vcpus=`), and when asked to have N online (the runtime's
//! `hotplug`), starts those below N that are not running while each
//! worker at N or above stops itself (`vcpu::stop`). Says how many it was
//! asked for each time. Workers wake every 10 ms and count.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use domain_runtime::hotplug::{self, Change};
use domain_runtime::ipc_abi::hypercall::Error;
use domain_runtime::{hypercall as hc, println, time, vcpu, DomainId};

domain_runtime::entry!(run);

/// Whether each vCPU's worker runs (vCPU 0 always does: it is `run`).
static RUNNING: [AtomicBool; 8] = [const { AtomicBool::new(false) }; 8];
/// What each worker counted.
static COUNTS: [AtomicU64; 8] = [const { AtomicU64::new(0) }; 8];

extern "C" fn worker(me: u64) -> ! {
    let i = me as usize % RUNNING.len();
    loop {
        if hotplug::vcpus_wanted().is_some_and(|n| me >= u64::from(n)) {
            RUNNING[i].store(false, Ordering::Release);
            vcpu::stop();
        }
        COUNTS[i].fetch_add(1, Ordering::Relaxed);
        let _ = hc::set_timer(time::now_ns() + 10_000_000);
        hc::block();
    }
}

/// Starts vCPU `n`'s worker; a worker that just stopped itself may not be
/// down yet (the kernel then refuses): tried again until it is.
fn start(n: u32) {
    loop {
        match vcpu::start(n, worker, u64::from(n)) {
            Ok(()) => {
                RUNNING[n as usize].store(true, Ordering::Release);
                return;
            }
            Err(Error::DomainState) => time::sleep_ns(1_000_000),
            Err(e) => return println!("vcpu-check: cannot start vCPU {}: {}", n, e),
        }
    }
}

fn run(start_info: &'static domain_runtime::StartInfo) {
    let me = DomainId(start_info.domain_id);
    let vcpus = hc::domain_info(me).map_or(1, |i| i.vcpus).clamp(1, 8);
    for n in 1..vcpus {
        start(n);
    }
    println!("vcpu-check: {} vCPUs online", vcpus);
    loop {
        if let Change::Vcpus { online } = hotplug::wait() {
            for n in 1..online.min(vcpus) {
                if !RUNNING[n as usize].load(Ordering::Acquire) {
                    start(n);
                }
            }
            println!("vcpu-check: asked for {} vCPUs", online);
        }
    }
}
