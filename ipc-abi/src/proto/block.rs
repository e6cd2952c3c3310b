//! Block protocol: virtual disks served by `drvdom-blk` (issue 6).
//!
//! A request names a start sector and up to [`MAX_SEGMENTS`] granted pages,
//! each with the first and last 512-byte sector of the page it covers. A
//! write is answered only once the device completed it; a flush once every
//! write answered before it is durable.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const BLOCK_VERSION: u32 = 1;
/// Granted pages one request may name.
pub const MAX_SEGMENTS: usize = 5;
pub const SECTOR_SIZE: u64 = 512;
/// Sectors in one 4 KiB page.
pub const SECTORS_PER_PAGE: u8 = 8;

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOp {
    Read = 0,
    Write = 1,
    Flush = 2,
    Discard = 3,
}

/// One granted page of a request.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct Segment {
    pub gref: u32,
    pub first_sector: u8,
    pub last_sector: u8,
    pub _reserved: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlockRequest {
    pub id: u64,
    /// First sector on the virtual disk (for `Discard`: with `discard_sectors`).
    pub sector: u64,
    /// A [`BlockOp`].
    pub op: u8,
    pub segments_used: u8,
    pub _reserved: u16,
    /// Sectors to discard (`Discard` only).
    pub discard_sectors: u32,
    pub segments: [Segment; MAX_SEGMENTS],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct BlockResponse {
    pub id: u64,
    pub op: u8,
    pub _reserved: [u8; 3],
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
}

const _: () = assert!(core::mem::size_of::<BlockRequest>() == 64);
const _: () = assert!(core::mem::size_of::<BlockResponse>() == 16);

/// Why a block request is malformed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadBlockRequest {
    UnknownOp,
    TooManySegments,
    BadSectorRange,
}

impl BlockRequest {
    /// The operation and the number of sectors it moves, if the request is well formed.
    pub fn check(&self) -> Result<(BlockOp, u64), BadBlockRequest> {
        let op = match self.op {
            0 => BlockOp::Read,
            1 => BlockOp::Write,
            2 => BlockOp::Flush,
            3 => BlockOp::Discard,
            _ => return Err(BadBlockRequest::UnknownOp),
        };
        match op {
            BlockOp::Flush => Ok((op, 0)),
            BlockOp::Discard => Ok((op, self.discard_sectors as u64)),
            BlockOp::Read | BlockOp::Write => {
                let used = self.segments_used as usize;
                if used == 0 || used > MAX_SEGMENTS {
                    return Err(BadBlockRequest::TooManySegments);
                }
                let mut sectors = 0u64;
                for s in &self.segments[..used] {
                    if s.first_sector > s.last_sector || s.last_sector >= SECTORS_PER_PAGE {
                        return Err(BadBlockRequest::BadSectorRange);
                    }
                    sectors += (s.last_sector - s.first_sector + 1) as u64;
                }
                Ok((op, sectors))
            }
        }
    }
}
