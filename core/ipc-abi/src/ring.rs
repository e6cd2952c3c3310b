//! The shared-memory request/response ring every frontend and backend use.
//!
//! Owns: the layout of a ring in granted pages ([`Header`] then slots), and
//! the two ends' logic ([`Front`], [`Back`]). Learnt from Xen's `io/ring.h`,
//! with these differences:
//!
//! - each index the two sides share sits on its own cache line;
//! - the page count is part of the header, so a big ring needs no new protocol;
//! - every slot is copied out of shared memory once, then validated by the
//!   protocol layer (no double fetch), and a peer index that runs ahead by more
//!   than the ring or goes backwards is a [`RingError`], never an
//!   out-of-bounds access or a hang;
//! - a connection state and an epoch let either side tell a restarted peer
//!   from a slow one;
//! - each side also publishes its private indices (on a line of its own),
//!   which nobody acts on, so that an onlooker can see where each side is.
//!
//! Shared memory is seen only as atomics (`&[AtomicU64]` for slots), so this
//! module needs no `unsafe`: whatever the peer writes, the worst it can cause
//! here is an error or garbage that the protocol layer refuses.

use core::marker::PhantomData;
use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use crossbeam_utils::CachePadded;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `"XRNG"`: a header that holds a ring.
pub const RING_MAGIC: u32 = 0x4752_4e58;
/// Version of this ring layout.
pub const RING_VERSION: u32 = 3;
/// Bytes of each slot (requests and responses share slots, as in Xen).
pub const SLOT_BYTES: usize = 64;
const SLOT_WORDS: usize = SLOT_BYTES / 8;

/// Connection states in the shared header.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Disconnected = 0,
    Connected = 1,
    /// The frontend is re-initialising the ring (after a backend restart).
    Resetting = 2,
}

/// The first bytes of a ring's first page. Each shared index has its own cache line.
#[repr(C)]
pub struct Header {
    pub magic: AtomicU32,
    pub version: AtomicU32,
    /// Pages the ring occupies, header included.
    pub pages: AtomicU32,
    /// Number of slots (a power of two).
    pub slots: AtomicU32,
    /// A [`State`].
    pub state: AtomicU32,
    /// Grows each time the frontend (re)initialises the ring.
    pub epoch: AtomicU32,
    /// Requests published by the frontend (free-running).
    pub req_prod: CachePadded<AtomicU32>,
    /// The backend wants a notification when `req_prod` passes this.
    pub req_event: CachePadded<AtomicU32>,
    /// Responses published by the backend (free-running).
    pub rsp_prod: CachePadded<AtomicU32>,
    /// The frontend wants a notification when `rsp_prod` passes this.
    pub rsp_event: CachePadded<AtomicU32>,
    /// The frontend's private indices, published for onlookers only.
    pub front_private: CachePadded<FrontPrivate>,
    /// The backend's private indices, published for onlookers only.
    pub back_private: CachePadded<BackPrivate>,
    /// Written by the backend: the id of the last request whose effect is
    /// complete where it cannot be undone (console-dom: the last `Write`
    /// whose line is whole on the UART, stored in the same kernel call that
    /// ends the line). A frontend whose backend died reads it before it
    /// re-initialises the ring and sends again only the requests after it.
    /// Protocols that do not need it leave it 0.
    pub back_done: CachePadded<AtomicU64>,
}

/// What only the frontend knows, written by it as it goes so that
/// `toolstack ring list` can show it. Nobody acts on these: the other side
/// never reads them, and an onlooker only reports them.
#[repr(C)]
pub struct FrontPrivate {
    /// Requests written into slots, published or not.
    pub req_prod_pvt: AtomicU32,
    /// Responses taken.
    pub rsp_cons: AtomicU32,
}

/// What only the backend knows, published as [`FrontPrivate`] is.
#[repr(C)]
pub struct BackPrivate {
    /// Requests taken (being served, or answered).
    pub req_cons: AtomicU32,
    /// Responses written into slots, published or not.
    pub rsp_prod_pvt: AtomicU32,
}

impl Header {
    /// An all-zero header (a disconnected ring).
    pub const fn new() -> Header {
        Header {
            magic: AtomicU32::new(0),
            version: AtomicU32::new(0),
            pages: AtomicU32::new(0),
            slots: AtomicU32::new(0),
            state: AtomicU32::new(0),
            epoch: AtomicU32::new(0),
            req_prod: CachePadded::new(AtomicU32::new(0)),
            req_event: CachePadded::new(AtomicU32::new(0)),
            rsp_prod: CachePadded::new(AtomicU32::new(0)),
            rsp_event: CachePadded::new(AtomicU32::new(0)),
            front_private: CachePadded::new(FrontPrivate {
                req_prod_pvt: AtomicU32::new(0),
                rsp_cons: AtomicU32::new(0),
            }),
            back_private: CachePadded::new(BackPrivate {
                req_cons: AtomicU32::new(0),
                rsp_prod_pvt: AtomicU32::new(0),
            }),
            back_done: CachePadded::new(AtomicU64::new(0)),
        }
    }
}

impl Default for Header {
    fn default() -> Self {
        Self::new()
    }
}

/// Bytes before the first slot.
pub const HEADER_BYTES: usize = core::mem::size_of::<Header>();

// The layout, for anyone checking it from another language: on x86_64
// `CachePadded` is 128 bytes (two lines, for the adjacent-line prefetcher).
const _: () = assert!(core::mem::align_of::<CachePadded<AtomicU32>>() == 128);
const _: () = assert!(core::mem::offset_of!(Header, req_prod) == 128);
const _: () = assert!(core::mem::offset_of!(Header, req_event) == 256);
const _: () = assert!(core::mem::offset_of!(Header, rsp_prod) == 384);
const _: () = assert!(core::mem::offset_of!(Header, rsp_event) == 512);
const _: () = assert!(core::mem::offset_of!(Header, front_private) == 640);
const _: () = assert!(core::mem::offset_of!(Header, back_private) == 768);
const _: () = assert!(core::mem::offset_of!(Header, back_done) == 896);
const _: () = assert!(HEADER_BYTES == 1024 && HEADER_BYTES.is_multiple_of(SLOT_BYTES));

/// Slots that fit in `pages` pages after the header (a power of two).
pub const fn slots_for_pages(pages: u32) -> u32 {
    let bytes = pages as usize * 4096 - HEADER_BYTES;
    let n = (bytes / SLOT_BYTES) as u32;
    if n == 0 {
        0
    } else {
        1 << (31 - n.leading_zeros())
    }
}

/// How a ring can fail; every one of these means "disconnect this peer".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The header does not describe a ring of this layout.
    BadHeader,
    /// The peer's producer index is more than a ring ahead, or went backwards.
    IndexOutOfRange { index: u32, consumed: u32 },
    /// The peer answered more than was asked.
    TooManyResponses,
    /// No free slot (the caller should wait for responses).
    Full,
    /// No consumed request to answer.
    NothingToAnswer,
}

/// Shared memory of a ring: its header and its slots, as atomics.
#[derive(Clone, Copy)]
pub struct Shared<'a> {
    header: &'a Header,
    slots: &'a [AtomicU64],
}

impl<'a> Shared<'a> {
    /// Wraps a header and a slot area of at least `slots * SLOT_BYTES` bytes.
    pub fn new(header: &'a Header, slot_words: &'a [AtomicU64]) -> Shared<'a> {
        Shared {
            header,
            slots: slot_words,
        }
    }

    pub fn header(&self) -> &'a Header {
        self.header
    }

    fn slot_count(&self) -> Option<u32> {
        let n = self.header.slots.load(Ordering::Acquire);
        let fits = (n as usize)
            .checked_mul(SLOT_WORDS)
            .is_some_and(|w| w <= self.slots.len());
        (n.is_power_of_two() && fits).then_some(n)
    }

    /// Writes a message into a slot, touching only the words it needs.
    fn write_slot<T: IntoBytes + Immutable>(&self, index: u32, mask: u32, value: &T) {
        let n = core::mem::size_of::<T>().div_ceil(8);
        let mut words = [0u64; SLOT_WORDS];
        let bytes = value.as_bytes();
        words.as_mut_bytes()[..bytes.len()].copy_from_slice(bytes);
        let base = (index & mask) as usize * SLOT_WORDS;
        for (slot, w) in self.slots[base..base + n].iter().zip(&words) {
            slot.store(*w, Ordering::Relaxed);
        }
    }

    /// Copies a slot out once; the caller validates the copy.
    fn read_slot<T: FromBytes>(&self, index: u32, mask: u32) -> T {
        let n = core::mem::size_of::<T>().div_ceil(8);
        let mut words = [0u64; SLOT_WORDS];
        let base = (index & mask) as usize * SLOT_WORDS;
        for (w, slot) in words.iter_mut().zip(&self.slots[base..base + n]) {
            *w = slot.load(Ordering::Relaxed);
        }
        T::read_from_prefix(words.as_bytes())
            .map(|(v, _)| v)
            .unwrap_or_else(|_| T::new_zeroed())
    }
}

/// Whether publishing `old..new` crosses the peer's event index (Xen's rule).
fn crosses(event: u32, old: u32, new: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Messages a ring carries must fit a slot.
pub trait Message: FromBytes + IntoBytes + Immutable + KnownLayout + Copy {}
impl<T: FromBytes + IntoBytes + Immutable + KnownLayout + Copy> Message for T {}

/// The frontend's end: pushes requests, takes responses.
pub struct Front<'a, Req, Rsp> {
    shared: Shared<'a>,
    mask: u32,
    size: u32,
    req_prod_pvt: u32,
    req_published: u32,
    rsp_cons: u32,
    /// The backend's `rsp_prod` when last read (checked then).
    rsp_prod_seen: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<'a, Req: Message, Rsp: Message> Front<'a, Req, Rsp> {
    /// Initialises the shared memory as an empty, connected ring of `pages` pages.
    pub fn init(shared: Shared<'a>, pages: u32) -> Result<Front<'a, Req, Rsp>, RingError> {
        const {
            assert!(
                core::mem::size_of::<Req>() <= SLOT_BYTES
                    && core::mem::size_of::<Rsp>() <= SLOT_BYTES
            )
        };
        let h = shared.header;
        let slots = slots_for_pages(pages);
        if slots == 0 || (slots as usize) * SLOT_WORDS > shared.slots.len() {
            return Err(RingError::BadHeader);
        }
        h.state.store(State::Resetting as u32, Ordering::Release);
        h.magic.store(RING_MAGIC, Ordering::Relaxed);
        h.version.store(RING_VERSION, Ordering::Relaxed);
        h.pages.store(pages, Ordering::Relaxed);
        h.slots.store(slots, Ordering::Relaxed);
        h.req_prod.store(0, Ordering::Relaxed);
        h.rsp_prod.store(0, Ordering::Relaxed);
        h.req_event.store(1, Ordering::Relaxed);
        h.rsp_event.store(1, Ordering::Relaxed);
        h.front_private.req_prod_pvt.store(0, Ordering::Relaxed);
        h.front_private.rsp_cons.store(0, Ordering::Relaxed);
        h.back_private.req_cons.store(0, Ordering::Relaxed);
        h.back_private.rsp_prod_pvt.store(0, Ordering::Relaxed);
        h.back_done.store(0, Ordering::Relaxed);
        h.epoch.fetch_add(1, Ordering::Relaxed);
        h.state.store(State::Connected as u32, Ordering::Release);
        Ok(Front {
            shared,
            mask: slots - 1,
            size: slots,
            req_prod_pvt: 0,
            req_published: 0,
            rsp_cons: 0,
            rsp_prod_seen: 0,
            _types: PhantomData,
        })
    }

    /// Slots in the ring.
    pub fn capacity(&self) -> u32 {
        self.size
    }

    /// Requests that may still be pushed before responses come back.
    pub fn free_slots(&self) -> u32 {
        self.size - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Queues a request (not visible to the backend until `publish`).
    pub fn push(&mut self, req: &Req) -> Result<(), RingError> {
        if self.free_slots() == 0 {
            return Err(RingError::Full);
        }
        self.shared.write_slot(self.req_prod_pvt, self.mask, req);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        let private = &self.shared.header.front_private;
        private
            .req_prod_pvt
            .store(self.req_prod_pvt, Ordering::Relaxed);
        Ok(())
    }

    /// Makes queued requests visible; returns whether the backend must be notified.
    pub fn publish(&mut self) -> bool {
        let h = self.shared.header;
        let old = self.req_published;
        let new = self.req_prod_pvt;
        h.req_prod.store(new, Ordering::Release);
        self.req_published = new;
        fence(Ordering::SeqCst);
        crosses(h.req_event.load(Ordering::Relaxed), old, new)
    }

    /// Takes the next response, if one is published.
    pub fn pop(&mut self) -> Result<Option<Rsp>, RingError> {
        if self.rsp_prod_seen == self.rsp_cons {
            // Only re-read the shared index when what we saw is used up.
            let prod = self.shared.header.rsp_prod.load(Ordering::Acquire);
            let available = prod.wrapping_sub(self.rsp_cons);
            if available > self.req_published.wrapping_sub(self.rsp_cons) {
                return Err(RingError::TooManyResponses);
            }
            if available == 0 {
                return Ok(None);
            }
            self.rsp_prod_seen = prod;
        }
        let rsp = self.shared.read_slot(self.rsp_cons, self.mask);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        let private = &self.shared.header.front_private;
        private.rsp_cons.store(self.rsp_cons, Ordering::Relaxed);
        Ok(Some(rsp))
    }

    /// Whether the backend has published responses not taken yet (a look,
    /// no more: a bad index shows at the next [`Front::pop`]).
    pub fn responses_waiting(&self) -> bool {
        self.rsp_prod_seen != self.rsp_cons
            || self.shared.header.rsp_prod.load(Ordering::Acquire) != self.rsp_cons
    }

    /// Asks to be notified of the next response, then checks once more (the
    /// final check that closes the lost-wake-up race). True: responses wait.
    pub fn final_check(&mut self) -> Result<bool, RingError> {
        let h = self.shared.header;
        h.rsp_event
            .store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let prod = h.rsp_prod.load(Ordering::Acquire);
        let available = prod.wrapping_sub(self.rsp_cons);
        if available > self.req_published.wrapping_sub(self.rsp_cons) {
            return Err(RingError::TooManyResponses);
        }
        Ok(available > 0)
    }

    /// The epoch this end initialised.
    pub fn epoch(&self) -> u32 {
        self.shared.header.epoch.load(Ordering::Relaxed)
    }

    /// The id the backend last marked done ([`Header::back_done`]): read
    /// after it died, before [`Front::init`] clears it.
    pub fn back_done(&self) -> u64 {
        self.shared.header.back_done.load(Ordering::Acquire)
    }
}

/// The backend's end: takes requests, pushes responses.
pub struct Back<'a, Req, Rsp> {
    shared: Shared<'a>,
    mask: u32,
    size: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    rsp_published: u32,
    /// The frontend's `req_prod` when last read (checked then).
    req_prod_seen: u32,
    _types: PhantomData<(Req, Rsp)>,
}

impl<'a, Req: Message, Rsp: Message> Back<'a, Req, Rsp> {
    /// Attaches to a ring the frontend initialised; checks its header.
    /// Requests published before the attach are served like any others.
    pub fn attach(shared: Shared<'a>) -> Result<Back<'a, Req, Rsp>, RingError> {
        const {
            assert!(
                core::mem::size_of::<Req>() <= SLOT_BYTES
                    && core::mem::size_of::<Rsp>() <= SLOT_BYTES
            )
        };
        let h = shared.header;
        if h.magic.load(Ordering::Acquire) != RING_MAGIC
            || h.version.load(Ordering::Relaxed) != RING_VERSION
        {
            return Err(RingError::BadHeader);
        }
        let size = shared.slot_count().ok_or(RingError::BadHeader)?;
        // Resume after the last published response: requests the frontend
        // published before we attached are simply pending.
        let rsp = h.rsp_prod.load(Ordering::Acquire);
        let prod = h.req_prod.load(Ordering::Acquire);
        if prod.wrapping_sub(rsp) > size {
            return Err(RingError::IndexOutOfRange {
                index: prod,
                consumed: rsp,
            });
        }
        h.back_private.req_cons.store(rsp, Ordering::Relaxed);
        h.back_private.rsp_prod_pvt.store(rsp, Ordering::Relaxed);
        Ok(Back {
            shared,
            mask: size - 1,
            size,
            req_cons: rsp,
            rsp_prod_pvt: rsp,
            rsp_published: rsp,
            req_prod_seen: rsp,
            _types: PhantomData,
        })
    }

    /// Takes the next request, if the frontend published one.
    pub fn pop(&mut self) -> Result<Option<Req>, RingError> {
        // Only re-read the shared index when what we saw is used up.
        if self.req_prod_seen == self.req_cons && self.pending()? == 0 {
            return Ok(None);
        }
        let req = self.shared.read_slot(self.req_cons, self.mask);
        self.req_cons = self.req_cons.wrapping_add(1);
        let private = &self.shared.header.back_private;
        private.req_cons.store(self.req_cons, Ordering::Relaxed);
        Ok(Some(req))
    }

    /// How many requests the frontend published that are not taken yet
    /// (checked as `pop` checks them): a backend that needs several at
    /// once (a frame over several receive buffers) looks before it takes.
    pub fn pending(&mut self) -> Result<u32, RingError> {
        let prod = self.shared.header.req_prod.load(Ordering::Acquire);
        let available = self.available_to(prod)?;
        self.req_prod_seen = prod;
        Ok(available)
    }

    /// Requests not taken yet if the frontend's index is `prod`, unless
    /// that says more than the ring holds.
    fn available_to(&self, prod: u32) -> Result<u32, RingError> {
        let available = prod.wrapping_sub(self.req_cons);
        // Outstanding = requests taken but not answered; the frontend may not exceed the ring.
        let outstanding = self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        if available > self.size - outstanding.min(self.size) {
            return Err(RingError::IndexOutOfRange {
                index: prod,
                consumed: self.req_cons,
            });
        }
        Ok(available)
    }

    /// Queues a response to a request already taken (not visible until `publish`).
    pub fn push(&mut self, rsp: &Rsp) -> Result<(), RingError> {
        if self.rsp_prod_pvt == self.req_cons {
            return Err(RingError::NothingToAnswer);
        }
        self.shared.write_slot(self.rsp_prod_pvt, self.mask, rsp);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        let private = &self.shared.header.back_private;
        private
            .rsp_prod_pvt
            .store(self.rsp_prod_pvt, Ordering::Relaxed);
        Ok(())
    }

    /// Makes queued responses visible; returns whether the frontend must be notified.
    pub fn publish(&mut self) -> bool {
        let h = self.shared.header;
        let old = self.rsp_published;
        let new = self.rsp_prod_pvt;
        h.rsp_prod.store(new, Ordering::Release);
        self.rsp_published = new;
        fence(Ordering::SeqCst);
        crosses(h.rsp_event.load(Ordering::Relaxed), old, new)
    }

    /// Asks to be notified of the next request, then checks once more. True: requests wait.
    pub fn final_check(&mut self) -> Result<bool, RingError> {
        let h = self.shared.header;
        h.req_event
            .store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        let prod = h.req_prod.load(Ordering::Acquire);
        Ok(self.available_to(prod)? > 0)
    }

    /// The frontend's connection state, as it claims it.
    pub fn state(&self) -> State {
        match self.shared.header.state.load(Ordering::Acquire) {
            1 => State::Connected,
            2 => State::Resetting,
            _ => State::Disconnected,
        }
    }

    /// The epoch of the ring this end attached to.
    pub fn epoch(&self) -> u32 {
        self.shared.header.epoch.load(Ordering::Relaxed)
    }

    /// Where this end marks requests done ([`Header::back_done`]).
    pub fn back_done(&self) -> &'a AtomicU64 {
        &self.shared.header.back_done
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    struct Req {
        id: u64,
        value: u64,
    }

    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
    struct Rsp {
        id: u64,
        status: u64,
    }

    struct Mem {
        header: Header,
        slots: Vec<AtomicU64>,
    }

    impl Mem {
        /// A ring of one page (50 slots fit; 32 are used).
        fn new(pages: u32) -> Mem {
            let words = (pages as usize * 4096 - HEADER_BYTES) / 8;
            Mem {
                header: Header::new(),
                slots: (0..words).map(|_| AtomicU64::new(0)).collect(),
            }
        }
        fn shared(&self) -> Shared<'_> {
            Shared::new(&self.header, &self.slots)
        }
    }

    #[test]
    fn slot_counts_are_powers_of_two_that_fit() {
        assert_eq!(slots_for_pages(1), 32);
        assert_eq!(slots_for_pages(2), 64);
        assert_eq!(slots_for_pages(16), 512);
        assert_eq!(slots_for_pages(17), 1024);
        for p in 1..64 {
            let n = slots_for_pages(p) as usize;
            assert!(n.is_power_of_two() && HEADER_BYTES + n * SLOT_BYTES <= p as usize * 4096);
        }
    }

    #[test]
    fn requests_and_responses_round_trip_in_order() {
        let mem = Mem::new(1);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        assert_eq!(back.state(), State::Connected);
        for id in 0..10 {
            front.push(&Req { id, value: id * 3 }).unwrap();
        }
        assert!(front.publish(), "the backend asked for the first request");
        let mut got = Vec::new();
        while let Some(r) = back.pop().unwrap() {
            got.push(r);
            back.push(&Rsp {
                id: r.id,
                status: 0,
            })
            .unwrap();
        }
        assert_eq!(got.len(), 10);
        assert!(back.publish());
        for id in 0..10 {
            assert_eq!(front.pop().unwrap(), Some(Rsp { id, status: 0 }));
        }
        assert_eq!(front.pop().unwrap(), None);
    }

    #[test]
    fn a_full_ring_refuses_more_and_frees_on_responses() {
        let mem = Mem::new(1);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        for id in 0..32 {
            front.push(&Req { id, value: 0 }).unwrap();
        }
        assert_eq!(front.push(&Req { id: 99, value: 0 }), Err(RingError::Full));
        front.publish();
        let r = back.pop().unwrap().unwrap();
        back.push(&Rsp {
            id: r.id,
            status: 1,
        })
        .unwrap();
        back.publish();
        assert_eq!(front.pop().unwrap().unwrap().id, 0);
        assert!(front.push(&Req { id: 32, value: 0 }).is_ok());
    }

    #[test]
    fn notifications_are_suppressed_until_the_peer_asks() {
        let mem = Mem::new(1);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        front.push(&Req { id: 0, value: 0 }).unwrap();
        assert!(front.publish());
        // The backend has not consumed or re-armed: no second notification.
        front.push(&Req { id: 1, value: 0 }).unwrap();
        assert!(!front.publish());
        while back.pop().unwrap().is_some() {}
        assert!(!back.final_check().unwrap(), "nothing more waits");
        front.push(&Req { id: 2, value: 0 }).unwrap();
        assert!(front.publish(), "re-armed, so notified");
    }

    #[test]
    fn pending_counts_what_pop_would_give() {
        let mem = Mem::new(1);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        assert_eq!(back.pending(), Ok(0));
        for id in 0..3 {
            front.push(&Req { id, value: 0 }).unwrap();
        }
        assert_eq!(back.pending(), Ok(0), "not published yet");
        front.publish();
        assert_eq!(back.pending(), Ok(3));
        assert_eq!(back.pop().unwrap().map(|r| r.id), Some(0));
        assert_eq!(back.pending(), Ok(2));
        while back.pop().unwrap().is_some() {}
        assert_eq!(back.pending(), Ok(0));
    }

    #[test]
    fn answering_nothing_is_refused() {
        let mem = Mem::new(1);
        let _front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        assert_eq!(
            back.push(&Rsp { id: 0, status: 0 }),
            Err(RingError::NothingToAnswer)
        );
    }

    #[test]
    fn a_producer_running_ahead_or_backwards_is_an_error() {
        let mem = Mem::new(1);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        mem.header.req_prod.store(33, Ordering::SeqCst);
        assert!(matches!(back.pop(), Err(RingError::IndexOutOfRange { .. })));
        assert!(matches!(
            back.pending(),
            Err(RingError::IndexOutOfRange { .. })
        ));
        mem.header.req_prod.store(u32::MAX, Ordering::SeqCst);
        assert!(matches!(back.pop(), Err(RingError::IndexOutOfRange { .. })));
        assert!(matches!(
            back.pending(),
            Err(RingError::IndexOutOfRange { .. })
        ));
        mem.header.rsp_prod.store(5, Ordering::SeqCst);
        assert_eq!(front.pop(), Err(RingError::TooManyResponses));
    }

    #[test]
    fn a_backend_only_attaches_to_a_well_formed_ring() {
        let mem = Mem::new(1);
        assert!(
            Back::<Req, Rsp>::attach(mem.shared()).is_err(),
            "zeroed memory"
        );
        let _f: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        mem.header.slots.store(1 << 20, Ordering::SeqCst);
        assert_eq!(
            Back::<Req, Rsp>::attach(mem.shared()).err(),
            Some(RingError::BadHeader)
        );
        mem.header.slots.store(31, Ordering::SeqCst);
        assert_eq!(
            Back::<Req, Rsp>::attach(mem.shared()).err(),
            Some(RingError::BadHeader)
        );
    }

    #[test]
    fn requests_published_before_the_backend_attaches_are_served() {
        let mem = Mem::new(1);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        front.push(&Req { id: 7, value: 0 }).unwrap();
        front.publish();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        assert_eq!(back.pop().unwrap().map(|r| r.id), Some(7));
    }

    #[test]
    fn reinitialising_bumps_the_epoch() {
        let mem = Mem::new(1);
        let f1: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        let e1 = f1.epoch();
        let f2: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
        assert_eq!(f2.epoch(), e1 + 1);
    }

    /// Two threads, random batches, doorbells as event channels: nothing lost,
    /// duplicated or reordered, and no wake-up missed (a missed one would hang
    /// a side past its deadline).
    #[test]
    fn two_threads_with_random_batches_lose_nothing_and_miss_no_wakeup() {
        use std::time::{Duration, Instant};
        const N: u64 = 200_000;
        let mem = Mem::new(2);
        let to_back = AtomicU32::new(0);
        let to_front = AtomicU32::new(0);
        let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 2).unwrap();
        let mut back: Back<Req, Rsp> = Back::attach(mem.shared()).unwrap();
        let wait = |bell: &AtomicU32, seen: u32| {
            let deadline = Instant::now() + Duration::from_secs(20);
            while bell.load(Ordering::SeqCst) == seen {
                assert!(Instant::now() < deadline, "missed wake-up");
                std::thread::yield_now();
            }
        };
        crossbeam_utils::thread::scope(|s| {
            s.spawn(|_| {
                let mut answered = 0u64;
                let mut rng = 0x9e37_79b9_7f4a_7c15u64;
                while answered < N {
                    let seen = to_back.load(Ordering::SeqCst);
                    let mut batch = 0;
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let limit = 1 + rng % 64;
                    while batch < limit {
                        match back.pop().unwrap() {
                            Some(r) => {
                                assert_eq!(r.value, r.id ^ 0xabcd);
                                back.push(&Rsp {
                                    id: r.id,
                                    status: 7,
                                })
                                .unwrap();
                                batch += 1;
                                answered += 1;
                            }
                            None => break,
                        }
                    }
                    if back.publish() {
                        to_front.fetch_add(1, Ordering::SeqCst);
                    }
                    if batch == 0 && !back.final_check().unwrap() {
                        wait(&to_back, seen);
                    }
                }
            });
            let mut next_id = 0u64;
            let mut expect = 0u64;
            let mut rng = 0x2545_f491_4f6c_dd1du64;
            while expect < N {
                let seen = to_front.load(Ordering::SeqCst);
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let batch = 1 + rng % 300;
                let mut pushed = 0;
                while pushed < batch
                    && next_id < N
                    && front
                        .push(&Req {
                            id: next_id,
                            value: next_id ^ 0xabcd,
                        })
                        .is_ok()
                {
                    next_id += 1;
                    pushed += 1;
                }
                if front.publish() {
                    to_back.fetch_add(1, Ordering::SeqCst);
                }
                let mut got = 0;
                while let Some(r) = front.pop().unwrap() {
                    assert_eq!(r.id, expect, "lost, duplicated or reordered");
                    assert_eq!(r.status, 7);
                    expect += 1;
                    got += 1;
                }
                if got == 0 && pushed == 0 && !front.final_check().unwrap() {
                    wait(&to_front, seen);
                }
            }
        })
        .unwrap();
    }

    proptest! {
        /// A peer scribbling anything into the header and slots only ever
        /// yields a connection error or well-bounded data on our side.
        #[test]
        fn a_hostile_frontend_gets_errors_not_crashes(
            header in proptest::collection::vec(any::<u32>(), 10),
            slots in proptest::collection::vec(any::<u64>(), 64),
            steps in 1usize..200,
        ) {
            let mem = Mem::new(1);
            let _f: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
            let h = &mem.header;
            let fields = [&h.magic, &h.version, &h.pages, &h.slots, &h.state, &h.epoch, &*h.req_prod, &*h.req_event, &*h.rsp_prod, &*h.rsp_event];
            for (i, w) in slots.iter().enumerate() {
                mem.slots[i].store(*w, Ordering::SeqCst);
            }
            // Keep a valid ring most of the time so the backend attaches, then scribble.
            if let Ok(mut back) = Back::<Req, Rsp>::attach(mem.shared()) {
                for (f, v) in fields.iter().zip(&header) {
                    f.store(*v, Ordering::SeqCst);
                }
                let mut taken = 0u32;
                for _ in 0..steps {
                    if let Ok(n) = back.pending() {
                        prop_assert!(n <= 32, "more pending than slots without an error");
                    }
                    match back.pop() {
                        Ok(Some(_)) => {
                            taken += 1;
                            prop_assert!(taken <= 32, "more requests than slots without an error");
                            let _ = back.push(&Rsp { id: 0, status: 0 });
                        }
                        Ok(None) | Err(_) => break,
                    }
                }
                let _ = back.final_check();
                let _ = back.publish();
            }
        }

        #[test]
        fn a_hostile_backend_gets_errors_not_crashes(rsp_prod: u32, published in 0u64..32, steps in 1usize..100) {
            let mem = Mem::new(1);
            let mut front: Front<Req, Rsp> = Front::init(mem.shared(), 1).unwrap();
            for id in 0..published {
                front.push(&Req { id, value: 0 }).unwrap();
            }
            front.publish();
            mem.header.rsp_prod.store(rsp_prod, Ordering::SeqCst);
            let mut got = 0u64;
            for _ in 0..steps {
                match front.pop() {
                    Ok(Some(_)) => got += 1,
                    Ok(None) | Err(_) => break,
                }
            }
            prop_assert!(got <= published);
        }
    }
}
