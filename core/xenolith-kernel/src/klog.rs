//! The kernel log: the last lines of the hypervisor console, numbered, for
//! the control domain to read (as `xm dmesg` did).
//!
//! Owns: a ring of the most recent console lines and the "new lines" flag
//! the scheduler turns into the console VIRQ for the control domain. Written
//! by the console on every line; never blocks, never allocates.

use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

/// Lines kept.
const LINES: usize = 256;
/// Longest line kept (longer lines are cut).
pub const LINE_MAX: usize = ipc_abi::hypercall::LOG_LINE_MAX;

struct Ring {
    text: [[u8; LINE_MAX]; LINES],
    len: [u8; LINES],
    /// Number of the next line to be written.
    next: u64,
    /// The line being assembled.
    partial: heapless::Vec<u8, LINE_MAX>,
}

static RING: Mutex<Ring> = Mutex::new(Ring {
    text: [[0; LINE_MAX]; LINES],
    len: [0; LINES],
    next: 0,
    partial: heapless::Vec::new(),
});

static NEW_LINES: AtomicBool = AtomicBool::new(false);

/// Adds console output (called by the console, under its own lock).
pub fn append(bytes: &[u8]) {
    let Some(mut ring) = RING.try_lock() else {
        return;
    };
    for &b in bytes {
        if b == b'\n' {
            let slot = (ring.next % LINES as u64) as usize;
            let n = ring.partial.len();
            let line = ring.partial.clone();
            ring.text[slot][..n].copy_from_slice(&line);
            ring.len[slot] = n as u8;
            ring.next += 1;
            ring.partial.clear();
            NEW_LINES.store(true, Ordering::Relaxed);
        } else {
            let _ = ring.partial.push(b);
        }
    }
}

/// The number the next line will get.
pub fn next_seq() -> u64 {
    RING.lock().next
}

/// Whether lines were added since the last call (and clears the flag).
pub fn take_new_lines() -> bool {
    NEW_LINES.swap(false, Ordering::Relaxed)
}

/// The oldest kept line numbered `from` or later: its number and text.
pub fn read(from: u64, out: &mut [u8; LINE_MAX]) -> Option<(u64, usize)> {
    let ring = RING.lock();
    let oldest = ring.next.saturating_sub(LINES as u64);
    let seq = from.max(oldest);
    if seq >= ring.next {
        return None;
    }
    let slot = (seq % LINES as u64) as usize;
    let n = ring.len[slot] as usize;
    out[..n].copy_from_slice(&ring.text[slot][..n]);
    Some((seq, n))
}
