//! The other side of domain 0's grant tests, by `part=`:
//!
//! - `mapper granter=ID ref=R port=P foreign=F revoked=V readonly=O`: maps
//!   ref R of the granter, checks the pattern, writes a reply, copies
//!   within R and into the read-only O in batches, tries the foreign and
//!   revoked refs (both must be refused), signals port P, then waits.
//! - `granter grantee=ID port=P [twice]`: grants a page to the grantee
//!   (ref 0, and with `twice` ref 1 too), fills it with a pattern, signals
//!   port P, then waits for ever.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use domain_runtime::hypercall as hc;
use domain_runtime::println;
use test_domains::{domain, number, option};

domain_runtime::entry!(run);

#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);

static PAGE: Page = Page([const { AtomicU64::new(0) }; 512]);

fn run(_: &'static domain_runtime::StartInfo) {
    match option("part") {
        Some("mapper") => mapper(),
        Some("granter") => granter(),
        other => println!("grant-peer: unknown part {:?}", other),
    }
}

fn mapper() {
    let granter = domain("granter").expect("granter=");
    let gref = number("ref").expect("ref=") as u32;
    let port =
        hc::event_bind_interdomain(granter, number("port").expect("port=") as u16).expect("bind");
    let va = hc::grant_map(granter, gref, 0).expect("map the granted page");
    let mut word = [0u8; 8];
    hc::grant_copy_from(granter, gref, 0, &mut word).expect("copy from the grant");
    let pattern = u64::from_le_bytes(word);
    println!(
        "grant-peer: mapped ref {} at {:#x}, pattern {:#x}",
        gref, va, pattern
    );
    hc::grant_copy_to(granter, gref, 8, &(pattern ^ 0xffff).to_le_bytes())
        .expect("copy to the grant");
    if let Some(ro) = number("readonly") {
        batch(granter, gref, ro as u32);
    }
    if let Some(f) = number("foreign") {
        println!(
            "grant-peer: foreign ref: {:?}",
            hc::grant_map(granter, f as u32, 1).map(|_| ())
        );
    }
    if let Some(r) = number("revoked") {
        println!(
            "grant-peer: revoked ref: {:?}",
            hc::grant_map(granter, r as u32, 2).map(|_| ())
        );
    }
    hc::event_send(port).expect("signal");
    loop {
        hc::block();
    }
}

/// `GrantCopyBatch` between the granter's pages: word 0 of page `gref`
/// to its word 256, page to page; then a batch whose first copy writes
/// word 2 and whose second, into the read-only page `ro`, is refused.
fn batch(granter: domain_runtime::DomainId, gref: u32, ro: u32) {
    let mut within = hc::CopyBatch::default();
    within.between_grants((granter, gref, 0), (granter, gref, 2048), 8);
    println!("grant-peer: batch page to page: {:?}", within.run());
    let word = 0x0b0b_0b0b_u64.to_le_bytes();
    let mut refused = hc::CopyBatch::default();
    refused.to_grant(granter, gref, 16, &word);
    refused.between_grants((granter, gref, 0), (granter, ro, 0), 8);
    println!(
        "grant-peer: batch into a read-only page: {:?}",
        refused.run()
    );
}

fn granter() {
    let grantee = domain("grantee").expect("grantee=");
    let port =
        hc::event_bind_interdomain(grantee, number("port").expect("port=") as u16).expect("bind");
    PAGE.0[0].store(0x5eed_cafe, Ordering::SeqCst);
    PAGE.0[511].store(0x0123_4567_89ab_cdef, Ordering::SeqCst);
    let gref = hc::grant_create(grantee, &PAGE as *const Page as u64, false).expect("grant");
    println!("grant-peer: granted ref {} to domain {}", gref, grantee);
    if test_domains::flag("twice") {
        // The same page under a second ref: one frame, two grants.
        let again = hc::grant_create(grantee, &PAGE as *const Page as u64, false).expect("grant");
        println!("grant-peer: granted the same page again as ref {}", again);
    }
    hc::event_send(port).expect("signal");
    loop {
        hc::block();
    }
}
