//! The domains' console rings: connecting them and printing what they write.
//!
//! Owns: accepting `Connect` from the control domain (map the frontend's ring,
//! bind its event port, answer `Connected`), and turning each domain's
//! `Write` requests into whole lines `[domid] text` on the UART. A line is
//! printed only once complete (or when it reaches [`LINE_MAX`]), so lines of
//! different domains never interleave. Every request is copied out of the
//! ring once and checked; a frontend that breaks its ring is disconnected.
//!
//! A `Write` is answered only once its bytes are on the UART, and the answer
//! is published at once: if this domain crashes, the writes it had not
//! answered are exactly the ones not printed, and the frontend sends them
//! to the next instance (no line lost, none printed twice).
//!
//! The control domain's ring may also `Peek` at any domain's output stream
//! and `Type` into its input (the toolstack's `domain console`); a `Peek` at
//! the end of an open console waits here until the domain prints more.

extern crate alloc;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::console::{
    Console, ConsoleRequest, ConsoleResponse, CONSOLE_VERSION,
};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind, Status};
use domain_runtime::ring::MappedBack;
use domain_runtime::{control, println, DomainId};
use zerocopy::FromZeros;

/// Where console-dom's lines go (COM1).
pub trait Lines {
    /// A line of its own, or a notice about a domain.
    fn line(&mut self, args: core::fmt::Arguments<'_>);
    /// A domain's line: its end goes out in the same kernel call that
    /// stores `done` in `mark` (the ring's `back_done`), so that after a
    /// crash of ours the frontend sends again exactly what has no end.
    fn done_line(
        &mut self,
        args: core::fmt::Arguments<'_>,
        mark: &core::sync::atomic::AtomicU64,
        done: u64,
    );
}

/// Longest line kept before it is printed anyway.
pub const LINE_MAX: usize = 200;
/// Requests taken from one ring before the next ring's turn.
const BATCH: usize = 8;
/// Domains served at once.
const MAX_CLIENTS: usize = 128;
/// Bytes of typed input kept for one domain until it reads them.
const INPUT_MAX: usize = 4096;
/// Unanswered `Write`s of one unfinished line (a ring holds fewer requests).
const HELD_MAX: usize = 64;

struct Client {
    /// The domain whose ring it is.
    dom: DomainId,
    /// The domain its lines show as, and viewers and input name it by:
    /// `dom`, or the HVM guest `dom` is the device model of.
    shows_as: DomainId,
    port: u16,
    /// Its ring, unmapped when the client goes (its window slot is reused).
    back: MappedBack<ConsoleRequest, ConsoleResponse>,
    line: heapless::Vec<u8, LINE_MAX>,
    /// `Write`s whose bytes wait in `line` (their ids): answered once it is printed.
    held: heapless::Deque<u64, HELD_MAX>,
    /// Answers were made visible that the frontend asked to hear of.
    owes_notification: bool,
    /// `Read` requests waiting for input (their ids).
    reads: heapless::Deque<u64, 4>,
    /// Input typed for this domain, not yet read (a line as long as a
    /// Linux terminal's, pasted at once, fits).
    input: heapless::Deque<u8, INPUT_MAX>,
    /// Input bytes dropped because the domain did not read them.
    input_dropped: u64,
    /// This is the control domain's ring: it may look at other consoles.
    viewer: bool,
    /// Its `Peek`s waiting for output: (id, domain, offset).
    parked: heapless::Deque<(u64, DomainId, u64), 4>,
}

/// A viewer's request handled once every ring had its turn.
struct ViewerRequest {
    /// Index of the viewer's ring in the list.
    client: usize,
    request: ConsoleRequest,
}

/// Every connected console ring.
pub struct Clients {
    /// On the heap: the table is too large for the stack.
    list: alloc::vec::Vec<Client>,
    /// What each domain printed.
    pub history: crate::history::History,
}

impl Clients {
    pub const fn new() -> Clients {
        Clients {
            list: alloc::vec::Vec::new(),
            history: crate::history::History::new(),
        }
    }

    /// Handles news from the control domain: a `Connect` for a console ring,
    /// a request to replay a domain's history, or a restored domain taking
    /// over the history of the one it was saved from.
    pub fn on_control(&mut self, msg: ControlMessage, out: &mut impl Lines) {
        if msg.check() == Some(ControlOp::ConsoleHistory) {
            // First print what the domain's ring still holds, so the history is complete.
            self.drain(msg.peer, out);
            if let Some(c) = self.list.iter_mut().find(|c| c.dom == msg.peer) {
                c.flush_partial(out, &mut self.history);
                c.publish();
            }
            self.replay(msg.peer, out);
            return;
        }
        if msg.check() == Some(ControlOp::ConsoleInherit) {
            self.history.inherit(DomainId(msg.index), msg.peer);
            return;
        }
        if msg.check() == Some(ControlOp::Disconnect) {
            // What the domain wrote before it went is printed first.
            self.drain(msg.peer, out);
            if let Some(i) = self.list.iter().position(|c| c.dom == msg.peer) {
                let mut c = self.list.remove(i);
                let history = &mut self.history;
                c.flush_partial(out, history);
                let _ = hc::event_close(c.port);
                out.line(own!("domain {} disconnected its console", msg.peer));
                // Viewers waiting on it learn that it closed.
                self.answer_parked();
            }
            return;
        }
        if msg.check() != Some(ControlOp::Connect) || msg.kind != DeviceKind::Console as u32 {
            return;
        }
        if !domain_runtime::backend::speaks(&msg, CONSOLE_VERSION, "console-dom") {
            return;
        }
        match self.connect(&msg) {
            Ok(()) => {
                let _ = control::confirm_connect(&msg);
            }
            Err(why) => {
                println!("console-dom: cannot serve domain {}: {}", msg.peer, why);
                let _ = control::refuse_connect(&msg, Status::Denied);
            }
        }
    }

    fn connect(&mut self, msg: &ControlMessage) -> Result<(), &'static str> {
        if msg.pages != 1 {
            return Err("console rings are one page");
        }
        if self.list.len() >= MAX_CLIENTS {
            return Err("too many consoles");
        }
        // One console a domain: announcing again gets nothing more (or it
        // could fill every client slot and take N shares of the UART).
        if self.list.iter().any(|c| c.dom == msg.peer) {
            return Err("its console is connected already");
        }
        // Domain 0 says whom the console shows as (an HVM guest's device
        // model serves the guest's console).
        let shows_as = match msg.index {
            0 => msg.peer,
            id => DomainId(id),
        };
        // The lowest window slot no ring uses (the last is the control ring's).
        let slot = (0..control::CONTROL_SLOT)
            .find(|s| !self.list.iter().any(|c| c.back.slots().contains(s)))
            .ok_or("no free window slot")?;
        let back = MappedBack::map(msg.peer, &msg.grefs[..1], slot)
            .map_err(|_| "cannot map the ring, or it is not initialised")?;
        let port = hc::event_bind_interdomain(msg.peer, msg.port as u16)
            .map_err(|_| "cannot bind the port")?;
        // Kept in domain order, so the input focus moves through the
        // domains by id whatever order they connected in.
        let at = self
            .list
            .iter()
            .position(|c| c.shows_as > shows_as)
            .unwrap_or(self.list.len());
        self.list.insert(
            at,
            Client {
                dom: msg.peer,
                shows_as,
                port,
                back,
                line: heapless::Vec::new(),
                held: heapless::Deque::new(),
                owes_notification: false,
                reads: heapless::Deque::new(),
                input: heapless::Deque::new(),
                input_dropped: 0,
                viewer: Some(msg.peer) == control::control_domain(),
                parked: heapless::Deque::new(),
            },
        );
        Ok(())
    }

    /// Serves every ring; `out` prints one whole line.
    /// One round-robin turn: a batch from every ring. Returns whether any ring
    /// still has requests (the caller comes back after its other duties, so
    /// a flooding domain cannot starve the kernel log or the control ring).
    pub fn serve(&mut self, out: &mut impl Lines) -> bool {
        let mut more = false;
        let mut broken: heapless::Vec<usize, MAX_CLIENTS> = heapless::Vec::new();
        let mut viewing: heapless::Vec<ViewerRequest, BATCH> = heapless::Vec::new();
        let history = &mut self.history;
        for (i, c) in self.list.iter_mut().enumerate() {
            match c.serve(out, history, |request| {
                let _ = viewing.push(ViewerRequest { client: i, request });
            }) {
                Ok(left) => more |= left,
                Err(()) => {
                    out.line(own!(
                        "domain {} broke its console ring; disconnected",
                        c.dom
                    ));
                    let _ = broken.push(i);
                }
            }
        }
        for v in viewing {
            if !broken.contains(&v.client) {
                self.view(v);
            }
        }
        for i in broken.into_iter().rev() {
            let gone = self.list.remove(i);
            let _ = hc::event_close(gone.port);
        }
        self.answer_parked();
        more
    }

    /// Prints everything `dom`'s ring still holds (a stopped domain's ring
    /// is finite; other rings, which may be flooding, wait for their turn).
    fn drain(&mut self, dom: DomainId, out: &mut impl Lines) {
        let Some(i) = self.list.iter().position(|c| c.dom == dom) else {
            return;
        };
        let history = &mut self.history;
        // Bounded: a domain still running could otherwise keep us here.
        for _ in 0..64 {
            match self.list[i].serve(out, history, |_| {}) {
                Ok(true) => continue,
                _ => break,
            }
        }
    }

    /// Carries out a viewer's `Peek` or `Type`.
    fn view(&mut self, v: ViewerRequest) {
        let mut rsp = ConsoleResponse::new_zeroed();
        rsp.id = v.request.id;
        match v.request.check() {
            Some(Console::Type { domain, data }) => {
                match self.list.iter_mut().find(|c| c.shows_as.0 == domain) {
                    Some(target) => {
                        for &b in data {
                            if target.input.push_back(b).is_err() {
                                target.input_dropped += 1;
                            }
                        }
                        target.answer_reads();
                    }
                    None => rsp.status = Status::NoDevice as u32,
                }
            }
            Some(Console::Peek {
                domain,
                offset,
                wait,
            }) => {
                let dom = DomainId(domain);
                if !self.fill_peek(dom, offset, &mut rsp) && wait {
                    // Nothing yet: answered when the domain prints (oldest wait gives way).
                    let viewer = &mut self.list[v.client];
                    if viewer.parked.is_full() {
                        if let Some((id, _, _)) = viewer.parked.pop_front() {
                            let mut empty = ConsoleResponse::new_zeroed();
                            empty.id = id;
                            viewer.respond(&empty);
                        }
                    }
                    let _ = viewer.parked.push_back((rsp.id, dom, offset));
                    return;
                }
            }
            _ => rsp.status = Status::Invalid as u32,
        }
        self.list[v.client].respond(&rsp);
    }

    /// Fills a `Peek` answer; returns false if it would be empty while the
    /// console is still open (the viewer may wait for more).
    fn fill_peek(&self, dom: DomainId, offset: u64, rsp: &mut ConsoleResponse) -> bool {
        let open = self.list.iter().any(|c| c.shows_as == dom);
        match self.history.peek(dom, offset, &mut rsp.data) {
            Some((start, n)) => {
                rsp.offset = start;
                rsp.len = n as u16;
                if self
                    .history
                    .end(dom)
                    .is_some_and(|end| start + (n as u64) < end)
                {
                    rsp.flags |= domain_runtime::ipc_abi::proto::console::RESPONSE_MORE;
                }
                if n == 0 && !open {
                    rsp.status = Status::Disconnected as u32;
                }
                n > 0 || !open
            }
            None if open => false,
            None => {
                rsp.status = Status::NoDevice as u32;
                true
            }
        }
    }

    /// Answers the waiting `Peek`s that have output now (or whose console closed).
    fn answer_parked(&mut self) {
        for i in 0..self.list.len() {
            let waiting = self.list[i].parked.len();
            for _ in 0..waiting {
                let Some((id, dom, offset)) = self.list[i].parked.pop_front() else {
                    break;
                };
                let mut rsp = ConsoleResponse::new_zeroed();
                rsp.id = id;
                if self.fill_peek(dom, offset, &mut rsp) {
                    self.list[i].respond(&rsp);
                } else {
                    let _ = self.list[i].parked.push_back((id, dom, offset));
                }
            }
        }
    }
}

impl Clients {
    /// The domain whose console gets input, if any: the `focus`-th by domain id.
    pub fn focused(&self, focus: usize) -> Option<DomainId> {
        self.list
            .get(focus % self.list.len().max(1))
            .map(|c| c.shows_as)
    }

    /// How many consoles are connected.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Gives typed bytes to the `focus`-th console and answers its pending
    /// reads. Returns the domain and the bytes dropped so far if it does not
    /// keep up (for a visible report).
    pub fn input(&mut self, focus: usize, bytes: &[u8]) -> Option<(DomainId, u64)> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let c = &mut self.list[focus % n];
        for &b in bytes {
            if c.input.push_back(b).is_err() {
                // Typed faster than read: the excess is dropped, visibly.
                c.input_dropped += 1;
            }
        }
        c.answer_reads();
        let dropped = core::mem::take(&mut c.input_dropped);
        (dropped > 0).then_some((c.shows_as, dropped))
    }

    /// Whether some domain has an unfinished line.
    pub fn has_partial(&self) -> bool {
        self.list.iter().any(|c| !c.line.is_empty())
    }

    /// Prints every unfinished line.
    pub fn flush_partials(&mut self, out: &mut impl Lines) {
        for c in self.list.iter_mut() {
            c.flush_partial(out, &mut self.history);
            c.publish();
        }
        self.answer_parked();
    }

    /// Replays `dom`'s history through `out`.
    pub fn replay(&self, dom: DomainId, out: &mut impl Lines) {
        out.line(own!("history of domain {}:", dom));
        match self
            .history
            .replay(dom, |line| out.line(format_args!("[{}] {}", dom, line)))
        {
            Some((kept, cut)) => out.line(own!(
                "end of history of domain {} ({} bytes, {} older bytes cut)",
                dom,
                kept,
                cut
            )),
            None => out.line(own!("no history for domain {}", dom)),
        }
    }
}

impl Client {
    /// Serves at most [`BATCH`] requests, so a flooding domain cannot delay
    /// the others by more than a few lines (the caller comes back for more).
    /// Returns whether requests are left.
    fn serve(
        &mut self,
        out: &mut impl Lines,
        history: &mut crate::history::History,
        mut viewing: impl FnMut(ConsoleRequest),
    ) -> Result<bool, ()> {
        let mut served = 0;
        loop {
            while served < BATCH {
                let Some(req) = self.back.pop().map_err(|_| ())? else {
                    break;
                };
                served += 1;
                let mut rsp = ConsoleResponse::new_zeroed();
                rsp.id = req.id;
                match req.check() {
                    Some(Console::Write(data)) => {
                        // Answered once printed.
                        self.write(req.id, data, out, history);
                        continue;
                    }
                    // Answered when input arrives (or refused if too many wait).
                    Some(Console::Read) => {
                        if self.reads.push_back(req.id).is_ok() {
                            // Input typed while no `Read` waited is given now.
                            self.answer_reads();
                            continue;
                        }
                        rsp.status = Status::Denied as u32;
                    }
                    // Answered once every ring had its turn (they look at other rings).
                    Some(Console::Peek { .. } | Console::Type { .. }) if self.viewer => {
                        viewing(req);
                        continue;
                    }
                    Some(Console::Peek { .. } | Console::Type { .. }) => {
                        rsp.status = Status::Denied as u32
                    }
                    None => rsp.status = Status::Invalid as u32,
                }
                self.back.push(&rsp).map_err(|_| ())?;
            }
            self.publish();
            if served >= BATCH {
                return Ok(true);
            }
            if !self.back.final_check().map_err(|_| ())? {
                return Ok(false);
            }
        }
    }

    /// Pushes one answer and notifies the frontend if it asked to be.
    fn respond(&mut self, rsp: &ConsoleResponse) {
        if self.back.push(rsp).is_ok() {
            self.publish();
        }
    }

    /// Answers waiting `Read`s with the input there is.
    fn answer_reads(&mut self) {
        while !self.input.is_empty() {
            let Some(id) = self.reads.pop_front() else {
                break;
            };
            let mut rsp = ConsoleResponse::new_zeroed();
            rsp.id = id;
            let mut n = 0;
            while n < rsp.data.len() {
                match self.input.pop_front() {
                    Some(b) => {
                        rsp.data[n] = b;
                        n += 1;
                    }
                    None => break,
                }
            }
            rsp.len = n as u16;
            if self.back.push(&rsp).is_err() {
                return;
            }
        }
        self.publish();
    }

    /// Prints an unfinished line (after a quiet spell), so nothing waits for ever.
    fn flush_partial(&mut self, out: &mut impl Lines, history: &mut crate::history::History) {
        if !self.line.is_empty() {
            self.print_line(out, history);
        }
    }

    /// Takes a `Write`'s bytes into the line, printing every line they end.
    /// The `Write` is answered once all its bytes are printed; a `Write` is
    /// never cut in two by the length limit (the line goes out before it).
    fn write(
        &mut self,
        id: u64,
        data: &[u8],
        out: &mut impl Lines,
        history: &mut crate::history::History,
    ) {
        let first_line = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
        if !self.line.is_empty() && (self.line.len() + first_line > LINE_MAX || self.held.is_full())
        {
            self.print_line(out, history);
        }
        // Held with its bytes from the start: the line its `\n` ends is
        // marked done through it in the call that ends that line.
        // (Room is certain: the line was printed above when `held` was full.)
        let _ = self.held.push_back(id);
        for &b in data {
            if b == b'\n' {
                self.print_line(out, history);
                continue;
            }
            if self.line.is_full() {
                // Only a frontend that ignores CHUNK's bound gets here.
                self.print_line(out, history);
            }
            let _ = self.line.push(b);
        }
        // No bytes (an empty `Write`) leave it held with no line to print.
        if self.line.is_empty() {
            while let Some(id) = self.held.pop_front() {
                self.answer(id);
            }
            self.make_visible();
        }
    }

    /// Prints the line `[domid] text`, then answers at once the writes whose
    /// bytes it held.
    fn print_line(&mut self, out: &mut impl Lines, history: &mut crate::history::History) {
        // A CR LF line ending is an ending; any other control character
        // could forge another domain's line or drive the terminal.
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        domain_runtime::ipc_abi::proto::console::make_printable(&mut self.line);
        let text = core::str::from_utf8(&self.line).unwrap_or("(not UTF-8)");
        match self.held.back() {
            Some(&done) => out.done_line(
                format_args!("[{}] {}", self.shows_as, text),
                self.back.back_done(),
                done,
            ),
            None => out.line(format_args!("[{}] {}", self.shows_as, text)),
        }
        history.record(self.shows_as, text);
        self.line.clear();
        while let Some(id) = self.held.pop_front() {
            self.answer(id);
        }
        self.make_visible();
    }

    /// Queues the success answer to request `id`.
    fn answer(&mut self, id: u64) {
        let mut rsp = ConsoleResponse::new_zeroed();
        rsp.id = id;
        let _ = self.back.push(&rsp);
    }

    /// Makes queued answers visible at once (the record of what is printed,
    /// should this domain die next); the notification waits for
    /// [`Client::publish`] at the end of the turn (one event, not one a line).
    fn make_visible(&mut self) {
        self.owes_notification |= self.back.publish();
    }

    /// Makes queued answers visible, notifying the frontend if it asked.
    fn publish(&mut self) {
        let asked = self.back.publish();
        if core::mem::take(&mut self.owes_notification) || asked {
            let _ = hc::event_send(self.port);
        }
    }
}
