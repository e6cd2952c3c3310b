//! The learning L2 switch between the NIC (the uplink) and the guests'
//! interfaces (pure, host-tested).
//!
//! Owns: the forwarding table and each frame's verdict. Every source
//! address seen on a port is learned there and forgotten after
//! [`AGEING_NS`] without traffic; a guest interface's own MAC is a static
//! entry from its configuration. Unicast goes to the port that learned its
//! destination (unknown ones are flooded, as a bridge does); broadcast and
//! multicast are flooded to every port but the one they came in on.
//! Anti-spoofing: a guest may send only from its own MAC, and nobody else
//! may claim a guest's MAC. Sizes: no port gets a frame longer than it
//! takes (the wire's [`MAX_FRAME`]; a guest's from its MTU), as a switch
//! drops giants: a flood skips those ports, unicast is dropped.

use ipc_abi::proto::net::{is_group, Mac, MAX_FRAME, MIN_FRAME};

/// A learned address is forgotten after this long unheard (as 802.1D's default).
pub const AGEING_NS: u64 = 300_000_000_000;
/// Learned addresses kept at most (the oldest makes room).
pub const TABLE_SIZE: usize = 256;
/// Guest interfaces at most.
pub const MAX_VIFS: usize = 64;

/// Where a frame comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The NIC.
    Uplink,
    /// A guest interface, by the id its backend gave it.
    Vif(u16),
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than an Ethernet header.
    Runt,
    /// Sent from a MAC the port may not use.
    Spoofed,
    /// Its destination is on the port it came from.
    SamePort,
    /// Longer than its destination takes.
    TooBig,
}

/// What to do with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    To(Port),
    /// Every port except `except`.
    Flood {
        except: Port,
    },
    Drop(Drop),
}

#[derive(Clone, Copy, Debug)]
struct Learned {
    mac: Mac,
    port: Port,
    seen_ns: u64,
}

/// The switch.
pub struct Switch {
    /// Each guest interface: its id, MAC and longest frame it takes.
    vifs: heapless::Vec<(u16, Mac, u16), MAX_VIFS>,
    table: heapless::Vec<Learned, TABLE_SIZE>,
}

impl Default for Switch {
    fn default() -> Self {
        Self::new()
    }
}

impl Switch {
    pub const fn new() -> Switch {
        Switch {
            vifs: heapless::Vec::new(),
            table: heapless::Vec::new(),
        }
    }

    /// A guest interface joins with its MAC and the longest frame it takes
    /// (`max_frame_for_mtu`); false if the switch is full or the MAC is
    /// another interface's.
    pub fn add_vif(&mut self, id: u16, mac: Mac, max_frame: u16) -> bool {
        if self.vifs.iter().any(|&(i, m, _)| i == id || m == mac) {
            return false;
        }
        self.table.retain(|l| l.mac != mac);
        self.vifs.push((id, mac, max_frame)).is_ok()
    }

    /// A guest interface leaves; what was learned on it is forgotten.
    pub fn remove_vif(&mut self, id: u16) {
        self.vifs.retain(|&(i, _, _)| i != id);
        self.table.retain(|l| l.port != Port::Vif(id));
    }

    /// Whether `port` takes a frame of `len` bytes (a flood's copies go
    /// only where it does).
    pub fn fits(&self, port: Port, len: usize) -> bool {
        let max = match port {
            Port::Uplink => MAX_FRAME,
            Port::Vif(id) => match self.vifs.iter().find(|&&(i, _, _)| i == id) {
                Some(&(_, _, max)) => max,
                None => return false,
            },
        };
        len <= usize::from(max)
    }

    /// Decides where `frame`, arriving on `from` at `now_ns`, goes, learning its source.
    pub fn decide(&mut self, from: Port, frame: &[u8], now_ns: u64) -> Verdict {
        if frame.len() < usize::from(MIN_FRAME) {
            return Verdict::Drop(Drop::Runt);
        }
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        src.copy_from_slice(&frame[6..12]);
        let owner = self
            .vifs
            .iter()
            .find(|&&(_, m, _)| m == src)
            .map(|&(i, _, _)| i);
        let allowed = match from {
            Port::Vif(id) => owner == Some(id),
            Port::Uplink => owner.is_none() && !is_group(&src),
        };
        if !allowed {
            return Verdict::Drop(Drop::Spoofed);
        }
        if from == Port::Uplink {
            self.learn(src, from, now_ns);
        }
        if is_group(&dst) {
            return Verdict::Flood { except: from };
        }
        let to = match self.vifs.iter().find(|&&(_, m, _)| m == dst) {
            Some(&(id, _, _)) => Some(Port::Vif(id)),
            None => self.lookup(dst, now_ns),
        };
        match to {
            Some(p) if p == from => Verdict::Drop(Drop::SamePort),
            Some(p) if !self.fits(p, frame.len()) => Verdict::Drop(Drop::TooBig),
            Some(p) => Verdict::To(p),
            None => Verdict::Flood { except: from },
        }
    }

    fn lookup(&mut self, mac: Mac, now_ns: u64) -> Option<Port> {
        let i = self.table.iter().position(|l| l.mac == mac)?;
        if now_ns.saturating_sub(self.table[i].seen_ns) > AGEING_NS {
            self.table.swap_remove(i);
            return None;
        }
        Some(self.table[i].port)
    }

    fn learn(&mut self, mac: Mac, port: Port, now_ns: u64) {
        if let Some(l) = self.table.iter_mut().find(|l| l.mac == mac) {
            l.port = port;
            l.seen_ns = now_ns;
            return;
        }
        if self.table.is_full() {
            // The entry heard from longest ago makes room.
            if let Some(oldest) = (0..self.table.len()).min_by_key(|&i| self.table[i].seen_ns) {
                self.table.swap_remove(oldest);
            }
        }
        let _ = self.table.push(Learned {
            mac,
            port,
            seen_ns: now_ns,
        });
    }

    /// Addresses learned and not yet aged out at `now_ns`.
    #[cfg(test)]
    pub fn learned(&self, now_ns: u64) -> usize {
        self.table
            .iter()
            .filter(|l| now_ns.saturating_sub(l.seen_ns) <= AGEING_NS)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x02, 0, 0, 0, 0, 0xa];
    const B: Mac = [0x02, 0, 0, 0, 0, 0xb];
    const OUT: Mac = [0x52, 0x55, 10, 0, 2, 2];
    const BROADCAST: Mac = [0xff; 6];

    fn frame(dst: Mac, src: Mac) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f
    }

    fn two_guests() -> Switch {
        let mut s = Switch::new();
        assert!(s.add_vif(1, A, MAX_FRAME));
        assert!(s.add_vif(2, B, MAX_FRAME));
        s
    }

    #[test]
    fn guests_reach_each_other_and_the_outside() {
        let mut s = two_guests();
        assert_eq!(
            s.decide(Port::Vif(1), &frame(B, A), 0),
            Verdict::To(Port::Vif(2))
        );
        // Unknown outside address: flooded (the uplink and the other guest).
        assert_eq!(
            s.decide(Port::Vif(1), &frame(OUT, A), 0),
            Verdict::Flood {
                except: Port::Vif(1)
            }
        );
        // Once the outside host spoke, it is learned on the uplink.
        assert_eq!(
            s.decide(Port::Uplink, &frame(A, OUT), 1),
            Verdict::To(Port::Vif(1))
        );
        assert_eq!(
            s.decide(Port::Vif(2), &frame(OUT, B), 2),
            Verdict::To(Port::Uplink)
        );
        assert_eq!(s.learned(2), 1);
    }

    #[test]
    fn broadcast_floods_every_other_port() {
        let mut s = two_guests();
        assert_eq!(
            s.decide(Port::Vif(2), &frame(BROADCAST, B), 0),
            Verdict::Flood {
                except: Port::Vif(2)
            }
        );
        assert_eq!(
            s.decide(Port::Uplink, &frame(BROADCAST, OUT), 0),
            Verdict::Flood {
                except: Port::Uplink
            }
        );
    }

    #[test]
    fn nobody_sends_from_an_address_not_their_own() {
        let mut s = two_guests();
        assert_eq!(
            s.decide(Port::Vif(1), &frame(OUT, B), 0),
            Verdict::Drop(Drop::Spoofed)
        );
        assert_eq!(
            s.decide(Port::Vif(1), &frame(OUT, OUT), 0),
            Verdict::Drop(Drop::Spoofed)
        );
        assert_eq!(
            s.decide(Port::Uplink, &frame(B, A), 0),
            Verdict::Drop(Drop::Spoofed)
        );
        assert_eq!(
            s.decide(Port::Uplink, &frame(A, BROADCAST), 0),
            Verdict::Drop(Drop::Spoofed)
        );
        assert_eq!(
            s.decide(Port::Vif(1), &frame(A, A), 0),
            Verdict::Drop(Drop::SamePort)
        );
        assert_eq!(
            s.decide(Port::Vif(1), &[0u8; 13], 0),
            Verdict::Drop(Drop::Runt)
        );
        // Two interfaces cannot share a MAC.
        assert!(!s.add_vif(3, A, MAX_FRAME));
    }

    #[test]
    fn learned_addresses_age_out_and_the_oldest_makes_room() {
        let mut s = two_guests();
        s.decide(Port::Uplink, &frame(A, OUT), 0);
        assert_eq!(
            s.decide(Port::Vif(1), &frame(OUT, A), AGEING_NS),
            Verdict::To(Port::Uplink)
        );
        assert_eq!(
            s.decide(Port::Vif(1), &frame(OUT, A), AGEING_NS + 1),
            Verdict::Flood {
                except: Port::Vif(1)
            }
        );
        for i in 0..TABLE_SIZE as u64 + 10 {
            let mut mac = [0x52, 0, 0, 0, 0, 0];
            mac[2..6].copy_from_slice(&(i as u32).to_be_bytes());
            s.decide(Port::Uplink, &frame(A, mac), i);
        }
        assert_eq!(s.learned(TABLE_SIZE as u64 + 10), TABLE_SIZE);
        // An interface that leaves frees its MAC for a newcomer.
        s.remove_vif(1);
        assert!(s.add_vif(3, A, MAX_FRAME));
        assert_eq!(
            s.decide(Port::Vif(2), &frame(A, B), 0),
            Verdict::To(Port::Vif(3))
        );
    }

    #[test]
    fn no_port_gets_a_frame_longer_than_it_takes() {
        use ipc_abi::proto::net::{max_frame_for_mtu, MAX_LOCAL_FRAME, MAX_MTU};
        const C: Mac = [0x02, 0, 0, 0, 0, 0xc];
        let mut s = Switch::new();
        let jumbo = max_frame_for_mtu(MAX_MTU);
        assert!(s.add_vif(1, A, jumbo));
        assert!(s.add_vif(2, B, jumbo));
        assert!(s.add_vif(3, C, MAX_FRAME));
        let big = |dst: Mac, src: Mac, len: usize| {
            let mut f = [0u8; MAX_LOCAL_FRAME as usize];
            f[..6].copy_from_slice(&dst);
            f[6..12].copy_from_slice(&src);
            f[..len].to_vec()
        };
        let page = usize::from(MAX_LOCAL_FRAME);
        // Between two jumbo interfaces a page-long frame passes.
        assert_eq!(
            s.decide(Port::Vif(1), &big(B, A, page), 0),
            Verdict::To(Port::Vif(2))
        );
        // Not to an interface of the default MTU, nor to the wire.
        assert_eq!(
            s.decide(Port::Vif(1), &big(C, A, usize::from(MAX_FRAME) + 1), 0),
            Verdict::Drop(Drop::TooBig)
        );
        assert_eq!(
            s.decide(Port::Vif(1), &big(C, A, usize::from(MAX_FRAME)), 0),
            Verdict::To(Port::Vif(3))
        );
        s.decide(Port::Uplink, &frame(A, OUT), 0);
        assert_eq!(
            s.decide(Port::Vif(1), &big(OUT, A, usize::from(MAX_FRAME) + 1), 0),
            Verdict::Drop(Drop::TooBig)
        );
        // A flood's copies go only where they fit.
        assert!(s.fits(Port::Vif(2), page) && !s.fits(Port::Vif(3), page));
        assert!(
            !s.fits(Port::Uplink, usize::from(MAX_FRAME) + 1)
                && s.fits(Port::Uplink, usize::from(MAX_FRAME))
        );
        assert!(!s.fits(Port::Vif(9), 60), "an unknown port takes nothing");
    }
}
