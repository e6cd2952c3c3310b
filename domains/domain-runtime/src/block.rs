//! Virtual disks: the block frontend (`ipc_abi::proto::block`).
//!
//! Owns: connecting a disk (`blk=ID` on the command line names the backend;
//! the control domain checks the domain's configuration gives it the disk),
//! negotiating its size and features (`Info`), and reading, writing and
//! flushing through the ring with up to [`IN_FLIGHT`] requests at once. Data
//! moves through pages of ours granted once to the backend (persistent
//! grants), which it copies to and from. Every request in flight is kept
//! ([`Disk::in_flight`]); when the control domain says the backend was
//! restarted, the disk reconnects to the new one and sends them again.

extern crate alloc;
use crate::hypercall as hc;
use crate::ring::{Grefs, RingPages};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::proto::block::{
    BlockOp, BlockRequest, BlockResponse, Features, Segment, BLOCK_VERSION, MAX_SEGMENTS,
    SECTORS_PER_PAGE, SECTOR_SIZE,
};
use ipc_abi::proto::control::DeviceKind;
use ipc_abi::ring::Front;
use zerocopy::FromZeros;

/// Requests a disk keeps in flight at most.
pub const IN_FLIGHT: usize = 4;
const PAGE: usize = 4096;
/// Bytes one request moves at most.
pub const REQUEST_BYTES: usize = MAX_SEGMENTS * PAGE;

/// A page the backend copies to and from.
#[repr(C, align(4096))]
struct Page([u8; PAGE]);

/// One request's data pages and their grants.
struct Slot {
    pages: Box<[Page; MAX_SEGMENTS]>,
    grefs: [u32; MAX_SEGMENTS],
    /// The request using the slot, if any.
    busy: Option<u64>,
}

/// What the backend said the disk is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    pub sectors: u64,
    pub sector_size: u32,
    pub features: Features,
}

/// A data page's grant reference while it is granted to nobody (its
/// backend died before the grant).
const NO_GRANT: u32 = u32::MAX;

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
    slots: Vec<Slot>,
    info: DiskInfo,
    /// Requests sent and not yet answered.
    in_flight: heapless::Vec<BlockRequest, IN_FLIGHT>,
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
        let mut slots = Vec::new();
        for _ in 0..IN_FLIGHT {
            let data: Box<[Page; MAX_SEGMENTS]> =
                Box::new([const { Page([0; PAGE]) }; MAX_SEGMENTS]);
            let mut grefs = [0u32; MAX_SEGMENTS];
            for (g, page) in grefs.iter_mut().zip(data.iter()) {
                *g = match hc::grant_create(backend, page.0.as_ptr() as u64, false) {
                    Ok(g) => g,
                    // The backend died after it accepted the ring: news of
                    // its next instance is coming, and following it grants
                    // every page again.
                    Err(Error::DeadDomain) => NO_GRANT,
                    Err(e) => return Err(e),
                };
            }
            slots.push(Slot {
                pages: data,
                grefs,
                busy: None,
            });
        }
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
            slots,
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

    /// Requests sent and not yet answered (for replay after a backend restart).
    pub fn in_flight(&self) -> &[BlockRequest] {
        &self.in_flight
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
        self.transfer(BlockOp::Read, sector, len, |_, _| {}, drain)
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
        self.transfer(BlockOp::Write, sector, len, fill, |_, _| {})
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
        self.send(r)?;
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

    fn send(&mut self, r: BlockRequest) -> core::result::Result<(), DiskError> {
        self.queue(r)?;
        self.publish();
        Ok(())
    }

    /// Puts a request on the ring without publishing it (see [`Disk::publish`]).
    fn queue(&mut self, r: BlockRequest) -> core::result::Result<(), DiskError> {
        if self.detached {
            return Err(DiskError::Detached);
        }
        if self.gone {
            return Err(DiskError::Gone);
        }
        self.front.push(&r).map_err(|_| DiskError::Ring)?;
        let _ = self.in_flight.push(r);
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
                    self.in_flight.retain(|r| r.id != rsp.id);
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

    /// If the control domain said our backend was restarted: grant the ring
    /// and data pages to the new one, initialise the ring at a new epoch,
    /// announce it, and send again every request that had no answer (with
    /// its pages' new grants). Nothing is lost or failed back to the caller;
    /// a write the old backend had carried out is carried out again, with
    /// the same data.
    fn follow_restart(&mut self) -> core::result::Result<(), DiskError> {
        let device = self.device;
        let restarted = |m: &ipc_abi::proto::control::ControlMessage| {
            m.check() == Some(ipc_abi::proto::control::ControlOp::PeerRestarted)
                && m.kind == DeviceKind::Block as u32
                && m.index == device
        };
        let gone = |m: &ipc_abi::proto::control::ControlMessage| {
            m.check() == Some(ipc_abi::proto::control::ControlOp::PeerGone)
                && m.kind == DeviceKind::Block as u32
                && m.index == device
        };
        if self.detached {
            return Err(DiskError::Detached);
        }
        if self.gone {
            return Err(DiskError::Gone);
        }
        // Nothing came since the last look, and no restore: nothing to follow.
        if !self.news.anything_new() && self.epoch == crate::epoch::get() {
            return Ok(());
        }
        if crate::hotplug::is_detached(DeviceKind::Block, device) {
            // Its backend stopped serving the ring: nothing in flight will
            // be answered, and nothing more is sent.
            self.detached = true;
            self.in_flight.clear();
            let _ = hc::event_close(self.port);
            // Every grant ends (the backend let go of the ring at the
            // detach); pages a backend still maps are never freed.
            let mut held = false;
            let grants = self.slots.iter().flat_map(|s| s.grefs.iter());
            for &g in grants.chain(self.ring_grefs.iter()) {
                if g != NO_GRANT {
                    held |= hc::grant_end(g).is_err();
                }
            }
            if held {
                for slot in self.slots.drain(..) {
                    core::mem::forget(slot.pages);
                }
            }
            crate::console::note(format_args!("block: disk {} was detached", device));
            return Err(DiskError::Detached);
        }
        let (news, restored) = crate::control::backend_news(DeviceKind::Block, device, self.epoch);
        self.epoch = crate::epoch::get();
        let Some(mut news) = news else {
            return Ok(());
        };
        if gone(&news) {
            self.gone = true;
            return Err(DiskError::Gone);
        }
        if !restored {
            let _ = hc::event_close(self.port);
            // The dead backend's mappings are gone, so every grant can end.
            for &g in self.ring_grefs.iter() {
                let _ = hc::grant_end(g);
            }
        }
        // Each data page's grant as requests in flight name it, and as it is now.
        let mut renamed: heapless::Vec<(u32, u32), { IN_FLIGHT * MAX_SEGMENTS }> = self
            .slots
            .iter()
            .flat_map(|slot| slot.grefs.iter().map(|&g| (g, g)))
            .collect();
        let mut forget = restored;
        let (backend, grefs, port) = loop {
            let backend = news.peer;
            let foreign = core::mem::take(&mut forget);
            // `renamed` lists the pages in this loop's order. A page whose
            // grant failed holds NO_GRANT, so that a later turn does not end
            // a reference number handed out again in between.
            let pages = self
                .slots
                .iter_mut()
                .flat_map(|slot| slot.grefs.iter_mut().zip(slot.pages.iter()));
            let granted = pages
                .zip(renamed.iter_mut())
                .try_for_each(|((g, page), r)| {
                    let old = core::mem::replace(g, NO_GRANT);
                    r.1 = NO_GRANT;
                    if !foreign && old != NO_GRANT {
                        let _ = hc::grant_end(old);
                    }
                    *g = hc::grant_create(backend, page.0.as_ptr() as u64, false)?;
                    r.1 = *g;
                    Ok(())
                });
            self.front = Front::init(self.ring.shared(), 1).map_err(|_| DiskError::Ring)?;
            let announced = granted.and_then(|()| {
                crate::ring::announce(
                    &[self.ring],
                    backend,
                    DeviceKind::Block,
                    self.device,
                    BLOCK_VERSION,
                )
            });
            match announced {
                Ok((grefs, port)) => break (backend, grefs, port),
                // That instance died too before it accepted (or before it
                // was granted our pages): follow the next.
                Err(Error::DeadDomain) => {
                    news = crate::control::wait_news(|m| restarted(m) || gone(m));
                    if gone(&news) {
                        self.gone = true;
                        return Err(DiskError::Gone);
                    }
                }
                Err(_) => return Err(DiskError::Ring),
            }
        };
        self.ring_grefs = grefs;
        self.port = port;
        self.backend = backend;
        self.restarts += 1;
        self.gaps.restarted();
        crate::console::note(format_args!(
            "block: disk {} reconnected to domain {} (restart {}), {} requests sent again",
            self.device,
            backend,
            self.restarts,
            self.in_flight.len()
        ));
        let replay = core::mem::take(&mut self.in_flight);
        for mut r in replay {
            for s in r.segments[..usize::from(r.segments_used).min(MAX_SEGMENTS)].iter_mut() {
                if let Some(&(_, new)) = renamed.iter().find(|(old, _)| *old == s.gref) {
                    s.gref = new;
                }
            }
            self.queue(r)?;
        }
        self.publish();
        Ok(())
    }

    /// Moves `len` bytes from `sector` on in requests of up to
    /// [`REQUEST_BYTES`], [`IN_FLIGHT`] at a time. `fill(offset, page)` fills
    /// a page before a write; `drain(offset, bytes)` takes a read's bytes.
    fn transfer(
        &mut self,
        op: BlockOp,
        sector: u64,
        len: usize,
        mut fill: impl FnMut(usize, &mut [u8]),
        mut drain: impl FnMut(usize, &[u8]),
    ) -> core::result::Result<(), DiskError> {
        if self.detached {
            return Err(DiskError::Detached);
        }
        let mut next = 0usize;
        let mut failed = None;
        // (request id, byte offset, bytes) of each slot in use.
        let mut pending: heapless::Vec<(u64, usize, usize), IN_FLIGHT> = heapless::Vec::new();
        loop {
            while next < len && failed.is_none() {
                let Some(slot) = self.slots.iter().position(|s| s.busy.is_none()) else {
                    break;
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
                        gref: self.slots[slot].grefs[i],
                        first_sector: 0,
                        last_sector: (in_page as u64 / SECTOR_SIZE) as u8 - 1,
                        _reserved: 0,
                    };
                    if op == BlockOp::Write {
                        fill(next + i * PAGE, &mut self.slots[slot].pages[i].0[..in_page]);
                    }
                }
                debug_assert!(r.segments[..used]
                    .iter()
                    .all(|s| s.last_sector < SECTORS_PER_PAGE));
                self.slots[slot].busy = Some(r.id);
                self.queue(r)?;
                let _ = pending.push((r.id, next, bytes));
                next += bytes;
            }
            // Publish many, notify once: the backend sees them as one batch.
            self.publish();
            if pending.is_empty() {
                return failed.map_or(Ok(()), Err);
            }
            let rsp = self.take_answer()?.ok_or(DiskError::Ring)?;
            let Some(p) = pending.iter().position(|&(id, _, _)| id == rsp.id) else {
                continue;
            };
            let (_, offset, bytes) = pending.swap_remove(p);
            let slot = self
                .slots
                .iter()
                .position(|s| s.busy == Some(rsp.id))
                .ok_or(DiskError::Ring)?;
            self.slots[slot].busy = None;
            if rsp.status != 0 {
                failed = Some(DiskError::Status(rsp.status));
                continue;
            }
            if op == BlockOp::Read {
                // The backend's copies into our pages happened before its answer.
                fence(Ordering::Acquire);
                for i in 0..bytes.div_ceil(PAGE) {
                    let in_page = (bytes - i * PAGE).min(PAGE);
                    drain(offset + i * PAGE, &self.slots[slot].pages[i].0[..in_page]);
                }
            }
        }
    }
}
