//! Keeps `data_kib=` (default 256) of data in its heap and checks every
//! word of it ten times a second while domain 0 changes its memory
//! (`toolstack domain mem-set`): says what it holds each time that
//! changes, and whether its data is intact.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use alloc::vec::Vec;
use domain_runtime::{balloon, hypercall as hc, println, time, DomainId};

domain_runtime::entry!(run);

/// The word at index `i`.
fn word(i: usize) -> u64 {
    (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5a5a
}

fn run(_: &'static domain_runtime::StartInfo) {
    let kib = test_domains::number("data_kib").unwrap_or(256) as usize;
    let data: Vec<u64> = (0..kib * 128).map(word).collect();
    let mut said = (0, true);
    loop {
        let intact = data.iter().enumerate().all(|(i, &w)| w == word(i));
        // Asked each time: a restored copy has another id.
        let me = DomainId(domain_runtime::start_info().domain_id);
        let holding = hc::domain_info(me).map_or(0, |i| i.memory_kib);
        if (holding, intact) != said {
            println!(
                "balloon-check: holding {} KiB, balloon {} KiB, data {}",
                holding,
                balloon::held_kib(),
                if intact { "intact" } else { "CORRUPT" }
            );
            said = (holding, intact);
        }
        time::sleep_ns(100_000_000);
    }
}
