//! Network protocol: separate transmit and receive rings between a guest
//! (frontend) and `drvdom-net` (backend), as Xen's netif (issue 7).
//!
//! Transmit: the guest names a granted page, offset and length of a frame.
//! Receive: the guest posts granted pages; the backend fills one per frame and
//! answers with the offset and length used.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const NET_VERSION: u32 = 1;
/// Largest frame (Ethernet without jumbo frames, with VLAN tag).
pub const MAX_FRAME: u16 = 1518;

/// Flag: more fragments of this frame follow in the next request.
pub const FLAG_MORE: u16 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TxRequest {
    pub id: u64,
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
    pub flags: u16,
    pub _reserved: [u16; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TxResponse {
    pub id: u64,
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
    pub _reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RxRequest {
    pub id: u64,
    /// A granted page to receive into.
    pub gref: u32,
    pub _reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RxResponse {
    pub id: u64,
    pub offset: u16,
    pub len: u16,
    pub flags: u16,
    pub _reserved: u16,
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
    pub _reserved2: u32,
}

const _: () = assert!(core::mem::size_of::<TxRequest>() == 24);
const _: () = assert!(core::mem::size_of::<RxResponse>() == 24);

impl TxRequest {
    /// Whether the fragment lies within its page and a frame's size.
    pub fn check(&self) -> bool {
        self.len > 0 && self.len <= MAX_FRAME && self.offset as u32 + self.len as u32 <= 4096
    }
}
