//! Introducing frontends to backends (`docs/device-connection.md`).
//!
//! A frontend's `Announce` (its ring's grants and event port, and the backend
//! it wants) becomes a `Connect` for that backend, delivered as the answer to
//! the backend's `Listen`. The backend's `Connected` completes it: both the
//! `Connected` and the frontend's `Announce` are answered `Ok`; its
//! `Refused` answers the `Announce` with the backend's reason. A
//! `Disconnect` from either side is passed to the other.

use crate::control::Link;
use crate::table::{RingRecord, Started};
use domain_runtime::ipc_abi::proto::block::BlockConnect;
use domain_runtime::ipc_abi::proto::control::{
    ControlMessage, ControlOp, DeviceKind, Status, ALL_DEVICES,
};
use domain_runtime::ipc_abi::proto::net::NetConnect;
use domain_runtime::ipc_abi::ring::HEADER_BYTES;
use domain_runtime::ipc_abi::ring_view::RingView;
use domain_runtime::{println, DomainId};

fn link_of(started: &mut [Started], dom: DomainId) -> Option<&mut Link> {
    started
        .iter_mut()
        .find(|s| s.id == dom)
        .and_then(|s| s.control.as_mut())
}

/// Serves the control ring whose event port is `port`, routing what it
/// asks; true if messages are left for another turn.
pub fn serve_port(started: &mut [Started], port: u16) -> bool {
    let Some(link) = started
        .iter_mut()
        .filter_map(|s| s.control.as_mut())
        .find(|l| l.port == port)
    else {
        return false;
    };
    let from = link.dom;
    let (batch, more) = link.serve();
    for msg in batch {
        match msg.check() {
            Some(ControlOp::Announce) => announce(started, from, msg),
            Some(ControlOp::Connected) => connected(started, from, msg),
            Some(ControlOp::Refused) => refused(started, from, msg),
            Some(ControlOp::Disconnect) => disconnect(started, from, msg),
            _ => {}
        }
    }
    more
}

/// The virtual disk a frontend's block `Announce` may have: its own
/// description names the disk (`disk`), the backend's serves it (`vdisk`).
/// The frontend's claim alone gives nothing.
fn block_grant(
    started: &[Started],
    frontend: DomainId,
    backend: DomainId,
    device: u32,
) -> Option<u32> {
    let front = started.iter().find(|s| s.id == frontend)?;
    let back = started.iter().find(|s| s.id == backend)?;
    let disk = front
        .config
        .disks
        .iter()
        .find(|d| domain_config::config::vdev_index(&d.vdev) == Some(device))?;
    let vdisk = back
        .config
        .vdisks
        .iter()
        .position(|v| v.name == disk.target)?;
    Some(
        BlockConnect {
            device: device as u8,
            vdisk: u8::try_from(vdisk).ok()?,
            read_only: !disk.writable,
        }
        .encode(),
    )
}

/// The interface a frontend's network `Announce` may have: the Nth `vif`
/// of its description (with its MAC), served by a domain whose role is
/// `net`. The frontend's claim alone gives nothing.
fn net_grant(
    started: &[Started],
    frontend: DomainId,
    backend: DomainId,
    vif: u32,
) -> Option<NetConnect> {
    let front = started.iter().find(|s| s.id == frontend)?;
    let back = started.iter().find(|s| s.id == backend)?;
    if back.config.role != Some(domain_config::Role::Net) {
        return None;
    }
    if !front.has_vif(vif as usize) {
        return None;
    }
    let v = front.config.vifs.get(vif as usize)?;
    Some(NetConnect {
        vif: u8::try_from(vif).ok()?,
        mac: crate::table::vif_mac(&front.config, vif as usize, v),
        mtu: v.mtu_or_default(),
    })
}

fn announce(started: &mut [Started], frontend: DomainId, msg: ControlMessage) {
    let backend = msg.peer;
    // A backend that is not (or no longer) running: an earlier instance of
    // a restarted domain (news of the new one is on its way to the
    // frontend, which announces again: `Disconnected`), or nobody. Said
    // before the configuration is checked, which needs the backend: a
    // frontend that first asks just after its backend crashed must not be
    // told its configuration gives it nothing (it gave up then, as a
    // driver-crash campaign once showed).
    if backend == frontend || !started.iter().any(|s| s.id == backend) {
        let restarted = started
            .iter()
            .any(|s| s.id.index() == backend.index() && s.id != backend);
        let status = if restarted && backend != frontend {
            Status::Disconnected
        } else {
            Status::NoDevice
        };
        if let Some(f) = link_of(started, frontend) {
            f.answer(msg, status);
        }
        return;
    }
    let mut connect = msg;
    connect.op = ControlOp::Connect as u32;
    connect.peer = frontend;
    if msg.kind == DeviceKind::Console as u32 {
        // The domain a console shows as: an HVM guest's device model's is
        // the guest's, anyone else's its own (never what it asked).
        let shows_as = started
            .iter()
            .find(|s| s.id == frontend)
            .and_then(|s| s.device_model_of);
        connect.index = shows_as.map_or(0, |g| g.0);
    }
    if msg.kind == DeviceKind::Block as u32 {
        match block_grant(started, frontend, backend, msg.index) {
            Some(index) => connect.index = index,
            None => {
                if let Some(f) = link_of(started, frontend) {
                    f.answer(msg, Status::NoDevice);
                }
                println!(
                    "toolstack: domain {} asked domain {} for disk {}, which its configuration does not give it",
                    frontend, backend, msg.index
                );
                return;
            }
        }
    }
    if msg.kind == DeviceKind::Net as u32 {
        match net_grant(started, frontend, backend, msg.index) {
            Some(c) => c.write(&mut connect),
            None => {
                if let Some(f) = link_of(started, frontend) {
                    f.answer(msg, Status::NoDevice);
                }
                println!(
                    "toolstack: domain {} asked domain {} for network interface {}, which its configuration does not give it",
                    frontend, backend, msg.index
                );
                return;
            }
        }
    }
    match link_of(started, backend) {
        Some(b) if backend != frontend => {
            b.tell(connect);
            if let Some(f) = link_of(started, frontend) {
                f.awaiting = Some(msg);
            }
            println!(
                "toolstack: domain {} asks domain {} for device {}:{}",
                frontend, backend, msg.kind, msg.index
            );
        }
        _ => {
            // An earlier instance of a restarted domain: news of the new one
            // is on its way to the frontend, which announces again.
            let restarted = started
                .iter()
                .any(|s| s.id.index() == backend.index() && s.id != backend);
            let status = if restarted {
                Status::Disconnected
            } else {
                Status::NoDevice
            };
            if let Some(f) = link_of(started, frontend) {
                f.answer(msg, status);
            }
        }
    }
}

fn connected(started: &mut [Started], backend: DomainId, msg: ControlMessage) {
    let frontend = msg.peer;
    if let Some(b) = link_of(started, backend) {
        b.answer(msg, Status::Ok);
    }
    if let Some(f) = link_of(started, frontend) {
        match f.awaiting.take() {
            // The low byte is the frontend's device index (a block Connect
            // carries the virtual disk above it; a console's says whom it
            // shows as: a domain has one console).
            Some(a)
                if a.peer == backend
                    && a.kind == msg.kind
                    && (a.index as u8 == msg.index as u8
                        || msg.kind == DeviceKind::Console as u32) =>
            {
                f.answer(a, Status::Ok);
                if let Some(s) = started.iter_mut().find(|s| s.id == frontend) {
                    let device = 1u32.checked_shl(msg.index & 0xff).unwrap_or(0);
                    s.rings
                        .retain(|r| !(r.kind == a.kind && r.index == a.index & 0xff));
                    for (name, gref) in ring_names(a.kind).iter().zip(a.grefs.iter()) {
                        let _ = s.rings.push(RingRecord {
                            backend,
                            kind: a.kind,
                            index: a.index & 0xff,
                            device: name,
                            gref: *gref,
                            port: a.port as u16,
                            seen_rsp_prod: 0,
                            seen_req_cons: 0,
                            progress_at: domain_runtime::time::now_ns(),
                        });
                    }
                    if msg.kind == DeviceKind::Console as u32 {
                        s.console_backend = Some(backend);
                    } else if msg.kind == DeviceKind::Block as u32 {
                        s.block_backend = Some(backend);
                        s.block_devices |= device;
                    } else if msg.kind == DeviceKind::Net as u32 {
                        s.net_backend = Some(backend);
                        s.net_devices |= device;
                    }
                }
                println!(
                    "toolstack: domain {} serves device {}:{} of domain {}",
                    backend, msg.kind, msg.index, frontend
                );
            }
            other => f.awaiting = other,
        }
    }
}

/// The backend will not serve the ring (it could not map it writable, it
/// is full...): the frontend's `Announce` is answered with its reason.
fn refused(started: &mut [Started], backend: DomainId, msg: ControlMessage) {
    if let Some(b) = link_of(started, backend) {
        b.answer(msg, Status::Ok);
    }
    let why = match msg.version_or_status {
        s if s == Status::NoDevice as u32 => Status::NoDevice,
        s if s == Status::Invalid as u32 => Status::Invalid,
        s if s == Status::OtherVersion as u32 => Status::OtherVersion,
        _ => Status::Denied,
    };
    let Some(f) = link_of(started, msg.peer) else {
        return;
    };
    match f.awaiting.take() {
        Some(a) if a.peer == backend && a.kind == msg.kind && a.index as u8 == msg.index as u8 => {
            f.answer(a, why);
            println!(
                "toolstack: domain {} refused device {}:{} of domain {}",
                backend, msg.kind, msg.index, msg.peer
            );
        }
        other => f.awaiting = other,
    }
}

/// How many of a ring's requests its backend owes an answer now. A
/// console's input read waits, taken, for keystrokes: only requests not
/// even taken are owed there. Receive buffers wait, not even taken, for
/// frames: nothing is owed on a receive ring (an idle network and a stuck
/// backend look alike there; its transmit ring tells them apart).
fn owed(device: &str, v: &RingView) -> u32 {
    match device {
        "net-rx" => 0,
        "console" => v.waiting(),
        _ => v.in_flight(),
    }
}

impl RingRecord {
    /// Reads the ring's header through `GrantPeek` (a copy: the ring is
    /// not disturbed) and notes whether answers came since the last look.
    pub fn look(&mut self, frontend: DomainId, now: u64) -> Option<RingView> {
        let mut header = [0u8; HEADER_BYTES];
        domain_runtime::hypercall::grant_peek(frontend, self.gref, 0, &mut header).ok()?;
        let v = RingView::parse(&header)?;
        if v.rsp_prod != self.seen_rsp_prod
            || v.req_cons != self.seen_req_cons
            || owed(self.device, &v) == 0
        {
            self.progress_at = now;
        }
        self.seen_rsp_prod = v.rsp_prod;
        self.seen_req_cons = v.req_cons;
        Some(v)
    }
}

/// How often domain 0 looks at every ring by itself, so that a stuck one
/// is known to be stuck at the first `ring list` (within this much).
pub const RING_LOOK_NS: u64 = 250_000_000;

/// Looks at every ring (see [`RingRecord::look`]); true if there is any.
pub fn look_at_rings(started: &mut [Started], now: u64) -> bool {
    let mut any = false;
    for s in started.iter_mut() {
        let id = s.id;
        for r in s.rings.iter_mut() {
            r.look(id, now);
            any = true;
        }
    }
    any
}

/// The rings of a device of `kind`, in the order of its grant references
/// (each ring here is one page).
fn ring_names(kind: u32) -> &'static [&'static str] {
    match kind {
        k if k == DeviceKind::Console as u32 => &["console"],
        k if k == DeviceKind::Block as u32 => &["block"],
        k if k == DeviceKind::Net as u32 => &["net-tx", "net-rx"],
        _ => &[],
    }
}

/// `dom` has stopped: each backend that served it is told (`Disconnect`):
/// console-dom prints what is left of its console and keeps the history;
/// drvdom-blk lets go of its rings and pages; drvdom-net takes its
/// interfaces off the switch.
pub fn close_devices(started: &mut [Started], dom: DomainId) {
    let Some(s) = started.iter_mut().find(|s| s.id == dom) else {
        return;
    };
    s.block_devices = 0;
    s.net_devices = 0;
    s.rings.clear();
    let backends = [
        (s.console_backend.take(), DeviceKind::Console),
        (s.block_backend.take(), DeviceKind::Block),
        (s.net_backend.take(), DeviceKind::Net),
    ];
    for (backend, kind) in backends {
        let Some(backend) = backend else { continue };
        let mut msg = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
        msg.op = ControlOp::Disconnect as u32;
        msg.kind = kind as u32;
        msg.index = ALL_DEVICES;
        msg.peer = dom;
        if let Some(link) = link_of(started, backend) {
            link.tell(msg);
        }
    }
}

/// Asks console-dom to replay the console history of `dom`.
pub fn replay_history(started: &mut [Started], dom: DomainId) {
    let Some(console) = started
        .iter()
        .find(|s| s.config.role == Some(domain_config::Role::Console))
        .map(|s| s.id)
    else {
        return;
    };
    let mut msg = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
    msg.op = ControlOp::ConsoleHistory as u32;
    msg.peer = dom;
    if let Some(link) = link_of(started, console) {
        link.tell(msg);
    }
}

/// Tells console-dom that restored domain `new` continues `old`'s console
/// (its history carries over). Sent before `new` runs, so before it connects.
pub fn inherit_console(started: &mut [Started], old: DomainId, new: DomainId) {
    let Some(console) = crate::table::console_dom(started) else {
        return;
    };
    let mut msg = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
    msg.op = ControlOp::ConsoleInherit as u32;
    msg.peer = new;
    msg.index = old.0;
    if let Some(link) = link_of(started, console) {
        link.tell(msg);
    }
}

/// One side stops using a device: the other side is told, the sender answered.
fn disconnect(started: &mut [Started], from: DomainId, msg: ControlMessage) {
    let peer = msg.peer;
    let mut news = msg;
    news.peer = from;
    let known = match link_of(started, peer) {
        Some(p) if peer != from => {
            p.tell(news);
            true
        }
        _ => false,
    };
    if let Some(f) = link_of(started, from) {
        f.answer(msg, if known { Status::Ok } else { Status::NoDevice });
    }
    if known {
        println!(
            "toolstack: domain {} disconnected device {}:{} from domain {}",
            from, msg.kind, msg.index, peer
        );
    }
}

/// A backend was restarted under a new id: every frontend it served is told
/// (`PeerRestarted`), re-initialises its ring and announces it again.
pub fn peer_restarted(started: &mut [Started], old: DomainId, new: DomainId) {
    tell_frontends(started, old, ControlOp::PeerRestarted, new);
}

/// A backend was given up on: every frontend it served is told its device
/// is gone (`PeerGone`) and stops waiting for it.
pub fn peer_gone(started: &mut [Started], old: DomainId) {
    tell_frontends(started, old, ControlOp::PeerGone, old);
}

/// Sends `op` (naming `peer`) to every domain `old` served a device, one
/// message per device (its kind and index). After `PeerRestarted` the
/// devices count as served by `peer` (a device that has not reconnected
/// when `peer` dies too is told again); after `PeerGone`, by nobody. A domain that was still waiting for `old` to accept a device is
/// told too, then answered `Disconnected` (it announces again to the new
/// instance).
fn tell_frontends(started: &mut [Started], old: DomainId, op: ControlOp, peer: DomainId) {
    use domain_runtime::ipc_abi::proto::control::DeviceKind;
    for s in started.iter_mut() {
        let waiting = s
            .control
            .as_mut()
            .and_then(|l| l.awaiting.take_if(|a| a.peer == old));
        let waits_for = |kind: DeviceKind| waiting.filter(|a| a.kind == kind as u32);
        // Its rings with the old instance are gone (new ones come as it reconnects).
        s.rings.retain(|r| r.backend != old);
        // (kind, index) of each device concerned.
        let mut told: heapless::Vec<(DeviceKind, u32), 65> = heapless::Vec::new();
        let next = (op == ControlOp::PeerRestarted).then_some(peer);
        // Its command line named `old` for devices it has not connected
        // yet: it will find `old` dead when it tries, and wait for this news.
        let named_old = |named: &mut Option<DomainId>| {
            let was = *named == Some(old);
            if was {
                *named = next;
            }
            was
        };
        let named = [
            named_old(&mut s.named.console),
            named_old(&mut s.named.block),
            named_old(&mut s.named.net),
        ];
        if s.console_backend == Some(old)
            || waits_for(DeviceKind::Console).is_some()
            || (named[0] && s.console_backend.is_none())
        {
            if s.console_backend.is_some() || waits_for(DeviceKind::Console).is_some() {
                s.console_backend = next;
            }
            let _ = told.push((DeviceKind::Console, 0));
        }
        let (disks, vifs) = (s.disk_bits(), s.vif_bits());
        let multi = [
            (
                &mut s.block_backend,
                &mut s.block_devices,
                DeviceKind::Block,
                named[1].then_some(disks),
            ),
            (
                &mut s.net_backend,
                &mut s.net_devices,
                DeviceKind::Net,
                named[2].then_some(vifs),
            ),
        ];
        for (backend, devices, kind, configured) in multi {
            let mut bits = if *backend == Some(old) { *devices } else { 0 };
            if let Some(a) = waits_for(kind) {
                bits |= 1u32.checked_shl(a.index & 0xff).unwrap_or(0);
            }
            if bits != 0 {
                *backend = next;
                *devices = if next.is_some() { bits } else { 0 };
            }
            let unconnected = configured.unwrap_or(0) & !*devices & !bits;
            for index in (0..32).filter(|i| (bits | unconnected) & (1 << i) != 0) {
                let _ = told.push((kind, index));
            }
        }
        for (kind, index) in told {
            let mut news = <ControlMessage as zerocopy::FromZeros>::new_zeroed();
            news.op = op as u32;
            news.kind = kind as u32;
            news.index = index;
            news.peer = peer;
            let what = match kind {
                DeviceKind::Console => "console",
                DeviceKind::Block => "disk",
                DeviceKind::Net => "network",
            };
            if let Some(link) = s.control.as_mut() {
                link.tell(news);
                if op == ControlOp::PeerGone {
                    println!(
                        "toolstack: told domain {} that its {} backend is gone",
                        s.id, what
                    );
                } else {
                    println!(
                        "toolstack: told domain {} that its {} backend is now domain {}",
                        s.id, what, peer
                    );
                }
            }
        }
        if let (Some(a), Some(link)) = (waiting, s.control.as_mut()) {
            link.answer(a, Status::Disconnected);
        }
    }
}
