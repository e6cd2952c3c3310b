//! The words domain 0 puts on a started domain's command line, so that it
//! finds its backends, its devices and its duties. A word is `key=value`;
//! where a configuration file has the same key (`pci`, `dma`, `vdisk`,
//! `vif`, `heartbeat`) the value is written exactly as there, so each has
//! one syntax, parsed by the functions here (`domain-config` uses them for
//! configuration files and GRUB module lines alike).
//!
//! Owns: the key names both sides use, and the syntax of the values that
//! need more than a number.

use crate::proto::net::{is_group, parse_mac, Mac, MacText, MAX_MTU, MIN_MTU};

/// This domain's own id.
pub const SELF: &str = "self";
/// How many times this domain was restarted before (absent the first time).
pub const RESTART: &str = "restart";
/// The domain serving its console (console-dom).
pub const CONSOLE: &str = "console";
/// The domain serving its disks.
pub const BLOCK_BACKEND: &str = "blk";
/// The domain serving its network interfaces.
pub const NET_BACKEND: &str = "net";
/// An earlier domain it is connected to by an event channel, and the port.
pub const PEER: &str = "peer";
pub const PEER_PORT: &str = "peer_port";
/// For the network driver domain: the hypervisor's `ifname=` (`dummy`: no NIC).
pub const IFNAME: &str = "ifname";
/// The PCI function it was given (`BB:DD.F`) and its DMA memory (KiB).
pub const PCI: &str = "pci";
pub const DMA: &str = "dma";
/// A virtual disk a block driver domain serves: [`vdisk`].
pub const VDISK: &str = "vdisk";
/// One network interface, in order: [`VifSpec`].
pub const VIF: &str = "vif";
/// Milliseconds between the heartbeats it must send (absent: none).
pub const HEARTBEAT: &str = "heartbeat";
/// The HVM guest a device-model domain serves (its id).
pub const HVM_GUEST: &str = "hvm_guest";
/// One of the guest's disks a device model presents (its device index,
/// xvda = 0), a word each, in the order of the guest's `disk` list.
pub const HVM_DISK: &str = "hvm_disk";

/// A virtual disk: `NAME=START+SECTORS`, or `NAME=all` for the whole device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VDiskSpec<'a> {
    pub name: &'a str,
    /// First sector on the device.
    pub start: u64,
    /// Sectors, or `None` for the rest of the device.
    pub sectors: Option<u64>,
}

/// Parses a [`VDiskSpec`]: a name of letters, digits, `-` and `_` (at most
/// 32), then a non-empty range that does not overflow.
pub fn vdisk(text: &str) -> Option<VDiskSpec<'_>> {
    let (name, range) = text.split_once('=')?;
    let (name, range) = (name.trim(), range.trim());
    if !simple_name(name) {
        return None;
    }
    let (start, sectors) = if range == "all" {
        (0, None)
    } else {
        let (a, b) = range.split_once('+')?;
        let (a, b) = (number(a.trim())?, number(b.trim())?);
        a.checked_add(b)?;
        (a, Some(b).filter(|&n| n > 0)?.into())
    };
    Some(VDiskSpec {
        name,
        start,
        sectors,
    })
}

/// A network interface as a configuration's `vif` entry and a command
/// line's `vif=` word give it: `mac=XX:XX:XX:XX:XX:XX` and `mtu=N`, both
/// optional, comma-separated (`bridge=` is accepted and ignored, as a Xen
/// configuration may carry it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VifSpec {
    /// Its MAC; `None`: the toolstack makes one up from the domain's name.
    pub mac: Option<Mac>,
    /// Its MTU (the largest IP packet, without the Ethernet header), from
    /// [`MIN_MTU`] to [`MAX_MTU`]; `None`: 1,500, the wire's. Above 1,500
    /// only between local guests: drvdom-net never sends a frame longer
    /// than the wire's to the NIC, nor to an interface whose MTU it
    /// exceeds.
    pub mtu: Option<u16>,
}

impl VifSpec {
    /// Parses a spec; `None` when it is malformed, names a group address,
    /// or an MTU out of range.
    pub fn parse(text: &str) -> Option<VifSpec> {
        let mut spec = VifSpec::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=')?;
            match k.trim() {
                "mac" => {
                    let m = parse_mac(v.trim())?;
                    if is_group(&m) {
                        return None;
                    }
                    spec.mac = Some(m);
                }
                "mtu" => {
                    let mtu: u16 = v.trim().parse().ok()?;
                    if !(MIN_MTU..=MAX_MTU).contains(&mtu) {
                        return None;
                    }
                    spec.mtu = Some(mtu);
                }
                "bridge" => {}
                _ => return None,
            }
        }
        Some(spec)
    }

    /// The MTU in effect: its own or the wire's.
    pub fn mtu_or_default(&self) -> u16 {
        self.mtu.unwrap_or(crate::proto::net::DEFAULT_MTU)
    }
}

/// Written as [`VifSpec::parse`] reads it (empty when it says nothing).
impl core::fmt::Display for VifSpec {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut sep = "";
        if let Some(mac) = self.mac {
            write!(f, "mac={}", MacText(mac))?;
            sep = ",";
        }
        if let Some(mtu) = self.mtu {
            write!(f, "{sep}mtu={mtu}")?;
        }
        Ok(())
    }
}

/// Whether a name can travel in a command-line word (letters, digits, `-`, `_`).
pub fn simple_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// A decimal or `0x` hexadecimal number.
pub fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// The value of `key=` among the words of `line`.
pub fn value<'a>(line: &'a str, key: &'a str) -> Option<&'a str> {
    values(line, key).next()
}

/// Every value of `key=` among the words of `line`, in order.
pub fn values<'a>(line: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    line.split_whitespace()
        .filter_map(move |w| w.strip_prefix(key)?.strip_prefix('='))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn virtual_disks_have_one_syntax() {
        assert_eq!(
            vdisk("kv=0+8192"),
            Some(VDiskSpec {
                name: "kv",
                start: 0,
                sectors: Some(8192)
            })
        );
        assert_eq!(vdisk("whole=all").unwrap().sectors, None);
        for bad in [
            "kv:0+8",
            "kv=0+0",
            "=0+1",
            "kv=1",
            "k v=0+1",
            "kv=18446744073709551615+1",
        ] {
            assert_eq!(vdisk(bad), None, "{bad}");
        }
    }

    #[test]
    fn interfaces_name_a_mac_and_an_mtu_or_neither() {
        let mac = [0, 0x16, 0x3e, 0, 0, 0x80];
        assert_eq!(
            VifSpec::parse("mac=00:16:3e:00:00:80"),
            Some(VifSpec {
                mac: Some(mac),
                mtu: None
            })
        );
        assert_eq!(VifSpec::parse(""), Some(VifSpec::default()));
        let both = VifSpec::parse(" mac=00:16:3e:00:00:80 , mtu=4082").unwrap();
        assert_eq!(
            both,
            VifSpec {
                mac: Some(mac),
                mtu: Some(4082)
            }
        );
        assert_eq!(VifSpec::parse(&both.to_string()), Some(both));
        assert_eq!(both.to_string(), "mac=00:16:3e:00:00:80,mtu=4082");
        let mtu_only = VifSpec::parse("mtu=1280").unwrap();
        assert_eq!(mtu_only.to_string(), "mtu=1280");
        assert_eq!(VifSpec::parse("").unwrap().mtu_or_default(), 1500);
        for bad in [
            "mac=01:00:5e:00:00:01",
            "colour=red",
            "mtu=16371",
            "mtu=67",
            "mtu=",
            "mtu=-1",
            "mtu=99999999",
            "mac",
        ] {
            assert_eq!(VifSpec::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn words_are_found_by_key_and_not_by_prefix() {
        let line = "web vif=mac=00:16:3e:00:00:80 vifs=2 heartbeat=2000";
        assert_eq!(value(line, VIF), Some("mac=00:16:3e:00:00:80"));
        assert_eq!(value(line, HEARTBEAT).and_then(number), Some(2000));
        assert_eq!(values(line, "vif").count(), 1);
    }
}
