//! Virtual disks on the device, and the checks every request passes (pure,
//! host-tested).
//!
//! Owns: checking the command line's `vdisk=NAME=START+SECTORS` /
//! `vdisk=NAME=all` (syntax: `ipc_abi::launch::vdisk`) against the device's size, and deciding whether a request's
//! sectors lie inside its virtual disk (and where on the device they are).

use domain_runtime::ipc_abi::launch;
use heapless::{String, Vec};

/// Virtual disks one backend serves at most.
pub const MAX_VDISKS: usize = 16;

/// A slice of the device served as one disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VDisk {
    pub name: String<32>,
    /// First device sector.
    pub start: u64,
    pub sectors: u64,
}

impl VDisk {
    /// The device sector of `sector..sector + count` on this disk, if all of it is inside.
    pub fn locate(&self, sector: u64, count: u64) -> Option<u64> {
        let end = sector.checked_add(count)?;
        (end <= self.sectors).then_some(self.start + sector)
    }
}

/// The virtual disks of a command line, in order; ones that do not fit the
/// device (`device_sectors`) are reported through `refuse` and left out, so
/// the others keep their positions' meaning only if all fit (the toolstack
/// numbers them by position: a refused one keeps its place as unusable).
pub fn parse(
    cmdline: &str,
    device_sectors: u64,
    mut refuse: impl FnMut(&str),
) -> Vec<Option<VDisk>, MAX_VDISKS> {
    let mut out = Vec::new();
    for spec in launch::values(cmdline, launch::VDISK) {
        let disk = launch::vdisk(spec).and_then(|v| {
            let sectors = v.sectors.unwrap_or(device_sectors.saturating_sub(v.start));
            let end: u64 = u64::checked_add(v.start, sectors)?;
            if sectors == 0 || end > device_sectors {
                return None;
            }
            Some(VDisk {
                name: String::try_from(v.name).ok()?,
                start: v.start,
                sectors,
            })
        });
        if disk.is_none() {
            refuse(spec);
        }
        if out.push(disk).is_err() {
            refuse(spec);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_fit_the_device_or_are_refused() {
        let mut refused = std::vec::Vec::new();
        let disks = parse(
            "drvdom-blk vdisk=a=0+100 vdisk=b=100+50 vdisk=c=140+20 vdisk=whole=all vdisk=bad",
            150,
            |s| refused.push(std::string::String::from(s)),
        );
        assert_eq!(disks.len(), 5);
        assert_eq!(disks[0].as_ref().map(|d| d.sectors), Some(100));
        assert_eq!(disks[1].as_ref().map(|d| d.start), Some(100));
        assert!(disks[2].is_none());
        assert_eq!(disks[3].as_ref().map(|d| d.sectors), Some(150));
        assert!(disks[4].is_none());
        assert_eq!(refused, ["c=140+20", "bad"]);
    }

    #[test]
    fn requests_stay_inside_their_disk() {
        let d = VDisk {
            name: String::try_from("a").unwrap(),
            start: 100,
            sectors: 50,
        };
        assert_eq!(d.locate(0, 50), Some(100));
        assert_eq!(d.locate(49, 1), Some(149));
        assert_eq!(d.locate(49, 2), None);
        assert_eq!(d.locate(50, 0), Some(150));
        assert_eq!(d.locate(u64::MAX, 2), None);
    }
}
