//! Frames over several pages from a guest (a chain of transmit requests,
//! `TX_MORE`): taken, checked and switched.
//!
//! Owns: taking a chain off an interface's transmit ring, and its one
//! fast case. Only the chain's first page comes into this domain at
//! first: it holds the headers the switch decides on. A frame for one
//! other guest, whose pages are whole but the last, then goes from the
//! sender's pages to the receiver's in one `GrantCopyBatch`, page to page,
//! the first page from the copy here (so what was decided on is what is
//! delivered, whatever the sender writes meanwhile). Any other frame (a
//! broadcast, one whose checksum must be filled in, pages not whole) has
//! its other pages copied in too and goes the way a page-long frame goes.

use super::{
    copy_out, Fabric, Nic, PciTransport, Port, Status, Switched, Verdict, TX_TCP_CSUM_BLANK,
};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::Result as HypercallResult;
use domain_runtime::ipc_abi::proto::net::{
    frame_size_ok, slots_for_frame, TxRequest, TxResponse, MAX_FRAME_SLOTS, RX_TAKES_BLANK_CSUM,
    SLOT_BYTES,
};
use domain_runtime::net::checksum;
use domain_runtime::DomainId;
use zerocopy::FromZeros;

/// Requests a chain may have taken: one more than a frame may have, so
/// that a chain too long is seen.
const MOST: usize = MAX_FRAME_SLOTS + 1;

/// One page of a chain: its grant, where in it and how many bytes.
#[derive(Clone, Copy)]
struct Part {
    gref: u32,
    offset: u64,
    len: usize,
}

/// A chain taken off a transmit ring.
struct Chain {
    /// Every request taken, to be answered alike.
    ids: heapless::Vec<u64, MOST>,
    parts: heapless::Vec<Part, MOST>,
    /// The frame's length, if it is whole (its last part came, within
    /// `MAX_FRAME_SLOTS`) and every part good.
    len: Option<usize>,
}

impl Chain {
    /// Whether every part but the last fills its page: part `k` then lies
    /// in the frame where a receiver's page `k` takes it.
    fn whole_pages(&self) -> bool {
        let n = self.parts.len();
        self.parts[..n.saturating_sub(1)]
            .iter()
            .all(|p| p.offset == 0 && p.len == SLOT_BYTES)
    }
}

impl Fabric {
    /// Switches the chain `first` begins from interface `i` (`frame` is
    /// a buffer of `MAX_LOCAL_FRAME` bytes); returns how many requests it
    /// took. Every request is answered once the frame has gone (its pages
    /// may be read until then), all alike.
    pub(super) fn switch_chain(
        &mut self,
        i: usize,
        first: TxRequest,
        frame: &mut [u8],
        now: u64,
        nic: Option<&mut Nic<PciTransport>>,
    ) -> usize {
        let blank = first.flags & TX_TCP_CSUM_BLANK != 0;
        let chain = self.take_chain(i, first, frame);
        let accepted = match chain.len {
            Some(len) => self.switch_whole(i, &chain, len, frame, blank, now, nic),
            None => false,
        };
        let v = &mut self.vifs[i];
        if !accepted {
            v.counters.refused += 1;
        }
        for &id in chain.ids.iter() {
            let mut rsp = TxResponse::new_zeroed();
            rsp.id = id;
            rsp.status = if accepted { 0 } else { Status::Invalid as u32 };
            if v.tx.push(&rsp).is_err() {
                v.broken = true;
            }
        }
        chain.ids.len()
    }

    /// Switches a whole chain of `len` bytes from interface `i`, its first
    /// part in `frame`; false if it is refused.
    #[allow(clippy::too_many_arguments)]
    fn switch_whole(
        &mut self,
        i: usize,
        chain: &Chain,
        len: usize,
        frame: &mut [u8],
        blank: bool,
        now: u64,
        nic: Option<&mut Nic<PciTransport>>,
    ) -> bool {
        let (dom, from) = (self.vifs[i].dom, Port::Vif(self.vifs[i].id));
        let in_pages = chain.whole_pages();
        if !in_pages && fetch(dom, &chain.parts, frame).is_err() {
            return false;
        }
        // A blank checksum is said only of TCP over IPv4: the headers, in
        // the first page when the rest is not here.
        let head = if in_pages {
            &frame[..chain.parts[0].len]
        } else {
            &frame[..len]
        };
        if blank && checksum::tcp_ipv4_in(head, len).is_none() {
            return false;
        }
        if in_pages {
            if let Verdict::To(Port::Vif(to)) = self.switch.decide(from, &frame[..len], now) {
                if let Some(d) = self.vifs.iter().position(|v| v.id == to) {
                    let good = self.deliver_chain(d, dom, chain, frame, blank);
                    if good {
                        self.vifs[i].counters.sent += 1;
                    }
                    return good;
                }
            }
            if fetch(dom, &chain.parts, frame).is_err() {
                return false;
            }
        }
        let switched = Switched::new(&mut frame[..len], blank);
        self.forward(from, switched, now, nic);
        true
    }

    /// Takes the rest of the chain `first` begins from interface `i`'s
    /// transmit ring, its first part copied into `frame`. A chain the
    /// ring's end cuts short is refused (the runtime publishes a frame's
    /// requests together); after a bad part the rest of its chain is left
    /// in the ring, to be refused in turn as chains of their own.
    fn take_chain(&mut self, i: usize, first: TxRequest, frame: &mut [u8]) -> Chain {
        let v = &mut self.vifs[i];
        let mut chain = Chain {
            ids: heapless::Vec::new(),
            parts: heapless::Vec::new(),
            len: None,
        };
        let (mut len, mut req) = (0, first);
        let ok = loop {
            let _ = chain.ids.push(req.id);
            if chain.ids.len() > MAX_FRAME_SLOTS {
                break false;
            }
            let part = usize::from(req.len);
            let good = req.check() && len + part <= frame.len();
            if good {
                let _ = chain.parts.push(Part {
                    gref: req.gref,
                    offset: u64::from(req.offset),
                    len: part,
                });
            }
            len += part;
            if !good || !req.more() {
                break good;
            }
            match v.tx.pop() {
                Ok(Some(r)) => req = r,
                Ok(None) => break false,
                Err(_) => {
                    v.broken = true;
                    return chain;
                }
            }
        };
        // (A bad first part left `parts` empty, and `ok` false.)
        let ok = ok
            && frame_size_ok(len)
            && chain.parts.first().is_some_and(|p| {
                hc::grant_copy_from(v.dom, p.gref, p.offset, &mut frame[..p.len]).is_ok()
            });
        chain.len = ok.then_some(len);
        chain
    }

    /// Puts the chain's frame in the next receive buffers interface `d`
    /// posted, a page each, in one hypercall: the first page from
    /// `frame`, the others straight from the sender's (`dom`) pages; if
    /// its checksum is blank and the buffers do not take that, the other
    /// pages are copied here first and the checksum filled in. Dropped,
    /// and counted, if fewer buffers are posted than it needs. False if
    /// the sender's pages were at fault (a grant it does not own): the
    /// buffers taken are answered as failed, and the sender is refused.
    fn deliver_chain(
        &mut self,
        d: usize,
        dom: DomainId,
        chain: &Chain,
        frame: &mut [u8],
        blank: bool,
    ) -> bool {
        let Some(len) = chain.len else { return false };
        let v = &mut self.vifs[d];
        let Some(requests) = v.take_buffers(slots_for_frame(len)) else {
            return true;
        };
        let fill = blank && requests[0].flags & RX_TAKES_BLANK_CSUM == 0;
        let sender_good;
        let copied = if fill {
            sender_good = fetch(dom, &chain.parts, frame).is_ok();
            sender_good && {
                let _ = checksum::fill_tcp(&mut frame[..len]);
                copy_out(v.dom, &requests, &frame[..len])
            }
        } else {
            let mut batch = hc::CopyBatch::default();
            let first = chain.parts[0].len;
            batch.to_grant(v.dom, requests[0].gref, 0, &frame[..first]);
            for (p, req) in chain.parts[1..].iter().zip(&requests[1..]) {
                batch.between_grants((dom, p.gref, p.offset), (v.dom, req.gref, 0), p.len);
            }
            let copied = batch.run().is_ok();
            // Whose grant failed: the sender's if its pages cannot be read.
            sender_good = copied || fetch(dom, &chain.parts, frame).is_ok();
            copied
        };
        v.answer_buffers(&requests, len, copied, blank && !fill);
        sender_good
    }
}

/// Copies every part of a chain but the first (already here) from
/// `dom`'s pages into `frame`, each after the one before, in one hypercall.
fn fetch(dom: DomainId, parts: &[Part], frame: &mut [u8]) -> HypercallResult<()> {
    let mut batch = hc::CopyBatch::default();
    let Some((first, rest)) = parts.split_first() else {
        return Ok(());
    };
    let mut after = &mut frame[first.len..];
    for p in rest {
        let (piece, more) = core::mem::take(&mut after).split_at_mut(p.len);
        batch.from_grant(dom, p.gref, p.offset, piece);
        after = more;
    }
    batch.run()
}
