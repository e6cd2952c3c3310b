//! The free frames of the machine, one bit each.
//!
//! Owns: handing out and taking back 4 KiB frames, lowest first, for
//! anything at run time. Built once at boot from the free ranges the
//! memory map leaves (`frames::FreeRanges`), with its bitmap in frames
//! taken from them. A bitmap, not a list of ranges: domains give frames
//! back in any order (a balloon gives back single pages all over its
//! memory), and however scattered the free frames become, each costs one
//! bit and no free can fail for want of room.
//!
//! Frames can be reserved without being handed out (an HVM guest's RAM,
//! taken page by page as the guest first touches it): reserved frames
//! count as used, and nothing but their reserver's own allocations (made
//! after giving some of the reservation back) can take them.
//!
//! Never: hands out a frame twice, takes back a frame twice, or takes back
//! a frame that was never one of its own (the kernel image, a module, a
//! device's memory); never hands out a reserved frame. Pure logic over the
//! bitmap's words: host-tested.

use crate::frames::{Frame, FrameError, FrameRun, FreeRanges, PhysRange, FRAME_SIZE};

/// Free ranges the map left at boot, kept to check that a frame given back
/// is one of the allocator's (a map has a handful; see `frames`).
const MAX_USABLE: usize = 128;

/// The machine's free frames.
pub struct FrameAllocator {
    /// Bit `i % 64` of word `i / 64`: frame `i` (address `i * 4096`) is free.
    bits: &'static mut [u64],
    /// No word below this one has a free frame.
    lowest: usize,
    free: u64,
    /// Of the free frames, how many are reserved (at most `free`).
    reserved: u64,
    /// Where frames may ever be (what the map left free at boot).
    usable: heapless::Vec<PhysRange, MAX_USABLE>,
}

impl FrameAllocator {
    /// The bitmap words the free ranges need (one bit per frame below the
    /// highest free address).
    pub fn words_for(ranges: &FreeRanges) -> usize {
        let top = ranges.ranges().iter().map(|r| r.end).max().unwrap_or(0);
        (top / FRAME_SIZE).div_ceil(64) as usize
    }

    /// The allocator of the frames `ranges` holds, with its bitmap in
    /// `bits` (at least `words_for(ranges)` words; whatever it held is
    /// overwritten).
    pub fn new(
        ranges: &FreeRanges,
        bits: &'static mut [u64],
    ) -> Result<FrameAllocator, FrameError> {
        if bits.len() < Self::words_for(ranges) {
            return Err(FrameError::TooManyRanges);
        }
        bits.fill(0);
        let mut a = FrameAllocator {
            bits,
            lowest: usize::MAX,
            free: 0,
            reserved: 0,
            usable: heapless::Vec::new(),
        };
        for r in ranges.ranges() {
            a.usable.push(*r).map_err(|_| FrameError::TooManyRanges)?;
            let mut f = r.start;
            while f < r.end {
                a.set(f);
                f += FRAME_SIZE;
            }
        }
        Ok(a)
    }

    fn set(&mut self, addr: u64) {
        let i = (addr / FRAME_SIZE) as usize;
        self.bits[i / 64] |= 1 << (i % 64);
        self.free += 1;
        self.lowest = self.lowest.min(i / 64);
    }

    fn clear(&mut self, i: usize) {
        self.bits[i / 64] &= !(1 << (i % 64));
        self.free -= 1;
    }

    /// Hands out the lowest free frame.
    pub fn allocate(&mut self) -> Option<Frame> {
        self.allocate_below(u64::MAX)
    }

    /// Hands out the lowest free frame that ends at or below `limit`.
    pub fn allocate_below(&mut self, limit: u64) -> Option<Frame> {
        if self.unreserved() == 0 {
            return None;
        }
        let start = self.lowest.min(self.bits.len());
        let w = (start..self.bits.len()).find(|&w| self.bits[w] != 0);
        let Some(w) = w else {
            self.lowest = self.bits.len();
            return None;
        };
        self.lowest = w;
        let i = w * 64 + self.bits[w].trailing_zeros() as usize;
        let addr = i as u64 * FRAME_SIZE;
        if addr.checked_add(FRAME_SIZE)? > limit {
            return None;
        }
        self.clear(i);
        Some(Frame::from_pool(addr))
    }

    /// Hands out `count` physically contiguous frames (the lowest run that
    /// fits). For device DMA, stacks and domain records.
    pub fn allocate_contiguous(&mut self, count: u64) -> Option<FrameRun> {
        let count = usize::try_from(count).ok().filter(|&c| c > 0)?;
        if self.unreserved() < count as u64 {
            return None;
        }
        let frames = self.bits.len() * 64;
        let mut i = self.lowest.min(self.bits.len()) * 64;
        let mut run = 0;
        while i < frames {
            let word = self.bits[i / 64];
            if i.is_multiple_of(64) && word == 0 {
                run = 0;
                i += 64;
                continue;
            }
            if word & 1 << (i % 64) != 0 {
                run += 1;
                if run == count {
                    let first = i + 1 - count;
                    for f in first..=i {
                        self.clear(f);
                    }
                    return Some(FrameRun::new(first as u64 * FRAME_SIZE, count as u64));
                }
            } else {
                run = 0;
            }
            i += 1;
        }
        None
    }

    /// Takes a frame back. Refuses one already free or never its own.
    pub fn free(&mut self, frame: Frame) -> Result<(), FrameError> {
        let addr = frame.addr();
        if !addr.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(addr));
        }
        let page = PhysRange::new(addr, addr + FRAME_SIZE);
        if !self
            .usable
            .iter()
            .any(|r| r.start <= page.start && page.end <= r.end)
        {
            return Err(FrameError::NotOurs(addr));
        }
        let i = (addr / FRAME_SIZE) as usize;
        if self.bits[i / 64] & 1 << (i % 64) != 0 {
            return Err(FrameError::DoubleFree(addr));
        }
        self.set(addr);
        Ok(())
    }

    /// Bytes free now (reserved frames not counted).
    pub fn free_bytes(&self) -> u64 {
        self.unreserved() * FRAME_SIZE
    }

    /// Free frames not reserved: what an allocation may take.
    pub fn unreserved(&self) -> u64 {
        self.free - self.reserved
    }

    /// Reserves `count` free frames, if that many are neither handed out
    /// nor reserved; false (and nothing reserved) if not.
    pub fn reserve(&mut self, count: u64) -> bool {
        if self.unreserved() < count {
            return false;
        }
        self.reserved += count;
        true
    }

    /// Gives `count` reserved frames back to the common pool (at most as
    /// many as are reserved).
    pub fn unreserve(&mut self, count: u64) {
        self.reserved -= count.min(self.reserved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frames::RegionKind;
    use std::vec;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn pool(map: &[(u64, u64)], reserved: &[PhysRange]) -> FrameAllocator {
        let map: Vec<_> = map
            .iter()
            .map(|&(s, e)| (PhysRange::new(s, e), RegionKind::Usable))
            .collect();
        let ranges = FreeRanges::new(map.into_iter(), reserved).unwrap();
        let bits = vec![u64::MAX; FrameAllocator::words_for(&ranges)].leak();
        FrameAllocator::new(&ranges, bits).unwrap()
    }

    #[test]
    fn reserved_frames_are_counted_as_used_and_taken_by_nobody() {
        let mut a = pool(&[(MIB, MIB + 8 * 4096)], &[]);
        assert!(a.reserve(6));
        assert!(!a.reserve(3), "only two frames are left unreserved");
        assert_eq!(a.free_bytes(), 2 * 4096);
        let (x, y) = (a.allocate().unwrap(), a.allocate().unwrap());
        assert!(a.allocate().is_none(), "the other six are reserved");
        assert!(a.allocate_contiguous(1).is_none());
        // The reserver gives one back and takes it.
        a.unreserve(1);
        let z = a.allocate().unwrap();
        assert!(a.allocate().is_none());
        assert_eq!(a.free_bytes(), 0);
        // Freed frames are anyone's again; what is still reserved is not.
        for f in [x, y, z] {
            a.free(f).unwrap();
        }
        assert_eq!(a.free_bytes(), 3 * 4096);
        a.unreserve(100);
        assert_eq!(a.free_bytes(), 8 * 4096);
        assert!(a.allocate_contiguous(8).is_some());
    }

    #[test]
    fn frames_come_lowest_first_and_only_from_the_free_ranges() {
        let kernel = PhysRange::new(2 * MIB, 3 * MIB);
        let mut a = pool(
            &[(MIB, 4 * MIB), (8 * MIB, 8 * MIB + 2 * FRAME_SIZE)],
            &[kernel],
        );
        assert_eq!(a.free_bytes(), 2 * MIB + 2 * FRAME_SIZE);
        let all: Vec<u64> = core::iter::from_fn(|| a.allocate().map(Frame::addr)).collect();
        assert_eq!(all.first(), Some(&MIB));
        assert_eq!(all.last(), Some(&(8 * MIB + FRAME_SIZE)));
        assert!(all.windows(2).all(|w| w[0] < w[1]), "lowest first");
        assert!(all.iter().all(|f| !(2 * MIB..3 * MIB).contains(f)));
        assert_eq!(a.free_bytes(), 0);
    }

    #[test]
    fn any_scatter_of_freed_frames_is_taken_back_and_nothing_else() {
        let mut a = pool(&[(MIB, 9 * MIB)], &[]);
        let all: Vec<Frame> = core::iter::from_fn(|| a.allocate()).collect();
        // Every other frame: far more separate free runs than a range list holds.
        for f in all.iter().step_by(2) {
            a.free(*f).unwrap();
        }
        assert_eq!(a.free_bytes(), all.len().div_ceil(2) as u64 * FRAME_SIZE);
        assert_eq!(a.free(all[0]), Err(FrameError::DoubleFree(all[0].addr())));
        assert_eq!(
            a.free(Frame::for_test(16 * MIB)),
            Err(FrameError::NotOurs(16 * MIB))
        );
        assert_eq!(a.free(Frame::for_test(0)), Err(FrameError::NotOurs(0)));
        // They come back lowest first.
        assert_eq!(a.allocate(), Some(all[0]));
        assert_eq!(a.allocate(), Some(all[2]));
    }

    #[test]
    fn contiguous_runs_skip_holes_and_limits_hold() {
        let mut a = pool(
            &[(MIB, MIB + 8 * FRAME_SIZE), (0x1_0000_0000, 0x1_0000_2000)],
            &[],
        );
        let hole = Frame::for_test(MIB + 2 * FRAME_SIZE);
        let taken: Vec<Frame> = core::iter::from_fn(|| a.allocate_below(1 << 32)).collect();
        assert_eq!(taken.len(), 8, "nothing above the limit");
        for f in taken.iter().filter(|&&f| f != hole) {
            a.free(*f).unwrap();
        }
        let run = a.allocate_contiguous(4).unwrap();
        assert_eq!(
            run.first().addr(),
            MIB + 3 * FRAME_SIZE,
            "the lowest run that fits"
        );
        assert_eq!(a.allocate_contiguous(0), None);
        assert_eq!(a.allocate_contiguous(u64::MAX), None);
        assert_eq!(a.allocate_contiguous(3), None);
        assert_eq!(
            a.allocate_contiguous(2).map(|r| r.first().addr()),
            Some(MIB)
        );
    }

    #[test]
    fn a_bitmap_too_small_is_refused() {
        let ranges = FreeRanges::new(
            [(PhysRange::new(0, 64 * MIB), RegionKind::Usable)].into_iter(),
            &[],
        )
        .unwrap();
        let bits = vec![0u64; 3].leak();
        assert!(FrameAllocator::new(&ranges, bits).is_err());
    }
}
