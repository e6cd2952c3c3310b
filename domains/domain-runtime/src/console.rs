//! `print!`/`println!`: through this domain's console ring to console-dom
//! once connected, through the debug-console hypercall before that (and if
//! there is no console-dom). Either way lines come out `[domid] ...`.
//!
//! No line is lost or printed twice when console-dom restarts: a `Write`
//! never spans a line end, console-dom answers it only once its bytes are on
//! the UART, and the writes it had not answered are sent again to the new
//! instance. If console-dom is given up on, they go through the kernel.

use crate::hypercall as hc;
use core::fmt::{self, Write};
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::console::{ConsoleOp, ConsoleRequest, ConsoleResponse, CHUNK, CONSOLE_VERSION};
use ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind, Status};
use ipc_abi::ring::Front;
use spin::Mutex;
use zerocopy::FromZeros;

struct Ring {
    front: Front<'static, ConsoleRequest, ConsoleResponse>,
    port: u16,
    next_id: u64,
    /// The id of our outstanding `Read`, if any.
    read_pending: Option<u64>,
    /// Input received and not yet read.
    input: heapless::Deque<u8, 256>,
    /// The backend serving the ring.
    backend: DomainId,
    /// The ring's pages and the grants of them to `backend`.
    pages: crate::ring::RingPages,
    grefs: crate::ring::Grefs,
    /// Writes sent and not yet answered: replayed if the backend restarts.
    unacked: heapless::Deque<ConsoleRequest, 32>,
    /// Restarts followed, writes sent again, long waits between answers.
    restarts: u64,
    resent: u64,
    gaps: crate::gaps::Gaps,
    /// The restore epoch its port and grants belong to (`crate::epoch`).
    epoch: u32,
}

static RING: Mutex<Option<Ring>> = Mutex::new(None);

/// Connects the console ring to the backend named by `console=ID`, if any,
/// through the control domain. Called by the runtime before `run`.
pub fn connect_from_command_line() -> Option<Result<()>> {
    let id: u32 = crate::option(crate::ipc_abi::launch::CONSOLE)?
        .parse()
        .ok()?;
    Some(connect(DomainId(id)))
}

/// Announces the console ring to `backend` (see `ring::announce`).
fn announce(
    pages: &crate::ring::RingPages,
    backend: DomainId,
) -> Result<(crate::ring::Grefs, u16)> {
    crate::ring::announce(&[*pages], backend, DeviceKind::Console, 0, CONSOLE_VERSION)
}

fn connect(mut backend: DomainId) -> Result<()> {
    let pages = crate::ring::RingPages::allocate(1).ok_or(Error::OutOfResources)?;
    let front = Front::init(pages.shared(), 1).map_err(|_| Error::InvalidArgument)?;
    let (grefs, port) = loop {
        match announce(&pages, backend) {
            // console-dom died before it accepted: announce to its next instance.
            Err(Error::DeadDomain) => {
                backend = crate::control::next_backend(DeviceKind::Console, 0)
                    .ok_or(Error::DeadDomain)?;
            }
            other => break other?,
        }
    };
    *RING.lock() = Some(Ring {
        front,
        port,
        next_id: 1,
        read_pending: None,
        input: heapless::Deque::new(),
        backend,
        pages,
        grefs,
        unacked: heapless::Deque::new(),
        restarts: 0,
        resent: 0,
        gaps: crate::gaps::Gaps::new(),
        epoch: crate::epoch::get(),
    });
    Ok(())
}

/// What the control domain said of our backend.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// Nothing new (or it restarted and we are connected to the new instance).
    Serving,
    /// It restarted and the ring is connected again (unanswered writes resent).
    Restarted,
    /// It was given up on: the ring is of no more use.
    Gone,
}

impl Ring {
    /// Follows news of our backend. Restarted: re-initialise the ring (a new
    /// epoch), announce it to the new instance and resend the writes the old
    /// one had not answered. Gone: the caller drops the ring ([`fall_back`]).
    fn follow_backend(&mut self) -> Backend {
        let about_us = |m: &ControlMessage| {
            matches!(
                m.check(),
                Some(ControlOp::PeerRestarted | ControlOp::PeerGone)
            ) && m.kind == DeviceKind::Console as u32
        };
        let (news, restored) = crate::control::backend_news(DeviceKind::Console, 0, self.epoch);
        self.epoch = crate::epoch::get();
        let Some(mut news) = news else {
            return Backend::Serving;
        };
        // Answers the old instance published before it died still count:
        // those writes are printed and must not be sent again; nor must
        // any it marked done (its line ended on the UART in the call that
        // marked it: `Hypercall::ConsoleLineDone`) but had not answered.
        self.drain();
        let done = self.front.back_done();
        let unacked = core::mem::take(&mut self.unacked);
        for r in unacked.iter().filter(|r| r.id > done) {
            let _ = self.unacked.push_back(*r);
        }
        if !restored {
            let _ = hc::event_close(self.port);
            for &g in self.grefs.iter() {
                // The dead backend's mappings are gone, so the grants can end.
                let _ = hc::grant_end(g);
            }
        }
        self.read_pending = None;
        loop {
            if news.check() == Some(ControlOp::PeerGone) {
                return Backend::Gone;
            }
            let Ok(front) = Front::init(self.pages.shared(), 1) else {
                return Backend::Gone;
            };
            self.front = front;
            match announce(&self.pages, news.peer) {
                Ok((grefs, port)) => {
                    self.grefs = grefs;
                    self.port = port;
                    self.backend = news.peer;
                    break;
                }
                // That instance died too before it accepted: follow the next.
                Err(Error::DeadDomain) => news = crate::control::wait_news(about_us),
                Err(_) => return Backend::Gone,
            }
        }
        let replay: heapless::Deque<ConsoleRequest, 32> = core::mem::take(&mut self.unacked);
        self.restarts += 1;
        self.resent += replay.len() as u64;
        self.gaps.restarted();
        for r in replay.iter() {
            if self.front.push(r).is_ok() {
                let _ = self.unacked.push_back(*r);
            }
        }
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        Backend::Restarted
    }

    /// The backend is gone for good: what it had not printed goes through the
    /// kernel (which writes COM1 itself while there is no console-dom).
    fn fall_back(self) {
        // In one go, so the kernel does not cut a line between two writes.
        let mut text: heapless::Vec<u8, { 32 * CHUNK }> = heapless::Vec::new();
        for r in self.unacked.iter() {
            let n = (r.len as usize).min(CHUNK);
            let _ = text.extend_from_slice(&r.data[..n]);
        }
        let _ = hc::console_write(&text);
    }

    /// Waits for the backend (or news of it from the control domain).
    fn wait(&self) {
        wait_ring(self.port, false);
    }
}

/// Waits for the ring's `port` or for news on the control ring (the backend
/// may have restarted or gone). `obey`: also obey a shutdown request (not
/// while the console is locked: obeying prints).
fn wait_ring(port: u16, obey: bool) {
    let control = crate::control::port();
    loop {
        if crate::events::take(port) || control.is_some_and(crate::events::take) {
            return;
        }
        if obey {
            crate::events::serve_while_waiting(Some(port));
        }
        crate::events::block_for_port(Some(port));
    }
}

/// Stops using the console ring (output goes through the debug hypercall again).
pub fn disconnect() -> Result<()> {
    let Some(r) = RING.lock().take() else {
        return Ok(());
    };
    let mut m = ControlMessage::new_zeroed();
    m.op = ControlOp::Disconnect as u32;
    m.kind = DeviceKind::Console as u32;
    m.peer = r.backend;
    let _ = hc::event_close(r.port);
    let answer = crate::control::call(m)?;
    if answer.version_or_status == Status::Ok as u32 {
        Ok(())
    } else {
        Err(Error::PortState)
    }
}

/// Restarts of the backend followed so far, and the writes sent again to
/// the new instances.
pub fn restarts() -> (u64, u64) {
    RING.lock()
        .as_ref()
        .map_or((0, 0), |r| (r.restarts, r.resent))
}

/// When the first answer to our writes after each restart of the backend
/// came: (ns since boot, busy TSC ticks).
pub fn resumed() -> heapless::Vec<(u64, u64), 64> {
    RING.lock()
        .as_ref()
        .map(|r| r.gaps.resumed().iter().copied().collect())
        .unwrap_or_default()
}

/// Whether output goes through the console ring.
pub fn ring_connected() -> bool {
    RING.lock().is_some()
}

impl Ring {
    /// Takes answered requests off the ring, keeping the input a `Read` brought.
    fn drain(&mut self) {
        while let Ok(Some(rsp)) = self.front.pop() {
            if Some(rsp.id) != self.read_pending {
                self.gaps
                    .answer(crate::time::now_ns(), crate::time::busy_tsc());
            }
            if self.unacked.front().is_some_and(|r| r.id == rsp.id) {
                // Answered in order (the usual case): no longer to replay.
                self.unacked.pop_front();
            } else if self.unacked.iter().any(|r| r.id == rsp.id) {
                let rest: heapless::Deque<ConsoleRequest, 32> = core::mem::take(&mut self.unacked);
                for r in rest.into_iter().filter(|r| r.id != rsp.id) {
                    let _ = self.unacked.push_back(r);
                }
            }
            if Some(rsp.id) == self.read_pending {
                self.read_pending = None;
                let n = (rsp.len as usize).min(rsp.data.len());
                for &b in &rsp.data[..n] {
                    let _ = self.input.push_back(b);
                }
            }
        }
    }

    /// Makes sure a `Read` is outstanding.
    fn ask_for_input(&mut self) {
        if self.read_pending.is_some() || self.front.free_slots() == 0 {
            return;
        }
        let mut r = ConsoleRequest::new_zeroed();
        r.id = self.next_id;
        self.next_id += 1;
        r.op = ConsoleOp::Read as u16;
        r.len = CHUNK as u16;
        if self.front.push(&r).is_ok() {
            self.read_pending = Some(r.id);
            if self.front.publish() {
                let _ = hc::event_send(self.port);
            }
        }
    }

    /// Sends `bytes` as `Write`s, none spanning a line end (so each is
    /// answered once its line is out). Returns how many bytes were sent:
    /// fewer than all if the backend was given up on meanwhile.
    fn write(&mut self, bytes: &[u8]) -> core::result::Result<(), usize> {
        let mut sent = 0;
        for chunk in write_chunks(bytes) {
            // Wait for a free slot: a domain that writes faster than the UART is slowed, not dropped.
            while self.front.free_slots() == 0 {
                self.drain();
                if self.front.free_slots() > 0 {
                    break;
                }
                if self.front.publish() {
                    let _ = hc::event_send(self.port);
                }
                match self.follow_backend() {
                    Backend::Restarted => continue,
                    Backend::Gone => return Err(sent),
                    Backend::Serving => {}
                }
                if !self.front.final_check().unwrap_or(false) {
                    self.wait();
                }
            }
            sent += chunk.len();
            let mut r = ConsoleRequest::new_zeroed();
            r.id = self.next_id;
            self.next_id += 1;
            r.op = ConsoleOp::Write as u16;
            r.len = chunk.len() as u16;
            r.data[..chunk.len()].copy_from_slice(chunk);
            if self.front.push(&r).is_err() {
                return Ok(());
            }
            let _ = self.unacked.push_back(r);
        }
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        self.drain();
        Ok(())
    }
}

/// `bytes` cut into `Write` payloads: at most [`CHUNK`] bytes, each ending
/// at the latest with a line's `\n`.
fn write_chunks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .flat_map(|line| line.chunks(CHUNK))
}

/// Waits until console-dom has taken every line written so far (they are on
/// the UART). Returns at once without a console ring.
pub fn flush() {
    loop {
        let port = {
            let mut guard = RING.lock();
            let Some(port) = follow_while_waiting(&mut guard) else {
                return;
            };
            let Some(r) = guard.as_mut() else { return };
            r.drain();
            let outstanding = r.front.capacity() - r.front.free_slots();
            if outstanding <= r.read_pending.is_some() as u32 {
                return;
            }
            if r.front.final_check().unwrap_or(false) {
                continue;
            }
            port
        };
        wait_ring(port, true);
    }
}

/// Like [`flush`], but returns at once if the console is busy on this path.
pub fn try_flush() {
    if RING.try_lock().is_some() {
        flush();
    }
}

/// Reads console input into `buf`, waiting for at least one byte; returns
/// how many. Input comes while this domain has the focus (console-dom's
/// Ctrl-A Ctrl-A Ctrl-A moves it). Without a console ring there is no input: 0.
pub fn read(buf: &mut [u8]) -> usize {
    loop {
        let port = {
            let mut guard = RING.lock();
            let Some(port) = follow_while_waiting(&mut guard) else {
                return 0;
            };
            let Some(r) = guard.as_mut() else { return 0 };
            r.drain();
            if !r.input.is_empty() {
                return take_input(r, buf);
            }
            r.ask_for_input();
            if r.front.final_check().unwrap_or(false) {
                continue;
            }
            port
        };
        wait_ring(port, true);
    }
}

/// Console input already here, without waiting: up to `buf.len()` bytes
/// (0 when none has come, or without a console ring). Asks console-dom to
/// signal [`port`] when more comes, so a domain that also waits for other
/// events (the HVM device model) can wait for both.
pub fn try_read(buf: &mut [u8]) -> usize {
    let mut guard = RING.lock();
    if follow_while_waiting(&mut guard).is_none() {
        return 0;
    }
    let Some(r) = guard.as_mut() else { return 0 };
    r.drain();
    let mut n = take_input(r, buf);
    if n == 0 {
        r.ask_for_input();
        // Armed for the answer's notification (the caller is about to
        // wait for it), then looked at once more: it may have come already.
        if r.front.final_check().unwrap_or(false) {
            r.drain();
            n = take_input(r, buf);
        }
    }
    n
}

/// Moves the input bytes that arrived into `buf`; how many.
fn take_input(r: &mut Ring, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        let Some(b) = r.input.pop_front() else { break };
        buf[n] = b;
        n += 1;
    }
    n
}

/// The event port of the console ring, if connected.
pub fn port() -> Option<u16> {
    RING.lock().as_ref().map(|r| r.port)
}

/// Typed input, a line at a time: CR or LF ends a line, empty lines are
/// skipped, bytes past `N` in a line and non-ASCII bytes are dropped.
pub struct LineReader<const N: usize> {
    line: heapless::String<N>,
    pending: heapless::Deque<u8, 64>,
    /// The last line was handed out: start afresh.
    handed: bool,
}

impl<const N: usize> Default for LineReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineReader<N> {
    pub const fn new() -> Self {
        LineReader {
            line: heapless::String::new(),
            pending: heapless::Deque::new(),
            handed: false,
        }
    }

    /// The next line, waiting for it; None when this domain has no console input.
    pub fn next_line(&mut self) -> Option<&str> {
        if core::mem::take(&mut self.handed) {
            self.line.clear();
        }
        loop {
            while let Some(b) = self.pending.pop_front() {
                if b == b'\n' || b == b'\r' {
                    if !self.line.is_empty() {
                        self.handed = true;
                        return Some(self.line.as_str());
                    }
                } else if b.is_ascii() {
                    let _ = self.line.push(b as char);
                }
            }
            let mut buf = [0u8; 64];
            let n = read(&mut buf);
            if n == 0 {
                return None;
            }
            for &b in &buf[..n] {
                let _ = self.pending.push_back(b);
            }
        }
    }
}

/// Sends bytes to the console (ring or hypercall).
fn emit(bytes: &[u8]) {
    let mut ring = RING.lock();
    let rest = match ring.as_mut() {
        None => bytes,
        Some(r) => {
            let written = match r.follow_backend() {
                Backend::Gone => Err(0),
                _ => r.write(bytes),
            };
            match written {
                Ok(()) => return,
                Err(sent) => {
                    if let Some(r) = ring.take() {
                        r.fall_back();
                    }
                    // The unsent bytes follow what the backend had not printed.
                    &bytes[sent..]
                }
            }
        }
    };
    let _ = hc::console_write(rest);
}

/// Follows news of the backend while waiting on the ring; returns the
/// ring's port to wait on, or None once the ring is dropped (backend gone).
fn follow_while_waiting(ring: &mut Option<Ring>) -> Option<u16> {
    let r = ring.as_mut()?;
    if r.follow_backend() == Backend::Gone {
        if let Some(r) = ring.take() {
            r.fall_back();
        }
        return None;
    }
    Some(r.port)
}

/// Collects a line and sends it in one go.
pub struct LineWriter {
    buf: [u8; 512],
    len: usize,
}

impl LineWriter {
    pub const fn new() -> LineWriter {
        LineWriter {
            buf: [0; 512],
            len: 0,
        }
    }

    /// Sends what is buffered.
    pub fn flush(&mut self) {
        if self.len > 0 {
            emit(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl Default for LineWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' {
                self.flush();
            }
        }
        Ok(())
    }
}

/// Prints formatted text (used by the macros).
/// The runtime's own notes (a backend followed, one given up on) go to the
/// kernel log instead of this domain's console.
static NOTES_TO_LOG: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Sends the runtime's own notes to the kernel log from now on: for a
/// domain whose console shows as another (an HVM guest's device model,
/// whose console is the guest's).
pub fn notes_to_kernel_log() {
    NOTES_TO_LOG.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// One of the runtime's own notes (a line): on the console, or on the
/// kernel log after [`notes_to_kernel_log`].
pub fn note(args: fmt::Arguments<'_>) {
    if !NOTES_TO_LOG.load(core::sync::atomic::Ordering::Relaxed) {
        return print(format_args!("{args}\n"));
    }
    let mut line: heapless::String<{ ipc_abi::hypercall::LOG_LINE_MAX }> = heapless::String::new();
    let _ = fmt::Write::write_fmt(&mut line, args);
    let _ = line.push('\n');
    let _ = crate::hypercall::console_write(line.as_bytes());
}

pub fn print(args: fmt::Arguments<'_>) {
    let mut w = LineWriter::new();
    let _ = w.write_fmt(args);
    w.flush();
}

#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::{write_chunks, CHUNK};
    use std::vec::Vec;

    #[test]
    fn writes_never_span_a_line_end() {
        let text = b"one\ntwo\n\nthree without end";
        let chunks: Vec<&[u8]> = write_chunks(text).collect();
        assert_eq!(
            chunks,
            [&b"one\n"[..], b"two\n", b"\n", b"three without end"]
        );
        let long = [b'x'; CHUNK * 2 + 1];
        let sizes: Vec<usize> = write_chunks(&long).map(<[u8]>::len).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 1]);
    }
}
