//! Virtual disks: the block frontend (`ipc_abi::proto::block`).
//!
//! Owns: connecting a disk (`blk=ID` on the command line names the backend;
//! the control domain checks the domain's configuration gives it the disk),
//! negotiating its size and features (`Info`), and reading, writing and
//! flushing through the ring with up to [`IN_FLIGHT`] requests at once. Data
//! moves through pages of ours granted once to the backend (persistent
//! grants, [`pages`]): the disk copies the caller's data through them, or
//! the caller works in a buffer of them ([`Disk::buffer`]) and nothing is
//! copied. Every request in flight is kept; when the control domain says
//! the backend was restarted, the disk reconnects to the new one and sends
//! them again ([`reconnect`]).

extern crate alloc;
mod pages;
mod reconnect;

use crate::hypercall as hc;
use crate::ring::{Grefs, RingPages};
use core::sync::atomic::{fence, Ordering};
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::block::{
    BlockOp, BlockRequest, BlockResponse, Features, Segment, BLOCK_VERSION, MAX_SEGMENTS,
    SECTORS_PER_PAGE, SECTOR_SIZE,
};
use ipc_abi::proto::control::DeviceKind;
use ipc_abi::ring::Front;
use pages::{DataPages, Place, PAGE};
use zerocopy::FromZeros;

pub use pages::BUFFER_PAGES;

/// Requests a disk keeps in flight at most.
pub const IN_FLIGHT: usize = 4;
/// Bytes one request moves at most.
pub const REQUEST_BYTES: usize = MAX_SEGMENTS * PAGE;

/// A buffer of the disk's ([`Disk::buffer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferId(usize);

/// Where a transfer's data comes from and goes to.
#[derive(Clone, Copy)]
enum Through {
    /// The caller's memory, copied through the slots.
    Slots,
    /// A buffer of the disk's, which the backend fills and empties.
    Buffer(usize),
}

/// What the backend said the disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub sectors: u64,
    pub sector_size: u32,
    pub features: Features,
}

/// A block ring connected to its backend, before any request: for tools
/// and tests that speak the protocol themselves ([`Disk`] is the usual way).
pub struct RawRing {
    pub front: Front<'static, BlockRequest, BlockResponse>,
    pub port: u16,
    pub backend: DomainId,
    pub pages: RingPages,
    pub grefs: Grefs,
}

impl RawRing {
    /// Announces a one-page ring for guest disk `device` to the backend
    /// `blk=ID` names; returns once the backend serves it.
    pub fn connect(device: u32) -> Result<RawRing> {
        // A disk attached while we ran names its backend in the news of it.
        let mut backend = crate::hotplug::backend(DeviceKind::Block, device)
            .or_else(|| {
                crate::option(crate::ipc_abi::launch::BLOCK_BACKEND)
                    .and_then(|v| v.parse().ok())
                    .map(DomainId)
            })
            .ok_or(Error::InvalidArgument)?;
        let pages = RingPages::allocate(1).ok_or(Error::OutOfResources)?;
        let front = Front::init(pages.shared(), 1).map_err(|_| Error::InvalidArgument)?;
        let (grefs, port) = loop {
            match crate::ring::announce(&[pages], backend, DeviceKind::Block, device, BLOCK_VERSION)
            {
                // The backend died before it accepted: announce to its next instance.
                Err(Error::DeadDomain) => {
                    backend = crate::control::next_backend(DeviceKind::Block, device)
                        .ok_or(Error::DeadDomain)?;
                }
                other => break other?,
            }
        };
        Ok(RawRing {
            front,
            port,
            backend,
            pages,
            grefs,
        })
    }

    /// Sends one request as it is (unchecked) and waits for its answer.
    pub fn call(&mut self, r: &BlockRequest) -> core::result::Result<BlockResponse, DiskError> {
        self.front.push(r).map_err(|_| DiskError::Ring)?;
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        loop {
            if let Some(rsp) = self.front.pop().map_err(|_| DiskError::Ring)? {
                return Ok(rsp);
            }
            if !self.front.final_check().map_err(|_| DiskError::Ring)? {
                crate::events::wait(self.port);
            }
        }
    }
}

/// A connected virtual disk.
pub struct Disk {
    front: Front<'static, BlockRequest, BlockResponse>,
    port: u16,
    backend: DomainId,
    next_id: u64,
    data: DataPages,
    info: DiskInfo,
    /// Requests sent and not yet answered, with where their pages are.
    in_flight: heapless::Vec<(BlockRequest, Option<Place>), IN_FLIGHT>,
    /// Requests sent, and notifications the ring's suppression let through.
    sent: u64,
    notified: u64,
    /// Our device number (xvda = 0), for announcing the ring again.
    device: u32,
    ring: RingPages,
    ring_grefs: Grefs,
    /// Times the backend was restarted under us.
    restarts: u64,
    /// The backend is gone for good.
    gone: bool,
    /// The disk was taken away from us.
    detached: bool,
    /// Long waits between answers (a restarted backend shows as one).
    gaps: crate::gaps::Gaps,
    /// The restore epoch its port and grants belong to (`crate::epoch`).
    epoch: u32,
    /// Whether news of its backend may have come since it last looked.
    news: crate::control::Seen,
}

/// Why a disk operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskError {
    /// The backend answered with this status.
    Status(u32),
    /// Out of the disk's bounds, or a buffer that is not whole sectors.
    Bounds,
    /// The disk does not offer it (read-only, no flush).
    Unsupported,
    /// The ring broke.
    Ring,
    /// The backend is gone for good (it kept crashing and the control
    /// domain gave up on it).
    Gone,
    /// The disk was taken away from this domain (`domain block-detach`):
    /// requests it had not answered fail so, and every later one.
    Detached,
}

impl Disk {
    /// Connects guest disk `device` (xvda = 0) to the backend `blk=ID` names.
    pub fn connect(device: u32) -> Result<Disk> {
        let raw = RawRing::connect(device)?;
        let backend = raw.backend;
        let data = DataPages::new(IN_FLIGHT, backend)?;
        let RawRing {
            front,
            port,
            pages,
            grefs: ring_grefs,
            ..
        } = raw;
        let mut disk = Disk {
            front,
            port,
            backend,
            next_id: 1,
            data,
            info: DiskInfo {
                sectors: 0,
                sector_size: SECTOR_SIZE as u32,
                features: Features::empty(),
            },
            in_flight: heapless::Vec::new(),
            sent: 0,
            notified: 0,
            device,
            ring: pages,
            ring_grefs,
            restarts: 0,
            gone: false,
            detached: false,
            gaps: crate::gaps::Gaps::new(),
            epoch: crate::epoch::get(),
            news: crate::control::Seen::new(),
        };
        let mut r = BlockRequest::new_zeroed();
        r.op = BlockOp::Info as u8;
        let rsp = disk.call(r).map_err(|e| match e {
            // The backend kept crashing and was given up on.
            DiskError::Gone => Error::DeadDomain,
            _ => Error::PortState,
        })?;
        disk.info = DiskInfo {
            sectors: rsp.sectors,
            sector_size: rsp.sector_size,
            features: Features::from_bits_truncate(rsp.features),
        };
        Ok(disk)
    }

    /// The disk's size and features.
    pub fn info(&self) -> DiskInfo {
        self.info
    }

    /// The backend serving it.
    pub fn backend(&self) -> DomainId {
        self.backend
    }

    fn check(&self, sector: u64, len: usize) -> core::result::Result<(), DiskError> {
        let sectors = (len as u64) / SECTOR_SIZE;
        if !(len as u64).is_multiple_of(SECTOR_SIZE)
            || sector
                .checked_add(sectors)
                .is_none_or(|end| end > self.info.sectors)
        {
            return Err(DiskError::Bounds);
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes (whole sectors) from `sector` on.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> core::result::Result<(), DiskError> {
        self.check(sector, buf.len())?;
        self.transfer(
            BlockOp::Read,
            sector,
            buf.len(),
            Through::Slots,
            |_, _| {},
            |offset, bytes| buf[offset..offset + bytes.len()].copy_from_slice(bytes),
        )
    }

    /// Writes `buf` (whole sectors) from `sector` on; returns once the device completed it.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> core::result::Result<(), DiskError> {
        self.check(sector, buf.len())?;
        if self.info.features.contains(Features::READ_ONLY) {
            return Err(DiskError::Unsupported);
        }
        self.transfer(
            BlockOp::Write,
            sector,
            buf.len(),
            Through::Slots,
            |offset, page| page.copy_from_slice(&buf[offset..offset + page.len()]),
            |_, _| {},
        )
    }

    /// Reads `len` bytes (whole sectors) from `sector` on, handing them to
    /// `drain(offset, bytes)` straight from the pages the backend filled
    /// (for a caller that scatters them: a device model, one copy).
    pub fn read_with(
        &mut self,
        sector: u64,
        len: usize,
        drain: impl FnMut(usize, &[u8]),
    ) -> core::result::Result<(), DiskError> {
        self.check(sector, len)?;
        self.transfer(BlockOp::Read, sector, len, Through::Slots, |_, _| {}, drain)
    }

    /// Writes `len` bytes (whole sectors) from `sector` on, which
    /// `fill(offset, page)` writes straight into the pages the backend
    /// takes them from; returns once the device completed them.
    pub fn write_with(
        &mut self,
        sector: u64,
        len: usize,
        fill: impl FnMut(usize, &mut [u8]),
    ) -> core::result::Result<(), DiskError> {
        self.check(sector, len)?;
        if self.info.features.contains(Features::READ_ONLY) {
            return Err(DiskError::Unsupported);
        }
        self.transfer(BlockOp::Write, sector, len, Through::Slots, fill, |_, _| {})
    }

    /// A buffer of `bytes` (rounded up to whole pages) that the backend
    /// fills and empties itself ([`Disk::read_to_buffer`],
    /// [`Disk::write_from_buffer`]): I/O through it copies nothing in this
    /// domain (as the device's DMA reaches it, where the backend maps it).
    /// Its pages are granted to the backend once, for as long as the disk
    /// lives, and to each new backend after a restart. A disk's buffers
    /// hold [`BUFFER_PAGES`] pages in all at most.
    pub fn buffer(&mut self, bytes: usize) -> Result<BufferId> {
        self.data.add_buffer(bytes, self.backend).map(BufferId)
    }

    /// The bytes of buffer `b` (what the last read into it left there).
    pub fn buffer_bytes(&self, b: BufferId) -> &[u8] {
        self.data.buffer(b.0).unwrap_or(&[])
    }

    /// The bytes of buffer `b`, to fill before a write.
    pub fn buffer_bytes_mut(&mut self, b: BufferId) -> &mut [u8] {
        self.data.buffer_mut(b.0).unwrap_or(&mut [])
    }

    /// Reads `len` bytes (whole sectors) from `sector` on into the start
    /// of buffer `b`, with no copy in this domain.
    pub fn read_to_buffer(
        &mut self,
        sector: u64,
        b: BufferId,
        len: usize,
    ) -> core::result::Result<(), DiskError> {
        self.buffer_transfer(BlockOp::Read, sector, b, len)
    }

    /// Writes the first `len` bytes (whole sectors) of buffer `b` from
    /// `sector` on, with no copy in this domain; returns once the device
    /// completed it.
    pub fn write_from_buffer(
        &mut self,
        sector: u64,
        b: BufferId,
        len: usize,
    ) -> core::result::Result<(), DiskError> {
        if self.info.features.contains(Features::READ_ONLY) {
            return Err(DiskError::Unsupported);
        }
        self.buffer_transfer(BlockOp::Write, sector, b, len)
    }

    /// A read or write of the first `len` bytes of buffer `b`, checked.
    fn buffer_transfer(
        &mut self,
        op: BlockOp,
        sector: u64,
        b: BufferId,
        len: usize,
    ) -> core::result::Result<(), DiskError> {
        self.check_buffer(b, len)?;
        self.check(sector, len)?;
        let nothing = |_: usize, _: &[u8]| {};
        self.transfer(op, sector, len, Through::Buffer(b.0), |_, _| {}, nothing)
    }

    fn check_buffer(&self, b: BufferId, len: usize) -> core::result::Result<(), DiskError> {
        match self.data.buffer(b.0) {
            Some(bytes) if len <= bytes.len() => Ok(()),
            _ => Err(DiskError::Bounds),
        }
    }

    /// Makes every write answered so far durable.
    pub fn flush(&mut self) -> core::result::Result<(), DiskError> {
        if !self.info.features.contains(Features::FLUSH) {
            return Err(DiskError::Unsupported);
        }
        let mut r = BlockRequest::new_zeroed();
        r.op = BlockOp::Flush as u8;
        self.call(r).map(|_| ())
    }

    /// Tells the device `count` sectors from `sector` on hold nothing worth
    /// keeping (it may free them; what they read as afterwards is the
    /// device's choice). Only if the disk offers `DISCARD`.
    pub fn discard(&mut self, sector: u64, count: u32) -> core::result::Result<(), DiskError> {
        self.check(sector, count as usize * SECTOR_SIZE as usize)?;
        if !self.info.features.contains(Features::DISCARD) {
            return Err(DiskError::Unsupported);
        }
        let mut r = BlockRequest::new_zeroed();
        r.op = BlockOp::Discard as u8;
        r.sector = sector;
        r.discard_sectors = count;
        self.call(r).map(|_| ())
    }

    /// Sends one request (no data) and waits for its answer.
    fn call(&mut self, mut r: BlockRequest) -> core::result::Result<BlockResponse, DiskError> {
        r.id = self.next_id;
        self.next_id += 1;
        self.queue(r, None)?;
        self.publish();
        loop {
            if let Some(rsp) = self.take_answer()? {
                return if rsp.status == 0 {
                    Ok(rsp)
                } else {
                    Err(DiskError::Status(rsp.status))
                };
            }
        }
    }

    /// Puts a request whose pages are at `place` on the ring without
    /// publishing it (see [`Disk::publish`]).
    fn queue(
        &mut self,
        r: BlockRequest,
        place: Option<Place>,
    ) -> core::result::Result<(), DiskError> {
        if self.detached {
            return Err(DiskError::Detached);
        }
        if self.gone {
            return Err(DiskError::Gone);
        }
        self.front.push(&r).map_err(|_| DiskError::Ring)?;
        let _ = self.in_flight.push((r, place));
        self.sent += 1;
        Ok(())
    }

    /// Publishes what was queued; notifies the backend only if it asked.
    fn publish(&mut self) {
        if self.front.publish() {
            self.notified += 1;
            let _ = hc::event_send(self.port);
        }
    }

    /// Requests sent so far, and how many of them needed a notification.
    pub fn stats(&self) -> (u64, u64) {
        (self.sent, self.notified)
    }

    /// Waits for the next answer.
    fn take_answer(&mut self) -> core::result::Result<Option<BlockResponse>, DiskError> {
        loop {
            match self.front.pop().map_err(|_| DiskError::Ring)? {
                Some(rsp) => {
                    self.in_flight.retain(|(r, _)| r.id != rsp.id);
                    self.gaps
                        .answer(crate::time::now_ns(), crate::time::busy_tsc());
                    return Ok(Some(rsp));
                }
                None => {
                    if !self.front.final_check().map_err(|_| DiskError::Ring)? {
                        // News of a restart may already be in the inbox (taken
                        // off the control ring while another device waited).
                        self.follow_restart()?;
                        self.wait();
                        self.follow_restart()?;
                    }
                }
            }
        }
    }

    /// Waits for the backend, or for news from the control domain (of a
    /// restarted backend, or a shutdown request, which is obeyed).
    fn wait(&self) {
        let control = crate::control::port();
        loop {
            if crate::events::take(self.port) || control.is_some_and(crate::events::take) {
                return;
            }
            crate::events::serve_while_waiting(Some(self.port));
            crate::events::block_for_port(Some(self.port));
        }
    }

    /// Waits between answers longer than [`crate::gaps::GAP_NS`], in nanoseconds (the
    /// first 64): how long service stopped, as this disk saw it.
    pub fn gaps(&self) -> &[u64] {
        self.gaps.list()
    }

    /// When the first answer after each restart of the backend came:
    /// (ns since boot, busy TSC ticks).
    pub fn resumed(&self) -> &[(u64, u64)] {
        self.gaps.resumed()
    }

    /// Times the backend was restarted under this disk.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// Moves `len` bytes from `sector` on in requests of up to
    /// [`REQUEST_BYTES`], [`IN_FLIGHT`] at a time, through the slots or a
    /// buffer. Through the slots, `fill(offset, page)` fills a page before
    /// a write and `drain(offset, bytes)` takes a read's bytes.
    fn transfer(
        &mut self,
        op: BlockOp,
        sector: u64,
        len: usize,
        through: Through,
        mut fill: impl FnMut(usize, &mut [u8]),
        mut drain: impl FnMut(usize, &[u8]),
    ) -> core::result::Result<(), DiskError> {
        if self.detached {
            return Err(DiskError::Detached);
        }
        let mut next = 0usize;
        let mut failed = None;
        // (request id, byte offset, bytes, where its pages are) of each
        // request in flight.
        let mut pending: heapless::Vec<(u64, usize, usize, Place), IN_FLIGHT> =
            heapless::Vec::new();
        loop {
            while next < len && failed.is_none() && !pending.is_full() {
                let place = match through {
                    Through::Buffer(index) => Place::Buffer {
                        index,
                        first: next / PAGE,
                    },
                    Through::Slots => {
                        let free = (0..self.data.slots())
                            .find(|&s| pending.iter().all(|p| p.3 != Place::Slot(s)));
                        match free {
                            Some(s) => Place::Slot(s),
                            None => break,
                        }
                    }
                };
                let bytes = (len - next).min(REQUEST_BYTES);
                let mut r = BlockRequest::new_zeroed();
                r.id = self.next_id;
                self.next_id += 1;
                r.op = op as u8;
                r.sector = sector + (next as u64) / SECTOR_SIZE;
                let used = bytes.div_ceil(PAGE);
                r.segments_used = used as u8;
                for i in 0..used {
                    let in_page = (bytes - i * PAGE).min(PAGE);
                    r.segments[i] = Segment {
                        gref: self.data.gref(place, i),
                        first_sector: 0,
                        last_sector: (in_page as u64 / SECTOR_SIZE) as u8 - 1,
                        _reserved: 0,
                    };
                    if let (BlockOp::Write, Place::Slot(s)) = (op, place) {
                        fill(
                            next + i * PAGE,
                            &mut self.data.slot_page_mut(s, i)[..in_page],
                        );
                    }
                }
                debug_assert!(r.segments[..used]
                    .iter()
                    .all(|s| s.last_sector < SECTORS_PER_PAGE));
                self.queue(r, Some(place))?;
                let _ = pending.push((r.id, next, bytes, place));
                next += bytes;
            }
            // Publish many, notify once: the backend sees them as one batch.
            self.publish();
            if pending.is_empty() {
                return failed.map_or(Ok(()), Err);
            }
            let rsp = self.take_answer()?.ok_or(DiskError::Ring)?;
            let Some(p) = pending.iter().position(|&(id, ..)| id == rsp.id) else {
                continue;
            };
            let (_, offset, bytes, place) = pending.swap_remove(p);
            if rsp.status != 0 {
                failed = Some(DiskError::Status(rsp.status));
                continue;
            }
            // The backend's copies into our pages happened before its answer.
            fence(Ordering::Acquire);
            if let (BlockOp::Read, Place::Slot(s)) = (op, place) {
                for i in 0..bytes.div_ceil(PAGE) {
                    let in_page = (bytes - i * PAGE).min(PAGE);
                    drain(offset + i * PAGE, &self.data.slot_page(s, i)[..in_page]);
                }
            }
        }
    }
}
