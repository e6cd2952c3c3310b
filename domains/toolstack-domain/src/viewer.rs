//! Domain 0's own console ring to console-dom.
//!
//! Owns: connecting a console ring of ours to console-dom (we are the broker,
//! so we send its `Connect` ourselves, and again to each new instance after
//! a restart), and using it as the control domain may: `Peek` at any
//! domain's output stream and `Type` into its input (for `toolstack domain
//! console`), and `Read` our own input (for the console shell, which has the
//! input focus when domain 0 has it).

use crate::table::{console_dom, Started};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::console::{
    ConsoleOp, ConsoleRequest, ConsoleResponse, CHUNK, CONSOLE_VERSION,
};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind};
use domain_runtime::ipc_abi::ring::Front;
use domain_runtime::ring::RingPages;
use domain_runtime::DomainId;
use zerocopy::FromZeros;

/// What came back on the ring.
pub enum Reply {
    /// The answer to a `Peek`.
    Peek(ConsoleResponse),
    /// Typed input for our own shell.
    Input(heapless::Vec<u8, CHUNK>),
}

/// Our console ring, connected to one instance of console-dom.
pub struct Viewer {
    front: Front<'static, ConsoleRequest, ConsoleResponse>,
    pub port: u16,
    pub backend: DomainId,
    next_id: u64,
    read_pending: Option<u64>,
    /// The ring's page and its grant to `backend`.
    pages: RingPages,
    gref: u32,
}

/// The ring page between two instances of console-dom: one page serves
/// domain 0 for its whole life, granted to each instance in turn once the
/// grant to the one before has ended. (A fresh page each restart, never
/// freed nor its grant ended, filled domain 0's grant table after about
/// 120 restarts of console-dom; then each turn of its loop took another
/// page: 28 MiB of heap in a 1,000-crash campaign.)
static SPARE: spin::Mutex<Option<RingPages>> = spin::Mutex::new(None);

impl Viewer {
    /// Connects the ring to console-dom if it runs and ours is not
    /// connected to it (first start, or console-dom was restarted).
    pub fn follow(viewer: &mut Option<Viewer>, me: DomainId, started: &mut [Started]) {
        let Some(console) = console_dom(started) else {
            return;
        };
        if viewer.as_ref().is_some_and(|v| v.backend == console) {
            return;
        }
        if let Some(old) = viewer.take() {
            let _ = hc::event_close(old.port);
            // The old instance is gone (`domain_destroy` waits for that), so
            // its mapping is too and the grant ends; a page still mapped is
            // left as it is and never used again.
            match hc::grant_end(old.gref) {
                Ok(_) => *SPARE.lock() = Some(old.pages),
                Err(e) => domain_runtime::println!(
                    "toolstack: our console ring's grant to domain {} cannot end ({}); a new page is used",
                    old.backend,
                    e
                ),
            }
        }
        *viewer = Viewer::connect(me, console, started);
    }

    /// Grants the ring page (the spare, or a new one) to `console` and
    /// sends its `Connect`; on failure the page is kept as the spare.
    fn connect(me: DomainId, console: DomainId, started: &mut [Started]) -> Option<Viewer> {
        let pages = SPARE.lock().take().or_else(|| RingPages::allocate(1))?;
        let keep = |pages| {
            *SPARE.lock() = Some(pages);
            None
        };
        let Ok(front) = Front::init(pages.shared(), 1) else {
            return keep(pages);
        };
        let Some(gref) = pages
            .grant_to(console)
            .ok()
            .and_then(|g| g.first().copied())
        else {
            return keep(pages);
        };
        let link = started
            .iter_mut()
            .find(|s| s.id == console)
            .and_then(|s| s.control.as_mut());
        let Some((link, port)) =
            link.and_then(|l| Some((l, hc::event_alloc_unbound(DomainId::SELF, console).ok()?)))
        else {
            let _ = hc::grant_end(gref);
            return keep(pages);
        };
        let mut connect = ControlMessage::new_zeroed();
        connect.op = ControlOp::Connect as u32;
        connect.kind = DeviceKind::Console as u32;
        connect.peer = me;
        connect.port = port as u32;
        connect.pages = 1;
        connect.version_or_status = CONSOLE_VERSION;
        connect.grefs[0] = gref;
        link.tell(connect);
        let mut v = Viewer {
            front,
            port,
            backend: console,
            next_id: 1,
            read_pending: None,
            pages,
            gref,
        };
        v.ask_for_input();
        Some(v)
    }

    fn push(&mut self, mut r: ConsoleRequest) -> Option<u64> {
        r.id = self.next_id;
        self.next_id += 1;
        self.front.push(&r).ok()?;
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        Some(r.id)
    }

    /// Asks for `domain`'s output from `offset`; `wait`: hold the answer
    /// until there is some. Returns the request id (None if the ring is full).
    pub fn peek(&mut self, domain: u32, offset: u64, wait: bool) -> Option<u64> {
        let mut r = ConsoleRequest::new_zeroed();
        r.op = ConsoleOp::Peek as u16;
        r.domain = domain;
        r.offset = offset;
        r.len = wait as u16;
        self.push(r)
    }

    /// Types `data` into `domain`'s console. False if the ring is full.
    pub fn type_into(&mut self, domain: u32, data: &[u8]) -> bool {
        for chunk in data.chunks(CHUNK) {
            let mut r = ConsoleRequest::new_zeroed();
            r.op = ConsoleOp::Type as u16;
            r.domain = domain;
            r.len = chunk.len() as u16;
            r.data[..chunk.len()].copy_from_slice(chunk);
            if self.push(r).is_none() {
                return false;
            }
        }
        true
    }

    /// Keeps a `Read` posted for our own input.
    fn ask_for_input(&mut self) {
        if self.read_pending.is_some() || self.front.free_slots() < 2 {
            return;
        }
        let mut r = ConsoleRequest::new_zeroed();
        r.op = ConsoleOp::Read as u16;
        r.len = CHUNK as u16;
        self.read_pending = self.push(r);
    }

    /// Takes every answer off the ring.
    pub fn replies(&mut self) -> heapless::Vec<Reply, 32> {
        let mut out = heapless::Vec::new();
        loop {
            while let Ok(Some(rsp)) = self.front.pop() {
                if Some(rsp.id) == self.read_pending {
                    self.read_pending = None;
                    let n = (rsp.len as usize).min(CHUNK);
                    let mut bytes = heapless::Vec::new();
                    let _ = bytes.extend_from_slice(&rsp.data[..n]);
                    let _ = out.push(Reply::Input(bytes));
                } else if out.push(Reply::Peek(rsp)).is_err() {
                    break;
                }
            }
            if out.is_full() || !self.front.final_check().unwrap_or(false) {
                break;
            }
        }
        self.ask_for_input();
        out
    }
}
