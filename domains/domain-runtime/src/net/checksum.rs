//! TCP checksums of Ethernet frames, for checksum offload between local
//! guests (pure, host-tested).
//!
//! Owns: recognising a TCP segment over IPv4 in an untagged Ethernet frame
//! ([`tcp_ipv4`]), filling its checksum in ([`fill_tcp`]) and checking it
//! ([`tcp_ok`]). A guest's stack leaves the TCP checksum of what it sends
//! blank (`TX_TCP_CSUM_BLANK`); drvdom-net fills it in only for a port that
//! needs it (the wire, an interface that does not take blank checksums),
//! and a guest checks it only on frames that were not delivered blank
//! (`RX_TCP_CSUM_BLANK`): between two local guests nobody computes it, as
//! between Linux guests with virtio-net's or Xen's checksum offload.
//!
//! The sum is RFC 1071's, eight bytes a load: the ones' complement sum
//! does not depend on the byte order it is taken in, so words are added
//! as the machine loads them and the result is swapped once.

const ETHERNET_HEADER: usize = 14;
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const PROTOCOL_TCP: u8 = 6;
/// Where the checksum lies in a TCP header.
const TCP_CHECKSUM: usize = 16;

/// Where a frame's TCP segment lies: `frame[start..end]`, with the IPv4
/// addresses the pseudo-header takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSegment {
    pub start: usize,
    pub end: usize,
    src: [u8; 4],
    dst: [u8; 4],
}

impl TcpSegment {
    /// Its IPv4 source and destination addresses.
    pub fn addresses(&self) -> ([u8; 4], [u8; 4]) {
        (self.src, self.dst)
    }
}

/// The TCP segment of `frame` if it is an untagged Ethernet frame carrying
/// an unfragmented IPv4 packet of TCP whose lengths are consistent;
/// `None` for anything else.
pub fn tcp_ipv4(frame: &[u8]) -> Option<TcpSegment> {
    tcp_ipv4_in(frame, frame.len())
}

/// [`tcp_ipv4`] of a frame of `len` bytes of which only `head` (its
/// beginning, the headers at least) is at hand.
pub fn tcp_ipv4_in(head: &[u8], len: usize) -> Option<TcpSegment> {
    let frame = head.get(..len.min(head.len()))?;
    if frame.get(12..14)? != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = frame.get(ETHERNET_HEADER..)?;
    let ip_len = len.checked_sub(ETHERNET_HEADER)?;
    let version_ihl = *ip.first()?;
    let header = usize::from(version_ihl & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([*ip.get(2)?, *ip.get(3)?]));
    // More fragments, or not the first: the segment is not all here.
    let fragment = u16::from_be_bytes([*ip.get(6)?, *ip.get(7)?]) & 0x3fff;
    if version_ihl >> 4 != 4
        || header < 20
        || total < header + 20
        || total > ip_len
        || fragment != 0
        || *ip.get(9)? != PROTOCOL_TCP
    {
        return None;
    }
    let mut src = [0u8; 4];
    let mut dst = [0u8; 4];
    src.copy_from_slice(ip.get(12..16)?);
    dst.copy_from_slice(ip.get(16..20)?);
    Some(TcpSegment {
        start: ETHERNET_HEADER + header,
        end: ETHERNET_HEADER + total,
        src,
        dst,
    })
}

/// Fills in the TCP checksum of `frame` (as [`tcp_ipv4`] finds it);
/// false, and nothing changed, if it is not such a frame.
pub fn fill_tcp(frame: &mut [u8]) -> bool {
    let Some(s) = tcp_ipv4(frame) else {
        return false;
    };
    let at = s.start + TCP_CHECKSUM;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let sum = segment_sum(&s, &frame[s.start..s.end]);
    frame[at..at + 2].copy_from_slice(&(!sum).to_be_bytes());
    true
}

/// Whether `frame`'s TCP checksum is right; true for a frame that is not
/// TCP over IPv4 (the stack checks what else it takes itself).
pub fn tcp_ok(frame: &[u8]) -> bool {
    match tcp_ipv4(frame) {
        Some(s) => segment_sum(&s, &frame[s.start..s.end]) == 0xffff,
        None => true,
    }
}

/// The ones' complement sum of the pseudo-header and the segment, in
/// network order.
fn segment_sum(s: &TcpSegment, segment: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[..4].copy_from_slice(&s.src);
    pseudo[4..8].copy_from_slice(&s.dst);
    pseudo[9] = PROTOCOL_TCP;
    pseudo[10..12].copy_from_slice(&(segment.len() as u16).to_be_bytes());
    fold(sum(&pseudo) + sum(segment))
}

/// The machine-order sum of `data`'s 16-bit words (a last odd byte padded
/// with zero), not folded: at most 2^16 bytes add up to far below 2^64.
fn sum(data: &[u8]) -> u64 {
    let mut acc = 0u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let v = u64::from_le_bytes(b);
        acc += (v & 0xffff_ffff) + (v >> 32);
    }
    let mut rest = [0u8; 8];
    rest[..words.remainder().len()].copy_from_slice(words.remainder());
    let v = u64::from_le_bytes(rest);
    acc + (v & 0xffff_ffff) + (v >> 32)
}

/// Folds a machine-order sum to 16 bits and puts it in network order.
fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    (acc as u16).swap_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TCP/IPv4 frame of `payload` bytes (checksum blank).
    fn frame(payload: usize) -> [u8; 1514] {
        let mut f = [0u8; 1514];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4);
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = PROTOCOL_TCP;
        ip[12..16].copy_from_slice(&[10, 0, 2, 22]);
        ip[16..20].copy_from_slice(&[10, 0, 2, 21]);
        let tcp = &mut ip[20..];
        tcp[0..2].copy_from_slice(&49152u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5000u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        for (i, b) in tcp[20..20 + payload].iter_mut().enumerate() {
            *b = (i * 7 + 3) as u8;
        }
        f
    }

    /// RFC 1071 the slow way: 16-bit big-endian words, folded at the end.
    fn reference(f: &[u8]) -> u16 {
        let s = tcp_ipv4(f).unwrap();
        let seg = &f[s.start..s.end];
        let mut acc: u32 = 0;
        let mut add = |b: &[u8]| {
            for pair in b.chunks(2) {
                acc += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            }
        };
        add(&s.src);
        add(&s.dst);
        add(&[0, PROTOCOL_TCP]);
        add(&(seg.len() as u16).to_be_bytes());
        add(&seg[..TCP_CHECKSUM]);
        add(&seg[TCP_CHECKSUM + 2..]);
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    #[test]
    fn a_filled_checksum_is_rfc_1071s_and_checks() {
        for payload in [0, 1, 2, 7, 8, 9, 1000, 1459, 1460] {
            let mut f = frame(payload);
            assert!(!tcp_ok(&f[..54 + payload]) || payload == 0, "{payload}");
            assert!(fill_tcp(&mut f[..54 + payload]));
            let at = 34 + TCP_CHECKSUM;
            let got = u16::from_be_bytes([f[at], f[at + 1]]);
            assert_eq!(got, reference(&f[..54 + payload]), "{payload}");
            assert!(tcp_ok(&f[..54 + payload]), "{payload}");
            f[52] ^= 0x10;
            assert!(
                !tcp_ok(&f[..54 + payload]),
                "a changed byte shows ({payload})"
            );
        }
    }

    #[test]
    fn a_frame_is_recognised_from_its_headers_and_its_length() {
        let f = frame(100);
        let whole = tcp_ipv4(&f[..154]);
        assert!(whole.is_some());
        assert_eq!(tcp_ipv4_in(&f[..54], 154), whole);
        // Shorter than the IP header says, or no room for the headers.
        assert_eq!(tcp_ipv4_in(&f[..54], 153), None);
        assert_eq!(tcp_ipv4_in(&f[..20], 154), None);
        assert_eq!(tcp_ipv4_in(&f[..54], 10), None);
    }

    #[test]
    fn only_whole_tcp_over_ipv4_is_recognised() {
        let f = frame(100);
        let len = 154;
        assert!(tcp_ipv4(&f[..len]).is_some());
        let changed = |at: usize, v: u8| {
            let mut g = f;
            g[at] = v;
            tcp_ipv4(&g[..len])
        };
        assert_eq!(changed(12, 0x86), None, "IPv6");
        assert_eq!(changed(14, 0x65), None, "version 6");
        assert_eq!(changed(14, 0x44), None, "header too short");
        assert_eq!(changed(23, 17), None, "UDP");
        assert_eq!(changed(20, 0x20), None, "more fragments");
        assert_eq!(changed(21, 1), None, "a later fragment");
        assert_eq!(changed(16, 0x10), None, "longer than the frame");
        assert_eq!(tcp_ipv4(&f[..len - 1]), None, "cut short");
        assert_eq!(tcp_ipv4(&f[..20]), None, "no IPv4 header");
        assert!(tcp_ok(&f[..20]), "not TCP: not ours to judge");
        let mut g = f;
        assert!(!fill_tcp(&mut g[..20]) && g == f, "nothing changed");
    }
}
