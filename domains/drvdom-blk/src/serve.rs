//! Serving guests' block rings.
//!
//! Owns: accepting a block `Connect` from the control domain (which says
//! which virtual disk the frontend may use and whether read-only), mapping
//! the frontend's ring, and answering its requests.
//!
//! Each round takes up to [`BATCH`] requests from every ring in turn
//! (round-robin, so a busy guest cannot starve the others), checks each one
//! copied out of the ring once (operation, segments, bounds of its virtual
//! disk, read-only), and gives the device a request that names the
//! frontend's granted pages themselves: the device moves the data by DMA,
//! with no copy. Pages that cannot be mapped (granted read-only, or beyond
//! [`crate::maps::MAPPED_PER_CLIENT`]), and every page with `grant=copy`, go through a
//! bounce buffer by `GrantCopy`. Every request of a round is in flight at
//! once; the round ends when the device finished them all, and only then
//! are they answered. A write is answered once the device completed it; a
//! flush waits for every request before it, then for the device's flush.
//! Between rounds nothing is in flight, so a disconnect never races DMA. A
//! frontend that breaks its ring is disconnected and the rest carry on.

extern crate alloc;
use crate::disk::{Command, Disk, Outcome};
use crate::maps::ClientMaps;
use crate::vdisk::VDisk;
use alloc::vec::Vec;
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::block::{
    BlockConnect, BlockOp, BlockRequest, BlockResponse, Features, Segment, BLOCK_VERSION,
    MAX_SEGMENTS, SECTOR_SIZE,
};
use domain_runtime::ipc_abi::proto::control::{
    ControlMessage, ControlOp, DeviceKind, Status, ALL_DEVICES,
};
use domain_runtime::ring::MappedBack;
use domain_runtime::{control, println, DomainId};
use driver_kit::virtqueue::Buffer;
use virtio_drivers::transport::Transport;
use zerocopy::FromZeros;

/// Requests taken from one ring before the next ring's turn.
const BATCH: usize = 8;
/// Frontends served at once.
const MAX_CLIENTS: usize = 64;
/// Bytes of the bounce buffer (a full batch of five-page requests).
pub const BOUNCE_BYTES: usize = BATCH * MAX_SEGMENTS * 4096;

/// How data moves between a frontend's granted pages and the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantMode {
    /// A `GrantCopy` hypercall per segment, through the bounce buffer.
    Copy,
    /// Each granted page mapped once (frontends reuse their pages); the
    /// device reaches it by DMA.
    Map,
}

struct Client {
    dom: DomainId,
    port: u16,
    ring: MappedBack<BlockRequest, BlockResponse>,
    /// Its data pages mapped so far (`GrantMode::Map`), at most
    /// [`crate::maps::MAPPED_PER_CLIENT`]. The window holds 255 pages, shared with every
    /// ring: when a ring finds no room, every mapping goes first
    /// ([`Backend::release_all_maps`]).
    maps: ClientMaps,
    /// Index into the virtual disks.
    vdisk: usize,
    /// The frontend's device index (xvda = 0): one connection each.
    device: u8,
    read_only: bool,
    /// It broke its ring: disconnected at the end of the round.
    broken: bool,
    /// It had a whole batch this round (so likely more waiting).
    busy: bool,
}

/// A read segment that went through the bounce buffer, copied to the
/// frontend once the device is done.
struct CopyBack {
    gref: u32,
    page_offset: usize,
    at: usize,
    len: usize,
}

/// A request of this round: its answer so far and, while the device has
/// it, the device's tag.
struct Pending {
    client: usize,
    rsp: BlockResponse,
    tag: Option<u16>,
    copy_back: heapless::Vec<CopyBack, MAX_SEGMENTS>,
}

/// The backend: the device, its virtual disks, and every connected ring.
pub struct Backend<T: Transport> {
    disk: Disk<T>,
    disks: heapless::Vec<Option<VDisk>, { crate::vdisk::MAX_VDISKS }>,
    clients: Vec<Client>,
    bounce: &'static mut [u8],
    /// Bytes of the bounce buffer this round has used.
    bounce_used: usize,
    mode: GrantMode,
    pending: Vec<Pending>,
    /// Requests taken since start, and when to crash (`crash_after=N`,
    /// `crash_every=N`: `domain_runtime::fault`).
    taken: u64,
    crash_after: Option<u64>,
    hang_after: Option<u64>,
    /// Test only (`dma_test=readonly`): the first page a client names is
    /// mapped read-only and the device told to write into it.
    pub readonly_test: bool,
    /// Test only (`dma_test=stale`): the first page mapped is unmapped
    /// again and the device told to write into its old device address.
    pub stale_test: bool,
}

impl<T: Transport> Backend<T> {
    pub fn new(
        disk: Disk<T>,
        disks: heapless::Vec<Option<VDisk>, { crate::vdisk::MAX_VDISKS }>,
        bounce: &'static mut [u8],
        mode: GrantMode,
    ) -> Self {
        Backend {
            disk,
            disks,
            clients: Vec::new(),
            bounce,
            bounce_used: 0,
            mode,
            pending: Vec::new(),
            taken: 0,
            crash_after: domain_runtime::fault::crash_point(),
            hang_after: domain_runtime::fault::hang_point(),
            readonly_test: false,
            stale_test: false,
        }
    }

    /// The lowest grant-window slot no ring or mapped page uses (the last is the control ring's).
    fn free_slot(&self, pages: u64) -> Option<u64> {
        let used = |s: u64| {
            self.clients
                .iter()
                .any(|c| c.ring.slots().contains(&s) || c.maps.uses_slot(s))
        };
        (0..control::CONTROL_SLOT.saturating_sub(pages)).find(|&s| (s..s + pages).all(|x| !used(x)))
    }

    /// Serves for ever.
    pub fn run(&mut self) -> ! {
        if control::connected() && control::listen().is_err() {
            println!("drvdom-blk: cannot listen on the control ring");
        }
        loop {
            while let Ok(Some(msg)) = control::poll() {
                self.on_control(msg);
            }
            let due = control::heartbeat_tick();
            let more = self.round();
            if !more {
                if let Some(at) = due {
                    let _ = hc::set_timer(at);
                }
                hc::block();
            }
            domain_runtime::events::take_all(|_| {});
        }
    }

    fn on_control(&mut self, msg: ControlMessage) {
        match msg.check() {
            Some(ControlOp::Connect) if msg.kind == DeviceKind::Block as u32 => {
                if !domain_runtime::backend::speaks(&msg, BLOCK_VERSION, "drvdom-blk") {
                    return;
                }
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
                    Err(why) => {
                        println!("drvdom-blk: cannot serve domain {}: {}", msg.peer, why);
                        let _ = control::refuse_connect(&msg, Status::Denied);
                    }
                }
            }
            Some(ControlOp::Disconnect) if msg.kind == DeviceKind::Block as u32 => {
                // The disk the message names, or all of that domain's.
                let named = |c: &Client| {
                    c.dom == msg.peer
                        && (msg.index == ALL_DEVICES || u32::from(c.device) == msg.index)
                };
                while let Some(i) = self.clients.iter().position(named) {
                    let c = self.clients.remove(i);
                    release(c);
                    println!(
                        "drvdom-blk: domain {}'s disk {} disconnected",
                        msg.peer, msg.index
                    );
                }
            }
            _ => {}
        }
    }

    fn connect(&mut self, msg: &ControlMessage, grant: BlockConnect) -> Result<(), &'static str> {
        if self.clients.len() >= MAX_CLIENTS {
            return Err("too many disks served");
        }
        // A frontend announcing again without disconnecting gets nothing
        // more (or it could fill every client slot).
        if self
            .clients
            .iter()
            .any(|c| c.dom == msg.peer && c.device == grant.device)
        {
            return Err("that disk is connected already");
        }
        if !matches!(self.disks.get(grant.vdisk as usize), Some(Some(_))) {
            return Err("no such virtual disk");
        }
        if msg.pages == 0 || msg.pages > 2 {
            return Err("block rings are one or two pages");
        }
        let pages = msg.pages as u64;
        // The lowest slot no ring and no mapped data page uses; the
        // mappings make room for rings (they are made again as used).
        let slot = match self.free_slot(pages) {
            Some(slot) => slot,
            None => {
                self.release_all_maps();
                println!(
                    "drvdom-blk: the window was full: every mapped data page let go for domain {}'s ring",
                    msg.peer
                );
                self.free_slot(pages).ok_or("no free window slot")?
            }
        };
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
            maps: ClientMaps::new(),
            vdisk: grant.vdisk as usize,
            device: grant.device,
            read_only: grant.read_only,
            broken: false,
            busy: false,
        });
        Ok(())
    }

    /// One round: up to [`BATCH`] requests from each ring, carried out
    /// together and answered; whether any ring still has requests.
    fn round(&mut self) -> bool {
        for i in 0..self.clients.len() {
            let mut taken = 0;
            while taken < BATCH {
                match self.clients[i].ring.pop() {
                    Ok(Some(req)) => {
                        taken += 1;
                        self.start(i, &req);
                    }
                    Ok(None) => break,
                    Err(_) => {
                        self.clients[i].broken = true;
                        break;
                    }
                }
            }
            self.clients[i].busy = taken == BATCH;
        }
        self.disk.kick();
        self.settle();
        self.bounce_used = 0;
        self.answer();
        let mut more = false;
        for c in self.clients.iter_mut().filter(|c| !c.broken) {
            match c.ring.final_check() {
                Ok(left) => more |= left || c.busy,
                Err(_) => c.broken = true,
            }
        }
        self.drop_broken();
        more
    }

    /// Takes on one request: answers it at once (refused, `Info`) or gives it to the device.
    fn start(&mut self, i: usize, req: &BlockRequest) {
        self.taken += 1;
        if self.crash_after == Some(self.taken) {
            // Fault injection, for restart tests.
            panic!("crashing at request {} as asked", self.taken);
        }
        if self.hang_after == Some(self.taken) {
            domain_runtime::fault::hang("drvdom-blk", self.taken);
        }
        let mut rsp = BlockResponse::new_zeroed();
        rsp.id = req.id;
        rsp.op = req.op;
        let mut p = Pending {
            client: i,
            rsp,
            tag: None,
            copy_back: heapless::Vec::new(),
        };
        if let Err(status) = self.begin(i, req, &mut p) {
            p.rsp.status = status as u32;
            p.tag = None;
        }
        self.pending.push(p);
    }

    /// Checks `req` and starts it; `Err` is the status it is refused with.
    fn begin(&mut self, i: usize, req: &BlockRequest, p: &mut Pending) -> Result<(), Status> {
        let (op, sectors) = req.check().map_err(|_| Status::Invalid)?;
        let c = &self.clients[i];
        let read_only = c.read_only;
        let disk = self.disks[c.vdisk].as_ref().ok_or(Status::NoDevice)?;
        if matches!(op, BlockOp::Write | BlockOp::Discard) && read_only {
            return Err(Status::Denied);
        }
        match op {
            BlockOp::Info => {
                p.rsp.sectors = disk.sectors;
                p.rsp.sector_size = SECTOR_SIZE as u32;
                let mut f = Features::FLUSH;
                if read_only {
                    f |= Features::READ_ONLY;
                } else if self.disk.discard_max() > 0 {
                    f |= Features::DISCARD;
                }
                p.rsp.features = f.bits();
                Ok(())
            }
            BlockOp::Flush => {
                // Everything taken before it completes first.
                self.disk.kick();
                self.settle();
                if self.disk.flushes() {
                    p.tag = Some(self.submit(Command::Flush, 0, &[])?);
                }
                Ok(())
            }
            BlockOp::Discard => {
                let at = disk.locate(req.sector, sectors).ok_or(Status::Denied)?;
                if sectors == 0 {
                    return Err(Status::Invalid);
                }
                self.discard(at, sectors)
            }
            BlockOp::Read | BlockOp::Write => {
                let at = disk.locate(req.sector, sectors).ok_or(Status::Denied)?;
                let bytes = (sectors * SECTOR_SIZE) as usize;
                if self.bounce_used + bytes > self.bounce.len() {
                    // Bounce space comes back once what uses it is done.
                    self.disk.kick();
                    self.settle();
                    self.bounce_used = 0;
                }
                let mut data: heapless::Vec<Buffer, MAX_SEGMENTS> = heapless::Vec::new();
                for s in &req.segments[..usize::from(req.segments_used)] {
                    let b = self.buffer_for(i, s, op == BlockOp::Read, p)?;
                    // Pieces that meet at the device are one descriptor
                    // (a buffer's pages often are: fewer for the device to walk).
                    match data.last_mut() {
                        Some(last) if last.phys + u64::from(last.len) == b.phys => {
                            last.len += b.len;
                        }
                        _ => {
                            let _ = data.push(b);
                        }
                    }
                }
                let cmd = if op == BlockOp::Read {
                    Command::Read
                } else {
                    Command::Write
                };
                p.tag = Some(self.submit(cmd, at, &data)?);
                Ok(())
            }
        }
    }

    /// Where the device finds one segment's bytes: the frontend's own page
    /// (mapped), or a piece of the bounce buffer (filled now for a write,
    /// copied back after a read).
    fn buffer_for(
        &mut self,
        i: usize,
        s: &Segment,
        read: bool,
        p: &mut Pending,
    ) -> Result<Buffer, Status> {
        let (page_offset, len) = segment_range(s);
        if self.mode == GrantMode::Map {
            if let Some(phys) = self.mapping(i, s.gref) {
                return Ok(Buffer {
                    phys: phys + page_offset as u64,
                    len: len as u32,
                    device_writes: read,
                });
            }
        }
        // `begin` made room for the whole request.
        let at = self.bounce_used;
        let piece = &mut self.bounce[at..at + len];
        if read {
            let _ = p.copy_back.push(CopyBack {
                gref: s.gref,
                page_offset,
                at,
                len,
            });
        } else {
            hc::grant_copy_from(self.clients[i].dom, s.gref, page_offset as u64, piece)
                .map_err(|_| Status::Invalid)?;
        }
        self.bounce_used += len;
        Ok(Buffer {
            phys: driver_kit::hal::phys_of(piece.as_ptr()),
            len: len as u32,
            device_writes: read,
        })
    }

    /// Gives a request to the device, making room by finishing what is in
    /// flight if the queue is full.
    fn submit(&mut self, cmd: Command, sector: u64, data: &[Buffer]) -> Result<u16, Status> {
        if let Some(tag) = self.disk.submit(cmd, sector, data) {
            return Ok(tag);
        }
        self.disk.kick();
        self.settle();
        self.disk.submit(cmd, sector, data).ok_or(Status::IoError)
    }

    /// Discards `sectors` from device sector `at`, in pieces the device
    /// accepts, waiting for each (discards are rare).
    fn discard(&mut self, mut at: u64, mut sectors: u64) -> Result<(), Status> {
        let max = u64::from(self.disk.discard_max());
        if max == 0 {
            return Err(Status::Unsupported);
        }
        self.disk.kick();
        self.settle();
        while sectors > 0 {
            let n = sectors.min(max);
            let tag = self.submit(Command::Discard { sectors: n as u32 }, at, &[])?;
            self.disk.kick();
            let outcome = self.wait_for(tag);
            status_of(outcome)?;
            at += n;
            sectors -= n;
        }
        Ok(())
    }

    /// Waits for the request tagged `tag` alone (nothing else in flight).
    fn wait_for(&mut self, tag: u16) -> Outcome {
        loop {
            match self.disk.finished() {
                Some((t, outcome)) if t == tag => return outcome,
                Some(_) => {}
                None => self.disk.wait(),
            }
        }
    }

    /// Waits until the device finished every request in flight; records
    /// each outcome and copies bounced reads to their frontends (the bounce
    /// space stays taken until the caller gives it back).
    fn settle(&mut self) {
        while self.pending.iter().any(|p| p.tag.is_some()) {
            let Some((tag, outcome)) = self.disk.finished() else {
                self.disk.wait();
                continue;
            };
            let Some(p) = self.pending.iter_mut().find(|p| p.tag == Some(tag)) else {
                continue;
            };
            p.tag = None;
            p.rsp.status = match status_of(outcome) {
                Ok(()) => 0,
                Err(s) => s as u32,
            };
        }
        for p in self.pending.iter_mut() {
            let dom = self.clients[p.client].dom;
            for cb in p.copy_back.drain(..) {
                let piece = &self.bounce[cb.at..cb.at + cb.len];
                let copied = hc::grant_copy_to(dom, cb.gref, cb.page_offset as u64, piece);
                if p.rsp.status == 0 && copied.is_err() {
                    p.rsp.status = Status::Invalid as u32;
                }
            }
        }
    }

    /// Answers every request of the round, in the order taken, and
    /// notifies each frontend that asked to hear.
    fn answer(&mut self) {
        for p in self.pending.drain(..) {
            let c = &mut self.clients[p.client];
            if !c.broken && c.ring.push(&p.rsp).is_err() {
                c.broken = true;
            }
        }
        for c in self.clients.iter_mut().filter(|c| !c.broken) {
            if c.ring.publish() {
                let _ = hc::event_send(c.port);
            }
        }
    }

    /// Disconnects every frontend that broke its ring (nothing is in flight).
    fn drop_broken(&mut self) {
        let mut i = 0;
        while i < self.clients.len() {
            if self.clients[i].broken {
                let c = self.clients.remove(i);
                println!(
                    "drvdom-blk: domain {} broke its block ring; disconnected",
                    c.dom
                );
                release(c);
            } else {
                i += 1;
            }
        }
    }

    /// Unmaps every client's data pages, to make room in the window for a
    /// ring. Only between rounds, when the device has nothing in flight.
    fn release_all_maps(&mut self) {
        for c in self.clients.iter_mut() {
            c.maps.unmap_all();
        }
    }

    /// The device address of `gref` for client `i`, mapped on first use;
    /// None when it cannot be mapped (then the data is copied instead).
    fn mapping(&mut self, i: usize, gref: u32) -> Option<u64> {
        if let Some(phys) = self.clients[i].maps.find(gref) {
            return Some(phys);
        }
        if self.clients[i].maps.is_full() {
            return None;
        }
        let slot = self.free_slot(1)?;
        if core::mem::take(&mut self.readonly_test) {
            self.readonly_attack(i, gref, slot);
        }
        // Writable only: a read-only grant is copied (and refused for reads),
        // never mapped where writing it would fault.
        let m = Mapping::map_writable(self.clients[i].dom, gref, slot).ok()?;
        let Ok(phys) = hc::dma_phys(m.address()) else {
            let _ = m.unmap();
            return None;
        };
        if core::mem::take(&mut self.stale_test) {
            // The first request of the first client: nothing else is in
            // flight, so waiting for this one alone loses no completion.
            let _ = m.unmap();
            println!("drvdom-blk: dma_test: the device reads sector 0 to {phys:#x}, unmapped");
            let outcome = self.disk.read_to_address(0, phys, SECTOR_SIZE as u32);
            println!("drvdom-blk: dma_test: {outcome:?}");
            return None;
        }
        if let Err(m) = self.clients[i].maps.insert(gref, m, phys) {
            let _ = m.unmap();
            return None;
        }
        Some(phys)
    }
}

impl<T: Transport> Backend<T> {
    /// `dma_test=readonly`: the device told to write into a page mapped
    /// read-only (the first request of the first client: nothing else is
    /// in flight); the request is then served as usual.
    fn readonly_attack(&mut self, i: usize, gref: u32, slot: u64) {
        let Ok(m) = Mapping::map(self.clients[i].dom, gref, slot) else {
            return;
        };
        match hc::dma_phys(m.address()) {
            Ok(at) => {
                println!("drvdom-blk: dma_test: the device reads sector 0 to {at:#x}, read-only");
                let outcome = self.disk.read_to_address(0, at, SECTOR_SIZE as u32);
                println!("drvdom-blk: dma_test: {outcome:?}");
            }
            Err(e) => println!("drvdom-blk: dma_test: no device address for the page: {e}"),
        }
        let _ = m.unmap();
    }
}

/// A device outcome as a block status.
fn status_of(outcome: Outcome) -> Result<(), Status> {
    match outcome {
        Outcome::Done => Ok(()),
        Outcome::Failed => Err(Status::IoError),
        Outcome::Unsupported => Err(Status::Unsupported),
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
fn release(mut c: Client) {
    c.maps.unmap_all();
    let _ = hc::event_close(c.port);
}
