//! Physical frames, and the free ranges the bootloader's memory map leaves.
//!
//! Owns: [`Frame`] and [`FrameRun`], and [`FreeRanges`]: the free 4 KiB
//! frames as a short list of ranges, built from the memory map minus
//! everything that must survive boot (the kernel image, the boot
//! information, every module, the first MiB). Boot takes the run-time
//! allocator's bitmap from them (`frame_pool`), which then owns the frames;
//! the ranges answer what the map leaves (`usable_bytes`, the host tests).
//!
//! Never: hands out a frame inside a reserved range, a frame twice, or a frame
//! the map does not call usable — whatever order, overlap or holes the map has.
//! Pure logic: the host tests feed it hostile maps.

use core::fmt;

pub const FRAME_SIZE: u64 = 4096;

/// A 4 KiB frame of RAM, by its physical address. The allocator makes one
/// for each frame it hands out; anything else makes one only through
/// [`Frame::of_ram`], which is `unsafe`: its caller argues the address is
/// RAM the kernel may touch (a frame a domain has mapped, the AP start-up
/// page). So the functions that read and write a frame through the physmap
/// (`addrspace::zero_frame`, `shared_pages::write_frame`...) cannot be
/// handed a device's registers or an address made up from a number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Frame(u64);

impl Frame {
    /// Its physical address.
    pub const fn addr(self) -> u64 {
        self.0
    }

    /// The frame holding physical address `phys`.
    ///
    /// # Safety
    ///
    /// `phys` lies in RAM that the kernel's physmap maps and that the
    /// caller may read and write through it: a frame the kernel allocated,
    /// or one a domain has mapped as its memory.
    #[allow(unsafe_code)] // declares the contract; there is no unsafe block
    pub const unsafe fn of_ram(phys: u64) -> Frame {
        Frame(phys & !(FRAME_SIZE - 1))
    }

    /// A frame the frame pool hands out (`frame_pool`): RAM it owns.
    pub(crate) const fn from_pool(phys: u64) -> Frame {
        Frame(phys & !(FRAME_SIZE - 1))
    }

    /// A frame for host tests, which never touch it.
    #[cfg(test)]
    pub const fn for_test(phys: u64) -> Frame {
        Frame(phys & !(FRAME_SIZE - 1))
    }
}

/// Physically contiguous frames handed out together (for device DMA and
/// stacks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRun {
    first: u64,
    count: u64,
}

impl FrameRun {
    /// `count` frames from address `first` (the frame pool makes them).
    pub(crate) const fn new(first: u64, count: u64) -> FrameRun {
        FrameRun { first, count }
    }

    /// The first frame.
    pub fn first(&self) -> Frame {
        Frame(self.first)
    }

    /// Every frame of the run, in order.
    pub fn frames(&self) -> impl Iterator<Item = Frame> {
        let first = self.first;
        (0..self.count).map(move |i| Frame(first + i * FRAME_SIZE))
    }
}
/// Free ranges tracked at once. Real maps have a handful; each reservation can split one.
const MAX_RANGES: usize = 128;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    pub const fn new(start: u64, end: u64) -> PhysRange {
        PhysRange { start, end }
    }

    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// The whole frames inside this range.
    fn shrink_to_frames(self) -> PhysRange {
        let start = self
            .start
            .checked_next_multiple_of(FRAME_SIZE)
            .unwrap_or(u64::MAX);
        let end = self.end & !(FRAME_SIZE - 1);
        PhysRange { start, end }
    }

    /// Every frame that touches this range.
    fn grow_to_frames(self) -> PhysRange {
        let start = self.start & !(FRAME_SIZE - 1);
        let end = self
            .end
            .checked_next_multiple_of(FRAME_SIZE)
            .unwrap_or(!(FRAME_SIZE - 1));
        PhysRange { start, end }
    }

    fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

/// What the memory map says a region is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Usable,
    /// Anything else: reserved, ACPI, NVS, bad memory.
    Unusable,
}

/// Why the allocator could not be built or a frame not freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The map is too fragmented to track.
    TooManyRanges,
    /// A freed address is not frame-aligned.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    // freeing starts with domain teardown (issue 3)
    Unaligned(u64),
    /// A freed frame was already free.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    DoubleFree(u64),
    /// A freed frame was never the allocator's (outside what the map left free).
    NotOurs(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooManyRanges => {
                write!(f, "memory map has more than {MAX_RANGES} free ranges")
            }
            FrameError::Unaligned(a) => write!(f, "frame {a:#x} is not 4 KiB aligned"),
            FrameError::DoubleFree(a) => write!(f, "frame {a:#x} freed twice"),
            FrameError::NotOurs(a) => write!(f, "frame {a:#x} is not one the allocator had"),
        }
    }
}

/// The free frames the memory map leaves, as ranges.
pub struct FreeRanges {
    /// Sorted, disjoint, non-adjacent, frame-aligned, non-empty.
    free: heapless::Vec<PhysRange, MAX_RANGES>,
}

impl FreeRanges {
    /// Builds the allocator from the memory map and the ranges that must be kept.
    pub fn new(
        map: impl Iterator<Item = (PhysRange, RegionKind)> + Clone,
        reserved: &[PhysRange],
    ) -> Result<FreeRanges, FrameError> {
        let mut free = FreeRanges {
            free: heapless::Vec::new(),
        };
        for (range, kind) in map.clone() {
            if kind == RegionKind::Usable {
                free.insert(range.shrink_to_frames())?;
            }
        }
        // Unusable wins over usable where a map overlaps itself.
        for (range, kind) in map {
            if kind == RegionKind::Unusable {
                free.remove(range.grow_to_frames())?;
            }
        }
        for r in reserved {
            free.remove(r.grow_to_frames())?;
        }
        Ok(free)
    }

    /// Adds a range to the free set, merging with neighbours. Overlaps are merged too.
    fn insert(&mut self, r: PhysRange) -> Result<(), FrameError> {
        if r.is_empty() {
            return Ok(());
        }
        let mut merged = r;
        let mut out: heapless::Vec<PhysRange, MAX_RANGES> = heapless::Vec::new();
        let mut placed = false;
        for &cur in self.free.iter() {
            if cur.end < merged.start {
                out.push(cur).map_err(|_| FrameError::TooManyRanges)?;
            } else if merged.end < cur.start {
                if !placed {
                    out.push(merged).map_err(|_| FrameError::TooManyRanges)?;
                    placed = true;
                }
                out.push(cur).map_err(|_| FrameError::TooManyRanges)?;
            } else {
                merged = PhysRange::new(merged.start.min(cur.start), merged.end.max(cur.end));
            }
        }
        if !placed {
            out.push(merged).map_err(|_| FrameError::TooManyRanges)?;
        }
        self.free = out;
        Ok(())
    }

    /// Takes a range out of the free set.
    fn remove(&mut self, r: PhysRange) -> Result<(), FrameError> {
        if r.is_empty() {
            return Ok(());
        }
        let mut out: heapless::Vec<PhysRange, MAX_RANGES> = heapless::Vec::new();
        for &cur in self.free.iter() {
            if !cur.overlaps(&r) {
                out.push(cur).map_err(|_| FrameError::TooManyRanges)?;
                continue;
            }
            let below = PhysRange::new(cur.start, r.start.min(cur.end));
            let above = PhysRange::new(r.end.max(cur.start), cur.end);
            for piece in [below, above] {
                if !piece.is_empty() {
                    out.push(piece).map_err(|_| FrameError::TooManyRanges)?;
                }
            }
        }
        self.free = out;
        Ok(())
    }

    /// Hands out the lowest free frame.
    // What boot takes is a run; the host tests drain the ranges frame by frame.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn allocate(&mut self) -> Option<Frame> {
        self.allocate_below(u64::MAX)
    }

    /// Hands out the lowest free frame that ends at or below `limit`.
    // What boot takes is a run; the host tests drain the ranges frame by frame.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn allocate_below(&mut self, limit: u64) -> Option<Frame> {
        let first = self.free.first_mut()?;
        let frame = first.start;
        if frame.checked_add(FRAME_SIZE)? > limit {
            return None;
        }
        first.start += FRAME_SIZE;
        if first.is_empty() {
            self.free.remove(0);
        }
        Some(Frame(frame))
    }

    /// Hands out `count` physically contiguous frames (the lowest run that
    /// fits). For device DMA and stacks.
    pub fn allocate_contiguous(&mut self, count: u64) -> Option<FrameRun> {
        let len = count.checked_mul(FRAME_SIZE)?;
        if count == 0 {
            return None;
        }
        let i = self.free.iter().position(|r| r.len() >= len)?;
        let start = self.free[i].start;
        self.free[i].start += len;
        if self.free[i].is_empty() {
            self.free.remove(i);
        }
        Some(FrameRun {
            first: start,
            count,
        })
    }

    /// Gives a frame back. Refuses frames already free.
    // What boot takes is a run; the host tests drain the ranges frame by frame.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn free(&mut self, frame: Frame) -> Result<(), FrameError> {
        let frame = frame.addr();
        if !frame.is_multiple_of(FRAME_SIZE) {
            return Err(FrameError::Unaligned(frame));
        }
        let r = PhysRange::new(frame, frame + FRAME_SIZE);
        if self.free.iter().any(|f| f.overlaps(&r)) {
            return Err(FrameError::DoubleFree(frame));
        }
        self.insert(r)
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(PhysRange::len).sum()
    }

    /// The free ranges, lowest first.
    #[cfg_attr(target_os = "none", allow(dead_code))]
    pub fn ranges(&self) -> &[PhysRange] {
        &self.free
    }
}

/// Sum of the usable bytes of a map, counting overlaps once and letting
/// unusable regions win, as the allocator does. What "usable memory" means in the boot log.
pub fn usable_bytes(
    map: impl Iterator<Item = (PhysRange, RegionKind)> + Clone,
) -> Result<u64, FrameError> {
    FreeRanges::new(map, &[]).map(|a| a.free_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    #[test]
    fn contiguous_runs_come_from_the_first_range_that_fits() {
        let map = [u(MIB, MIB + 2 * FRAME_SIZE), u(4 * MIB, 5 * MIB)];
        let mut a = FreeRanges::new(map.iter().copied(), &[]).unwrap();
        let before = a.free_bytes();
        // Three frames do not fit the first range (two frames): the second gives them.
        assert_eq!(
            a.allocate_contiguous(3).map(|r| r.first().addr()),
            Some(4 * MIB)
        );
        assert_eq!(
            a.allocate_contiguous(2).map(|r| r.first().addr()),
            Some(MIB)
        );
        assert_eq!(a.allocate_contiguous(0), None);
        assert_eq!(a.allocate_contiguous(u64::MAX), None);
        assert_eq!(a.allocate_contiguous(1024), None);
        assert_eq!(a.free_bytes(), before - 5 * FRAME_SIZE);
        for f in 0..3 {
            a.free(Frame::for_test(4 * MIB + f * FRAME_SIZE)).unwrap();
        }
        assert_eq!(
            a.allocate_contiguous(3).map(|r| r.first().addr()),
            Some(4 * MIB)
        );
    }

    fn u(start: u64, end: u64) -> (PhysRange, RegionKind) {
        (PhysRange::new(start, end), RegionKind::Usable)
    }
    fn x(start: u64, end: u64) -> (PhysRange, RegionKind) {
        (PhysRange::new(start, end), RegionKind::Unusable)
    }

    fn drain(a: &mut FreeRanges) -> Vec<u64> {
        core::iter::from_fn(|| a.allocate().map(Frame::addr)).collect()
    }

    /// A QEMU-like map: low memory, BIOS hole, RAM to 3 GiB, a PCI hole, RAM above 4 GiB.
    fn qemu_3_5g() -> Vec<(PhysRange, RegionKind)> {
        vec![
            u(0, 0x9fc00),
            x(0x9fc00, 0xa0000),
            x(0xf0000, 0x100000),
            u(0x100000, 0xbffe0000),
            x(0xbffe0000, 0xc0000000),
            x(0xfffc0000, 0x1_0000_0000),
            u(0x1_0000_0000, 0x1_2000_0000),
        ]
    }

    #[test]
    fn a_map_with_a_hole_counts_both_sides() {
        let total = usable_bytes(qemu_3_5g().into_iter()).unwrap();
        assert_eq!(total, 0x9f000 + (0xbffe0000 - 0x100000) + 0x2000_0000);
    }

    #[test]
    fn reserved_ranges_are_never_handed_out() {
        let kernel = PhysRange::new(0x200000, 0x2345678);
        let mbi = PhysRange::new(0x2346000, 0x2346800);
        let module = PhysRange::new(0x2347000, 0x2400001);
        let low = PhysRange::new(0, MIB);
        let map = vec![u(0, 0x9fc00), u(MIB, 64 * MIB)];
        let mut a = FreeRanges::new(map.into_iter(), &[kernel, mbi, module, low]).unwrap();
        let frames = drain(&mut a);
        for f in &frames {
            let r = PhysRange::new(*f, f + FRAME_SIZE);
            for bad in [kernel, mbi, module, low] {
                assert!(!r.overlaps(&bad), "frame {f:#x} overlaps {bad:?}");
            }
        }
        assert_eq!(frames[0], MIB);
        assert_eq!(*frames.last().unwrap(), 64 * MIB - FRAME_SIZE);
        // The module's last byte spills into one more frame, which must stay reserved.
        assert!(!frames.contains(&0x2400000));
        assert!(frames.contains(&0x2401000));
    }

    #[test]
    fn boot_info_right_after_the_kernel_in_its_padding_page() {
        // GRUB may put the boot information inside the page the kernel image ends in.
        let kernel = PhysRange::new(0x200000, 0x2ff100);
        let mbi = PhysRange::new(0x2ff100, 0x2ff900);
        let mut a = FreeRanges::new(vec![u(MIB, 16 * MIB)].into_iter(), &[kernel, mbi]).unwrap();
        let frames = drain(&mut a);
        assert!(!frames.contains(&0x2ff000));
        assert!(frames.contains(&0x300000));
    }

    #[test]
    fn a_module_placed_right_after_the_kernel_stays_reserved() {
        // GRUB loads modules in the first free space, often the page after the image.
        let kernel = PhysRange::new(0x200000, 0x23e980);
        let module = PhysRange::new(0x23f000, 0x2c0010);
        let mut a = FreeRanges::new(vec![u(MIB, 8 * MIB)].into_iter(), &[kernel, module]).unwrap();
        assert_eq!(
            a.ranges(),
            &[
                PhysRange::new(MIB, 0x200000),
                PhysRange::new(0x2c1000, 8 * MIB)
            ]
        );
        assert!(drain(&mut a)
            .iter()
            .all(|f| !(0x200000..0x2c1000).contains(f)));
    }

    #[test]
    fn overlapping_map_entries_unusable_wins() {
        let map = vec![
            u(0, 8 * MIB),
            u(4 * MIB, 12 * MIB),
            x(6 * MIB, 6 * MIB + 10),
        ];
        let mut a = FreeRanges::new(map.into_iter(), &[]).unwrap();
        assert_eq!(
            a.ranges(),
            &[
                PhysRange::new(0, 6 * MIB),
                PhysRange::new(6 * MIB + FRAME_SIZE, 12 * MIB)
            ]
        );
        let frames = drain(&mut a);
        let mut sorted = frames.clone();
        sorted.dedup();
        assert_eq!(sorted.len(), frames.len(), "no frame twice");
        assert!(!frames.contains(&(6 * MIB)));
    }

    #[test]
    fn unaligned_usable_regions_shrink_to_whole_frames() {
        let map = vec![u(0x1001, 0x5fff)];
        let mut a = FreeRanges::new(map.into_iter(), &[]).unwrap();
        assert_eq!(drain(&mut a), [0x2000, 0x3000, 0x4000]);
    }

    #[test]
    fn unsorted_map_is_handed_out_lowest_first() {
        let map = vec![u(0x10000, 0x12000), u(0x2000, 0x3000)];
        let mut a = FreeRanges::new(map.into_iter(), &[]).unwrap();
        assert_eq!(drain(&mut a), [0x2000, 0x10000, 0x11000]);
    }

    #[test]
    fn regions_at_the_top_of_the_address_space_do_not_overflow() {
        let map = vec![
            u(u64::MAX - 3 * FRAME_SIZE, u64::MAX),
            x(u64::MAX - 10, u64::MAX),
        ];
        let a = FreeRanges::new(map.into_iter(), &[]).unwrap();
        assert_eq!(a.free_bytes(), FRAME_SIZE * 2);
    }

    #[test]
    fn free_then_reallocate_and_double_free_is_refused() {
        let mut a = FreeRanges::new(vec![u(0, 3 * FRAME_SIZE)].into_iter(), &[]).unwrap();
        let f0 = a.allocate().unwrap();
        let f1 = a.allocate().unwrap();
        assert_eq!(a.free(f0), Ok(()));
        assert_eq!(a.free(f0), Err(FrameError::DoubleFree(f0.addr())));
        assert_eq!(
            a.ranges(),
            &[
                PhysRange::new(0, FRAME_SIZE),
                PhysRange::new(2 * FRAME_SIZE, 3 * FRAME_SIZE)
            ]
        );
        a.free(f1).unwrap();
        assert_eq!(a.ranges(), &[PhysRange::new(0, 3 * FRAME_SIZE)]);
    }

    #[test]
    fn allocate_below_respects_the_limit() {
        let mut a =
            FreeRanges::new(vec![u(0x10_0000_0000, 0x10_0000_2000)].into_iter(), &[]).unwrap();
        assert_eq!(a.allocate_below(1 << 32), None);
        assert_eq!(a.allocate().map(Frame::addr), Some(0x10_0000_0000));
    }

    #[test]
    fn empty_map_allocates_nothing() {
        let mut a = FreeRanges::new(core::iter::empty(), &[]).unwrap();
        assert_eq!(a.allocate(), None);
        assert_eq!(a.free_bytes(), 0);
    }

    #[test]
    fn too_fragmented_map_is_an_error_not_a_panic() {
        let map: Vec<_> = (0..200u64)
            .map(|i| u(i * 2 * FRAME_SIZE, i * 2 * FRAME_SIZE + FRAME_SIZE))
            .collect();
        assert_eq!(
            FreeRanges::new(map.into_iter(), &[]).err(),
            Some(FrameError::TooManyRanges)
        );
    }
}
