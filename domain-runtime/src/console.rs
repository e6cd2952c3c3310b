//! `print!`/`println!`: through this domain's console ring to console-dom
//! once connected, through the debug-console hypercall before that (and if
//! there is no console-dom). Either way lines come out `[domid] ...`.

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
}

static RING: Mutex<Option<Ring>> = Mutex::new(None);

/// Connects the console ring to the backend named by `console=ID`, if any,
/// through the control domain. Called by the runtime before `run`.
pub fn connect_from_command_line() -> Option<Result<()>> {
    let id: u32 = crate::command_line()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("console="))?
        .parse()
        .ok()?;
    Some(connect(DomainId(id)))
}

/// Announces the console ring to `backend` (see `RingPages::announce`).
fn announce(
    pages: &crate::ring::RingPages,
    backend: DomainId,
) -> Result<(crate::ring::Grefs, u16)> {
    pages.announce(backend, DeviceKind::Console, 0, CONSOLE_VERSION)
}

fn connect(backend: DomainId) -> Result<()> {
    let pages = crate::ring::RingPages::allocate(1).ok_or(Error::OutOfResources)?;
    let front = Front::init(pages.shared(), 1).map_err(|_| Error::InvalidArgument)?;
    let (grefs, port) = announce(&pages, backend)?;
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
    });
    Ok(())
}

impl Ring {
    /// If the control domain said our backend restarted, re-initialise the
    /// ring (a new epoch), announce it to the new backend and replay the
    /// writes it had not answered. Returns whether that happened.
    fn follow_restart(&mut self) -> bool {
        let restarted = |m: &ControlMessage| {
            m.check() == Some(ControlOp::PeerRestarted) && m.kind == DeviceKind::Console as u32
        };
        let Some(news) = crate::control::take_news(restarted) else {
            return false;
        };
        let _ = hc::event_close(self.port);
        for &g in self.grefs.iter() {
            // The dead backend's mappings are gone, so the grants can end.
            let _ = hc::grant_end(g);
        }
        let Ok(front) = Front::init(self.pages.shared(), 1) else {
            return false;
        };
        self.front = front;
        self.read_pending = None;
        match announce(&self.pages, news.peer) {
            Ok((grefs, port)) => {
                self.grefs = grefs;
                self.port = port;
                self.backend = news.peer;
            }
            Err(_) => return false,
        }
        let replay: heapless::Deque<ConsoleRequest, 32> = core::mem::take(&mut self.unacked);
        for r in replay.iter() {
            if self.front.push(r).is_ok() {
                let _ = self.unacked.push_back(*r);
            }
        }
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        true
    }

    /// Waits for the backend (or news of its restart from the control domain).
    fn wait(&self) {
        let control = crate::control::port();
        loop {
            if crate::events::take(self.port) || control.is_some_and(crate::events::take) {
                return;
            }
            hc::block();
        }
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

/// Whether output goes through the console ring.
pub fn ring_connected() -> bool {
    RING.lock().is_some()
}

impl Ring {
    /// Takes answered requests off the ring, keeping the input a `Read` brought.
    fn drain(&mut self) {
        while let Ok(Some(rsp)) = self.front.pop() {
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

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(CHUNK) {
            // Wait for a free slot: a domain that writes faster than the UART is slowed, not dropped.
            while self.front.free_slots() == 0 {
                self.drain();
                if self.front.free_slots() > 0 {
                    break;
                }
                if self.front.publish() {
                    let _ = hc::event_send(self.port);
                }
                if self.follow_restart() {
                    continue;
                }
                if !self.front.final_check().unwrap_or(false) {
                    self.wait();
                }
            }
            let mut r = ConsoleRequest::new_zeroed();
            r.id = self.next_id;
            self.next_id += 1;
            r.op = ConsoleOp::Write as u16;
            r.len = chunk.len() as u16;
            r.data[..chunk.len()].copy_from_slice(chunk);
            if self.front.push(&r).is_err() {
                return;
            }
            let _ = self.unacked.push_back(r);
        }
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        self.drain();
    }
}

/// Waits until console-dom has taken every line written so far (they are on
/// the UART). Returns at once without a console ring.
pub fn flush() {
    loop {
        let port = {
            let mut guard = RING.lock();
            let Some(r) = guard.as_mut() else { return };
            r.drain();
            let outstanding = r.front.capacity() - r.front.free_slots();
            if outstanding <= r.read_pending.is_some() as u32 {
                return;
            }
            if r.front.final_check().unwrap_or(false) {
                continue;
            }
            r.port
        };
        crate::events::wait(port);
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
            let Some(r) = guard.as_mut() else { return 0 };
            r.drain();
            if !r.input.is_empty() {
                let mut n = 0;
                while n < buf.len() {
                    match r.input.pop_front() {
                        Some(b) => {
                            buf[n] = b;
                            n += 1;
                        }
                        None => break,
                    }
                }
                return n;
            }
            r.ask_for_input();
            if r.front.final_check().unwrap_or(false) {
                continue;
            }
            r.port
        };
        crate::events::wait(port);
    }
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
    match ring.as_mut() {
        Some(r) => {
            r.follow_restart();
            r.write(bytes)
        }
        None => {
            let _ = hc::console_write(bytes);
        }
    }
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
