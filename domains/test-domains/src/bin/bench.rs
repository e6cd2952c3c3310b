//! Kernel path lengths, for `cargo xtask bench kernel` (run it under
//! `-icount`, where the TSC counts retired instructions).
//!
//! As domain 0 (`part=control`): null hypercall round trip, event round trip
//! with a child on the same CPU (and, with two CPUs or more, with a child on
//! another CPU), and domain creation to the child's `run` for 1 MiB and
//! 64 MiB domains; with two CPUs or more, a grant map + unmap in a child
//! with two vCPUs, alone and while its other vCPU runs on another CPU (the
//! TLB shootdown). As a child: `part=echo` answers events (`apart=1`: with
//! `EventSend` and `Block` as two calls, not one `EventSendBlock`); `part=first
//! t0=N` prints how long after N it started; `part=unmap peer=ID gref=N`
//! maps and unmaps the peer's grant.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicBool, Ordering};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainState;
use domain_runtime::{events, println, time, vcpu, DomainId};
use test_domains::{domain, number, option};

domain_runtime::entry!(run);

const ROUNDS: u64 = 10_000;

fn run(start: &'static domain_runtime::StartInfo) {
    match option("part") {
        Some("echo") => echo(),
        Some("unmap") => unmapper(),
        Some("first") => {
            let t = time::tsc();
            let t0 = number("t0").unwrap_or(t);
            println!(
                "bench: create to first run {} KiB: {} instructions",
                start.memory_kib,
                t - t0
            );
        }
        _ => control(DomainId(start.domain_id)),
    }
}

fn echo() {
    let port = hc::event_bind_interdomain(
        domain("peer").expect("peer="),
        number("peer_port").expect("peer_port=") as u16,
    )
    .expect("bind");
    hc::event_send(port).expect("hello");
    events::wait(port);
    let apart = number("apart") == Some(1);
    loop {
        if apart {
            let _ = hc::event_send(port);
            events::wait(port);
        } else {
            let _ = events::send_and_wait(port);
        }
    }
}

/// TSC ticks (instructions under -icount) and nanoseconds of one event
/// round trip with a child echoing on the CPUs in `cpus`, answering with
/// `EventSendBlock` (`events::send_and_wait`), or with `EventSend` and
/// `Block` apart if `apart`.
fn event_round_trip(me: DomainId, cpus: u64, apart: bool) -> (u64, u64) {
    let child = hc::domain_create("echo", 1024, 0, 0, 1).expect("create");
    hc::domain_load_image(child, image()).expect("load");
    hc::domain_pin(child, 0, cpus).expect("pin");
    let port = hc::event_alloc_unbound(DomainId::SELF, child).expect("port");
    let mut line: heapless::String<128> = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(
        &mut line,
        format_args!(
            "bench part=echo peer={} peer_port={} apart={}",
            me.0,
            port,
            u8::from(apart)
        ),
    );
    hc::domain_set_cmdline(child, &line).expect("cmdline");
    hc::domain_unpause(child).expect("unpause");
    events::wait(port);
    let (t0, n0) = (time::tsc(), time::now_ns());
    for _ in 0..ROUNDS {
        hc::event_send(port).expect("send");
        events::wait(port);
    }
    let per_round = ((time::tsc() - t0) / ROUNDS, (time::now_ns() - n0) / ROUNDS);
    let _ = hc::domain_destroy(child);
    let _ = hc::event_close(port);
    per_round
}

/// Set by the unmapper's vCPU 1 once it spins.
static SPINNING: AtomicBool = AtomicBool::new(false);

extern "C" fn spin(_: u64) -> ! {
    SPINNING.store(true, Ordering::SeqCst);
    loop {
        core::hint::spin_loop();
    }
}

/// Nanoseconds of one grant map + unmap of the peer's grant.
fn map_unmap_ns(peer: DomainId, gref: u32) -> u64 {
    let round = || {
        hc::grant_map(peer, gref, 0).expect("map");
        hc::grant_unmap(0).expect("unmap");
    };
    (0..10).for_each(|_| round());
    let n0 = time::now_ns();
    (0..ROUNDS / 10).for_each(|_| round());
    (time::now_ns() - n0) / (ROUNDS / 10)
}

fn unmapper() {
    let peer = domain("peer").expect("peer=");
    let gref = number("gref").expect("gref=") as u32;
    let alone = map_unmap_ns(peer, gref);
    vcpu::start(1, spin, 0).expect("start vCPU 1");
    while !SPINNING.load(Ordering::SeqCst) {
        core::hint::spin_loop();
    }
    let shared = map_unmap_ns(peer, gref);
    println!(
        "bench: grant map+unmap: {alone} ns alone, {shared} ns with the other vCPU on another CPU"
    );
}

/// A child with two vCPUs, vCPU 0 on CPU 1 and vCPU 1 on CPU 0, maps and
/// unmaps a page of ours; we sleep meanwhile, so CPU 0 runs its vCPU 1.
fn unmap_cost(me: DomainId) {
    let child = hc::domain_create("unmapper", 1024, 0, 0, 2).expect("create");
    hc::domain_load_image(child, image()).expect("load");
    hc::domain_pin(child, 0, 0b10).expect("pin vCPU 0");
    hc::domain_pin(child, 1, 0b01).expect("pin vCPU 1");
    let pages = domain_runtime::grant::GrantedPages::new(1, child).expect("grant");
    let mut line: heapless::String<128> = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(
        &mut line,
        format_args!("bench part=unmap peer={} gref={}", me.0, pages.gref(0)),
    );
    hc::domain_set_cmdline(child, &line).expect("cmdline");
    hc::domain_unpause(child).expect("unpause");
    while hc::domain_info(child).map(|i| i.state) == Ok(DomainState::Running as u32) {
        time::sleep_ns(10_000_000);
    }
    let _ = hc::domain_destroy(child);
    drop(pages);
}

fn image() -> &'static [u8] {
    domain_runtime::modules()
        .next()
        .map(|(b, _)| b)
        .expect("the bench image as module 2")
}

fn control(me: DomainId) {
    for _ in 0..100 {
        let _ = hc::null();
    }
    let t0 = time::tsc();
    for _ in 0..ROUNDS {
        let _ = hc::null();
    }
    println!(
        "bench: null hypercall: {} instructions",
        (time::tsc() - t0) / ROUNDS
    );

    let _ = hc::domain_pin(DomainId::SELF, 0, 1);
    println!(
        "bench: event round trip: {} instructions",
        event_round_trip(me, 1, false).0
    );
    println!(
        "bench: event round trip, send and block apart: {} instructions",
        event_round_trip(me, 1, true).0
    );
    let cpus = hc::kernel_stats().map_or(1, |s| s.cpus);
    if cpus > 1 {
        let (tsc, ns) = event_round_trip(me, 2, false);
        println!("bench: event round trip across CPUs: {tsc} instructions, {ns} ns");
        unmap_cost(me);
    }

    for kib in [1024u64, 65536] {
        let t0 = time::tsc();
        let id = hc::domain_create("first", kib, 0, 0, 1).expect("create");
        hc::domain_load_image(id, image()).expect("load");
        let mut line: heapless::String<64> = heapless::String::new();
        let _ = core::fmt::Write::write_fmt(&mut line, format_args!("bench part=first t0={}", t0));
        hc::domain_set_cmdline(id, &line).expect("cmdline");
        hc::domain_unpause(id).expect("unpause");
        while hc::domain_info(id).map(|i| i.state) == Ok(DomainState::Running as u32) {
            hc::yield_cpu();
        }
        let _ = hc::domain_destroy(id);
    }
    println!("bench: done");
}
