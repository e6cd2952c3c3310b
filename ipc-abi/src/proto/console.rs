//! Console protocol: a domain's output and input byte streams, between a
//! domain (frontend) and `console-dom` (backend).
//!
//! `Write` carries up to [`CHUNK`] bytes of output; the answer acknowledges
//! it (so a domain that writes faster than the UART drains waits for slots).
//! `Read` asks for input; the answer carries up to [`CHUNK`] bytes when some
//! arrive while this domain has the focus. A frontend keeps one `Read` posted.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const CONSOLE_VERSION: u32 = 1;
/// Bytes of data in one message.
pub const CHUNK: usize = 48;

/// What a console request asks.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsoleOp {
    Write = 1,
    Read = 2,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConsoleRequest {
    pub id: u64,
    /// A [`ConsoleOp`].
    pub op: u16,
    /// Bytes of `data` used (`Write`), or the most wanted (`Read`).
    pub len: u16,
    pub _reserved: u32,
    pub data: [u8; CHUNK],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct ConsoleResponse {
    pub id: u64,
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
    /// Bytes of `data` used (`Read`).
    pub len: u16,
    pub _reserved: u16,
    pub data: [u8; CHUNK],
}

const _: () = assert!(core::mem::size_of::<ConsoleRequest>() == 64);
const _: () = assert!(core::mem::size_of::<ConsoleResponse>() == 64);

impl ConsoleRequest {
    /// The operation and the data, if the request is well formed.
    pub fn check(&self) -> Option<(ConsoleOp, &[u8])> {
        let len = self.len as usize;
        match self.op {
            1 if len <= CHUNK => Some((ConsoleOp::Write, &self.data[..len])),
            2 => Some((ConsoleOp::Read, &[])),
            _ => None,
        }
    }
}
