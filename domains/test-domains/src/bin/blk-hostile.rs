//! A hostile block frontend: every kind of bad request, a flood, then ring
//! indices pushed past the ring's size. Each answer is printed; the backend
//! must answer errors (or drop the ring at the end) and stay up.
//!
//! With `flood_reads=N` it only keeps its ring full of 4 KiB reads until N
//! are answered, printing every thousandth (the fairness test's busy guest).
//! With `park=SECTOR` it posts one read of that sector, id 0x777, and waits
//! for ever (a request for `toolstack ring dump` to find). With
//! `unread=SECTOR` it posts a read of that sector, id 0x778, and never takes
//! the answer (a response for `ring dump` to find). With `ro_write=SECTOR`
//! it writes that sector from a page it granted read-only, waits up to 5 s
//! for the answer, and says whether that page is still all zeroes (the
//! DMA isolation test's victim).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;
use domain_runtime::block::RawRing;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::block::{BlockOp, BlockRequest, Segment};
use domain_runtime::println;
use zerocopy::FromZeros;

domain_runtime::entry!(run);

#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// A page the backend may write (reads land in it): writable here too, or
/// the kernel refuses to grant it writable.
#[repr(C, align(4096))]
struct WritablePage([core::sync::atomic::AtomicU64; 512]);

static PAGE: WritablePage = WritablePage([const { core::sync::atomic::AtomicU64::new(0) }; 512]);
static READ_ONLY: Page = Page([0; 4096]);

fn request(op: u8, sector: u64, gref: u32) -> BlockRequest {
    let mut r = BlockRequest::new_zeroed();
    r.op = op;
    r.sector = sector;
    r.segments_used = 1;
    r.segments[0] = Segment {
        gref,
        first_sector: 0,
        last_sector: 7,
        _reserved: 0,
    };
    r
}

fn run(_: &'static domain_runtime::StartInfo) {
    let mut ring = match RawRing::connect(0) {
        Ok(r) => r,
        Err(e) => {
            println!("blk-hostile: no ring: {}", e);
            return;
        }
    };
    let Ok(gref) = hc::grant_create(ring.backend, PAGE.0.as_ptr() as u64, false) else {
        println!("blk-hostile: cannot grant a page");
        return;
    };
    let Ok(ro_gref) = hc::grant_create(ring.backend, READ_ONLY.0.as_ptr() as u64, true) else {
        println!("blk-hostile: cannot grant a page read-only");
        return;
    };
    if let Some(n) = test_domains::number("flood_reads") {
        flood_reads(&mut ring, gref, n);
        return;
    }
    if let Some(sector) = test_domains::number("park") {
        let mut r = request(BlockOp::Read as u8, sector, gref);
        r.id = 0x777;
        if ring.front.push(&r).is_ok() && ring.front.publish() {
            let _ = hc::event_send(ring.port);
        }
        println!("blk-hostile: parked a read of sector {} (id 0x777)", sector);
        loop {
            domain_runtime::events::wait(ring.port);
        }
    }
    if let Some(sector) = test_domains::number("ro_write") {
        let r = request(BlockOp::Write as u8, sector, ro_gref);
        if ring.front.push(&r).is_ok() && ring.front.publish() {
            let _ = hc::event_send(ring.port);
        }
        let deadline = domain_runtime::time::now_ns() + 5_000_000_000;
        let answer = loop {
            if let Ok(Some(rsp)) = ring.front.pop() {
                break Some(rsp.status);
            }
            if domain_runtime::time::now_ns() > deadline {
                break None;
            }
            domain_runtime::events::sleep_ns(10_000_000);
        };
        println!(
            "blk-hostile: the write from its read-only page: {:?}",
            answer
        );
        let intact = READ_ONLY.0.iter().all(|&b| b == 0);
        println!(
            "blk-hostile: its read-only page is {}",
            if intact { "unchanged" } else { "CHANGED" }
        );
        loop {
            domain_runtime::events::wait(ring.port);
        }
    }
    if let Some(sector) = test_domains::number("unread") {
        let mut r = request(BlockOp::Read as u8, sector, gref);
        r.id = 0x778;
        if ring.front.push(&r).is_ok() && ring.front.publish() {
            let _ = hc::event_send(ring.port);
        }
        domain_runtime::events::wait(ring.port);
        println!(
            "blk-hostile: the answer to a read of sector {} (id 0x778) came; left unread",
            sector
        );
        loop {
            domain_runtime::events::wait(ring.port);
        }
    }
    let mut info = BlockRequest::new_zeroed();
    info.op = BlockOp::Info as u8;
    let sectors = ring.call(&info).map(|r| r.sectors).unwrap_or(0);
    let mut cases: [(&str, BlockRequest); 7] = [
        (
            "a read past the end",
            request(BlockOp::Read as u8, sectors, gref),
        ),
        (
            "a read into a grant it does not own",
            request(BlockOp::Read as u8, 0, 4000),
        ),
        ("six segments", request(BlockOp::Read as u8, 0, gref)),
        ("an unknown operation", request(9, 0, gref)),
        (
            "a write to its read-only disk",
            request(BlockOp::Write as u8, 0, gref),
        ),
        (
            "a discard of its read-only disk",
            request(BlockOp::Discard as u8, 0, gref),
        ),
        (
            "a read into a page granted read-only",
            request(BlockOp::Read as u8, 0, ro_gref),
        ),
    ];
    cases[2].1.segments_used = 6;
    for (what, r) in cases.iter_mut() {
        r.id = 7;
        match ring.call(r) {
            Ok(rsp) => println!("blk-hostile: {}: status {}", what, rsp.status),
            Err(e) => println!("blk-hostile: {}: {:?}", what, e),
        }
    }
    // A flood: the ring kept full for a while.
    let flood = 2000;
    let mut answered = 0;
    let mut sent = 0;
    while answered < flood {
        while sent < flood && ring.front.free_slots() > 0 {
            let _ = ring.front.push(&info);
            sent += 1;
        }
        if ring.front.publish() {
            let _ = hc::event_send(ring.port);
        }
        match ring.front.pop() {
            Ok(Some(_)) => answered += 1,
            Ok(None) => {
                if !ring.front.final_check().unwrap_or(false) {
                    domain_runtime::events::wait(ring.port);
                }
            }
            Err(_) => break,
        }
    }
    println!(
        "blk-hostile: flood of {} requests: {} answered",
        flood, answered
    );
    // Indices past the ring: the backend must drop the ring, not read out of it.
    let header = ring.pages.shared().header();
    let prod = header.req_prod.load(Ordering::Relaxed);
    header
        .req_prod
        .store(prod.wrapping_add(1000), Ordering::Release);
    let _ = hc::event_send(ring.port);
    println!("blk-hostile: pushed the request index 1000 past the ring");
    // Stay: the backend must find the broken ring itself, not learn of our end.
    loop {
        domain_runtime::events::wait(ring.port);
    }
}

/// Keeps the ring full of reads of sector 0 until `total` are answered.
fn flood_reads(ring: &mut RawRing, gref: u32, total: u64) {
    println!("blk-hostile: flooding {} reads", total);
    let read = request(BlockOp::Read as u8, 0, gref);
    let (mut sent, mut answered, mut failed) = (0u64, 0u64, 0u64);
    while answered < total {
        while sent < total && ring.front.free_slots() > 0 {
            let _ = ring.front.push(&read);
            sent += 1;
        }
        if ring.front.publish() {
            let _ = hc::event_send(ring.port);
        }
        match ring.front.pop() {
            Ok(Some(rsp)) => {
                answered += 1;
                failed += u64::from(rsp.status != 0);
                if answered % 1000 == 0 {
                    // When, by the clock all domains share: console lines
                    // of two domains need not come out in the order written.
                    let us = domain_runtime::time::now_ns() / 1000;
                    println!("blk-hostile: {} reads answered at {} us", answered, us);
                }
            }
            Ok(None) => {
                if !ring.front.final_check().unwrap_or(false) {
                    domain_runtime::events::wait(ring.port);
                }
            }
            Err(_) => break,
        }
    }
    println!(
        "blk-hostile: flood done: {} reads answered, {} failed",
        answered, failed
    );
}
