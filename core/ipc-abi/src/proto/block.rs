//! Block protocol: virtual disks served by `drvdom-blk` (issue 6).
//!
//! A request names a start sector and up to [`MAX_SEGMENTS`] granted pages,
//! each with the first and last 512-byte sector of the page it covers. A
//! write is answered only once the device completed it; a flush once every
//! write answered before it is durable.
//!
//! Features are negotiated at connection time: the frontend's first request
//! is `Info`, whose answer carries the virtual disk's size, sector size and
//! [`Features`] (flush, discard, read-only); a frontend sends nothing the
//! answer did not offer, and a backend refuses it anyway (`Unsupported`,
//! or `Denied` for a write to a read-only disk).

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const BLOCK_VERSION: u32 = 2;

/// The `index` of a block `Connect` (control domain → backend): which of the
/// backend's virtual disks the frontend may use and how. The frontend's own
/// device index (xvda = 0) is in the low byte, as in its `Announce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockConnect {
    pub device: u8,
    /// Position of the virtual disk in the backend's configuration.
    pub vdisk: u8,
    pub read_only: bool,
}

impl BlockConnect {
    pub fn encode(self) -> u32 {
        u32::from(self.device) | u32::from(self.vdisk) << 8 | u32::from(self.read_only) << 31
    }

    pub fn decode(index: u32) -> BlockConnect {
        BlockConnect {
            device: index as u8,
            vdisk: (index >> 8) as u8,
            read_only: index >> 31 == 1,
        }
    }
}
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
    /// The disk's size and features (answered in `sectors`, `sector_size`, `features`).
    Info = 4,
}

bitflags::bitflags! {
    /// What a virtual disk offers (`BlockResponse::features` of `Info`).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Features: u32 {
        /// `Flush` makes earlier answered writes durable.
        const FLUSH = 1 << 0;
        /// `Discard` passes through to the device.
        const DISCARD = 1 << 1;
        /// Writes are refused.
        const READ_ONLY = 1 << 2;
    }
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
    /// `Info`: sectors of the virtual disk.
    pub sectors: u64,
    /// `Info`: bytes per sector (512).
    pub sector_size: u32,
    /// `Info`: [`Features`] bits.
    pub features: u32,
}

const _: () = assert!(core::mem::size_of::<BlockRequest>() == 64);
const _: () = assert!(core::mem::size_of::<BlockResponse>() == 32);

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
            4 => BlockOp::Info,
            _ => return Err(BadBlockRequest::UnknownOp),
        };
        match op {
            BlockOp::Flush | BlockOp::Info => Ok((op, 0)),
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
