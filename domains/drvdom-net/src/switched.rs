//! A frame on its way through the switch, whose TCP checksum its sender
//! may have left blank (`TX_TCP_CSUM_BLANK`, checksum offload): filled in
//! once, at the first port that does not take it blank (the wire, or an
//! interface whose receive buffer does not say `RX_TAKES_BLANK_CSUM`).
//!
//! Owns: that frame's two states and the one step between them.

use domain_runtime::net::checksum;

/// A frame being switched.
pub enum Switched<'a> {
    /// Its checksums are as its sender wrote them.
    Done(&'a [u8]),
    /// TCP over IPv4 (checked when it was taken) with its checksum blank.
    Blank(&'a mut [u8]),
}

impl<'a> Switched<'a> {
    /// `bytes` as its sender said: blank or done.
    pub fn new(bytes: &'a mut [u8], blank: bool) -> Switched<'a> {
        if blank {
            Switched::Blank(bytes)
        } else {
            Switched::Done(bytes)
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match self {
            Switched::Done(b) => b,
            Switched::Blank(b) => b,
        }
    }

    pub fn is_blank(&self) -> bool {
        matches!(self, Switched::Blank(_))
    }

    /// The frame with its checksum filled in (computed the first time only).
    pub fn complete(&mut self) -> &[u8] {
        if self.is_blank() {
            if let Switched::Blank(b) = core::mem::replace(self, Switched::Done(&[])) {
                let _ = checksum::fill_tcp(b);
                *self = Switched::Done(b);
            }
        }
        self.bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_frame_is_completed_once_and_a_done_one_left_alone() {
        // An Ethernet + IPv4 + TCP header, no payload, checksum blank.
        let mut f = [0u8; 54];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x45;
        f[17] = 40;
        f[23] = 6;
        f[46] = 5 << 4;
        let original = f;
        let mut done = f;
        let mut d = Switched::new(&mut done, false);
        assert_eq!(d.complete(), &original[..], "left as its sender wrote it");
        let mut s = Switched::new(&mut f, true);
        assert!(s.is_blank());
        let filled = s.complete().to_vec();
        assert!(!s.is_blank() && checksum::tcp_ok(&filled) && filled != original);
        assert_eq!(s.complete(), &filled[..]);
    }
}
