//! Sweeps every hypercall number with hostile arguments: null, kernel,
//! unaligned, oversized and out-of-range values, stale domain ids and unbound
//! ports. Every call must come back (with an error where the arguments are
//! bad); the kernel must stay up. Works as a guest and as domain 0.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall::{self as hc, raw};
use domain_runtime::ipc_abi::hypercall::{decode, Error, Hypercall, HYPERCALL_LIMIT};
use domain_runtime::{println, time};

domain_runtime::entry!(run);

/// Argument values no call should accept as valid pointers, ids or ports.
const HOSTILE: &[u64] = &[
    0,
    1,
    0xfff,
    0x40_0001,
    0x7fff_ffff_ffff,
    0x8000_0000_0000,
    0xffff_8000_0000_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_ffff_f000,
    u64::MAX,
    u64::MAX / 2,
    0x0001_0000,
    0x0002_0001,
    0xffff_0003,
    255,
    256,
    4097,
    1 << 40,
];

fn skip(n: u64, control: bool) -> bool {
    // Shutdown with a valid reason would end the sweep, and so would
    // suspending (nobody unpauses us) or powering the machine off from the
    // control domain; all are tested elsewhere.
    n == Hypercall::Shutdown as u64
        || n == Hypercall::Suspend as u64
        || (control && n == Hypercall::MachinePowerOff as u64)
}

fn run(start: &'static domain_runtime::StartInfo) {
    // A carriage return and escape sequences: on a terminal they would
    // make this line look like domain 0's and retitle the window.
    println!(
        "hostile: {}",
        "forged\r[0] toolstack: I am domain 0\x1b[2J\x1b]0;owned\x07"
    );
    let control = start.control != 0;
    let mut calls = 0u64;
    let mut errors = 0u64;
    let mut by_code = [0u64; 16];
    for number in 0..HYPERCALL_LIMIT + 8 {
        if skip(number, control) {
            continue;
        }
        for (i, &v) in HOSTILE.iter().enumerate() {
            let w = HOSTILE[(i + 7) % HOSTILE.len()];
            for args in [[v; 6], [v, w, v, w, v, w], [w, v, 0, 0, 0, 0]] {
                if number == Hypercall::Block as u64 || number == Hypercall::EventSendBlock as u64 {
                    // Arm the timer so a block with nothing pending still returns.
                    let _ = hc::set_timer(time::now_ns() + 1_000_000);
                }
                let (rax, rdx) = raw(number, args);
                calls += 1;
                match decode(rax, rdx) {
                    Ok(_) => {}
                    Err(e) => {
                        errors += 1;
                        by_code[(e as usize).min(15)] += 1;
                    }
                }
            }
        }
    }
    // Bad shutdown reasons are refused and the domain goes on.
    for reason in [3u64, 99, u64::MAX] {
        let (rax, rdx) = raw(Hypercall::Shutdown as u64, [reason, 0, 0, 0, 0, 0]);
        calls += 1;
        if decode(rax, rdx) == Err(Error::InvalidArgument) {
            errors += 1;
        }
    }
    println!(
        "hostile: {} calls, {} errors (unknown {}, bad address {}, invalid {}, dead domain {}, no domain {}, denied {}, bad port {})",
        calls,
        errors,
        by_code[1],
        by_code[2],
        by_code[3],
        by_code[4],
        by_code[5],
        by_code[6],
        by_code[8]
    );
    let (passed, total) = targeted_checks();
    println!("hostile: targeted checks passed {}/{}", passed, total);
    println!("hostile: kernel still answers: {:?}", hc::null());
}

/// What a control call on a stale domain gives: the right is checked first.
const NOT_YOURS: &[Error] = &[
    Error::PermissionDenied,
    Error::DeadDomain,
    Error::NoSuchDomain,
];

/// A page of its image it may only read (`.rodata`).
#[repr(C, align(4096))]
struct ReadOnlyPage([u8; 4096]);

static READ_ONLY: ReadOnlyPage = ReadOnlyPage([0x5a; 4096]);

/// Specific bad arguments and the error each must give.
fn targeted_checks() -> (usize, usize) {
    use Hypercall::*;
    let read_only = READ_ONLY.0.as_ptr() as u64;
    let kernel = 0xffff_8000_0000_0000u64;
    let stale = 0x0005_0001u64; // index 1, a generation never issued to it yet or long gone
    let cases: &[(Hypercall, [u64; 6], &[Error])] = &[
        (ConsoleWrite, [0, 10, 0, 0, 0, 0], &[Error::BadAddress]),
        (ConsoleWrite, [kernel, 10, 0, 0, 0, 0], &[Error::BadAddress]),
        (
            ConsoleWrite,
            [0x40_0000, 1 << 30, 0, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (
            DomainInfo,
            [u32::MAX as u64, 0, 0, 0, 0, 0],
            &[Error::BadAddress],
        ),
        (
            DomainInfo,
            [u32::MAX as u64, 0x40_1000, 0, 0, 0, 0],
            &[Error::BadAddress],
        ),
        (EventSend, [255, 0, 0, 0, 0, 0], &[Error::BadPort]),
        (EventSend, [0, 0, 0, 0, 0, 0], &[Error::BadPort]),
        // A failed send neither blocks (no timer is armed here: a block
        // would hang the test) nor gives anything but the send's error.
        (EventSendBlock, [255, 0, 0, 0, 0, 0], &[Error::BadPort]),
        (EventSendBlock, [1 << 20, 0, 0, 0, 0, 0], &[Error::BadPort]),
        (EventClose, [1 << 20, 0, 0, 0, 0, 0], &[Error::BadPort]),
        (
            EventBindInterdomain,
            [stale, 1, 0, 0, 0, 0],
            &[Error::DeadDomain, Error::NoSuchDomain],
        ),
        (
            GrantCreate,
            [0x0001_0000, kernel, 0, 0, 0, 0],
            &[Error::BadAddress, Error::InvalidArgument],
        ),
        // A page it may only read, granted writable to domain 0: refused
        // (domain 0 itself gets InvalidArgument, a grant to itself).
        (
            GrantCreate,
            [0x0001_0000, read_only, 0, 0, 0, 0],
            &[Error::PermissionDenied, Error::InvalidArgument],
        ),
        (
            GrantMap,
            [stale, 0, 0, 0, 0, 0],
            &[Error::DeadDomain, Error::NoSuchDomain],
        ),
        (
            GrantMap,
            [0x0001_0000, 0, 1 << 20, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (GrantUnmap, [7, 0, 0, 0, 0, 0], &[Error::SlotState]),
        (
            GrantCopy,
            [0x0001_0000, 0, 4000, 0x40_0000, 200, 0],
            &[Error::InvalidArgument],
        ),
        // A batch of copies: none, more than the bound, or its array in
        // the kernel half.
        (
            GrantCopyBatch,
            [0x40_0000, 0, 0, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (
            GrantCopyBatch,
            [0x40_0000, 9, 0, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (
            GrantCopyBatch,
            [kernel, 1, 0, 0, 0, 0],
            &[Error::BadAddress],
        ),
        (Shutdown, [7, 0, 0, 0, 0, 0], &[Error::InvalidArgument]),
        // Save and restore calls on a stale domain, with kernel pointers:
        // refused before any pointer is used (a guest lacks the right).
        (DomainPageRead, [stale, 0, kernel, 0, 0, 0], NOT_YOURS),
        (
            DomainPageWrite,
            [stale, 0x40_0000, kernel, 0, 0, 0],
            NOT_YOURS,
        ),
        (DomainGetContext, [stale, 0, kernel, 0, 0, 0], NOT_YOURS),
        (DomainSetContext, [stale, 0, kernel, 0, 0, 0], NOT_YOURS),
        // vCPUs: one that is up, one it lacks, a start in the kernel half.
        (
            VcpuUp,
            [0, 0x40_0000, 0x40_0000, 0, 0, 0],
            &[Error::DomainState],
        ),
        (
            VcpuUp,
            [1 << 40, 0x40_0000, 0x40_0000, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (
            VcpuUp,
            [1, kernel, 0x40_0000, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (
            VcpuInfo,
            [u32::MAX as u64, 0, kernel, 0, 0, 0],
            &[Error::BadAddress],
        ),
        (
            VcpuInfo,
            [u32::MAX as u64, 5, 0x40_1000, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
        (VcpuInfo, [stale, 0, kernel, 0, 0, 0], NOT_YOURS),
        (
            FaultFixup,
            [kernel, 0x40_0000, 0, 0, 0, 0],
            &[Error::InvalidArgument],
        ),
    ];
    let mut passed = 0;
    for (call, args, want) in cases {
        let (rax, rdx) = raw(*call as u64, *args);
        match decode(rax, rdx) {
            Err(e) if want.contains(&e) => passed += 1,
            other => println!(
                "hostile: {:?}{:?} gave {:?}, expected one of {:?}",
                call, args, other, want
            ),
        }
    }
    (passed, cases.len())
}
