//! Event channels from the domain's side: the shared event page and waiting.
//!
//! The kernel's `Block` returns at once while any port is pending, so a
//! wait for some ports must not leave the others' bits on the page, or it
//! spins (an idle web guest once used a whole CPU: its console port fired
//! and only the console code takes that port). Before blocking, the ports
//! not waited for are *parked*: moved off the page into this domain's own
//! set, where [`take`] and [`take_all`] still find them. Nothing is lost.

use core::sync::atomic::{AtomicU64, Ordering};
use ipc_abi::layout::EVENT_PAGE;
use ipc_abi::shared::{EventPage, PORTS};

/// This domain's event page.
pub fn page() -> &'static EventPage {
    // SAFETY: the kernel maps the event page read-write at EVENT_PAGE in every
    // domain before it starts, for the domain's whole life; EventPage is
    // atomics only, so shared access with the kernel is sound.
    unsafe { &*(EVENT_PAGE as *const EventPage) }
}

/// Ports that fired while the domain waited for others (see the module doc).
static PARKED: [AtomicU64; PORTS / 64] = [const { AtomicU64::new(0) }; PORTS / 64];

/// Takes (clears) the pending bit of `port`; returns whether it was set.
#[inline]
pub fn take(port: u16) -> bool {
    let p = port as usize % PORTS;
    let bit = 1u64 << (p % 64);
    // A locked write only where the bit is seen set (a bit set just after
    // the look is found by the next `take`: `Block` returns at once for it).
    let clear = |word: &AtomicU64| {
        word.load(Ordering::Relaxed) & bit != 0 && word.fetch_and(!bit, Ordering::SeqCst) & bit != 0
    };
    let on_page = clear(&page().pending[p / 64]);
    let parked = clear(&PARKED[p / 64]);
    on_page || parked
}

/// Takes every pending port, calling `f` for each.
pub fn take_all(mut f: impl FnMut(u16)) {
    for (w, parked) in PARKED.iter().enumerate() {
        let bits = page().pending[w].swap(0, Ordering::SeqCst) | parked.swap(0, Ordering::SeqCst);
        for b in 0..64 {
            if bits & (1 << b) != 0 {
                f((w * 64 + b) as u16);
            }
        }
    }
}

/// Blocks until one of `ports` (or the timer, or a port that fires from
/// now on) wakes this vCPU: every other port pending now is parked first.
pub fn block_for(ports: &[u16]) {
    park_others(ports);
    crate::hypercall::block();
}

/// The control port with `port`, for [`block_for`].
/// What a domain does while it waits (its control ring: serving the
/// control domain's messages, and waking on its port). The runtime sets it
/// once the control ring is connected; until then a wait only waits.
pub struct Waiting {
    /// The port that must wake every wait, if any.
    pub port: fn() -> Option<u16>,
    /// Serves what came on it; `port` is the one the waiter waits for.
    pub serve: fn(port: Option<u16>),
}

static WAITING: spin::Once<Waiting> = spin::Once::new();

/// Sets what waits also do (the runtime's control ring, once).
pub fn set_waiting(w: Waiting) {
    WAITING.call_once(|| w);
}

/// Does what every wait does (the hook `set_waiting` set, if any): the
/// runtime serves its control ring and obeys the control domain.
pub fn serve_while_waiting(port: Option<u16>) {
    if let Some(w) = WAITING.get() {
        (w.serve)(port);
    }
}

fn with_control(port: Option<u16>) -> ([u16; 2], usize) {
    let control = WAITING.get().and_then(|w| (w.port)());
    match (port, control) {
        (Some(p), Some(c)) => ([p, c], 2),
        (Some(p), None) | (None, Some(p)) => ([p, 0], 1),
        (None, None) => ([0, 0], 0),
    }
}

/// Blocks until `port` or the control port fires (or the timer).
pub fn block_for_port(port: Option<u16>) {
    let (ports, n) = with_control(port);
    block_for(&ports[..n]);
}

/// Moves every pending port but `ports` off the page (see the module doc).
fn park_others(ports: &[u16]) {
    for (w, word) in page().pending.iter().enumerate() {
        // Most words hold nothing at all: look before anything else.
        let pending = word.load(Ordering::Relaxed);
        if pending == 0 {
            continue;
        }
        let keep = ports
            .iter()
            .map(|&p| p as usize % PORTS)
            .filter(|p| p / 64 == w)
            .fold(0u64, |keep, p| keep | 1 << (p % 64));
        if pending & !keep == 0 {
            continue;
        }
        let others = word.fetch_and(keep, Ordering::SeqCst) & !keep;
        if others != 0 {
            PARKED[w].fetch_or(others, Ordering::SeqCst);
        }
    }
}

/// Signals `port`'s peer, then waits until `port` is pending and takes
/// it: a request and its answer, or an answer and the next request. The
/// signal and the first block are one hypercall (`EventSendBlock`), as
/// seL4's call and reply-receive are one: an event round trip between two
/// domains that both use it costs a trap less each way.
pub fn send_and_wait(port: u16) -> ipc_abi::hypercall::Result<()> {
    serve_while_waiting(Some(port));
    let (ports, n) = with_control(Some(port));
    park_others(&ports[..n]);
    crate::hypercall::event_send_block(port)?;
    wait(port);
    Ok(())
}

/// Blocks until `port` is pending, then takes it. Inlined as far as the
/// first look (an event round trip's answer is usually there already):
/// the loop's set-up cost more than the look.
#[inline]
pub fn wait(port: u16) {
    if !take(port) {
        wait_blocking(port);
    }
}

/// [`wait`] once the first look found nothing: serve, block, look again.
#[inline(never)]
fn wait_blocking(port: u16) {
    loop {
        if take(port) {
            return;
        }
        serve_while_waiting(Some(port));
        block_for_port(Some(port));
    }
}

/// Waits until `port` is pending or the clock reaches `deadline_ns`;
/// returns whether the port fired.
pub fn wait_until(port: u16, deadline_ns: u64) -> bool {
    loop {
        if take(port) {
            return true;
        }
        if crate::time::now_ns() >= deadline_ns {
            return false;
        }
        serve_while_waiting(Some(port));
        let _ = crate::hypercall::set_timer(deadline_ns);
        block_for_port(Some(port));
    }
}

/// Sleeps for at least `ns` nanoseconds, blocking (the timer wakes the vCPU).
pub fn sleep_ns(ns: u64) {
    let deadline = crate::time::now_ns().saturating_add(ns);
    while crate::time::now_ns() < deadline {
        serve_while_waiting(None);
        let _ = crate::hypercall::set_timer(deadline);
        block_for_port(None);
    }
}
