//! Serving guests' block rings.
//!
//! Owns: accepting a block `Connect` from the control domain (which says
//! which virtual disk the frontend may use and whether read-only), mapping
//! the frontend's ring, and answering its requests: every request is copied
//! out of the ring once and checked (operation, segments, bounds of its
//! virtual disk, read-only), its data is copied between the frontend's
//! granted pages and a DMA buffer, and the device does the I/O. A write is
//! answered once the device completed it; a flush once the device flushed.
//! Rings are served round-robin, [`BATCH`] requests at a time, so a busy
//! guest cannot starve the others; a frontend that breaks its ring is
//! disconnected and the rest carry on.

extern crate alloc;
use crate::vdisk::VDisk;
use alloc::vec::Vec;
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::block::{
    BlockConnect, BlockOp, BlockRequest, BlockResponse, Features, SECTOR_SIZE,
};
use domain_runtime::ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind, Status};
use domain_runtime::ring::MappedBack;
use domain_runtime::{control, println, DomainId};
use virtio_drivers::transport::Transport;
use zerocopy::FromZeros;

/// Requests taken from one ring before the next ring's turn.
const BATCH: usize = 8;
/// Frontends served at once.
const MAX_CLIENTS: usize = 64;
/// Bytes of the DMA buffer: a whole batch of five-page requests, merged.
pub const BUFFER_BYTES: usize = BATCH * 5 * 4096;

/// How data moves between a frontend's granted pages and the DMA buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantMode {
    /// A `GrantCopy` hypercall per segment.
    Copy,
    /// Each granted page mapped once (frontends reuse their pages), then copied here.
    Map,
}

/// Which way a request's data goes.
#[derive(Clone, Copy)]
enum Direction {
    FromGuest,
    ToGuest,
}

/// Granted pages one frontend may have mapped at once (the rest are copied).
const MAPPED_PER_CLIENT: usize = 24;

struct Client {
    dom: DomainId,
    port: u16,
    ring: MappedBack<BlockRequest, BlockResponse>,
    /// Its data pages mapped so far (`GrantMode::Map`).
    maps: heapless::Vec<(u32, Mapping), MAPPED_PER_CLIENT>,
    /// Index into the virtual disks.
    vdisk: usize,
    read_only: bool,
}

/// The backend: the device, its virtual disks, and every connected ring.
pub struct Backend<T: Transport> {
    blk: crate::device::Device<T>,
    disks: heapless::Vec<Option<VDisk>, { crate::vdisk::MAX_VDISKS }>,
    clients: Vec<Client>,
    buffer: &'static mut [u8],
    mode: GrantMode,
}

impl<T: Transport> Backend<T> {
    pub fn new(
        blk: crate::device::Device<T>,
        disks: heapless::Vec<Option<VDisk>, { crate::vdisk::MAX_VDISKS }>,
        buffer: &'static mut [u8],
        mode: GrantMode,
    ) -> Self {
        Backend {
            blk,
            disks,
            clients: Vec::new(),
            buffer,
            mode,
        }
    }

    /// The lowest grant-window slot no ring or mapped page uses (the last is the control ring's).
    fn free_slot(&self, pages: u64) -> Option<u64> {
        let used = |s: u64| {
            self.clients
                .iter()
                .any(|c| c.ring.slots().contains(&s) || c.maps.iter().any(|(_, m)| m.slot() == s))
        };
        (0..control::CONTROL_SLOT.saturating_sub(pages)).find(|&s| (s..s + pages).all(|x| !used(x)))
    }

    /// Serves for ever.
    pub fn run(&mut self) -> ! {
        if control::connected() && control::listen().is_err() {
            println!("drvdom-blk: cannot listen on the control ring");
        }
        loop {
            while let Ok(Some(msg)) = control::poll_news() {
                self.on_control(msg);
            }
            let more = self.serve_all();
            if !more {
                hc::block();
            }
            domain_runtime::events::take_all(|_| {});
        }
    }

    fn on_control(&mut self, msg: ControlMessage) {
        match msg.check() {
            Some(ControlOp::Connect) if msg.kind == DeviceKind::Block as u32 => {
                let grant = BlockConnect::decode(msg.index);
                match self.connect(&msg, grant) {
                    Ok(()) => {
                        println!(
                            "drvdom-blk: domain {} has virtual disk {} as device {}{}",
                            msg.peer,
                            self.disks[grant.vdisk as usize]
                                .as_ref()
                                .map_or("?", |d| d.name.as_str()),
                            grant.device,
                            if grant.read_only { ", read-only" } else { "" }
                        );
                        let _ = control::confirm_connect(&msg);
                    }
                    Err(why) => println!("drvdom-blk: cannot serve domain {}: {}", msg.peer, why),
                }
            }
            Some(ControlOp::Disconnect) if msg.kind == DeviceKind::Block as u32 => {
                if let Some(i) = self.clients.iter().position(|c| c.dom == msg.peer) {
                    let c = self.clients.remove(i);
                    release(c);
                    println!("drvdom-blk: domain {} disconnected its disk", msg.peer);
                }
            }
            _ => {}
        }
    }

    fn connect(&mut self, msg: &ControlMessage, grant: BlockConnect) -> Result<(), &'static str> {
        if self.clients.len() >= MAX_CLIENTS {
            return Err("too many disks served");
        }
        if !matches!(self.disks.get(grant.vdisk as usize), Some(Some(_))) {
            return Err("no such virtual disk");
        }
        if msg.pages == 0 || msg.pages > 2 {
            return Err("block rings are one or two pages");
        }
        let pages = msg.pages as u64;
        // The lowest slot no ring and no mapped data page uses.
        let slot = self.free_slot(pages).ok_or("no free window slot")?;
        let ring =
            MappedBack::map(msg.peer, &msg.grefs[..msg.pages as usize], slot).map_err(|e| {
                println!(
                    "drvdom-blk: mapping domain {}'s ring at slot {}: {}",
                    msg.peer, slot, e
                );
                "cannot map the ring, or it is not initialised"
            })?;
        let port = hc::event_bind_interdomain(msg.peer, msg.port as u16)
            .map_err(|_| "cannot bind the port")?;
        self.clients.push(Client {
            dom: msg.peer,
            port,
            ring,
            maps: heapless::Vec::new(),
            vdisk: grant.vdisk as usize,
            read_only: grant.read_only,
        });
        Ok(())
    }

    /// One round-robin turn; whether any ring still has requests.
    fn serve_all(&mut self) -> bool {
        let mut more = false;
        let mut broken: heapless::Vec<usize, MAX_CLIENTS> = heapless::Vec::new();
        for i in 0..self.clients.len() {
            match self.serve(i) {
                Ok(left) => more |= left,
                Err(()) => {
                    println!(
                        "drvdom-blk: domain {} broke its block ring; disconnected",
                        self.clients[i].dom
                    );
                    let _ = broken.push(i);
                }
            }
        }
        for i in broken.into_iter().rev() {
            let c = self.clients.remove(i);
            release(c);
        }
        more
    }

    /// Serves at most [`BATCH`] requests of ring `i`; whether requests are left.
    fn serve(&mut self, i: usize) -> Result<bool, ()> {
        let mut served = 0;
        loop {
            let mut batch: heapless::Vec<BlockRequest, BATCH> = heapless::Vec::new();
            while served < BATCH {
                let Some(req) = self.clients[i].ring.pop().map_err(|_| ())? else {
                    break;
                };
                served += 1;
                let _ = batch.push(req);
            }
            for rsp in self.carry_out_batch(i, &batch) {
                self.clients[i].ring.push(&rsp).map_err(|_| ())?;
            }
            if self.clients[i].ring.publish() {
                let _ = hc::event_send(self.clients[i].port);
            }
            if served >= BATCH {
                return Ok(true);
            }
            if !self.clients[i].ring.final_check().map_err(|_| ())? {
                return Ok(false);
            }
        }
    }

    /// Carries out a batch in order. Reads (or writes) that follow each other
    /// on the device become one device request, so a guest's 64 KiB spread
    /// over several ring requests costs the device one operation.
    fn carry_out_batch(
        &mut self,
        i: usize,
        batch: &[BlockRequest],
    ) -> heapless::Vec<BlockResponse, BATCH> {
        let mut out: heapless::Vec<BlockResponse, BATCH> = heapless::Vec::new();
        let mut group: heapless::Vec<(BlockRequest, u64, usize), BATCH> = heapless::Vec::new();
        for req in batch {
            let mut rsp = BlockResponse::new_zeroed();
            rsp.id = req.id;
            rsp.op = req.op;
            match self.plan(i, req) {
                Ok(Some((op, at, bytes))) => {
                    let joins = group.last().is_some_and(|(last, last_at, last_bytes)| {
                        last.op == op as u8 && last_at + (*last_bytes as u64) / SECTOR_SIZE == at
                    });
                    let used: usize = group.iter().map(|g| g.2).sum();
                    if !joins || used + bytes > self.buffer.len() {
                        self.run_group(i, &group, &mut out);
                        group.clear();
                    }
                    let _ = group.push((*req, at, bytes));
                }
                Ok(None) => {
                    // Info, flush, discard: after every earlier request is done.
                    self.run_group(i, &group, &mut out);
                    group.clear();
                    rsp.status = match self.carry_out(i, req, &mut rsp) {
                        Ok(()) => 0,
                        Err(s) => s as u32,
                    };
                    let _ = out.push(rsp);
                }
                Err(status) => {
                    self.run_group(i, &group, &mut out);
                    group.clear();
                    rsp.status = status as u32;
                    let _ = out.push(rsp);
                }
            }
        }
        self.run_group(i, &group, &mut out);
        out
    }

    /// A read or write checked against its virtual disk: `(op, device sector,
    /// bytes)`; None for the other operations; the status if refused.
    fn plan(&self, i: usize, req: &BlockRequest) -> Result<Option<(BlockOp, u64, usize)>, Status> {
        let (op, sectors) = req.check().map_err(|_| Status::Invalid)?;
        if !matches!(op, BlockOp::Read | BlockOp::Write) {
            return Ok(None);
        }
        let c = &self.clients[i];
        if op == BlockOp::Write && c.read_only {
            return Err(Status::Denied);
        }
        let disk = self.disks[c.vdisk].as_ref().ok_or(Status::NoDevice)?;
        let at = disk.locate(req.sector, sectors).ok_or(Status::Denied)?;
        Ok(Some((op, at, (sectors * SECTOR_SIZE) as usize)))
    }

    /// One device request for a run of adjacent reads or writes; answers each.
    fn run_group(
        &mut self,
        i: usize,
        group: &[(BlockRequest, u64, usize)],
        out: &mut heapless::Vec<BlockResponse, BATCH>,
    ) {
        let Some(&(first, at, _)) = group.first() else {
            return;
        };
        let mut statuses: heapless::Vec<u32, BATCH> = heapless::Vec::new();
        let total: usize = group.iter().map(|g| g.2).sum();
        if first.op == BlockOp::Write as u8 {
            // Gather every request's pages; one that names a bad grant fails alone.
            let mut off = 0;
            let mut good = 0;
            for (req, _, bytes) in group {
                let ok = self.gather_from_guest(i, req, off, *bytes);
                let _ = statuses.push(if ok { 0 } else { Status::Invalid as u32 });
                good += usize::from(ok);
                off += bytes;
            }
            if good == group.len() {
                if self.blk.write(at, &self.buffer[..total]).is_err() {
                    statuses
                        .iter_mut()
                        .for_each(|s| *s = Status::IoError as u32);
                }
            } else {
                // Some pages could not be read: write the good ones one by one.
                let mut off = 0;
                for ((_, req_at, bytes), s) in group.iter().zip(statuses.iter_mut()) {
                    if *s == 0
                        && self
                            .blk
                            .write(*req_at, &self.buffer[off..off + bytes])
                            .is_err()
                    {
                        *s = Status::IoError as u32;
                    }
                    off += bytes;
                }
            }
        } else {
            let read = self.blk.read(at, &mut self.buffer[..total]);
            let mut off = 0;
            for (req, _, bytes) in group {
                let status = if read.is_err() {
                    Status::IoError as u32
                } else if self.scatter_to_guest(i, req, off, *bytes) {
                    0
                } else {
                    Status::Invalid as u32
                };
                let _ = statuses.push(status);
                off += bytes;
            }
        }
        for ((req, _, _), status) in group.iter().zip(statuses) {
            let mut rsp = BlockResponse::new_zeroed();
            rsp.id = req.id;
            rsp.op = req.op;
            rsp.status = status;
            let _ = out.push(rsp);
        }
    }

    /// The mapping of `gref` for client `i`, made on first use; None when
    /// it cannot be mapped (then the data is copied instead).
    fn mapping(&mut self, i: usize, gref: u32) -> Option<usize> {
        if let Some(at) = self.clients[i].maps.iter().position(|(g, _)| *g == gref) {
            return Some(at);
        }
        if self.clients[i].maps.is_full() {
            return None;
        }
        let slot = self.free_slot(1)?;
        // Writable only: a read-only grant is copied (and refused for reads),
        // never mapped where writing it would fault.
        let m = Mapping::map_writable(self.clients[i].dom, gref, slot).ok()?;
        self.clients[i].maps.push((gref, m)).ok()?;
        Some(self.clients[i].maps.len() - 1)
    }

    /// Gathers a write's pages into the buffer at `off`; false if a grant is bad.
    fn gather_from_guest(
        &mut self,
        i: usize,
        req: &BlockRequest,
        off: usize,
        bytes: usize,
    ) -> bool {
        self.move_data(i, req, off, bytes, Direction::FromGuest)
    }

    /// Scatters a read's bytes at `off` into its pages; false if a grant is bad.
    fn scatter_to_guest(&mut self, i: usize, req: &BlockRequest, off: usize, bytes: usize) -> bool {
        self.move_data(i, req, off, bytes, Direction::ToGuest)
    }

    /// Moves a request's segments between the guest's pages (mapped, or by
    /// `GrantCopy`) and the buffer at `off`.
    fn move_data(
        &mut self,
        i: usize,
        req: &BlockRequest,
        off: usize,
        bytes: usize,
        way: Direction,
    ) -> bool {
        let dom = self.clients[i].dom;
        let mut at = off;
        for s in &req.segments[..req.segments_used as usize] {
            let (first, len) = segment_range(s);
            let mapped = if self.mode == GrantMode::Map {
                self.mapping(i, s.gref)
            } else {
                None
            };
            let buf = &mut self.buffer[at..at + len];
            let ok = match (mapped, way) {
                (Some(m), Direction::FromGuest) => {
                    self.clients[i].maps[m].1.read_bytes(first, buf);
                    true
                }
                (Some(m), Direction::ToGuest) => {
                    self.clients[i].maps[m].1.write_bytes(first, buf);
                    true
                }
                (None, Direction::FromGuest) => {
                    hc::grant_copy_from(dom, s.gref, first as u64, buf).is_ok()
                }
                (None, Direction::ToGuest) => {
                    hc::grant_copy_to(dom, s.gref, first as u64, buf).is_ok()
                }
            };
            if !ok {
                return false;
            }
            at += len;
        }
        at - off == bytes
    }

    /// Info, flush and discard.
    fn carry_out(
        &mut self,
        i: usize,
        req: &BlockRequest,
        rsp: &mut BlockResponse,
    ) -> Result<(), Status> {
        let (op, _) = req.check().map_err(|_| Status::Invalid)?;
        let c = &self.clients[i];
        let read_only = c.read_only;
        let disk = self.disks[c.vdisk].as_ref().ok_or(Status::NoDevice)?;
        match op {
            BlockOp::Info => {
                rsp.sectors = disk.sectors;
                rsp.sector_size = SECTOR_SIZE as u32;
                let mut f = Features::FLUSH;
                if read_only {
                    f |= Features::READ_ONLY;
                }
                rsp.features = f.bits();
                Ok(())
            }
            BlockOp::Flush => self.blk.flush().map_err(|_| Status::IoError),
            // virtio-drivers sends no discard commands, so none is offered.
            BlockOp::Discard => Err(Status::Unsupported),
            BlockOp::Read | BlockOp::Write => Err(Status::Invalid),
        }
    }
}

/// The byte offset in its page and the length of a (checked) segment.
fn segment_range(s: &domain_runtime::ipc_abi::proto::block::Segment) -> (usize, usize) {
    let first = usize::from(s.first_sector) * SECTOR_SIZE as usize;
    let len = (usize::from(s.last_sector - s.first_sector) + 1) * SECTOR_SIZE as usize;
    (first, len)
}

/// A client goes: its mapped pages are unmapped, its port closed (its ring
/// is unmapped when `MappedBack` drops).
fn release(c: Client) {
    for (_, m) in c.maps {
        let _ = m.unmap();
    }
    let _ = hc::event_close(c.port);
}
