//! A hypercall fuzzer: `calls=N` hypercalls chosen by a seeded generator
//! (`seed=S`, xorshift: the same seed gives the same sequence), in
//! sequence, with arguments drawn from what a hostile domain has at hand:
//! ports and grant refs it made (valid, then stale), its own id, domain 0's,
//! stale ids, and pointers into its own scratch page (the only place the
//! kernel may write for it), its read-only image, its device and grant
//! windows, the kernel half and every boundary between them.
//!
//! Every call must come back; a call that kills the caller legitimately
//! (`Shutdown`, `Suspend`) is left out. Prints calls per second and the
//! errors by kind, then powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::AtomicU64;
use domain_runtime::hypercall::{self as hc, raw};
use domain_runtime::ipc_abi::hypercall::{decode, Hypercall, HYPERCALL_LIMIT};
use domain_runtime::ipc_abi::layout::{DEVICE_WINDOW, GRANT_WINDOW, USER_LIMIT};
use domain_runtime::{println, time};

domain_runtime::entry!(run);

/// Where the kernel may write for us: pointers go into its first page, and
/// the two pages after it take what a length up to 4097 carries past it
/// (longer lengths run into unmapped pages past our image and are refused
/// whole: the kernel checks every page before it writes one).
#[repr(C, align(4096))]
struct Scratch([AtomicU64; 3 * 512]);
static SCRATCH: Scratch = Scratch([const { AtomicU64::new(0) }; 3 * 512]);

/// A page of our image we may only read.
#[repr(C, align(4096))]
struct ReadOnly([u8; 4096]);
static READ_ONLY: ReadOnly = ReadOnly([0x77; 4096]);

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// What the fuzzer made and may hand back (valid for a while, stale later).
struct Handles {
    ports: heapless::Vec<u64, 64>,
    grefs: heapless::Vec<u64, 64>,
}

fn remember(list: &mut heapless::Vec<u64, 64>, v: u64) {
    if list.is_full() {
        list.remove(0);
    }
    let _ = list.push(v);
}

fn argument(rng: &mut Rng, h: &Handles) -> u64 {
    let scratch = SCRATCH.0.as_ptr() as u64;
    let read_only = READ_ONLY.0.as_ptr() as u64;
    match rng.next() % 12 {
        0 => rng.next() % 8,
        1 => rng.next() % 300,
        2 => h
            .ports
            .get((rng.next() % 64) as usize)
            .copied()
            .unwrap_or(1),
        3 => h
            .grefs
            .get((rng.next() % 64) as usize)
            .copied()
            .unwrap_or(0),
        // Ids: ourselves, domain 0, stale and never-issued ones.
        4 => rng.pick(&[
            u32::MAX as u64,
            0x0001_0000,
            0x0005_0001,
            0x0001_0001,
            0xffff_0003,
        ]),
        // Pointers: the scratch page (and just before/after it), our
        // read-only image, the device and grant windows, the kernel half,
        // the end of the user half.
        // (Never another writable page of ours: the kernel writing there
        // for us would be our own doing, not the kernel's fault.)
        5 => (scratch + rng.next() % 4096) & !7,
        6 => rng.pick(&[scratch, scratch + 4096 - 8, read_only, read_only + 4095]),
        7 => rng.pick(&[DEVICE_WINDOW, GRANT_WINDOW, GRANT_WINDOW + 255 * 4096]),
        8 => rng.pick(&[
            USER_LIMIT - 8,
            USER_LIMIT,
            0xffff_8000_0000_0000,
            u64::MAX - 7,
        ]),
        9 => rng.pick(&[4096, 4097, 1 << 20, 1 << 40, u64::MAX]),
        10 => rng.pick(&[0, 1, 0xfff, 0x1000]),
        _ => rng.next(),
    }
}

fn run(_: &'static domain_runtime::StartInfo) {
    let seed = test_domains::number("seed").unwrap_or(1).max(1);
    let calls = test_domains::number("calls").unwrap_or(10_000);
    let mut rng = Rng(seed);
    let mut h = Handles {
        ports: heapless::Vec::new(),
        grefs: heapless::Vec::new(),
    };
    let mut by_code = [0u64; 16];
    let mut ok = 0u64;
    let started = time::now_ns();
    for _ in 0..calls {
        let number = rng.next() % (HYPERCALL_LIMIT + 4);
        if number == Hypercall::Shutdown as u64 || number == Hypercall::Suspend as u64 {
            continue;
        }
        let mut args = [0u64; 6];
        for a in args.iter_mut() {
            *a = argument(&mut rng, &h);
        }
        if number == Hypercall::Block as u64 || number == Hypercall::EventSendBlock as u64 {
            // A block with nothing pending must still return.
            let _ = hc::set_timer(time::now_ns() + 100_000);
        }
        if number == Hypercall::GrantCreate as u64 && rng.next().is_multiple_of(2) {
            // A grant that works, to hand back later.
            args[1] = SCRATCH.0.as_ptr() as u64;
        }
        let (rax, rdx) = raw(number, args);
        match decode(rax, rdx) {
            Ok(v) => {
                ok += 1;
                if number == Hypercall::EventAllocUnbound as u64
                    || number == Hypercall::EventBindInterdomain as u64
                {
                    remember(&mut h.ports, v);
                } else if number == Hypercall::GrantCreate as u64 {
                    remember(&mut h.grefs, v);
                }
            }
            Err(e) => by_code[(e as usize).min(15)] += 1,
        }
    }
    let ms = (time::now_ns() - started) / 1_000_000;
    println!(
        "hc-fuzz: seed {}: {} calls in {} ms ({} a second), {} succeeded, errors by code {:?}",
        seed,
        calls,
        ms,
        calls * 1000 / ms.max(1),
        ok,
        by_code
    );
    // Everything it made is released by its death; the kernel still answers.
    println!(
        "hc-fuzz: done; the kernel still answers: {:?}",
        hc::domain_info(domain_runtime::DomainId::SELF).map(|_| ())
    );
}
