//! Serving guests' network interfaces and switching frames.
//!
//! Owns: accepting a network `Connect` from the control domain (the
//! frontend's transmit and receive rings and the interface's MAC), and
//! moving frames: each round takes up to [`BATCH`] frames from every
//! interface's transmit ring in turn (round-robin resuming where the NIC's
//! free buffers ran out, with the rest of the interrupted turn, so one
//! guest cannot starve another) and up to [`UPLINK_BATCH`] from the NIC, asks the switch
//! where each goes, and puts it in the receive buffers the destination
//! posted (a frame for a guest with no buffer posted is dropped and
//! counted, as a NIC does when its ring is empty). While the NIC has no
//! free transmit buffer, transmit rings are left alone (back-pressure: the
//! guests' sends wait rather than frames being dropped). Every transmit request
//! is copied out of the ring once and checked (length, offset, grant)
//! before its frame is copied out of the guest's page by `GrantCopy`
//! (into a free NIC buffer, from which a frame for the wire is sent); a
//! frame from a MAC that is not the interface's is dropped and counted. A
//! frontend that breaks a ring is disconnected; the rest carry on.

extern crate alloc;
mod chain;
mod tx_maps;

use crate::switch::{Drop, Port, Switch, Verdict};
use crate::switched::Switched;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::control::{
    ControlMessage, ControlOp, DeviceKind, Status, ALL_DEVICES,
};
use domain_runtime::ipc_abi::proto::net::{
    frame_size_ok, max_frame_for_mtu, slots_for_frame, Mac, MacText, NetConnect, RxRequest,
    RxResponse, TxRequest, TxResponse, DEFAULT_MTU, MAX_FRAME_SLOTS, MAX_LOCAL_FRAME,
    NET_RING_PAGES, NET_VERSION, RX_MORE, RX_TAKES_BLANK_CSUM, RX_TCP_CSUM_BLANK, SLOT_BYTES,
    TX_TCP_CSUM_BLANK,
};
use domain_runtime::net::checksum;
use domain_runtime::ring::MappedBack;
use domain_runtime::{control, println, time, DomainId};
use driver_kit::nic::Nic;
pub use tx_maps::ask_write_test;
use tx_maps::{MapSlots, TxMaps};
use virtio_drivers::transport::pci::PciTransport;
use zerocopy::FromZeros;

/// Frames taken from one interface's transmit ring before the next one's turn.
const BATCH: usize = 16;
/// Frames taken from the NIC a round.
const UPLINK_BATCH: usize = 32;
/// Interfaces served at once.
const MAX_VIFS: usize = crate::switch::MAX_VIFS;

/// What happened to one interface's frames.
#[derive(Clone, Copy, Default, Debug)]
pub struct Counters {
    /// Frames it sent that the switch took.
    pub sent: u64,
    /// Frames put in its receive buffers.
    pub received: u64,
    /// Frames it sent from a MAC not its own.
    pub spoofed: u64,
    /// Frames for it dropped because it had no receive buffer posted.
    pub no_buffer: u64,
    /// Transmit requests refused (bad length, offset or grant, or a blank
    /// checksum said of a frame that is not TCP over IPv4).
    pub refused: u64,
    /// Frames it sent longer than their destination takes (the wire, or
    /// an interface of a smaller MTU).
    pub too_big: u64,
}

/// ` with MTU N` for an MTU other than the wire's, else nothing.
struct MtuText(u16);

impl core::fmt::Display for MtuText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        if self.0 != DEFAULT_MTU {
            write!(f, " with MTU {}", self.0)?;
        }
        Ok(())
    }
}

struct Vif {
    id: u16,
    dom: DomainId,
    vif: u8,
    port: u16,
    mac: Mac,
    tx: MappedBack<TxRequest, TxResponse>,
    rx: MappedBack<RxRequest, RxResponse>,
    counters: Counters,
    broken: bool,
    /// It had a whole batch to send this round (so likely more).
    busy: bool,
    /// Its transmit pages mapped here (`tx_maps`).
    tx_maps: TxMaps,
}

impl Vif {
    /// The next `slots` receive buffers it posted, taken off its ring;
    /// None, and the frame counted as dropped, if fewer are posted.
    fn take_buffers(&mut self, slots: usize) -> Option<heapless::Vec<RxRequest, MAX_FRAME_SLOTS>> {
        if self.broken {
            return None;
        }
        match self.rx.pending() {
            Ok(n) if n as usize >= slots => {}
            Ok(_) => {
                self.counters.no_buffer += 1;
                return None;
            }
            Err(_) => {
                self.broken = true;
                return None;
            }
        }
        let mut requests = heapless::Vec::new();
        for _ in 0..slots {
            match self.rx.pop() {
                // Counted as pending just above; a frame is at most
                // `MAX_FRAME_SLOTS` pages (`slots_for_frame`).
                Ok(Some(req)) if requests.push(req).is_ok() => {}
                _ => {
                    self.broken = true;
                    return None;
                }
            }
        }
        Some(requests)
    }

    /// Answers the buffers a frame of `len` bytes was `copied` into, a
    /// page each (a chain, `RX_MORE`, when more than one), its checksum
    /// `blank` or not.
    fn answer_buffers(&mut self, requests: &[RxRequest], len: usize, copied: bool, blank: bool) {
        for (slot, req) in requests.iter().enumerate() {
            let mut rsp = RxResponse::new_zeroed();
            rsp.id = req.id;
            if copied {
                rsp.len = (len.min((slot + 1) * SLOT_BYTES) - slot * SLOT_BYTES) as u16;
                rsp.flags = if blank { RX_TCP_CSUM_BLANK } else { 0 }
                    | if slot + 1 < requests.len() {
                        RX_MORE
                    } else {
                        0
                    };
            } else {
                rsp.status = Status::Invalid as u32;
            }
            if self.rx.push(&rsp).is_err() {
                self.broken = true;
            }
        }
        if copied {
            self.counters.received += 1;
        }
    }
}

/// Copies `bytes` into `dom`'s receive buffers `requests`, a page each, in
/// one hypercall.
fn copy_out(dom: DomainId, requests: &[RxRequest], bytes: &[u8]) -> bool {
    let mut batch = hc::CopyBatch::default();
    for (slot, req) in requests.iter().enumerate() {
        let part = &bytes[slot * SLOT_BYTES..bytes.len().min((slot + 1) * SLOT_BYTES)];
        batch.to_grant(dom, req.gref, 0, part);
    }
    batch.run().is_ok()
}

/// The interfaces and the switch between them and the NIC.
struct Fabric {
    switch: Switch,
    vifs: Vec<Vif>,
    /// Frames for the wire the NIC refused (room is checked before a
    /// frame is taken, so each is a failure of its queue).
    uplink_dropped: u64,
    /// Where a frame a guest sends is copied when it does not go straight
    /// into a NIC buffer: a page, not zeroed at each round.
    scratch: Box<[u8]>,
    /// Transmit requests taken since start, and when to crash (`crash_after=N`,
    /// `crash_every=N`: `domain_runtime::fault`).
    taken: u64,
    crash_after: Option<u64>,
    /// The grant-window slots holding transmit pages' mappings, which lie
    /// above every ring's (`ring_top`).
    map_slots: MapSlots,
    ring_top: u64,
}

/// The backend: the NIC (none with `ifname=dummy`), the switch, every interface.
pub struct Backend {
    nic: Option<Nic<PciTransport>>,
    fabric: Fabric,
    next_id: u16,
    /// The interface served first next round, and how many frames it may
    /// still take then: the one the NIC's free buffers ran out on, with
    /// what was left of its turn, else the one after the last served with
    /// a whole turn (round-robin that resumes where it stopped).
    first: usize,
    first_quota: usize,
}

impl Backend {
    pub fn new(nic: Option<Nic<PciTransport>>) -> Backend {
        Backend {
            nic,
            fabric: Fabric {
                switch: Switch::new(),
                vifs: Vec::new(),
                uplink_dropped: 0,
                scratch: vec![0; usize::from(MAX_LOCAL_FRAME)].into_boxed_slice(),
                taken: 0,
                crash_after: domain_runtime::fault::crash_point(),
                map_slots: MapSlots::default(),
                ring_top: 0,
            },
            next_id: 1,
            first: 0,
            first_quota: BATCH,
        }
    }

    /// Serves for ever.
    pub fn run(&mut self) -> ! {
        if control::connected() && control::listen().is_err() {
            println!("drvdom-net: cannot listen on the control ring");
        }
        loop {
            while let Ok(Some(msg)) = control::poll() {
                self.on_control(msg);
            }
            let due = control::heartbeat_tick();
            if !self.round() {
                if let Some(at) = due {
                    let _ = hc::set_timer(at);
                }
                hc::block();
            }
            domain_runtime::events::take_all(|_| {});
        }
    }

    fn on_control(&mut self, msg: ControlMessage) {
        if msg.kind != DeviceKind::Net as u32 {
            return;
        }
        match msg.check() {
            Some(ControlOp::Connect) => {
                if !domain_runtime::backend::speaks(&msg, NET_VERSION, "drvdom-net") {
                    return;
                }
                let c = NetConnect::read(&msg);
                match self.connect(&msg, c) {
                    Ok(()) => {
                        println!(
                            "drvdom-net: domain {} vif {} joins the switch as {}{}",
                            msg.peer,
                            c.vif,
                            MacText(c.mac),
                            MtuText(c.mtu)
                        );
                        let _ = control::confirm_connect(&msg);
                    }
                    Err(why) => {
                        println!(
                            "drvdom-net: cannot serve domain {} vif {}: {}",
                            msg.peer, c.vif, why
                        );
                        let _ = control::refuse_connect(&msg, Status::Denied);
                    }
                }
            }
            Some(ControlOp::Disconnect) => {
                let f = &mut self.fabric;
                // The interface the message names, or all of that domain's.
                let named = |v: &Vif| {
                    v.dom == msg.peer && (msg.index == ALL_DEVICES || u32::from(v.vif) == msg.index)
                };
                while let Some(i) = f.vifs.iter().position(named) {
                    f.remove(i, "left the switch");
                }
            }
            _ => {}
        }
    }

    /// The lowest `n` consecutive grant-window slots no ring and no
    /// transmit page's mapping uses.
    fn free_slots(&self, n: u64) -> Option<u64> {
        let f = &self.fabric;
        let used = |s: u64| f.map_slots.holds(s) || f.rings_use(s);
        (0..control::CONTROL_SLOT.saturating_sub(n - 1)).find(|&s| (s..s + n).all(|t| !used(t)))
    }

    fn connect(&mut self, msg: &ControlMessage, c: NetConnect) -> Result<(), &'static str> {
        if self.fabric.vifs.len() >= MAX_VIFS {
            return Err("too many interfaces");
        }
        if !NET_RING_PAGES.contains(&msg.pages) {
            return Err("a network device has a transmit ring page and 1 to 4 receive ring pages");
        }
        if self
            .fabric
            .vifs
            .iter()
            .any(|v| v.dom == msg.peer && v.vif == c.vif)
        {
            return Err("that interface is connected already");
        }
        let pages = u64::from(msg.pages);
        // Rings before mappings: the mappings are only a shortcut.
        let slot = match self.free_slots(pages) {
            Some(slot) => slot,
            None => {
                self.fabric.release_all_maps();
                self.free_slots(pages).ok_or("no free window slot")?
            }
        };
        let tx = MappedBack::map(msg.peer, &msg.grefs[..1], slot)
            .map_err(|_| "cannot map its transmit ring, or it is not initialised")?;
        let rx = MappedBack::map(msg.peer, &msg.grefs[1..msg.pages as usize], slot + 1)
            .map_err(|_| "cannot map its receive ring, or it is not initialised")?;
        let port = hc::event_bind_interdomain(msg.peer, msg.port as u16)
            .map_err(|_| "cannot bind its port")?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        if !self
            .fabric
            .switch
            .add_vif(id, c.mac, max_frame_for_mtu(c.mtu))
        {
            let _ = hc::event_close(port);
            return Err("its MAC is another interface's");
        }
        self.fabric.vifs.push(Vif {
            id,
            dom: msg.peer,
            vif: c.vif,
            port,
            mac: c.mac,
            tx,
            rx,
            counters: Counters::default(),
            broken: false,
            busy: false,
            tx_maps: TxMaps::new(),
        });
        self.fabric.ring_top = self.fabric.ring_top.max(slot + pages);
        Ok(())
    }

    /// One round; whether more work is likely waiting.
    fn round(&mut self) -> bool {
        let now = time::now_ns();
        let mut more = false;
        if let Some(nic) = self.nic.as_mut() {
            // What this round sends and the buffers it posts again reach
            // the NIC together at the end (one notification each way).
            nic.hold();
            nic.rearm();
            let fabric = &mut self.fabric;
            let n = nic.receive(UPLINK_BATCH, |frame| {
                fabric.forward(Port::Uplink, Switched::Done(frame), now, None);
            });
            more |= n == UPLINK_BATCH;
        }
        // Round-robin over the interfaces that resumes where the NIC's
        // free buffers ran out: the interface cut short goes first next
        // round with the rest of its turn, so each gets BATCH frames a
        // turn however the NIC's room falls (resuming with the next one
        // instead let the NIC's timing favour one of two: with room for
        // 16 to 32 frames a round, the first took 16 each round and the
        // second the rest).
        let n = self.fabric.vifs.len();
        let start = if n == 0 { 0 } else { self.first % n };
        let (mut next, mut next_quota) = (if n == 0 { 0 } else { (start + 1) % n }, BATCH);
        // Frames that wait for the NIC's buffers need no polling when the
        // NIC says by interrupt that it finished sending: that wakes us.
        let mut waiting_for_nic = false;
        for k in 0..n {
            let i = (start + k) % n;
            let quota = if k == 0 { self.first_quota } else { BATCH };
            let (taken, out_of_room) = self.fabric.serve_tx(i, quota, now, self.nic.as_mut());
            if out_of_room {
                (next, next_quota) = match quota - taken {
                    0 => ((i + 1) % n, BATCH),
                    left => (i, left),
                };
                waiting_for_nic = self.nic.as_ref().is_some_and(|nic| nic.interrupts());
                break;
            }
        }
        (self.first, self.first_quota) = (next, next_quota);
        if let Some(nic) = self.nic.as_mut() {
            nic.release();
        }
        for v in self.fabric.vifs.iter_mut().filter(|v| !v.broken) {
            let wake = v.tx.publish() | v.rx.publish();
            if wake {
                let _ = hc::event_send(v.port);
            }
            match v.tx.final_check() {
                Ok(left) => more |= (left || v.busy) && !waiting_for_nic,
                Err(_) => v.broken = true,
            }
        }
        self.fabric.drop_broken();
        more
    }
}

impl Fabric {
    /// Takes up to `quota` frames from interface `i`'s transmit ring;
    /// returns how many, and whether it stopped because the NIC had no
    /// free buffer (frames wait in the ring).
    fn serve_tx(
        &mut self,
        i: usize,
        quota: usize,
        now: u64,
        mut nic: Option<&mut Nic<PciTransport>>,
    ) -> (usize, bool) {
        let mut taken = 0;
        // Lent out of `self` for the loop (given back below).
        let mut frame = core::mem::take(&mut self.scratch);
        while taken < quota && !self.vifs[i].broken {
            // Back-pressure: while the NIC has no free buffer, frames stay
            // in the ring (the guest's sends wait) instead of being dropped.
            // The buffer found is where a page-long frame is copied.
            let room = match nic.as_deref_mut().map(|n| n.frame_room()) {
                Some(None) => {
                    self.vifs[i].busy = true;
                    self.scratch = frame;
                    return (taken, true);
                }
                Some(room) => room,
                None => None,
            };
            let v = &mut self.vifs[i];
            let req = match v.tx.pop() {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => {
                    v.broken = true;
                    break;
                }
            };
            taken += 1;
            self.taken += 1;
            if self.crash_after == Some(self.taken) {
                // Fault injection, for restart tests.
                panic!("crashing at frame {} as asked", self.taken);
            }
            let blank = req.flags & TX_TCP_CSUM_BLANK != 0;
            if req.more() {
                // A frame over several pages: never for the wire's NIC
                // buffer (`chain.rs`).
                taken += self.switch_chain(i, req, &mut frame, now, nic.as_deref_mut()) - 1;
                continue;
            }
            let len = usize::from(req.len);
            // Copied straight into the free NIC buffer found above when
            // there is a NIC: sent from there if the switch says the
            // uplink, with no second copy.
            // `check` first: `len` is the guest's word until then.
            let (dom, gref, offset) = (v.dom, req.gref, usize::from(req.offset));
            // A blank checksum is said only of TCP over IPv4 (checked once
            // the bytes are here): the switch may have to fill it in.
            let mut staged = None;
            let ok = req.check() && frame_size_ok(len) && {
                staged = room.filter(|room| room.len() >= len);
                let buf = match staged.as_deref_mut() {
                    Some(room) => &mut room[..len],
                    None => &mut frame[..len],
                };
                let (maps, slots, floor) = (&mut v.tx_maps, &mut self.map_slots, self.ring_top);
                maps.copy(dom, gref, offset, buf, slots, floor)
                    && (!blank || checksum::tcp_ipv4(buf).is_some())
            };
            let v = &mut self.vifs[i];
            let mut rsp = TxResponse::new_zeroed();
            rsp.id = req.id;
            rsp.status = if ok { 0 } else { Status::Invalid as u32 };
            if v.tx.push(&rsp).is_err() {
                v.broken = true;
            }
            if !ok {
                v.counters.refused += 1;
                continue;
            }
            let from = Port::Vif(v.id);
            match staged {
                Some(room) => {
                    let mut switched = Switched::new(&mut room[..len], blank);
                    if self.route(from, &mut switched, now) {
                        switched.complete();
                        let sent = nic.as_deref_mut().is_some_and(|n| n.send_room(len));
                        self.count_uplink(sent);
                    }
                }
                None => {
                    let switched = Switched::new(&mut frame[..len], blank);
                    self.forward(from, switched, now, nic.as_deref_mut())
                }
            }
        }
        self.scratch = frame;
        self.vifs[i].busy = taken == BATCH;
        (taken, false)
    }

    /// Switches one frame from `from`.
    fn forward(
        &mut self,
        from: Port,
        mut frame: Switched<'_>,
        now: u64,
        nic: Option<&mut Nic<PciTransport>>,
    ) {
        if self.route(from, &mut frame, now) {
            self.send_uplink(frame.complete(), nic);
        }
    }

    /// Switches one frame from `from` to every interface it goes to;
    /// whether it goes to the uplink too (the caller sends it there).
    fn route(&mut self, from: Port, frame: &mut Switched<'_>, now: u64) -> bool {
        let verdict = self.switch.decide(from, frame.bytes(), now);
        let sender = match from {
            Port::Vif(id) => self.vifs.iter().position(|v| v.id == id),
            Port::Uplink => None,
        };
        let uplink = match verdict {
            Verdict::Drop(Drop::TooBig) => {
                if let Some(s) = sender {
                    self.vifs[s].counters.too_big += 1;
                }
                return false;
            }
            Verdict::Drop(why) => {
                if let (Some(s), Drop::Spoofed) = (sender, why) {
                    let v = &mut self.vifs[s];
                    v.counters.spoofed += 1;
                    if v.counters.spoofed.is_power_of_two() {
                        let mut src = [0u8; 6];
                        src.copy_from_slice(&frame.bytes()[6..12]);
                        println!(
                            "drvdom-net: domain {} vif {} sent from {}, not its {}: dropped ({} so far)",
                            v.dom,
                            v.vif,
                            MacText(src),
                            MacText(v.mac),
                            v.counters.spoofed
                        );
                    }
                }
                return false;
            }
            Verdict::To(Port::Uplink) => true,
            Verdict::To(Port::Vif(id)) => {
                if let Some(d) = self.vifs.iter().position(|v| v.id == id) {
                    self.deliver_to_vif(d, frame);
                }
                false
            }
            Verdict::Flood { except } => {
                // A copy goes only where it fits; a port it did not fit
                // counts against the sender once.
                let mut too_big = false;
                for d in 0..self.vifs.len() {
                    let to = Port::Vif(self.vifs[d].id);
                    if to == except {
                        continue;
                    }
                    if self.switch.fits(to, frame.bytes().len()) {
                        self.deliver_to_vif(d, frame);
                    } else {
                        too_big = true;
                    }
                }
                let wire = except != Port::Uplink;
                let fits_wire = self.switch.fits(Port::Uplink, frame.bytes().len());
                too_big |= wire && !fits_wire;
                if let (Some(s), true) = (sender, too_big) {
                    self.vifs[s].counters.too_big += 1;
                }
                wire && fits_wire
            }
        };
        if let Some(s) = sender {
            self.vifs[s].counters.sent += 1;
        }
        uplink
    }

    fn send_uplink(&mut self, frame: &[u8], nic: Option<&mut Nic<PciTransport>>) {
        // No NIC (`ifname=dummy`): the uplink leads nowhere.
        let Some(nic) = nic else { return };
        let sent = nic.send(frame);
        self.count_uplink(sent);
    }

    /// Counts a frame the NIC refused (and says so at powers of two).
    fn count_uplink(&mut self, sent: bool) {
        if !sent {
            // Room was checked before the frame was taken (or it is a
            // flood's copy): a refusal here is the NIC's queue failing.
            self.uplink_dropped += 1;
            if self.uplink_dropped.is_power_of_two() {
                println!(
                    "drvdom-net: the NIC refused {} frames for the wire so far",
                    self.uplink_dropped
                );
            }
        }
    }

    /// Puts `frame` in the next receive buffers interface `d` posted (a
    /// page each: a frame longer than a page goes over several, answered
    /// as a chain, `RX_MORE`), its checksum filled in first if it is blank
    /// and the first buffer does not take that. Dropped, and counted, if
    /// fewer buffers are posted than it needs.
    fn deliver_to_vif(&mut self, d: usize, frame: &mut Switched<'_>) {
        let v = &mut self.vifs[d];
        let len = frame.bytes().len();
        let Some(requests) = v.take_buffers(slots_for_frame(len)) else {
            return;
        };
        let blank = frame.is_blank() && requests[0].flags & RX_TAKES_BLANK_CSUM != 0;
        let bytes = if blank {
            frame.bytes()
        } else {
            frame.complete()
        };
        let copied = copy_out(v.dom, &requests, bytes);
        v.answer_buffers(&requests, len, copied, blank);
    }

    /// Disconnects every interface that broke a ring.
    fn drop_broken(&mut self) {
        let mut i = 0;
        while i < self.vifs.len() {
            if self.vifs[i].broken {
                self.remove(i, "broke its ring; disconnected");
            } else {
                i += 1;
            }
        }
    }
}

impl Fabric {
    /// Takes interface `i` off the switch: its mappings let go, its port
    /// closed (its rings are unmapped as `MappedBack` drops).
    fn remove(&mut self, i: usize, what: &str) {
        let mut v = self.vifs.remove(i);
        report(&v, what);
        v.tx_maps.release(&mut self.map_slots);
        self.switch.remove_vif(v.id);
        let _ = hc::event_close(v.port);
        self.ring_top = self
            .vifs
            .iter()
            .map(|v| v.tx.slots().end.max(v.rx.slots().end))
            .max()
            .unwrap_or(0);
    }

    /// Whether a ring is mapped at grant-window slot `s`.
    fn rings_use(&self, s: u64) -> bool {
        self.vifs
            .iter()
            .any(|v| v.tx.slots().contains(&s) || v.rx.slots().contains(&s))
    }

    /// Lets go of every transmit page's mapping (a ring wants the slots).
    fn release_all_maps(&mut self) {
        for v in self.vifs.iter_mut() {
            v.tx_maps.release(&mut self.map_slots);
        }
    }
}

fn report(v: &Vif, what: &str) {
    let c = v.counters;
    println!(
        "drvdom-net: domain {} vif {} {} (sent {}, received {}, spoofed {}, no buffer {}, refused {}, too big {}, pages mapped {})",
        v.dom, v.vif, what, c.sent, c.received, c.spoofed, c.no_buffer, c.refused, c.too_big,
        v.tx_maps.mapped()
    );
}
