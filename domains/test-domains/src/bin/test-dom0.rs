//! A control domain for the kernel's system tests, by `scenario=`:
//!
//! - `grants`: the grant-table scenarios, with `grant-peer` domains.
//! - `churn`: creates and destroys `count=` (1000) domains and checks that
//!   free frames, ports and grants end exactly where they began.
//! - `fairshare`: starts the other modules (spinners, a sleeper), lets them
//!   run `seconds=` (3) and prints each domain's CPU ticks.
//! - `lifecycle`: the kernel log, unique names, a refused image, pause and
//!   unpause, a bad entry point (with `hello` and `survivor` modules).
//! - `dying`: a domain destroyed while another CPU runs it holds its IRQ
//!   until it is gone, and is gone when `domain_destroy` returns.
//! - `leftovers`: a domain created where another was never sees its bytes:
//!   the first's every page is filled with a marker, it is destroyed, a
//!   second of the same size (on the same frames: they come lowest first)
//!   is created, and every word of its memory is read for the marker; its
//!   memory can be neither read nor written before its image is loaded.
//! - anything else: start the other modules, like the toolstack domain.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::{AtomicU64, Ordering};
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainState;
use domain_runtime::{events, println, time, DomainId};
use test_domains::{number, option};

domain_runtime::entry!(run);

#[repr(C, align(4096))]
struct Page([AtomicU64; 512]);

static SHARED: Page = Page([const { AtomicU64::new(0) }; 512]);
static OTHER: Page = Page([const { AtomicU64::new(0) }; 512]);

fn me(start: &domain_runtime::StartInfo) -> DomainId {
    DomainId(start.domain_id)
}

fn run(start: &'static domain_runtime::StartInfo) {
    match option("scenario") {
        Some("grants") => grants(me(start)),
        Some("churn") => churn(me(start)),
        Some("fairshare") => fairshare(),
        Some("lifecycle") => lifecycle(),
        Some("dying") => dying(me(start)),
        Some("leftovers") => leftovers(),
        _ => {
            toolstack_domain::start::start_modules();
        }
    }
    println!("test-dom0: scenario done");
    loop {
        hc::block();
    }
}

fn image(name: &str) -> &'static [u8] {
    domain_runtime::modules()
        .find(|(_, line)| line.split_whitespace().next() == Some(name))
        .map(|(bytes, _)| bytes)
        .expect("a boot module with that name")
}

/// Creates, loads and configures a paused domain.
fn make(name: &str, image_of: &str, cmdline: &str) -> DomainId {
    let id = hc::domain_create(name, 1024, 0, 0, 1).expect("create");
    hc::domain_load_image(id, image(image_of)).expect("load");
    hc::domain_set_cmdline(id, cmdline).expect("cmdline");
    id
}

fn line(args: core::fmt::Arguments<'_>) -> heapless::String<256> {
    let mut s = heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut s, args);
    s
}

fn grants(me: DomainId) {
    // 1. Share, map, write, read back; foreign and revoked refs refused.
    let mapper = hc::domain_create("mapper", 1024, 0, 0, 1).expect("create mapper");
    let bystander = hc::domain_create("bystander", 512, 0, 0, 1).expect("create bystander");
    SHARED.0[0].store(0xfeed_f00d, Ordering::SeqCst);
    let r = hc::grant_create(mapper, &SHARED as *const Page as u64, false).expect("grant");
    let foreign = hc::grant_create(bystander, &OTHER as *const Page as u64, true)
        .expect("grant to bystander");
    // (Made before the revoked one ends, or it would take its ref.)
    let read_only =
        hc::grant_create(mapper, &OTHER as *const Page as u64, true).expect("read-only grant");
    let revoked =
        hc::grant_create(mapper, &OTHER as *const Page as u64, true).expect("grant to revoke");
    hc::grant_end(revoked).expect("end an unmapped grant");
    let port = hc::event_alloc_unbound(DomainId::SELF, mapper).expect("port");
    hc::domain_load_image(mapper, image("grant-peer")).expect("load");
    let cmd = line(format_args!(
        "grant-peer part=mapper granter={} ref={} port={} foreign={} revoked={} readonly={}",
        me.0, r, port, foreign, revoked, read_only
    ));
    hc::domain_set_cmdline(mapper, &cmd).expect("cmdline");
    hc::domain_unpause(mapper).expect("unpause");
    events::wait(port);
    let reply = SHARED.0[1].load(Ordering::SeqCst);
    println!(
        "grants: mapper wrote back {:#x} (expected {:#x})",
        reply,
        0xfeed_f00du64 ^ 0xffff
    );
    // Its batch: word 0 copied page to page to word 256, then word 2
    // written before a copy into the read-only grant failed.
    println!(
        "grants: the batch copied word 0 to word 256: {:#x}; wrote word 2: {:#x}; the read-only page's word 0: {:#x}",
        SHARED.0[256].load(Ordering::SeqCst),
        SHARED.0[2].load(Ordering::SeqCst),
        OTHER.0[0].load(Ordering::SeqCst)
    );
    let _ = hc::grant_end(read_only);
    println!(
        "grants: end while mapped: {:?}",
        hc::grant_end(r).map(|_| ())
    );
    // 2. The mapper dies while mapped; then the grant can end.
    hc::domain_destroy(mapper).expect("destroy mapper");
    println!(
        "grants: end after the mapper died: {:?}",
        hc::grant_end(r).map(|_| ())
    );
    let _ = hc::grant_end(foreign);
    let _ = hc::domain_destroy(bystander);
    let _ = hc::event_close(port);
    // 3. The granter dies while mapped; the mapper's page stays valid until unmapped.
    let before = hc::kernel_stats().expect("stats");
    let granter = hc::domain_create("granter", 1024, 0, 0, 1).expect("create granter");
    let port = hc::event_alloc_unbound(DomainId::SELF, granter).expect("port");
    hc::domain_load_image(granter, image("grant-peer")).expect("load");
    let cmd = line(format_args!(
        "grant-peer part=granter grantee={} port={} twice",
        me.0, port
    ));
    hc::domain_set_cmdline(granter, &cmd).expect("cmdline");
    hc::domain_unpause(granter).expect("unpause");
    events::wait(port);
    let m = Mapping::map(granter, 0, 5).expect("map the granter's page");
    // The same frame under its second ref: one frame, two mappings.
    let twin = Mapping::map(granter, 1, 6).expect("map the page's second ref");
    println!(
        "grants: mapped the granter's page at {:#x}: {:#x}",
        m.address(),
        m.read_u64(0)
    );
    hc::domain_destroy(granter).expect("destroy granter");
    // One of the two mappings goes: the frame is still mapped by the other
    // and must not be freed (it was, once: a cross-domain compromise).
    println!(
        "grants: unmap one of two mappings of a dead granter's page: {:?}",
        twin.unmap().map(|_| ())
    );
    // Reuse freed memory: a new domain gets (and zeroes) frames; ours must not be among them.
    let filler = make("filler", "grant-peer", "grant-peer part=none");
    println!(
        "grants: after the granter died the page still reads {:#x} {:#x}; copy through its id: {:?}",
        m.read_u64(0),
        m.read_u64(511),
        hc::grant_copy_from(granter, 0, 0, &mut [0u8; 8]).map(|_| ())
    );
    let _ = hc::domain_destroy(filler);
    println!(
        "grants: unmap after the granter died: {:?}",
        m.unmap().map(|_| ())
    );
    let _ = hc::event_close(port);
    let after_stats = hc::kernel_stats().expect("stats");
    println!(
        "grants: stats before {:?} after {:?} equal={}",
        before,
        after_stats,
        before == after_stats
    );
}

fn churn(_me: DomainId) {
    let count = number("count").unwrap_or(1000);
    let before = hc::kernel_stats().expect("stats");
    let start = time::now_ns();
    for i in 0..count {
        let id = hc::domain_create("churn", 1024, 0, 0, 1).expect("create");
        hc::domain_load_image(id, image("hello")).expect("load");
        let port = hc::event_alloc_unbound(id, DomainId::SELF).expect("port in the child");
        let mine = hc::event_alloc_unbound(DomainId::SELF, id).expect("port in dom0");
        let gref = hc::grant_create(id, &SHARED as *const Page as u64, true).expect("grant");
        let _ = port;
        if i % 100 == 0 {
            hc::domain_set_cmdline(id, "hello churn").expect("cmdline");
            hc::domain_unpause(id).expect("unpause");
            while hc::domain_info(id).map(|i| i.state) == Ok(DomainState::Running as u32) {
                hc::yield_cpu();
            }
        }
        hc::domain_destroy(id).expect("destroy");
        let stale = hc::domain_info(id).map(|_| ());
        if i == 0 {
            println!("churn: info of a destroyed domain: {:?}", stale);
        }
        hc::grant_end(gref).expect("end grant");
        hc::event_close(mine).expect("close");
    }
    let ms = (time::now_ns() - start) / 1_000_000;
    let after = hc::kernel_stats().expect("stats");
    println!(
        "churn: {} domains created and destroyed in {} ms",
        count, ms
    );
    println!("churn: before {:?}", before);
    println!("churn: after  {:?}", after);
    println!("churn: equal={}", before == after);
}

/// A word no fresh domain holds.
const MARKER: u64 = 0x4c45_4654_4f56_4552;

fn leftovers() {
    let first = hc::domain_create("leftover-1", 1024, 0, 0, 1).expect("create");
    hc::domain_load_image(first, image("hello")).expect("load");
    let vas = toolstack_domain::save::pages_to_keep(first, false).expect("read the first");
    let marked: [u8; 4096] = core::array::from_fn(|i| MARKER.to_ne_bytes()[i % 8]);
    let filled = vas
        .iter()
        .filter(|&&va| hc::domain_page_write(first, va, &marked).is_ok())
        .count();
    hc::domain_destroy(first).expect("destroy");
    let second = hc::domain_create("leftover-2", 1024, 0, 0, 1).expect("create");
    let mut page = [0u8; 4096];
    let read_early = hc::domain_page_read(second, 0, &mut page, false).map(drop);
    let write_early = hc::domain_page_write(second, vas[vas.len() / 2], &marked).map(drop);
    hc::domain_load_image(second, image("hello")).expect("load");
    let seconds = toolstack_domain::save::pages_to_keep(second, false).expect("read the second");
    let (pages, mut marks) = (seconds.len(), 0);
    for va in seconds {
        hc::domain_page_read(second, va, &mut page, false).expect("read a page");
        marks += page
            .chunks_exact(8)
            .filter(|w| u64::from_ne_bytes((*w).try_into().unwrap_or_default()) == MARKER)
            .count();
    }
    println!(
        "leftovers: {} of {} pages of the first domain marked; before its image the second's memory: read {:?}, write {:?}; its {} pages hold {} marked words",
        filled,
        vas.len(),
        read_early,
        write_early,
        pages,
        marks
    );
    hc::domain_set_cmdline(second, "hello leftovers").expect("cmdline");
    hc::domain_unpause(second).expect("unpause");
}

fn fairshare() {
    let seconds = number("seconds").unwrap_or(3);
    let started = toolstack_domain::start::start_modules();
    time::sleep_ns(seconds * 1_000_000_000);
    for s in started.iter() {
        if let Ok(info) = hc::domain_info(s.id) {
            println!(
                "fairshare: {} weight={} ticks={}",
                s.name, info.weight, info.cpu_ticks
            );
        }
    }
}

/// Finds the first kernel log line at or after `from` containing `needle`; returns its number.
fn klog_find(from: u64, needle: &str) -> Option<u64> {
    let mut seq = from;
    let mut buf = [0u8; 161];
    while let Ok((n, text)) = hc::console_read(seq, &mut buf) {
        if text.contains(needle) {
            return Some(n);
        }
        seq = n + 1;
    }
    None
}

/// The number the next kernel log line will get.
fn klog_end() -> u64 {
    let mut seq = 0;
    let mut buf = [0u8; 161];
    while let Ok((n, _)) = hc::console_read(seq, &mut buf) {
        seq = n + 1;
    }
    seq
}

fn lifecycle() {
    let log_port = hc::event_bind_virq(domain_runtime::ipc_abi::shared::Virq::ConsoleLog)
        .expect("console virq");
    println!(
        "lifecycle: kernel log has the banner: {}, the cmdline: {}",
        klog_find(0, "Xenolith ").is_some(),
        klog_find(0, "cmdline: ").is_some()
    );
    let a = hc::domain_create("dup", 512, 0, 0, 1).expect("create");
    println!(
        "lifecycle: a second domain named dup: {:?}",
        hc::domain_create("dup", 512, 0, 0, 1).map(|_| ())
    );
    let hello = image("hello");
    let mark = klog_end();
    println!(
        "lifecycle: truncated image: {:?}",
        hc::domain_load_image(a, &hello[..100]).map(|_| ())
    );
    println!(
        "lifecycle: refusal logged: {}",
        klog_find(mark, "image refused: truncated").is_some()
    );
    println!(
        "lifecycle: start before any image: {:?}",
        hc::domain_unpause(a).map(|_| ())
    );
    let _ = hc::domain_destroy(a);

    // A bad entry point crashes that domain alone.
    let b = make("badentry", "hello", "hello");
    hc::domain_set_entry(b, 0x10, 0x7fff_ffee_f000, 0).expect("set entry");
    hc::domain_unpause(b).expect("unpause");
    while hc::domain_info(b).map(|i| i.state) == Ok(DomainState::Running as u32) {
        hc::yield_cpu();
    }
    let info = hc::domain_info(b).expect("info");
    println!(
        "lifecycle: bad entry: state {} vector {} rip {:#x}",
        info.state, info.crash.vector, info.crash.rip
    );
    let _ = hc::domain_destroy(b);

    // Pause stops a running domain; unpause lets it go on.
    let s = make("beater", "survivor", "survivor");
    hc::domain_unpause(s).expect("unpause");
    let beats = |from: u64| klog_find(from, "survivor: heartbeat");
    let mut seen = 0;
    let mut from = klog_end();
    while seen < 2 {
        events::wait(log_port);
        while let Some(n) = beats(from) {
            seen += 1;
            from = n + 1;
        }
    }
    hc::domain_pause(s).expect("pause");
    let ticks = hc::domain_info(s).map(|i| i.cpu_ticks).unwrap_or(0);
    let paused_at = klog_end();
    time::sleep_ns(500_000_000);
    let quiet = beats(paused_at).is_none();
    let still = hc::domain_info(s).map(|i| i.cpu_ticks).unwrap_or(0) == ticks;
    println!(
        "lifecycle: paused for 500 ms: no heartbeat {}, no CPU time {}",
        quiet, still
    );
    hc::domain_unpause(s).expect("unpause");
    let resumed = klog_end();
    while beats(resumed).is_none() {
        events::wait(log_port);
    }
    println!("lifecycle: unpaused: the heartbeat is back");
    let _ = hc::domain_destroy(s);
}

/// A domain destroyed while another CPU runs it is dying until that CPU
/// leaves it, and holds what it was given until then: a driver domain
/// restarted the moment it was destroyed once found its PCI function still
/// taken (a CI run of the crash campaign). The kernel answers `Dying`, and
/// `domain_destroy` returns only once the domain is gone, so a successor
/// gets its IRQ at once, every round.
fn dying(me: DomainId) {
    use domain_runtime::ipc_abi::hypercall::Destroyed;
    hc::domain_pin(me, 0, 1).expect("pin domain 0 to CPU 0");
    const IRQ: u8 = 5;
    let mut dying_answers = 0;
    let mut successors = 0;
    const ROUNDS: u32 = 20;
    for _ in 0..ROUNDS {
        let holder = make("holder", "spinner", "spinner seconds=100000");
        hc::domain_add_irq(holder, IRQ).expect("irq for the holder");
        hc::domain_pin(holder, 0, 2).expect("pin the holder to CPU 1");
        hc::domain_unpause(holder).expect("unpause");
        while hc::domain_info(holder).map(|i| i.running) != Ok(1) {
            hc::yield_cpu();
        }
        // Made first, so that its IRQ is asked for right after the destroy.
        let next = hc::domain_create("successor", 512, 0, 0, 1).expect("create");
        let gone = match hc::domain_destroy_begin(holder) {
            Ok(Destroyed::Dying) => {
                dying_answers += 1;
                hc::domain_wait_gone(holder)
            }
            other => other.map(drop),
        };
        match (gone, hc::domain_add_irq(next, IRQ)) {
            (Ok(()), Ok(_)) => successors += 1,
            (gone, irq) => println!("dying: destroy {:?}, the successor's IRQ {:?}", gone, irq),
        }
        hc::domain_destroy(next).expect("destroy the successor");
    }
    println!(
        "dying: {} of {} destroyed while running elsewhere were dying; {} successors got the IRQ at once",
        dying_answers, ROUNDS, successors
    );
}
