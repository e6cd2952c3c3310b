//! A ring header as an onlooker sees it (`toolstack ring list`): a copy of
//! the first bytes of a ring's first page, decoded and judged. The copy may
//! hold anything (a hostile or broken frontend wrote it), so nothing here
//! trusts it: it only says what it finds.

use crate::ring::{slots_for_pages, State, HEADER_BYTES, RING_MAGIC, RING_VERSION};

/// The shared indices and identity of a ring, from a copy of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingView {
    pub magic: u32,
    pub version: u32,
    pub pages: u32,
    pub slots: u32,
    pub state: u32,
    pub epoch: u32,
    pub req_prod: u32,
    pub req_event: u32,
    pub rsp_prod: u32,
    pub rsp_event: u32,
    /// The frontend's private indices, as it published them.
    pub req_prod_pvt: u32,
    pub rsp_cons: u32,
    /// The backend's private indices, as it published them.
    pub req_cons: u32,
    pub rsp_prod_pvt: u32,
}

/// Where a request or response slot stands, from the indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotStage {
    /// A request published, not yet taken by the backend.
    Waiting,
    /// A request the backend has taken and not answered.
    Taken,
    /// A response published, not yet taken by the frontend.
    Unread,
}

/// What is wrong with a ring, as far as its header shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    /// Not a ring header (magic, version or size wrong).
    NotARing,
    /// More responses than requests, more requests out than slots, or a
    /// side's private index outside what the shared ones allow.
    BrokenIndices,
}

fn word(bytes: &[u8], offset: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(w)
}

impl RingView {
    /// Decodes a copy of a ring header (at least [`HEADER_BYTES`] long).
    pub fn parse(bytes: &[u8]) -> Option<RingView> {
        if bytes.len() < HEADER_BYTES {
            return None;
        }
        Some(RingView {
            magic: word(bytes, 0),
            version: word(bytes, 4),
            pages: word(bytes, 8),
            slots: word(bytes, 12),
            state: word(bytes, 16),
            epoch: word(bytes, 20),
            req_prod: word(bytes, 128),
            req_event: word(bytes, 256),
            rsp_prod: word(bytes, 384),
            rsp_event: word(bytes, 512),
            req_prod_pvt: word(bytes, 640),
            rsp_cons: word(bytes, 644),
            req_cons: word(bytes, 768),
            rsp_prod_pvt: word(bytes, 772),
        })
    }

    /// Requests published and not yet answered.
    pub fn in_flight(&self) -> u32 {
        self.req_prod.wrapping_sub(self.rsp_prod)
    }

    /// Published requests the backend has not taken yet.
    pub fn waiting(&self) -> u32 {
        self.req_prod.wrapping_sub(self.req_cons)
    }

    /// Requests the backend took and has not answered (published).
    pub fn taken(&self) -> u32 {
        self.req_cons.wrapping_sub(self.rsp_prod)
    }

    /// Published responses the frontend has not taken yet.
    pub fn unread(&self) -> u32 {
        self.rsp_prod.wrapping_sub(self.rsp_cons)
    }

    /// Every slot with something in it, oldest first: (free-running index,
    /// stage). Empty unless the indices are sound (the copy may be anything).
    pub fn slots_in_use(&self) -> impl Iterator<Item = (u32, SlotStage)> + '_ {
        let sound = self.verdict() == Verdict::Healthy;
        let (unread, taken, waiting) = if sound {
            (self.unread(), self.taken(), self.waiting())
        } else {
            (0, 0, 0)
        };
        let responses = (0..unread).map(|k| (self.rsp_cons.wrapping_add(k), SlotStage::Unread));
        let taken = (0..taken).map(|k| (self.rsp_prod.wrapping_add(k), SlotStage::Taken));
        let waiting = (0..waiting).map(|k| (self.req_cons.wrapping_add(k), SlotStage::Waiting));
        responses.chain(taken).chain(waiting)
    }

    /// The connection state, by name.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            s if s == State::Disconnected as u32 => "disconnected",
            s if s == State::Connected as u32 => "connected",
            s if s == State::Resetting as u32 => "resetting",
            _ => "invalid",
        }
    }

    /// Whether the header is a ring's and its indices make sense.
    pub fn verdict(&self) -> Verdict {
        let sized = self.pages > 0 && slots_for_pages(self.pages) == self.slots;
        if self.magic != RING_MAGIC || self.version != RING_VERSION || !sized {
            return Verdict::NotARing;
        }
        if self.in_flight() > self.slots || self.state_name() == "invalid" {
            return Verdict::BrokenIndices;
        }
        // Each private index lies between the shared ones around it: the
        // backend took no more than was published and answered no more than
        // it took; the frontend took no more responses than were published.
        let fits = |lo: u32, mid: u32, hi: u32| mid.wrapping_sub(lo) <= hi.wrapping_sub(lo);
        let private_sound = fits(self.rsp_prod, self.req_cons, self.req_prod)
            && fits(self.rsp_prod, self.rsp_prod_pvt, self.req_cons)
            && fits(
                self.rsp_prod.wrapping_sub(self.slots),
                self.rsp_cons,
                self.rsp_prod,
            )
            && fits(
                self.req_prod,
                self.req_prod_pvt,
                self.rsp_cons.wrapping_add(self.slots),
            );
        if !private_sound {
            return Verdict::BrokenIndices;
        }
        Verdict::Healthy
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::ring::{Back, Front, Header, Shared};
    use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use std::vec::Vec;

    /// The header's bytes as another domain's copy of the page would hold them.
    fn bytes_of(h: &Header) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        let fields = [
            (0, h.magic.load(Relaxed)),
            (4, h.version.load(Relaxed)),
            (8, h.pages.load(Relaxed)),
            (12, h.slots.load(Relaxed)),
            (16, h.state.load(Relaxed)),
            (20, h.epoch.load(Relaxed)),
            (128, h.req_prod.load(Relaxed)),
            (256, h.req_event.load(Relaxed)),
            (384, h.rsp_prod.load(Relaxed)),
            (512, h.rsp_event.load(Relaxed)),
            (640, h.front_private.req_prod_pvt.load(Relaxed)),
            (644, h.front_private.rsp_cons.load(Relaxed)),
            (768, h.back_private.req_cons.load(Relaxed)),
            (772, h.back_private.rsp_prod_pvt.load(Relaxed)),
        ];
        for (at, v) in fields {
            b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn a_live_ring_reads_back_as_written() {
        let header = Header::new();
        let words: Vec<AtomicU64> = (0..(4096 - HEADER_BYTES) / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        let mut front: Front<'_, [u8; 64], [u8; 64]> =
            Front::init(Shared::new(&header, &words), 1).unwrap();
        for _ in 0..3 {
            front.push(&[7; 64]).unwrap();
        }
        front.publish();
        let v = RingView::parse(&bytes_of(&header)).unwrap();
        assert_eq!(v.req_prod, 3);
        assert_eq!(v.rsp_prod, 0);
        assert_eq!(v.in_flight(), 3);
        assert_eq!(v.epoch, 1);
        assert_eq!(v.state_name(), "connected");
        assert_eq!(v.verdict(), Verdict::Healthy);
    }

    #[test]
    fn private_indices_tell_waiting_taken_and_unread_slots_apart() {
        let header = Header::new();
        let words: Vec<AtomicU64> = (0..(4096 - HEADER_BYTES) / 8)
            .map(|_| AtomicU64::new(0))
            .collect();
        let shared = Shared::new(&header, &words);
        let mut front: Front<'_, [u8; 64], [u8; 64]> = Front::init(shared, 1).unwrap();
        let mut back: Back<'_, [u8; 64], [u8; 64]> = Back::attach(shared).unwrap();
        for _ in 0..6 {
            front.push(&[1; 64]).unwrap();
        }
        front.publish();
        front.push(&[2; 64]).unwrap(); // written, not published
        for _ in 0..4 {
            back.pop().unwrap().unwrap();
        }
        for _ in 0..3 {
            back.push(&[3; 64]).unwrap();
        }
        back.publish();
        back.push(&[4; 64]).unwrap(); // written, not published
        front.pop().unwrap().unwrap();
        let v = RingView::parse(&bytes_of(&header)).unwrap();
        assert_eq!((v.req_prod_pvt, v.req_prod, v.req_cons), (7, 6, 4));
        assert_eq!((v.rsp_prod_pvt, v.rsp_prod, v.rsp_cons), (4, 3, 1));
        assert_eq!((v.waiting(), v.taken(), v.unread()), (2, 1, 2));
        assert_eq!(v.verdict(), Verdict::Healthy);
        let stages: Vec<(u32, SlotStage)> = v.slots_in_use().collect();
        assert_eq!(
            stages,
            [
                (1, SlotStage::Unread),
                (2, SlotStage::Unread),
                (3, SlotStage::Taken),
                (4, SlotStage::Waiting),
                (5, SlotStage::Waiting),
            ]
        );
        // A backend claiming to have taken more than was published.
        let mut b = bytes_of(&header);
        b[768..772].copy_from_slice(&9u32.to_le_bytes());
        let v = RingView::parse(&b).unwrap();
        assert_eq!(v.verdict(), Verdict::BrokenIndices);
        assert_eq!(v.slots_in_use().count(), 0);
        // A frontend claiming to have read responses not yet published.
        let mut b = bytes_of(&header);
        b[644..648].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(
            RingView::parse(&b).unwrap().verdict(),
            Verdict::BrokenIndices
        );
    }

    #[test]
    fn scribbled_headers_are_judged_not_trusted() {
        let mut bytes = [0u8; HEADER_BYTES];
        assert_eq!(
            RingView::parse(&bytes).unwrap().verdict(),
            Verdict::NotARing
        );
        bytes[0..4].copy_from_slice(&RING_MAGIC.to_le_bytes());
        bytes[4..8].copy_from_slice(&RING_VERSION.to_le_bytes());
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        bytes[12..16].copy_from_slice(&slots_for_pages(1).to_le_bytes());
        bytes[16..20].copy_from_slice(&1u32.to_le_bytes());
        // Responses ahead of requests.
        bytes[384..388].copy_from_slice(&5u32.to_le_bytes());
        assert_eq!(
            RingView::parse(&bytes).unwrap().verdict(),
            Verdict::BrokenIndices
        );
        assert!(RingView::parse(&bytes[..100]).is_none());
    }
}
