//! TLB shootdown stress (run with `vcpus=2` beside a `tlb-check
//! part=granter`): vCPU 0 maps one of two granted pages at a window slot,
//! unmaps it, maps the other, over and over for `seconds=N`, saying what it
//! does in a phase word; vCPU 1, on another CPU, reads the slot all the
//! while through `vcpu::probe_read` (a read of an unmapped page comes back
//! as `None`, not a crash) and judges each read taken within one phase:
//!
//! - page mapped: the read must succeed and see that page's pattern;
//! - page unmapped (the unmap had returned): the read must fault. One that
//!   succeeds read through a TLB entry the unmap left on the reader's CPU.
//!
//! Ends with `tlb-stress: R rounds, M mapped reads, F faults after unmap,
//! V violations, cpus A and B`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::layout::GRANT_WINDOW;
use domain_runtime::{println, time, vcpu};
use test_domains::{domain, number, wait_for_filled_grants, TLB_PATTERNS};

domain_runtime::entry!(run);

const SLOT: u64 = 5;
/// The word the reader reads (inside the slot's page).
const WORD: u64 = GRANT_WINDOW + SLOT * 4096 + 7 * 8;

/// Round n is 4n (mapping), 4n+1 (page n % 2 mapped), 4n+2 (unmapping),
/// 4n+3 (unmapped: the unmap returned and the next map has not begun).
static PHASE: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicU64 = AtomicU64::new(0);
/// The reader's results: mapped reads, faults after unmap, violations, its CPU; DONE last.
static MAPPED: AtomicU64 = AtomicU64::new(0);
static FAULTS: AtomicU64 = AtomicU64::new(0);
static VIOLATIONS: AtomicU64 = AtomicU64::new(0);
static READER_CPU: AtomicU64 = AtomicU64::new(u64::MAX);
static DONE: AtomicU64 = AtomicU64::new(0);

fn run(_: &'static domain_runtime::StartInfo) {
    let granter = domain("granter").expect("granter=");
    let seconds = number("seconds").unwrap_or(8);
    // The granter may not have granted or filled its pages yet.
    wait_for_filled_grants(granter, SLOT);
    PHASE.store(3, Ordering::SeqCst);
    if let Err(e) = vcpu::start(1, reader, 0) {
        println!("tlb-stress: cannot start vCPU 1: {}", e);
        return;
    }
    while READER_CPU.load(Ordering::SeqCst) == u64::MAX {
        core::hint::spin_loop();
    }
    println!(
        "tlb-stress: vCPU 0 on cpu {}, vCPU 1 on cpu {}",
        hc::current_cpu(),
        READER_CPU.load(Ordering::SeqCst)
    );
    let end = time::now_ns() + seconds * 1_000_000_000;
    let mut round = 1u64;
    while time::now_ns() < end {
        let page = (round % 2) as u32;
        PHASE.store(4 * round, Ordering::SeqCst);
        let mapping = Mapping::map(granter, page, SLOT).expect("map a granted page");
        PHASE.store(4 * round + 1, Ordering::SeqCst);
        dwell();
        PHASE.store(4 * round + 2, Ordering::SeqCst);
        mapping.unmap().expect("unmap");
        PHASE.store(4 * round + 3, Ordering::SeqCst);
        dwell();
        round += 1;
    }
    STOP.store(1, Ordering::SeqCst);
    while DONE.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    println!(
        "tlb-stress: {} rounds, {} mapped reads, {} faults after unmap, {} violations, cpus {} and {}",
        round - 1,
        MAPPED.load(Ordering::SeqCst),
        FAULTS.load(Ordering::SeqCst),
        VIOLATIONS.load(Ordering::SeqCst),
        hc::current_cpu(),
        READER_CPU.load(Ordering::SeqCst)
    );
}

/// Gives the reader time for a few reads in the current phase.
fn dwell() {
    let until = time::tsc() + 20_000;
    while time::tsc() < until {
        core::hint::spin_loop();
    }
}

extern "C" fn reader(_: u64) -> ! {
    READER_CPU.store(hc::current_cpu(), Ordering::SeqCst);
    let (mut mapped, mut faults, mut violations) = (0u64, 0u64, 0u64);
    while STOP.load(Ordering::SeqCst) == 0 {
        let before = PHASE.load(Ordering::SeqCst);
        let read = vcpu::probe_read(WORD);
        if PHASE.load(Ordering::SeqCst) != before {
            continue;
        }
        let pattern = TLB_PATTERNS[((before / 4) % 2) as usize];
        match (before % 4, read) {
            (1, Some(v)) if v == pattern => mapped += 1,
            (3, None) => faults += 1,
            (1, _) | (3, Some(_)) => {
                violations += 1;
                if violations <= 5 {
                    println!("tlb-stress: phase {} read {:x?}", before, read);
                }
            }
            _ => {}
        }
    }
    MAPPED.store(mapped, Ordering::SeqCst);
    FAULTS.store(faults, Ordering::SeqCst);
    VIOLATIONS.store(violations, Ordering::SeqCst);
    DONE.store(1, Ordering::SeqCst);
    loop {
        hc::block();
    }
}
