//! Checks that no CPU reads a granted page through a mapping that was
//! replaced while the domain ran elsewhere (a stale TLB entry), by `part=`:
//!
//! - `granter grantee=ID`: grants two pages to the grantee (refs 0 and 1),
//!   the first filled with 0xaaaa..., the second with 0xbbbb..., then sleeps.
//! - `prober granter=ID seconds=N`: for N seconds, over and over: sleeps
//!   2 ms (the system test moves it between CPUs meanwhile), reads the page
//!   mapped at its window slot and checks it is the one it mapped last,
//!   then maps the other page there instead and reads it. Ends with
//!   `tlb-check: R rounds on C CPU changes, S stale reads`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::grant::{GrantedPages, Mapping};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::Error;
use domain_runtime::{println, time};
use test_domains::{domain, number, option, wait_for_filled_grants, TLB_PATTERNS};

domain_runtime::entry!(run);

const SLOT: u64 = 3;

fn run(_: &'static domain_runtime::StartInfo) {
    match option("part") {
        Some("granter") => granter(),
        Some("prober") => prober(),
        other => println!("tlb-check: unknown part {:?}", other),
    }
}

fn granter() {
    let grantee = domain("grantee").expect("grantee=");
    // The grantee may not be created yet (domain 0 starts it next, while
    // this domain already runs on another CPU).
    let mut pages = loop {
        match GrantedPages::new(2, grantee) {
            Ok(p) => break p,
            Err(Error::NoSuchDomain) => time::sleep_ns(10_000_000),
            Err(e) => panic!("grant two pages: {e}"),
        }
    };
    for (i, pattern) in TLB_PATTERNS.iter().enumerate() {
        for chunk in pages.page_mut(i).chunks_mut(8) {
            chunk.copy_from_slice(&pattern.to_le_bytes());
        }
    }
    println!(
        "tlb-check: granted refs {} and {}",
        pages.gref(0),
        pages.gref(1)
    );
    loop {
        time::sleep_ns(1_000_000_000);
    }
}

fn prober() {
    let granter = domain("granter").expect("granter=");
    let seconds = number("seconds").unwrap_or(8);
    wait_for_filled_grants(granter, SLOT);
    let mut mapping = Mapping::map(granter, 0, SLOT).expect("map the first page");
    let mut current = 0usize;
    let (mut rounds, mut changes, mut stale) = (0u64, 0u64, 0u64);
    let mut cpu = hc::current_cpu();
    let end = time::now_ns() + seconds * 1_000_000_000;
    while time::now_ns() < end {
        time::sleep_ns(2_000_000);
        let now = hc::current_cpu();
        if now != cpu {
            changes += 1;
            cpu = now;
        }
        // Through the mapping this CPU may have cached before it left.
        if mapping.read_u64(7) != TLB_PATTERNS[current] {
            stale += 1;
            println!("tlb-check: stale read on cpu {} in round {}", cpu, rounds);
        }
        let _ = mapping.unmap();
        current ^= 1;
        mapping = Mapping::map(granter, current as u32, SLOT).expect("map the other page");
        if mapping.read_u64(7) != TLB_PATTERNS[current] {
            stale += 1;
        }
        rounds += 1;
    }
    println!(
        "tlb-check: {} rounds on {} CPU changes, {} stale reads",
        rounds, changes, stale
    );
}
