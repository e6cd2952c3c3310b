//! This domain's control ring to the control domain (`ipc_abi::proto::control`).
//!
//! Owns: connecting the ring the control domain set up for this domain (its
//! command line carries `control=DOM:GREF:PORT`: the control domain's id, the
//! grant of the ring page and the control domain's end of the event channel),
//! request/answer calls over it, and `Listen`: a request the control domain
//! answers only when it has something to tell this domain (answers that are
//! not the one a call waits for wait in an inbox). This domain is the ring's
//! frontend.

use crate::hypercall as hc;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind, Status};
use ipc_abi::ring::Front;
use spin::Mutex;
use zerocopy::FromZeros;

/// The grant-window slot the control ring is mapped at.
pub const CONTROL_SLOT: u64 = ipc_abi::layout::GRANT_SLOTS - 1;

/// Answers and news kept until taken (news is never dropped while fewer wait).
const INBOX: usize = 16;

struct Channel {
    /// The control domain.
    dom: DomainId,
    front: Front<'static, ControlMessage, ControlMessage>,
    port: u16,
    next_id: u32,
    /// Answers nobody waited for (to `Listen`, mostly).
    inbox: heapless::Deque<ControlMessage, INBOX>,
    /// Ids of our `Listen`s the control domain has not answered yet.
    listens: heapless::Vec<u32, 4>,
    /// Ids of heartbeats whose answers nobody wants (dropped on arrival).
    forget: heapless::Deque<u32, 8>,
    /// When the last heartbeat went (ns since boot).
    last_heartbeat: u64,
}

static CHANNEL: Mutex<Option<Channel>> = Mutex::new(None);

/// Messages put in the inbox since boot (see [`news_mark`]).
static ARRIVED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The channel's local port (`NO_PORT`: none), readable without the lock
/// (every wait of the runtime looks at it).
static PORT: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(NO_PORT);
const NO_PORT: u32 = u32::MAX;

/// `control=DOM:GREF:PORT` from the command line.
fn parse(cmdline: &str) -> Option<(DomainId, u32, u16)> {
    let v = cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("control="))?;
    let mut it = v.split(':');
    let dom = it.next()?.parse().ok()?;
    let gref = it.next()?.parse().ok()?;
    let port = it.next()?.parse().ok()?;
    Some((DomainId(dom), gref, port))
}

/// Connects the control ring if the command line names one. Called by the runtime before `run`.
pub fn connect_from_command_line() -> Option<Result<()>> {
    let (dom, gref, remote_port) = parse(crate::command_line())?;
    Some(connect(dom, gref, remote_port))
}

fn connect(dom: DomainId, gref: u32, remote_port: u16) -> Result<()> {
    let pages = crate::ring::RingPages::map(dom, &[gref], CONTROL_SLOT)?;
    let port = hc::event_bind_interdomain(dom, remote_port)?;
    let front = Front::init(pages.shared(), 1).map_err(|_| Error::InvalidArgument)?;
    PORT.store(u32::from(port), core::sync::atomic::Ordering::Release);
    *CHANNEL.lock() = Some(Channel {
        dom,
        front,
        port,
        next_id: 1,
        inbox: heapless::Deque::new(),
        listens: heapless::Vec::new(),
        forget: heapless::Deque::new(),
        last_heartbeat: 0,
    });
    hc::event_send(port)?;
    // Be ready for news (shutdown requests, restarted backends), and serve
    // the ring whenever this domain waits for anything.
    let _ = listen();
    Ok(())
}

/// After a restore: the old channel's page, port and mapping are not
/// ours any more (and the grant-window slot is empty), so it is forgotten,
/// never torn down; the ring the new command line names is connected. A
/// `call` waiting for an answer on the old ring gets `PortState`.
pub fn reconnect() -> Result<()> {
    PORT.store(NO_PORT, core::sync::atomic::Ordering::Release);
    if let Some(old) = CHANNEL.lock().take() {
        // Dropping it would unmap a slot the new ring is about to use.
        core::mem::forget(old);
    }
    connect_from_command_line().unwrap_or(Ok(()))
}

/// Whether this domain has a control ring.
pub fn connected() -> bool {
    CHANNEL.lock().is_some()
}

/// The control domain (the other end of the control ring), if connected.
pub fn control_domain() -> Option<DomainId> {
    CHANNEL.lock().as_ref().map(|c| c.dom)
}

/// The local event port of the control ring.
pub fn port() -> Option<u16> {
    u16::try_from(PORT.load(core::sync::atomic::Ordering::Acquire)).ok()
}

impl Channel {
    fn send(&mut self, mut msg: ControlMessage) -> Result<u32> {
        msg.id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        self.front.push(&msg).map_err(|_| Error::OutOfResources)?;
        if self.front.publish() {
            hc::event_send(self.port)?;
        }
        Ok(msg.id)
    }

    /// Moves every answer into the inbox and asks to be notified of the
    /// next one (so a domain that then blocks is woken by news). News (the
    /// answer to a `Listen`) is replaced by a fresh `Listen` at once, so the
    /// control domain can deliver more news while this one waits to be
    /// taken (each device's frontend takes only its own).
    fn collect(&mut self) -> Result<()> {
        loop {
            while let Some(answer) = self.front.pop().map_err(|_| Error::PortState)? {
                if let Some(i) = self.forget.iter().position(|&id| id == answer.id) {
                    // A heartbeat's answer: nothing to keep.
                    let mut rest = heapless::Deque::new();
                    for (j, id) in core::mem::take(&mut self.forget).into_iter().enumerate() {
                        if j != i {
                            let _ = rest.push_back(id);
                        }
                    }
                    self.forget = rest;
                    continue;
                }
                ARRIVED.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
                if self.inbox.push_back(answer).is_err() {
                    // A full inbox means answers nobody asks for; drop the oldest.
                    self.inbox.pop_front();
                    let _ = self.inbox.push_back(answer);
                }
                if let Some(i) = self.listens.iter().position(|&l| l == answer.id) {
                    self.listens.remove(i);
                    let _ = self.listen();
                }
            }
            if !self.front.final_check().map_err(|_| Error::PortState)? {
                return Ok(());
            }
        }
    }

    fn take(&mut self, id: Option<u32>) -> Option<ControlMessage> {
        let pos = self
            .inbox
            .iter()
            .position(|m| id.is_none_or(|id| m.id == id))?;
        let mut rest = heapless::Deque::<ControlMessage, INBOX>::new();
        let mut found = None;
        for (i, m) in core::mem::take(&mut self.inbox).into_iter().enumerate() {
            if i == pos {
                found = Some(m);
            } else {
                let _ = rest.push_back(m);
            }
        }
        self.inbox = rest;
        found
    }
}

/// Sends one control message and waits for its answer.
pub fn call(msg: ControlMessage) -> Result<ControlMessage> {
    let id = CHANNEL.lock().as_mut().ok_or(Error::PortState)?.send(msg)?;
    let epoch = crate::epoch::get();
    loop {
        if crate::epoch::get() != epoch {
            // Restored meanwhile: the request went to a ring nobody serves now.
            return Err(Error::PortState);
        }
        let port = {
            let mut guard = CHANNEL.lock();
            let ch = guard.as_mut().ok_or(Error::PortState)?;
            ch.collect()?;
            if let Some(answer) = ch.take(Some(id)) {
                return Ok(answer);
            }
            if ch.front.final_check().map_err(|_| Error::PortState)? {
                continue;
            }
            ch.port
        };
        crate::events::wait(port);
    }
}

/// Sends a message without waiting (its answer lands in the inbox).
pub fn post(msg: ControlMessage) -> Result<u32> {
    CHANNEL.lock().as_mut().ok_or(Error::PortState)?.send(msg)
}

/// Tells the control domain this backend now serves the ring a `Connect`
/// named (its `Connected`; the answer lands in the inbox).
pub fn confirm_connect(connect: &ControlMessage) -> Result<u32> {
    let mut done = ControlMessage::new_zeroed();
    done.op = ControlOp::Connected as u32;
    done.kind = connect.kind;
    done.index = connect.index;
    done.peer = connect.peer;
    post(done)
}

/// Tells the control domain this backend will not serve the ring a
/// `Connect` named (its `Refused`): the frontend's `Announce` is answered
/// `why` instead of waiting for ever.
pub fn refuse_connect(connect: &ControlMessage, why: Status) -> Result<u32> {
    let mut no = ControlMessage::new_zeroed();
    no.op = ControlOp::Refused as u32;
    no.kind = connect.kind;
    no.index = connect.index;
    no.peer = connect.peer;
    no.version_or_status = why as u32;
    post(no)
}

/// Posts a `Listen`: the control domain answers it when it has news for us.
pub fn listen() -> Result<u32> {
    CHANNEL.lock().as_mut().ok_or(Error::PortState)?.listen()
}

impl Channel {
    fn listen(&mut self) -> Result<u32> {
        let mut m = ControlMessage::new_zeroed();
        m.op = ControlOp::Listen as u32;
        let id = self.send(m)?;
        if self.listens.push(id).is_err() {
            // More than we track: the oldest is forgotten (its answer is still news).
            self.listens.remove(0);
            let _ = self.listens.push(id);
        }
        Ok(id)
    }
}

/// An answer waiting in the inbox, if any (does not block).
pub fn poll() -> Result<Option<ControlMessage>> {
    let mut guard = CHANNEL.lock();
    let ch = guard.as_mut().ok_or(Error::PortState)?;
    // Collecting also asks to be notified of the next answer.
    ch.collect()?;
    Ok(ch.take(None))
}

/// Takes every message in the inbox that `wanted` accepts and returns the
/// newest (older news of the same thing is stale: a backend restarted twice
/// before its frontend looked is followed to its latest instance). Does not
/// block.
pub fn take_news(wanted: impl Fn(&ControlMessage) -> bool) -> Option<ControlMessage> {
    let mut guard = CHANNEL.lock();
    let ch = guard.as_mut()?;
    ch.collect().ok()?;
    let mut newest = None;
    while let Some(id) = ch.inbox.iter().find(|m| wanted(m)).map(|m| m.id) {
        newest = ch.take(Some(id));
    }
    newest
}

/// Takes the oldest message in the inbox that `wanted` accepts (news that
/// counts in order, each one: devices attached and detached). Does not block.
pub fn take_oldest(wanted: impl Fn(&ControlMessage) -> bool) -> Option<ControlMessage> {
    let mut guard = CHANNEL.lock();
    let ch = guard.as_mut()?;
    ch.collect().ok()?;
    let id = ch.inbox.iter().find(|m| wanted(m))?.id;
    ch.take(Some(id))
}

/// Waits until news that `wanted` accepts comes, and takes it.
pub fn wait_news(wanted: impl Fn(&ControlMessage) -> bool) -> ControlMessage {
    loop {
        if let Some(m) = take_news(&wanted) {
            return m;
        }
        wait_for_news();
    }
}

/// Waits until the control domain sends something (returns at once if it
/// already did since the last look); without a control ring, for ever.
pub fn wait_for_news() {
    match port() {
        Some(p) if !crate::events::take(p) => crate::events::block_for(&[p]),
        Some(_) => {}
        // Without a control ring no news ever comes.
        None => loop {
            crate::hypercall::block();
        },
    }
}

/// News of the backend of this domain's device (kind, index), for its
/// frontend: `PeerGone` before `PeerRestarted`, None if there is none. A
/// frontend whose connection predates a restore (`epoch` is not the
/// runtime's, `suspend.rs`) waits for it: its port and grants are not
/// its own any more, and the control domain says where the backend is now.
/// Returns the news and whether the connection was from before a restore.
pub fn backend_news(kind: DeviceKind, index: u32, epoch: u32) -> (Option<ControlMessage>, bool) {
    let about = |m: &ControlMessage, op: ControlOp| {
        m.check() == Some(op) && m.kind == kind as u32 && m.index == index
    };
    let gone = |m: &ControlMessage| about(m, ControlOp::PeerGone);
    let restarted = |m: &ControlMessage| about(m, ControlOp::PeerRestarted);
    if epoch != crate::epoch::get() {
        return (Some(wait_news(|m| gone(m) || restarted(m))), true);
    }
    (take_news(gone).or_else(|| take_news(restarted)), false)
}

/// A mark that moves whenever news may have come: `None` while answers
/// wait on the control ring (collecting them moves it), else the count of
/// messages put in the inbox. A frontend that saw the same mark at its last
/// look for news of its backend need not look again: nothing came since
/// (its per-poll look was a twentieth of a guest's instructions in a
/// transfer: performance.md, session 30).
pub fn news_mark() -> Option<u64> {
    let guard = CHANNEL.lock();
    match guard.as_ref() {
        Some(ch) if ch.front.responses_waiting() => None,
        _ => Some(ARRIVED.load(core::sync::atomic::Ordering::Relaxed)),
    }
}

/// Remembers the [`news_mark`] it last acted on, for a look at the inbox
/// made often: a frontend's for news of its backend (at every poll or
/// wait), `suspend::obey`'s at every wait.
pub struct Seen(core::sync::atomic::AtomicU64);

impl Default for Seen {
    fn default() -> Seen {
        Seen::new()
    }
}

impl Seen {
    pub const fn new() -> Seen {
        Seen(core::sync::atomic::AtomicU64::new(0))
    }

    /// Whether news may have come since the last call (true the first time).
    pub fn anything_new(&self) -> bool {
        use core::sync::atomic::Ordering;
        match news_mark() {
            None => {
                self.0.store(0, Ordering::Relaxed);
                true
            }
            // Stored plus one: 0 is "not seen".
            Some(m) => self.0.swap(m + 1, Ordering::Relaxed) != m + 1,
        }
    }
}

/// Waits for news of device (kind, index)'s backend after an `Announce`
/// was answered `Disconnected` (the backend died before accepting): the
/// new instance, or None if it was given up on.
pub fn next_backend(kind: DeviceKind, index: u32) -> Option<DomainId> {
    let news = wait_news(|m| {
        matches!(
            m.check(),
            Some(ControlOp::PeerRestarted | ControlOp::PeerGone)
        ) && m.kind == kind as u32
            && m.index == index
    });
    (news.check() == Some(ControlOp::PeerRestarted)).then_some(news.peer)
}

/// For a wait that is not on the control port (a sleep, a wait for a
/// device): takes the control port's notification and collects what it
/// announced into the inbox, where every waiter for news looks before it
/// blocks. Left pending, it would make each `Block` of that wait return at
/// once: the wait would spin.
pub fn absorb(waiting_on: Option<u16>) {
    let Some(p) = port() else { return };
    if waiting_on != Some(p) && crate::events::take(p) {
        if let Some(ch) = CHANNEL.lock().as_mut() {
            let _ = ch.collect();
        }
    }
}

/// The heartbeat period the control domain asked of this domain
/// (`heartbeat=MS` on its command line), if any.
pub fn heartbeat_period_ns() -> Option<u64> {
    // Read from the command line once: drivers ask at every round, and
    // the parse cost more than a frame's switching (performance.md).
    static PERIOD: spin::Once<Option<u64>> = spin::Once::new();
    *PERIOD.call_once(|| {
        crate::option(crate::ipc_abi::launch::HEARTBEAT)
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map(|ms| ms.saturating_mul(1_000_000))
    })
}

/// For a domain asked for heartbeats: sends one if a third of the period
/// has passed since the last (without waiting for its answer), and returns
/// when the next is due, for the caller to set its timer before it blocks.
/// A domain that stops calling this (it hangs) is found out by the
/// control domain. None: no heartbeats asked for.
pub fn heartbeat_tick() -> Option<u64> {
    let period = heartbeat_period_ns()?;
    let now = crate::time::now_ns();
    let mut guard = CHANNEL.lock();
    let ch = guard.as_mut()?;
    if now.saturating_sub(ch.last_heartbeat) >= period / 3 {
        let mut m = ControlMessage::new_zeroed();
        m.op = ControlOp::Heartbeat as u32;
        if let Ok(id) = ch.send(m) {
            if ch.forget.is_full() {
                ch.forget.pop_front();
            }
            let _ = ch.forget.push_back(id);
            ch.last_heartbeat = now;
        }
    }
    Some(ch.last_heartbeat + period / 3)
}

/// Tells the control domain this domain is alive; returns its answer's status.
pub fn heartbeat() -> Result<u32> {
    let mut m = ControlMessage::new_zeroed();
    m.op = ControlOp::Heartbeat as u32;
    call(m).map(|a| a.version_or_status)
}

/// The status code of a successful answer.
pub const OK: u32 = Status::Ok as u32;
