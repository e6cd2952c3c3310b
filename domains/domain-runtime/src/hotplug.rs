//! Devices given to or taken from this domain while it runs (`toolstack
//! domain block-attach`, `network-attach`, and their `-detach`), and the
//! number of vCPUs it is asked to have online (`domain vcpu-set`).
//!
//! Owns: taking the control domain's `DeviceAttached` and `DeviceDetached`
//! news off the control ring, remembering which devices were attached
//! (their backend; an interface's MAC) and which were taken away, and
//! handing each change to the program in order ([`next`], [`wait`]), as a
//! hot-plugged disk shows up in Linux. The frontends ask here about a
//! device their command line does not name ([`backend`], [`vif`]), and a
//! detached device's frontend fails what it still waits for
//! ([`is_detached`]).

use crate::control;
use core::sync::atomic::{AtomicU32, Ordering};
use ipc_abi::domain::DomainId;
use ipc_abi::launch::VifSpec;
use ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind};
use ipc_abi::proto::net::NetConnect;
use spin::Mutex;

/// One change of this domain's devices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Device `index` of `kind` (xvda = 0; the first interface = 0) is
    /// ours now: `block::Disk::connect(index)` or `net::NetFront::connect(index)`.
    Attached { kind: DeviceKind, index: u32 },
    /// It was taken away: its requests that had no answer failed.
    Detached { kind: DeviceKind, index: u32 },
    /// Have `online` vCPUs running (vCPU 0 and the next ones): start the
    /// ones missing (`vcpu::start`), and each one beyond stops itself
    /// (`vcpu::stop`, at a point where it holds no lock).
    Vcpus { online: u32 },
}

#[derive(Clone, Copy)]
struct Attached {
    kind: DeviceKind,
    index: u32,
    backend: DomainId,
    /// A network interface's MAC and MTU (unused for others).
    net: NetConnect,
}

/// Changes kept for the program until it looks (the oldest is dropped
/// beyond this: a program that never looks loses nothing else).
const CHANGES: usize = 16;

struct State {
    attached: heapless::Vec<Attached, 32>,
    /// Bit n of [block, net]: device n was detached (and not attached again).
    detached: [u64; 2],
    changes: heapless::Deque<Change, CHANGES>,
}

static STATE: Mutex<State> = Mutex::new(State {
    attached: heapless::Vec::new(),
    detached: [0; 2],
    changes: heapless::Deque::new(),
});

fn slot(kind: DeviceKind) -> Option<usize> {
    match kind {
        DeviceKind::Block => Some(0),
        DeviceKind::Net => Some(1),
        DeviceKind::Console => None,
    }
}

fn kind_of(m: &ControlMessage) -> Option<DeviceKind> {
    [DeviceKind::Block, DeviceKind::Net]
        .into_iter()
        .find(|k| *k as u32 == m.kind)
}

fn is_news(m: &ControlMessage) -> bool {
    match m.check() {
        Some(ControlOp::DeviceAttached | ControlOp::DeviceDetached) => {
            kind_of(m).is_some() && m.index < 64
        }
        Some(ControlOp::VcpuTarget) => m.index >= 1,
        _ => false,
    }
}

/// The vCPUs this domain was last asked to have online (0: never asked).
static VCPUS_WANTED: AtomicU32 = AtomicU32::new(0);

/// How many vCPUs domain 0 last asked this domain to have online, if it
/// asked: a vCPU whose number is this or more should stop itself. Any
/// vCPU may ask (it does not take news off the control ring: vCPU 0's
/// waits do, or [`next`]).
pub fn vcpus_wanted() -> Option<u32> {
    Some(VCPUS_WANTED.load(Ordering::Acquire)).filter(|&n| n > 0)
}

/// Moves every change the control domain sent into this module's state,
/// oldest first (the runtime does it whenever the domain waits).
pub(crate) fn refresh() {
    while let Some(m) = control::take_oldest(is_news) {
        if m.check() == Some(ControlOp::VcpuTarget) {
            VCPUS_WANTED.store(m.index, Ordering::Release);
            push(Change::Vcpus { online: m.index });
            continue;
        }
        let (Some(kind), Some(op)) = (kind_of(&m), m.check()) else {
            continue;
        };
        let Some(bits) = slot(kind) else { continue };
        let mut s = STATE.lock();
        s.attached
            .retain(|a| !(a.kind == kind && a.index == m.index));
        let change = if op == ControlOp::DeviceAttached {
            let _ = s.attached.push(Attached {
                kind,
                index: m.index,
                backend: m.peer,
                net: NetConnect::read(&m),
            });
            s.detached[bits] &= !(1 << m.index);
            Change::Attached {
                kind,
                index: m.index,
            }
        } else {
            s.detached[bits] |= 1 << m.index;
            Change::Detached {
                kind,
                index: m.index,
            }
        };
        drop(s);
        push(change);
    }
}

fn push(change: Change) {
    let mut s = STATE.lock();
    if s.changes.is_full() {
        s.changes.pop_front();
    }
    let _ = s.changes.push_back(change);
}

/// The next change of this domain's devices, if one came (does not block).
pub fn next() -> Option<Change> {
    refresh();
    STATE.lock().changes.pop_front()
}

/// Waits for the next change of this domain's devices.
pub fn wait() -> Change {
    loop {
        if let Some(c) = next() {
            return c;
        }
        control::wait_for_news();
    }
}

/// The backend serving attached device `index` of `kind`, if it was attached.
pub(crate) fn backend(kind: DeviceKind, index: u32) -> Option<DomainId> {
    refresh();
    let s = STATE.lock();
    let a = s
        .attached
        .iter()
        .find(|a| a.kind == kind && a.index == index)?;
    Some(a.backend)
}

/// The MAC and MTU of attached interface `index`, if it was attached.
pub(crate) fn vif(index: u32) -> Option<VifSpec> {
    refresh();
    let s = STATE.lock();
    let a = s
        .attached
        .iter()
        .find(|a| a.kind == DeviceKind::Net && a.index == index)?;
    Some(VifSpec {
        mac: Some(a.net.mac),
        mtu: Some(a.net.mtu),
    })
}

/// Whether device `index` of `kind` was taken away from this domain.
pub(crate) fn is_detached(kind: DeviceKind, index: u32) -> bool {
    refresh();
    let Some(bits) = slot(kind) else { return false };
    index < 64 && STATE.lock().detached[bits] & (1 << index) != 0
}
