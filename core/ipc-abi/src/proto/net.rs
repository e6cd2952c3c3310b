//! Network protocol: separate transmit and receive rings between a guest
//! (frontend) and `drvdom-net` (backend), as Xen's netif (issue 7).
//!
//! A network device's `Announce` carries two one-page rings: `grefs[0]` is
//! the transmit ring ([`TxRequest`] / [`TxResponse`]), `grefs[1]` the
//! receive ring ([`RxRequest`] / [`RxResponse`]); one event port serves both.
//! The control domain's `Connect` to the backend adds the interface's MAC
//! ([`NetConnect`]), which the backend enforces: a guest sends only from it.
//!
//! Transmit: the guest names a granted page, the offset and the length of one
//! whole frame (Ethernet header on, no FCS). Receive: the guest posts granted
//! pages; the backend fills one per frame and answers with its length.
//! Checksum offload: a frame's TCP checksum may travel blank between a
//! sender that says so and a receiver that takes it (the flags below).

use crate::proto::control::ControlMessage;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

pub const NET_VERSION: u32 = 1;
/// Largest frame on the wire (Ethernet with a VLAN tag, without FCS):
/// the NIC's, and every interface's with the default MTU.
pub const MAX_FRAME: u16 = 1518;
/// Largest frame between local guests: four pages, each named by a ring
/// slot of its own (a frame longer than a page is a chain of slots:
/// [`TX_MORE`], [`RX_MORE`]).
pub const MAX_LOCAL_FRAME: u16 = (MAX_FRAME_SLOTS * SLOT_BYTES) as u16;
/// The most ring slots (pages) one frame takes.
pub const MAX_FRAME_SLOTS: usize = 4;
/// The bytes of a frame one ring slot's page holds.
pub const SLOT_BYTES: usize = 4096;
/// Ring slots (pages) a frame of `len` bytes takes, from offset 0.
pub const fn slots_for_frame(len: usize) -> usize {
    if len == 0 {
        1
    } else {
        len.div_ceil(SLOT_BYTES)
    }
}
/// An Ethernet header without a VLAN tag: a frame is its MTU plus this.
pub const ETHERNET_HEADER: u16 = 14;
/// The wire's MTU, every interface's unless its `vif` entry says `mtu=`.
pub const DEFAULT_MTU: u16 = 1500;
/// The smallest MTU an interface may have (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// The largest: a frame of [`MAX_LOCAL_FRAME`].
pub const MAX_MTU: u16 = MAX_LOCAL_FRAME - ETHERNET_HEADER;

/// The longest frame an interface of MTU `mtu` sends or takes (a VLAN
/// tag's four bytes allowed, as on the wire, up to [`MAX_LOCAL_FRAME`]).
pub const fn max_frame_for_mtu(mtu: u16) -> u16 {
    let f = mtu as u32 + ETHERNET_HEADER as u32 + 4;
    if f > MAX_LOCAL_FRAME as u32 {
        MAX_LOCAL_FRAME
    } else {
        f as u16
    }
}
const _: () = assert!(max_frame_for_mtu(DEFAULT_MTU) == MAX_FRAME);
/// Smallest frame: an Ethernet header.
pub const MIN_FRAME: u16 = 14;
/// Ring pages of a network device: one transmit page, then its receive
/// ring's pages (one to [`MAX_NET_RX_RING_PAGES`]: a frontend that can
/// fall behind in bursts, as an HVM guest's device model, posts more
/// receive pages than one page's 32 slots hold).
pub const NET_RING_PAGES: core::ops::RangeInclusive<u32> = 2..=1 + MAX_NET_RX_RING_PAGES;
/// The most pages a receive ring may have (128 slots; the `Connect`'s
/// last two gref words carry the MAC).
pub const MAX_NET_RX_RING_PAGES: u32 = 4;
const _: () =
    assert!(1 + MAX_NET_RX_RING_PAGES as usize + 2 <= crate::proto::control::MAX_RING_PAGES);

/// An Ethernet address.
pub type Mac = [u8; 6];

/// What a network `Connect` (control domain → backend) says beyond the
/// rings: which interface of the frontend, its MAC and its MTU (a
/// `DeviceAttached` to the frontend carries the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetConnect {
    pub vif: u8,
    pub mac: Mac,
    /// [`MIN_MTU`] to [`MAX_MTU`]; anything else reads as [`DEFAULT_MTU`].
    pub mtu: u16,
}

impl NetConnect {
    /// Puts it in a `Connect`: the vif in `index`, the MAC and the MTU in
    /// the last two gref words (a network device uses only the first
    /// five: the transmit ring and up to four receive pages).
    pub fn write(self, m: &mut ControlMessage) {
        m.index = u32::from(self.vif);
        let n = m.grefs.len();
        let mtu = self.mtu.to_le_bytes();
        m.grefs[n - 2] = u32::from_le_bytes([self.mac[0], self.mac[1], self.mac[2], self.mac[3]]);
        m.grefs[n - 1] = u32::from_le_bytes([self.mac[4], self.mac[5], mtu[0], mtu[1]]);
    }

    pub fn read(m: &ControlMessage) -> NetConnect {
        let n = m.grefs.len();
        let a = m.grefs[n - 2].to_le_bytes();
        let b = m.grefs[n - 1].to_le_bytes();
        let mtu = u16::from_le_bytes([b[2], b[3]]);
        NetConnect {
            vif: m.index as u8,
            mac: [a[0], a[1], a[2], a[3], b[0], b[1]],
            mtu: if (MIN_MTU..=MAX_MTU).contains(&mtu) {
                mtu
            } else {
                DEFAULT_MTU
            },
        }
    }
}

/// [`TxRequest::flags`]: the frame is TCP over IPv4 and its TCP checksum
/// is blank (not filled in): the backend fills it in for any port that
/// needs it (the wire, an interface that does not take blank checksums).
/// The backend refuses the request if the frame is not TCP over IPv4.
pub const TX_TCP_CSUM_BLANK: u16 = 1;
/// [`RxRequest::flags`]: this buffer may be given a frame whose TCP
/// checksum is blank (said by [`RX_TCP_CSUM_BLANK`] in its answer).
pub const RX_TAKES_BLANK_CSUM: u32 = 1;
/// [`RxResponse::flags`]: the frame's TCP checksum is blank: it came from
/// a guest on this machine, copied from its page, and needs no checking
/// (Xen's `NETRXF_data_validated`, virtio's `DATA_VALID`).
pub const RX_TCP_CSUM_BLANK: u16 = 1;
/// [`TxRequest::flags`]: the frame goes on in the next request's page
/// (Xen's `NETTXF_more_data`): a frame is a chain of up to
/// [`MAX_FRAME_SLOTS`] requests, each naming its part of it, in order; the
/// first carries the frame's other flags. Each request gets an answer.
pub const TX_MORE: u16 = 2;
/// [`RxResponse::flags`]: the frame goes on in the next answer's buffer
/// (Xen's `NETRXF_more_data`); every answer of the chain says whether the
/// checksum is blank.
pub const RX_MORE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TxRequest {
    pub id: u64,
    pub gref: u32,
    pub offset: u16,
    pub len: u16,
    /// [`TX_TCP_CSUM_BLANK`], [`TX_MORE`], or 0.
    pub flags: u16,
    pub _reserved: [u16; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct TxResponse {
    pub id: u64,
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
    pub _reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RxRequest {
    pub id: u64,
    /// A granted page to receive into (at offset 0).
    pub gref: u32,
    /// [`RX_TAKES_BLANK_CSUM`] or 0.
    pub flags: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct RxResponse {
    pub id: u64,
    /// Bytes of the frame (of its part, in a chain), from the start of the page.
    pub len: u16,
    /// [`RX_TCP_CSUM_BLANK`], [`RX_MORE`], or 0.
    pub flags: u16,
    pub _reserved: [u16; 2],
    /// 0 success; otherwise a [`crate::proto::control::Status`].
    pub status: u32,
    pub _reserved2: u32,
}

const _: () = assert!(core::mem::size_of::<TxRequest>() == 24);
const _: () = assert!(core::mem::size_of::<TxResponse>() == 16);
const _: () = assert!(core::mem::size_of::<RxRequest>() == 16);
const _: () = assert!(core::mem::size_of::<RxResponse>() == 24);

impl TxRequest {
    /// Whether its part of the frame lies within its page and is not
    /// empty (the whole frame's size is checked once its chain is whole:
    /// [`frame_size_ok`]; where it may go is the switch's decision).
    pub fn check(&self) -> bool {
        self.len > 0 && usize::from(self.offset) + usize::from(self.len) <= SLOT_BYTES
    }

    /// Whether the frame goes on in the next request.
    pub fn more(&self) -> bool {
        self.flags & TX_MORE != 0
    }
}

/// Whether a whole frame of `len` bytes is a frame's size: a header at
/// least, [`MAX_LOCAL_FRAME`] at most.
pub fn frame_size_ok(len: usize) -> bool {
    (usize::from(MIN_FRAME)..=usize::from(MAX_LOCAL_FRAME)).contains(&len)
}

/// Whether an address is a group (broadcast or multicast) address.
pub fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

/// A stable, locally administered MAC for interface `vif` of the domain
/// named `name` (used when its configuration gives none): the same name
/// gets the same address on every boot.
pub fn generated_mac(name: &str, vif: u8) -> Mac {
    // FNV-1a over the name and the interface number.
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().chain([vif]) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let b = h.to_le_bytes();
    // 0x02: locally administered, unicast.
    [0x02, 0x16, 0x3e, b[0], b[1], b[2]]
}

/// `00:16:3e:00:00:01` → bytes.
pub fn parse_mac(text: &str) -> Option<Mac> {
    let mut mac = [0u8; 6];
    let mut n = 0;
    for part in text.split(':') {
        if part.len() != 2 {
            return None;
        }
        *mac.get_mut(n)? = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(mac)
}

/// Writes a MAC as `00:16:3e:00:00:01`.
pub struct MacText(pub Mac);

impl core::fmt::Display for MacText {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn a_connect_carries_the_mac_beside_two_ring_grants() {
        let mut m = ControlMessage::new_zeroed();
        m.grefs[0] = 11;
        m.grefs[1] = 12;
        let c = NetConnect {
            vif: 1,
            mac: [0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc],
            mtu: 4082,
        };
        c.write(&mut m);
        assert_eq!(NetConnect::read(&m), c);
        assert_eq!((m.grefs[0], m.grefs[1]), (11, 12));
        // An MTU out of range (a hostile or older writer) reads as the wire's.
        for mtu in [0, MIN_MTU - 1, MAX_MTU + 1, u16::MAX] {
            NetConnect { mtu, ..c }.write(&mut m);
            assert_eq!(NetConnect::read(&m).mtu, DEFAULT_MTU, "{mtu}");
        }
    }

    #[test]
    fn macs_parse_print_and_generate_stably() {
        let mac = parse_mac("00:16:3e:0a:0b:ff").unwrap();
        assert_eq!(mac, [0, 0x16, 0x3e, 0x0a, 0x0b, 0xff]);
        assert_eq!(alloc_free_text(mac), "00:16:3e:0a:0b:ff");
        for bad in [
            "00:16:3e:0a:0b",
            "00:16:3e:0a:0b:ff:01",
            "0:16:3e:0a:0b:ff",
            "zz:16:3e:0a:0b:ff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(max_frame_for_mtu(MAX_MTU), MAX_LOCAL_FRAME);
        assert_eq!(max_frame_for_mtu(MIN_MTU), MIN_MTU + 18);
        let a = generated_mac("web", 0);
        assert_eq!(a, generated_mac("web", 0));
        assert_ne!(a, generated_mac("web", 1));
        assert_ne!(a, generated_mac("db", 0));
        assert!(!is_group(&a) && a[0] & 2 == 2);
        assert!(is_group(&[0xff; 6]));
    }

    fn alloc_free_text(mac: Mac) -> std::string::String {
        std::format!("{}", MacText(mac))
    }

    #[test]
    fn transmit_requests_must_fit_their_page_and_frames_their_size() {
        let mut r = TxRequest::new_zeroed();
        r.len = 60;
        assert!(r.check());
        r.offset = 4096 - 59;
        assert!(!r.check());
        r.offset = 0;
        r.len = 4096;
        assert!(r.check(), "a part may fill its page");
        r.len = 4097;
        assert!(!r.check());
        r.offset = 1;
        r.len = 4096;
        assert!(!r.check());
        r.offset = 0;
        r.len = 0;
        assert!(!r.check(), "no empty part");
        r.len = 1;
        assert!(
            r.check(),
            "a chain's part may be short; the frame is checked whole"
        );
        assert!(!frame_size_ok(13) && frame_size_ok(14));
        assert!(frame_size_ok(usize::from(MAX_LOCAL_FRAME)));
        assert!(!frame_size_ok(usize::from(MAX_LOCAL_FRAME) + 1));
        assert_eq!(MAX_FRAME_SLOTS, 4);
        assert_eq!(slots_for_frame(14), 1);
        assert_eq!(slots_for_frame(4096), 1);
        assert_eq!(slots_for_frame(4097), 2);
        assert_eq!(
            slots_for_frame(usize::from(MAX_LOCAL_FRAME)),
            MAX_FRAME_SLOTS
        );
        assert_eq!(max_frame_for_mtu(MAX_MTU), MAX_LOCAL_FRAME);
    }
}
