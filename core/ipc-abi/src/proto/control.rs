//! Control protocol: every domain's ring to the control domain, and how a
//! frontend and a backend find each other (documented in
//! `docs/device-connection.md`).
//!
//! The domain is the frontend of its control ring. Requests go from the
//! domain to the control domain; the control domain's messages to the domain
//! (connect this frontend, your peer restarted, please shut down) are answers
//! to `Listen` requests the domain keeps posted, so one ring carries both
//! directions without a second protocol.

use crate::domain::DomainId;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const CONTROL_VERSION: u32 = 1;
/// Grant refs of a device's ring pages carried in one message.
pub const MAX_RING_PAGES: usize = 8;

/// Status codes of every protocol's answers.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    /// The request is malformed.
    Invalid = 1,
    /// The operation is not supported by this backend or device.
    Unsupported = 2,
    /// The device failed the operation.
    IoError = 3,
    /// The named disk, interface or device does not exist for this domain.
    NoDevice = 4,
    /// Refused: read-only, out of bounds, not allowed.
    Denied = 5,
    /// The backend went away (before it accepted an `Announce`): the
    /// frontend should wait for `PeerRestarted` or `PeerGone`.
    Disconnected = 6,
    /// The backend speaks another version of the device's protocol (an
    /// `Announce` carries the frontend's: `BLOCK_VERSION`, `NET_VERSION`,
    /// `CONSOLE_VERSION`).
    OtherVersion = 7,
}

/// Kinds of device a domain can have.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Console = 1,
    Block = 2,
    Net = 3,
}

crate::numbered! {
/// Control messages. Domain → control domain: `Announce`, `Connected`,
/// `Disconnect`, `Heartbeat`, `Listen`. Control domain → domain (as answers to
/// `Listen`): `Connect`, `Disconnect`, `PeerRestarted`, `PeerGone`,
/// `ShutdownRequest`, `ConsoleHistory`, `SuspendRequest`, `ConsoleInherit`,
/// `BalloonTarget`, `DeviceAttached`, `DeviceDetached`, `VcpuTarget`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlOp: u32 {
    /// Frontend: "here is my ring for device (kind, index)".
    Announce = 1,
    /// Backend: "I serve the frontend's ring" (after `Connect`).
    Connected = 2,
    /// Either side: "I stop using this device's ring".
    Disconnect = 3,
    /// Any domain, periodically: "I am alive" (for hang detection).
    Heartbeat = 4,
    /// Any domain: "answer me when you have something to tell me".
    Listen = 5,
    /// Backend: "I will not serve the frontend's ring" (after `Connect`;
    /// `version_or_status` is the [`Status`] the frontend's `Announce` gets).
    Refused = 6,
    /// To a backend: "serve this frontend's ring".
    Connect = 16,
    /// To a frontend: "the backend of device (kind, index) was restarted as
    /// `peer`: re-initialise and replay". One message per device.
    PeerRestarted = 17,
    /// To a frontend: "the backend of device (kind, index) is gone for good".
    PeerGone = 18,
    /// To any domain: "shut down cleanly" (with a reason).
    ShutdownRequest = 19,
    /// To console-dom: "replay the history of `peer`'s console" (for a viewer
    /// that comes late, or a domain that already died).
    ConsoleHistory = 20,
    /// To any domain: "suspend yourself to be saved" (`Suspend` hypercall).
    SuspendRequest = 21,
    /// To console-dom: "`peer` (a restored domain) continues the console of
    /// the domain whose id is `index`": its history carries over.
    ConsoleInherit = 22,
    /// To any domain: "hold `index` KiB of memory": its balloon gives
    /// heap pages back to the machine (`MemoryRelease`) or takes them
    /// again (`MemoryPopulate`, up to its maximum) until it does.
    BalloonTarget = 23,
    /// To any domain: "device (kind, index) is now yours, served by
    /// `peer`" (`domain block-attach` / `network-attach`); a network
    /// device's MAC is in the message as a `NetConnect` writes it.
    DeviceAttached = 24,
    /// To any domain: "device (kind, index) was taken away": its backend
    /// no longer serves it, and what it had not answered never will be.
    DeviceDetached = 25,
    /// To any domain: "have `index` vCPUs online" (`domain vcpu-set`):
    /// its program starts the ones it lacks and stops the others
    /// (`VcpuDown`), vCPU 0 always online.
    VcpuTarget = 26,
}
}

/// The `index` of a `Disconnect` that names every device of that kind of
/// its `peer` (the control domain's, when a domain has stopped).
pub const ALL_DEVICES: u32 = u32::MAX;

/// One control message (both directions use the same layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ControlMessage {
    pub id: u32,
    /// A [`ControlOp`].
    pub op: u32,
    /// A [`DeviceKind`].
    pub kind: u32,
    /// Which device of that kind (xvda = 0, ...). In a console's
    /// `Connect`, set by domain 0: the domain the console shows as (0: the
    /// frontend itself; an HVM guest's id for its device model's).
    pub index: u32,
    /// The other end's domain.
    pub peer: DomainId,
    /// The frontend's event port for this device (unbound for the backend).
    pub port: u32,
    /// Pages of the ring; `grefs[..pages]` grant them.
    pub pages: u32,
    /// Protocol version of the device's ring, or a [`Status`] in answers.
    pub version_or_status: u32,
    pub grefs: [u32; MAX_RING_PAGES],
}

const _: () = assert!(core::mem::size_of::<ControlMessage>() == 64);

impl ControlMessage {
    /// The operation, if the message is well formed.
    pub fn check(&self) -> Option<ControlOp> {
        use ControlOp::*;
        let op = ControlOp::from_number(self.op)?;
        if matches!(op, Announce | Connect)
            && (self.pages == 0 || self.pages as usize > MAX_RING_PAGES)
        {
            return None;
        }
        Some(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn announce_needs_one_to_eight_pages() {
        let mut m = ControlMessage::new_zeroed();
        m.op = ControlOp::Announce as u32;
        assert_eq!(m.check(), None);
        m.pages = 2;
        assert_eq!(m.check(), Some(ControlOp::Announce));
        m.pages = 9;
        assert_eq!(m.check(), None);
        m.op = 77;
        assert_eq!(m.check(), None);
    }

    #[test]
    fn block_requests_are_checked() {
        use crate::proto::block::*;
        let mut r = BlockRequest::new_zeroed();
        r.op = BlockOp::Write as u8;
        assert_eq!(r.check(), Err(BadBlockRequest::TooManySegments));
        r.segments_used = 2;
        r.segments[0].last_sector = 7;
        r.segments[1].first_sector = 2;
        r.segments[1].last_sector = 3;
        assert_eq!(r.check(), Ok((BlockOp::Write, 10)));
        r.segments[1].last_sector = 8;
        assert_eq!(r.check(), Err(BadBlockRequest::BadSectorRange));
        r.op = 9;
        assert_eq!(r.check(), Err(BadBlockRequest::UnknownOp));
    }

    #[test]
    fn console_writes_longer_than_a_chunk_are_refused() {
        use crate::proto::console::*;
        let mut r = ConsoleRequest::new_zeroed();
        r.op = ConsoleOp::Write as u16;
        r.len = 10;
        assert_eq!(r.check(), Some(Console::Write(&[0; 10])));
        r.len = CHUNK as u16 + 1;
        assert!(r.check().is_none());
        r.op = ConsoleOp::Type as u16;
        assert!(r.check().is_none());
        r.len = 3;
        r.domain = 7;
        assert_eq!(
            r.check(),
            Some(Console::Type {
                domain: 7,
                data: &[0; 3]
            })
        );
        r.op = ConsoleOp::Peek as u16;
        r.offset = 99;
        r.len = 0;
        assert_eq!(
            r.check(),
            Some(Console::Peek {
                domain: 7,
                offset: 99,
                wait: false
            })
        );
        r.op = 9;
        assert!(r.check().is_none());
    }
}
