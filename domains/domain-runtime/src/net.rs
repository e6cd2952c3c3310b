//! A network interface: the frontend of `drvdom-net`'s rings
//! (`ipc_abi::proto::net`).
//!
//! Owns: connecting interface N (the Nth `vif=MAC` word on the command line
//! is its MAC; `net=ID` names the backend; the control domain checks the
//! configuration gives it the interface), the transmit ring with its
//! granted pages (one frame each, reused as answers come back), and the
//! receive ring, kept full of granted pages for the backend to fill.
//! `tcpip` (feature `tcpip`) puts smoltcp on top.

use crate::grant::GrantedPages;
use crate::hypercall as hc;
use crate::ring::{Grefs, RingPages};
use ipc_abi::domain::DomainId;
extern crate alloc;
use alloc::boxed::Box;
use alloc::vec;
use ipc_abi::hypercall::{Error, Result};
use ipc_abi::launch;
use ipc_abi::proto::control::DeviceKind;
use ipc_abi::proto::net::{
    max_frame_for_mtu, slots_for_frame, Mac, RxRequest, RxResponse, TxRequest, TxResponse,
    MAX_FRAME_SLOTS, MAX_LOCAL_FRAME, MAX_MTU, MIN_FRAME, MIN_MTU, NET_VERSION, RX_MORE,
    RX_TAKES_BLANK_CSUM, RX_TCP_CSUM_BLANK, SLOT_BYTES, TX_MORE,
};
use ipc_abi::ring::Front;
use zerocopy::FromZeros;

pub mod checksum;
#[cfg(feature = "tcpip")]
pub mod demux;
#[cfg(feature = "tcpip")]
pub mod tcpip;

/// Transmit pages of an interface whose frames fit a page: frames that
/// can be in flight to the backend.
pub const TX_PAGES: usize = 16;
/// Transmit pages of an interface whose MTU makes frames of several pages:
/// eight frames of four pages in flight (sixteen pages gave TCP between
/// two such guests a tenth less; an interface of a page's frames keeps
/// sixteen, as 32 slowed its frames to the NIC: docs/performance.md).
pub const JUMBO_TX_PAGES: usize = 32;
/// Receive ring pages of such an interface, a receive page in each of its
/// slots: sixteen frames of four pages, twice what its peer may have in
/// flight, so a burst finds buffers (a frame with none is dropped, and TCP
/// waits for its retransmission).
pub const JUMBO_RX_RING_PAGES: u32 = 2;
/// Receive pages of an interface with a one-page receive ring (its 32
/// slots); [`NetFront::connect_with_rx_ring`] gives more.
pub const RX_PAGES: usize = 32;

/// Why a frame could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// Longer than [`MAX_LOCAL_FRAME`] or shorter than a header.
    Size,
    /// Every transmit page is in flight; try again after the backend answers.
    Busy,
    /// The ring broke.
    Ring,
}

/// The transmit half.
pub struct TxSide {
    front: Front<'static, TxRequest, TxResponse>,
    pages: GrantedPages,
    /// Bit `i`: transmit page `i` is free (a frame longer than a page takes
    /// a run of free pages, one after the other, each a request of its chain).
    free: u64,
    /// Pages the longest frame of the interface's MTU takes: a stack is
    /// offered room to send only when a run of that many is free.
    frame_pages: usize,
    port: u16,
    /// Frames sent, sent frames the backend refused, and notifications
    /// the ring's suppression let through.
    pub sent: u64,
    pub refused: u64,
    pub notified: u64,
    /// Frames the stack made that found no free pages (or broke the
    /// ring) and were lost, as on a wire (`tcpip`).
    pub lost: u64,
    /// The backend was given up on: nothing goes out any more.
    dead: bool,
    /// Frames are put in the ring but not shown to the backend until
    /// [`TxSide::flush`] (a batch: one notification and one wake-up of
    /// the backend for all of them, not one each).
    held: bool,
}

/// Grants an interface's two rings (transmit, then receive) to a backend
/// and tells it of them; the grants and the event port.
pub type Announcer<'a> = dyn FnMut(&[RingPages], DomainId) -> Result<(Grefs, u16)> + 'a;

/// How many rings, pages and buffers an interface has.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Which interface of the domain (0 for the first), its MAC and its
    /// MTU (`MIN_MTU` to `MAX_MTU`; `DEFAULT_MTU` unless its `vif` says).
    pub vif: u32,
    pub mac: Mac,
    pub mtu: u16,
    /// Pages of the receive ring (1 to `MAX_NET_RX_RING_PAGES`).
    pub rx_ring_pages: u32,
    /// Transmit pages (1 to [`JUMBO_TX_PAGES`]) and receive pages (1 to the
    /// receive ring's slots): each is a grant to the backend.
    pub tx_pages: usize,
    pub rx_pages: usize,
}

/// The receive half.
pub struct RxSide {
    front: Front<'static, RxRequest, RxResponse>,
    pages: GrantedPages,
    port: u16,
    /// A frame put together out of pages that do not lie one after the
    /// other (a frame from a guest here may fill several: a chain of
    /// answers, `RX_MORE`).
    frame: Box<[u8]>,
    /// The pages the last frame lies in, where it was left for its user
    /// (first and count): posted again at the next look for a frame.
    lent: Option<(usize, usize)>,
    /// Frames received.
    pub received: u64,
    /// The longest of them (bytes).
    pub largest: usize,
    /// Whether its pages take frames whose TCP checksum is blank (its
    /// user checks what was not delivered blank: `checksum::tcp_ok`).
    pub takes_blank_checksums: bool,
    /// Whether the last frame's TCP checksum was blank (`RX_TCP_CSUM_BLANK`),
    /// and its length.
    last_blank: bool,
    last_len: usize,
    /// Whether the last frame lies in its pages (`lent`) or in `frame`.
    last_in_place: bool,
    /// Frames its user dropped for a wrong checksum.
    pub bad_checksums: u64,
}

/// A connected network interface.
pub struct NetFront {
    pub tx: TxSide,
    pub rx: RxSide,
    mac: Mac,
    mtu: u16,
    port: u16,
    backend: DomainId,
    /// Which interface of the domain (0 for the first).
    vif: u32,
    /// The transmit and receive rings' pages, and their grants to the backend.
    rings: ([RingPages; 2], Grefs),
    /// Times the backend was restarted under this interface.
    restarts: u64,
    /// The restore epoch its ports and grants belong to (`crate::epoch`).
    epoch: u32,
    /// Whether news of its backend may have come since it last looked.
    news: crate::control::Seen,
}

impl NetFront {
    /// Connects interface `vif` (0 for the first) to the backend `net=ID` names.
    pub fn connect(vif: u32) -> Result<NetFront> {
        NetFront::connect_with_rx_ring(vif, 1)
    }

    /// [`NetFront::connect`] with a receive ring of `rx_ring_pages` pages
    /// (1 to `MAX_NET_RX_RING_PAGES`) and a receive page posted in each of
    /// its slots: a frontend that falls behind in bursts (an HVM guest's
    /// device model) loses no frame to a full ring while it catches up.
    pub fn connect_with_rx_ring(vif: u32, rx_ring_pages: u32) -> Result<NetFront> {
        // An interface attached while we ran is named by the news of it;
        // the others by the command line.
        let backend = crate::hotplug::backend(DeviceKind::Net, vif)
            .or_else(|| {
                crate::option(launch::NET_BACKEND)
                    .and_then(|v| v.parse().ok())
                    .map(DomainId)
            })
            .ok_or(Error::InvalidArgument)?;
        let spec = crate::hotplug::vif(vif)
            .or_else(|| {
                launch::values(crate::command_line(), launch::VIF)
                    .nth(vif as usize)
                    .and_then(launch::VifSpec::parse)
            })
            .ok_or(Error::InvalidArgument)?;
        let mac = spec.mac.ok_or(Error::InvalidArgument)?;
        let mtu = spec.mtu_or_default();
        let jumbo = slots_for_frame(usize::from(max_frame_for_mtu(mtu))) > 1;
        let rx_ring_pages = if jumbo {
            rx_ring_pages.max(JUMBO_RX_RING_PAGES)
        } else {
            rx_ring_pages
        };
        let rx_slots = ipc_abi::ring::slots_for_pages(rx_ring_pages) as usize;
        let shape = Shape {
            vif,
            mac,
            mtu,
            rx_ring_pages,
            tx_pages: if jumbo { JUMBO_TX_PAGES } else { TX_PAGES },
            rx_pages: rx_slots,
        };
        NetFront::build(shape, backend, &mut |rings, backend| {
            crate::ring::announce(rings, backend, DeviceKind::Net, vif, NET_VERSION)
        })
    }

    /// An interface of `shape` connected to `backend` by `announce` (which
    /// grants the two rings, transmit then receive, to the backend and
    /// tells it of them: the control domain does that itself, being the
    /// broker). `DeadDomain` from `announce` is followed to the backend's
    /// next instance, as the control domain names it.
    pub fn build(
        shape: Shape,
        mut backend: DomainId,
        announce: &mut Announcer<'_>,
    ) -> Result<NetFront> {
        let Shape {
            vif,
            mac,
            mtu,
            rx_ring_pages,
            tx_pages,
            rx_pages,
        } = shape;
        let rx_slots = ipc_abi::ring::slots_for_pages(rx_ring_pages) as usize;
        if !(1..=ipc_abi::proto::net::MAX_NET_RX_RING_PAGES).contains(&rx_ring_pages)
            || !(1..=JUMBO_TX_PAGES).contains(&tx_pages)
            || !(1..=rx_slots).contains(&rx_pages)
            || !(MIN_MTU..=MAX_MTU).contains(&mtu)
        {
            return Err(Error::InvalidArgument);
        }
        let rings = [
            RingPages::allocate(1).ok_or(Error::OutOfResources)?,
            RingPages::allocate(rx_ring_pages).ok_or(Error::OutOfResources)?,
        ];
        let tx_front = Front::init(rings[0].shared(), 1).map_err(|_| Error::InvalidArgument)?;
        let rx_front =
            Front::init(rings[1].shared(), rx_ring_pages).map_err(|_| Error::InvalidArgument)?;
        // The backend only reads what we send.
        let mut tx_pages = GrantedPages::ungranted(tx_pages).read_only();
        let mut rx_pages = GrantedPages::ungranted(rx_pages);
        let (grefs, port) = loop {
            let granted = tx_pages
                .regrant(backend, false)
                .and_then(|()| rx_pages.regrant(backend, false));
            match granted.and_then(|()| announce(&rings, backend)) {
                // The backend died before it accepted (or before we even
                // granted it our pages: the one our command line names may
                // have been restarted since we were created): announce to
                // its next instance. (The control domain has no control
                // ring to hear of it on: it is told `DeadDomain`.)
                Err(Error::DeadDomain) if crate::control::port().is_some() => {
                    backend = crate::control::next_backend(DeviceKind::Net, vif)
                        .ok_or(Error::DeadDomain)?;
                }
                other => break other?,
            }
        };
        let mut net = NetFront {
            tx: TxSide {
                front: tx_front,
                free: all_pages(tx_pages.len()),
                frame_pages: slots_for_frame(usize::from(max_frame_for_mtu(mtu))),
                pages: tx_pages,
                port,
                sent: 0,
                refused: 0,
                notified: 0,
                lost: 0,
                dead: false,
                held: false,
            },
            rx: RxSide {
                front: rx_front,
                pages: rx_pages,
                port,
                frame: vec![0; usize::from(MAX_LOCAL_FRAME)].into_boxed_slice(),
                received: 0,
                largest: 0,
                takes_blank_checksums: false,
                lent: None,
                last_blank: false,
                last_len: 0,
                last_in_place: false,
                bad_checksums: 0,
            },
            mac,
            mtu,
            port,
            backend,
            vif,
            rings: (rings, grefs),
            restarts: 0,
            epoch: crate::epoch::get(),
            news: crate::control::Seen::new(),
        };
        net.rx.post_all().map_err(|_| Error::InvalidArgument)?;
        Ok(net)
    }

    /// Connects this interface to `backend`, a new instance of its backend
    /// the caller found itself (the control domain, which gets no news of
    /// restarts): as [`NetFront::follow_restart`] does on news.
    pub fn reconnect_to(&mut self, backend: DomainId, announce: &mut Announcer<'_>) -> Result<()> {
        let _ = hc::event_close(self.port);
        for &g in self.rings.1.iter() {
            let _ = hc::grant_end(g);
        }
        let rings = self.rings.0;
        self.tx.pages.regrant(backend, false)?;
        self.rx.pages.regrant(backend, false)?;
        self.tx.front = Front::init(rings[0].shared(), 1).map_err(|_| Error::InvalidArgument)?;
        self.rx.front =
            Front::init(rings[1].shared(), rings[1].pages()).map_err(|_| Error::InvalidArgument)?;
        let (grefs, port) = announce(&rings, backend)?;
        self.connected_to(backend, grefs, port)
    }

    /// The rings are announced to `backend` again: every page is ours once
    /// more and every receive page is posted.
    fn connected_to(&mut self, backend: DomainId, grefs: Grefs, port: u16) -> Result<()> {
        self.rings.1 = grefs;
        self.port = port;
        self.tx.port = port;
        self.rx.port = port;
        self.backend = backend;
        self.tx.free = all_pages(self.tx.pages.len());
        self.rx.post_all().map_err(|_| Error::InvalidArgument)?;
        self.restarts += 1;
        crate::console::note(format_args!(
            "net: interface {} reconnected to domain {}",
            self.vif, backend
        ));
        Ok(())
    }

    pub fn mac(&self) -> Mac {
        self.mac
    }

    /// Its MTU: the largest IP packet its stack should send.
    pub fn mtu(&self) -> u16 {
        self.mtu
    }

    pub fn backend(&self) -> DomainId {
        self.backend
    }

    /// If the control domain said our backend was restarted: grant the
    /// rings and pages to the new one, initialise both rings at a new
    /// epoch, announce them, and post every receive page again. Frames that
    /// were in flight are lost (as on a wire; TCP sends them again).
    /// Returns whether that happened; `DeadDomain` once the control domain
    /// gave the backend up (no frame goes out after that).
    pub fn follow_restart(&mut self) -> Result<bool> {
        use ipc_abi::proto::control::{ControlMessage, ControlOp};
        let vif = self.vif;
        let about_us = |m: &ControlMessage, op: ControlOp| {
            m.check() == Some(op) && m.kind == DeviceKind::Net as u32 && m.index == vif
        };
        let restarted = |m: &ControlMessage| about_us(m, ControlOp::PeerRestarted);
        let gone = |m: &ControlMessage| about_us(m, ControlOp::PeerGone);
        // Nothing came since the last look, and no restore: nothing to follow.
        if !self.news.anything_new() && self.epoch == crate::epoch::get() {
            return Ok(false);
        }
        if !self.tx.dead && crate::hotplug::is_detached(DeviceKind::Net, vif) {
            // Taken away: its backend left the switch; nothing more goes out.
            self.tx.dead = true;
            let _ = hc::event_close(self.port);
            for &g in self.rings.1.iter() {
                let _ = hc::grant_end(g);
            }
            crate::console::note(format_args!("net: interface {} was detached", vif));
            return Err(Error::DeadDomain);
        }
        let (news, restored) = crate::control::backend_news(DeviceKind::Net, vif, self.epoch);
        self.epoch = crate::epoch::get();
        let Some(mut news) = news else {
            return Ok(false);
        };
        if gone(&news) {
            // Given up on: nothing more goes out; sends fail from now on.
            self.tx.dead = true;
            if !restored {
                let _ = hc::event_close(self.port);
            }
            crate::console::note(format_args!(
                "net: interface {}'s backend is gone",
                self.vif
            ));
            return Err(Error::DeadDomain);
        }
        if !restored {
            let _ = hc::event_close(self.port);
            for &g in self.rings.1.iter() {
                let _ = hc::grant_end(g);
            }
        }
        let rings = self.rings.0;
        let mut forget = restored;
        let (backend, grefs, port) = loop {
            let backend = news.peer;
            let foreign = core::mem::take(&mut forget);
            let granted = self
                .tx
                .pages
                .regrant(backend, foreign)
                .and_then(|()| self.rx.pages.regrant(backend, foreign));
            self.tx.front =
                Front::init(rings[0].shared(), 1).map_err(|_| Error::InvalidArgument)?;
            self.rx.front = Front::init(rings[1].shared(), rings[1].pages())
                .map_err(|_| Error::InvalidArgument)?;
            let announced = granted.and_then(|()| {
                crate::ring::announce(&rings, backend, DeviceKind::Net, self.vif, NET_VERSION)
            });
            match announced {
                Ok((grefs, port)) => break (backend, grefs, port),
                // That instance died too before it accepted (or before it
                // was granted our pages): follow the next.
                Err(Error::DeadDomain) => {
                    news = crate::control::wait_news(|m| restarted(m) || gone(m));
                    if gone(&news) {
                        self.tx.dead = true;
                        crate::console::note(format_args!(
                            "net: interface {}'s backend is gone",
                            self.vif
                        ));
                        return Err(Error::DeadDomain);
                    }
                }
                Err(e) => return Err(e),
            }
        };
        self.connected_to(backend, grefs, port)?;
        Ok(true)
    }

    /// Waits until a frame or an answer arrives, news comes from the
    /// control domain, or the clock reaches `deadline_ns`; follows a
    /// restarted backend.
    pub fn wait_until(&mut self, deadline_ns: u64) {
        // News may already be in the inbox (taken off the control ring
        // while another device waited): no waiting for an event then.
        if !matches!(self.follow_restart(), Ok(false)) {
            return;
        }
        // The last frame's pages go back before we sleep.
        self.rx.give_back();
        let control = crate::control::port();
        loop {
            if crate::events::take(self.port) || control.is_some_and(crate::events::take) {
                break;
            }
            if crate::time::now_ns() >= deadline_ns {
                break;
            }
            crate::events::serve_while_waiting(Some(self.port));
            let _ = hc::set_timer(deadline_ns);
            crate::events::block_for_port(Some(self.port));
        }
        let _ = self.follow_restart();
    }

    /// The transmit ring's pages (a test can break the ring through them).
    pub fn tx_ring(&self) -> RingPages {
        self.rings.0[0]
    }

    /// Times the backend was restarted under this interface.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The event port the backend signals (both rings share it).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl TxSide {
    /// Sends one frame (copied into a transmit page): returns once it is in
    /// the ring, not when the backend took it.
    pub fn send(&mut self, frame: &[u8]) -> core::result::Result<(), SendError> {
        self.send_with(frame.len(), |page| page.copy_from_slice(frame))
    }

    /// Sends a frame of `len` bytes that `fill` writes straight into a
    /// transmit page.
    pub fn send_with<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> R,
    ) -> core::result::Result<R, SendError> {
        self.send_flagged(len, |page| (fill(page), 0))
    }

    /// [`TxSide::send_with`] whose `fill` also gives the request's flags
    /// (`TX_TCP_CSUM_BLANK`).
    pub fn send_flagged<R>(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> (R, u16),
    ) -> core::result::Result<R, SendError> {
        if self.dead {
            return Err(SendError::Ring);
        }
        if !(usize::from(MIN_FRAME)..=usize::from(MAX_LOCAL_FRAME)).contains(&len) {
            return Err(SendError::Size);
        }
        self.reclaim().map_err(|_| SendError::Ring)?;
        let count = slots_for_frame(len);
        let first = free_run(self.free, count).ok_or(SendError::Busy)?;
        let (out, flags) = fill(&mut self.pages.run_mut(first, count)[..len]);
        // One request a page, in order, all but the last saying more
        // follows; published together below, so the backend sees the
        // chain whole.
        for (part, i) in (first..first + count).enumerate() {
            let mut r = TxRequest::new_zeroed();
            r.id = i as u64;
            r.gref = self.pages.gref(i);
            r.len = (len - part * SLOT_BYTES).min(SLOT_BYTES) as u16;
            r.flags =
                if part == 0 { flags } else { 0 } | if part + 1 < count { TX_MORE } else { 0 };
            if self.front.push(&r).is_err() {
                // Room is checked for one slot at a time: a chain cut short
                // breaks the ring (the pages stay taken).
                self.dead = true;
                return Err(SendError::Ring);
            }
            self.free &= !(1 << i);
        }
        if !self.held {
            self.publish();
        }
        self.sent += 1;
        Ok(out)
    }

    /// Frames sent from now on wait in the ring, unseen by the backend,
    /// until [`TxSide::flush`]: a burst costs the backend one wake-up.
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// Shows the backend every frame sent since [`TxSide::hold`] (and
    /// notifies it if it asked), and sends at once again from now on.
    pub fn flush(&mut self) {
        self.held = false;
        self.publish();
    }

    fn publish(&mut self) {
        if self.front.publish() {
            let _ = hc::event_send(self.port);
            self.notified += 1;
        }
    }

    /// Pushes `requests` as they are, unchecked, publishes them together
    /// and notifies: for tools and tests that speak the protocol
    /// themselves. Answers are taken (and counted in `refused`) by the next
    /// send.
    pub fn push_raw(&mut self, requests: &[TxRequest]) -> core::result::Result<(), SendError> {
        self.reclaim().map_err(|_| SendError::Ring)?;
        for r in requests {
            self.front.push(r).map_err(|_| SendError::Busy)?;
        }
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
        Ok(())
    }

    /// The grant of transmit page `i` (for [`TxSide::push_raw`]).
    pub fn page_gref(&self, i: usize) -> u32 {
        self.pages.gref(i)
    }

    /// Transmit page `i`, to write a frame into for [`TxSide::push_raw`].
    pub fn page_mut(&mut self, i: usize) -> &mut [u8; 4096] {
        self.pages.page_mut(i)
    }

    /// Answers taken so far that were errors, and whether the ring still works.
    pub fn settle(&mut self) -> core::result::Result<u64, SendError> {
        self.reclaim().map_err(|_| SendError::Ring)?;
        Ok(self.refused)
    }

    /// Transmit pages it has (`Shape::tx_pages`).
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Whether there are free pages for a frame of the interface's
    /// longest now.
    pub fn can_send(&mut self) -> bool {
        if self.dead {
            return false;
        }
        let _ = self.reclaim();
        free_run(self.free, self.frame_pages).is_some()
    }

    /// Takes back the pages of frames the backend answered.
    fn reclaim(&mut self) -> core::result::Result<(), ()> {
        while let Some(rsp) = self.front.pop().map_err(|_| ())? {
            let page = rsp.id as usize;
            if page < self.pages.len() {
                self.free |= 1 << page;
            }
            if rsp.status != 0 {
                self.refused += 1;
            }
        }
        let _ = self.front.final_check();
        Ok(())
    }
}

impl RxSide {
    /// Posts every receive page.
    fn post_all(&mut self) -> core::result::Result<(), ()> {
        // A fresh ring: the page lent out goes back with the rest.
        self.lent = None;
        for i in 0..self.pages.len() {
            self.post(i)?;
        }
        self.publish();
        Ok(())
    }

    fn post(&mut self, i: usize) -> core::result::Result<(), ()> {
        let mut r = RxRequest::new_zeroed();
        r.id = i as u64;
        r.gref = self.pages.gref(i);
        if self.takes_blank_checksums {
            r.flags = RX_TAKES_BLANK_CSUM;
        }
        self.front.push(&r).map_err(|_| ())
    }

    fn publish(&mut self) {
        if self.front.publish() {
            let _ = hc::event_send(self.port);
        }
    }

    /// Posts again the pages the last frame was left in.
    fn give_back(&mut self) {
        if let Some((first, count)) = self.lent.take() {
            for i in first..first + count {
                let _ = self.post(i);
            }
            self.publish();
        }
    }

    /// The frame [`RxSide::next_frame`] gave last.
    pub fn last_frame(&self) -> &[u8] {
        match (self.last_in_place, self.lent) {
            (true, Some((first, count))) => &self.pages.run(first, count)[..self.last_len],
            (true, None) => &[],
            (false, _) => &self.frame[..self.last_len],
        }
    }

    /// [`RxSide::next_frame`], and whether its TCP checksum is blank
    /// (`RX_TCP_CSUM_BLANK`: a guest here sent it so; nothing to check).
    pub fn next_frame_blank(&mut self) -> Option<(&[u8], bool)> {
        self.next_frame()?;
        Some((self.last_frame(), self.last_blank))
    }

    /// The next frame the backend delivered, if there is one now. It is
    /// read where it lies when its pages follow one another (a page
    /// each but the last full), else copied out of them; its pages go
    /// back to the backend at the next call (or at once, when copied).
    /// A chain with a failed part is dropped whole.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        self.give_back();
        // The frame being put together: its pages and their bytes, and
        // whether each part so far was good.
        let mut parts = heapless::Vec::<(usize, usize), MAX_FRAME_SLOTS>::new();
        let mut ok = true;
        loop {
            let rsp = match self.front.pop() {
                Ok(Some(r)) => r,
                _ => {
                    // Ask to be woken for the next one (the backend answers
                    // a chain's parts together: none is left half-taken).
                    if !self.front.final_check().unwrap_or(false) {
                        self.post_again(&parts);
                        return None;
                    }
                    continue;
                }
            };
            let i = rsp.id as usize;
            if i >= self.pages.len() {
                continue;
            }
            let part = usize::from(rsp.len).min(SLOT_BYTES);
            let good = ok && rsp.status == 0 && part > 0;
            if !(good && parts.push((i, part)).is_ok()) {
                ok = false;
                let _ = self.post(i);
            }
            if rsp.flags & RX_MORE != 0 {
                continue;
            }
            if !ok {
                self.post_again(&parts);
                (parts, ok) = (heapless::Vec::new(), true);
                continue;
            }
            let len = parts.iter().map(|&(_, n)| n).sum();
            self.last_in_place = follow_one_another(&parts);
            if self.last_in_place {
                self.lent = Some((parts[0].0, parts.len()));
            } else {
                let mut at = 0;
                for &(i, n) in &parts {
                    self.frame[at..at + n].copy_from_slice(&self.pages.page(i)[..n]);
                    at += n;
                }
                self.post_again(&parts);
            }
            self.received += 1;
            self.largest = self.largest.max(len);
            self.last_blank = rsp.flags & RX_TCP_CSUM_BLANK != 0;
            self.last_len = len;
            return Some(self.last_frame());
        }
    }

    /// Posts the pages of `parts` again.
    fn post_again(&mut self, parts: &[(usize, usize)]) {
        for &(i, _) in parts {
            let _ = self.post(i);
        }
        self.publish();
    }
}

/// Whether a frame's parts (page, bytes) lie one after the other: pages
/// in a run, every part but the last a whole page.
fn follow_one_another(parts: &[(usize, usize)]) -> bool {
    let Some(&(first, _)) = parts.first() else {
        return false;
    };
    parts
        .iter()
        .enumerate()
        .all(|(k, &(page, n))| page == first + k && (k + 1 == parts.len() || n == SLOT_BYTES))
}

/// Every one of `count` (at most 64) pages free.
fn all_pages(count: usize) -> u64 {
    u64::MAX >> (64 - count)
}

/// The first of `count` free pages one after the other in `free` (bit `i`:
/// page `i`), if there is such a run.
fn free_run(free: u64, count: usize) -> Option<usize> {
    // Bit `i` of `run` ends up set where pages `i..i + count` all are.
    let run = (1..count).fold(free, |run, k| run & (free >> k));
    (run != 0).then(|| run.trailing_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::{all_pages, follow_one_another, free_run, SLOT_BYTES};

    #[test]
    fn a_frame_of_several_pages_gets_the_first_run_of_free_pages() {
        assert_eq!(all_pages(16), 0xffff);
        assert_eq!(all_pages(64), u64::MAX);
        assert_eq!(free_run(0b1011, 1), Some(0));
        assert_eq!(free_run(0b1011, 2), Some(0));
        assert_eq!(free_run(0b1101, 2), Some(2));
        assert_eq!(free_run(0b0111_0110, 3), Some(4));
        assert_eq!(free_run(0b0101_0101, 2), None);
        assert_eq!(free_run(0, 1), None);
        assert_eq!(free_run(all_pages(16), 4), Some(0));
        // A run never reaches past the last page.
        assert_eq!(free_run(1 << 63, 2), None);
        assert_eq!(free_run(0b11 << 62, 2), Some(62));
    }

    #[test]
    fn a_frame_is_read_in_place_only_when_its_pages_follow_one_another() {
        let page = SLOT_BYTES;
        assert!(follow_one_another(&[(5, 60)]));
        assert!(follow_one_another(&[(5, page), (6, page), (7, 100)]));
        // Pages out of order, a gap, the ring's pages wrapping round.
        assert!(!follow_one_another(&[(6, page), (5, 100)]));
        assert!(!follow_one_another(&[(5, page), (7, 100)]));
        assert!(!follow_one_another(&[(63, page), (0, 100)]));
        // A part short of a page before the last: its bytes would not
        // follow on.
        assert!(!follow_one_another(&[(5, 100), (6, 100)]));
        assert!(!follow_one_another(&[]));
    }
}
