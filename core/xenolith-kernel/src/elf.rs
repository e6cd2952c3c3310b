//! Checking a domain's ELF image before anything is loaded.
//!
//! Owns: turning untrusted bytes into a [`LoadPlan`] — the segments to map,
//! with their permissions — or a clear [`ImageError`]. Headers are read with
//! `zerocopy` and every offset and size is checked, so no input can make it
//! panic (the `xmas-elf` crate slices its input unchecked; see docs/decisions.md).
//! Pure: host-tested with hostile images.

use core::fmt;
use ipc_abi::layout::{IMAGE_BASE, IMAGE_LIMIT, PAGE_SIZE};
use zerocopy::{FromBytes, Immutable, KnownLayout};

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
/// Most loadable segments accepted.
pub const MAX_SEGMENTS: usize = 16;

#[derive(FromBytes, KnownLayout, Immutable, Clone, Copy)]
#[repr(C)]
struct Header {
    ident: [u8; 16],
    kind: u16,
    machine: u16,
    version: u32,
    entry: u64,
    phoff: u64,
    shoff: u64,
    flags: u32,
    ehsize: u16,
    phentsize: u16,
    phnum: u16,
    shentsize: u16,
    shnum: u16,
    shstrndx: u16,
}

#[derive(FromBytes, KnownLayout, Immutable, Clone, Copy)]
#[repr(C)]
struct ProgramHeader {
    kind: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    paddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

/// Why an image was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageError {
    /// Shorter than its headers say.
    Truncated,
    /// No ELF magic.
    NotElf,
    /// Not ELF64 little-endian.
    Not64BitLittleEndian,
    /// Built for another machine.
    NotX86_64(u16),
    /// Not an executable (ET_EXEC).
    NotExecutable,
    /// No loadable segment.
    NoSegments,
    TooManySegments,
    /// A segment outside `[IMAGE_BASE, IMAGE_LIMIT)`.
    OutsideImageRegion(u64),
    /// Two segments share a page.
    Overlap(u64),
    /// A segment asks to be writable and executable.
    WriteAndExecute(u64),
    /// A segment's file size exceeds its memory size.
    FileLargerThanMemory(u64),
    /// The entry point is not in an executable segment.
    BadEntry(u64),
    /// More pages than the domain's memory allows.
    TooLarge {
        pages: u64,
        budget: u64,
    },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageError::Truncated => f.write_str("truncated: shorter than its headers say"),
            ImageError::NotElf => f.write_str("not an ELF file"),
            ImageError::Not64BitLittleEndian => f.write_str("not a 64-bit little-endian ELF"),
            ImageError::NotX86_64(m) => write!(f, "built for machine {m}, not x86_64"),
            ImageError::NotExecutable => f.write_str("not an executable (ET_EXEC)"),
            ImageError::NoSegments => f.write_str("no loadable segment"),
            ImageError::TooManySegments => write!(f, "more than {MAX_SEGMENTS} loadable segments"),
            ImageError::OutsideImageRegion(a) => write!(
                f,
                "segment at {a:#x} outside {IMAGE_BASE:#x}..{IMAGE_LIMIT:#x}"
            ),
            ImageError::Overlap(a) => write!(f, "segments overlap at {a:#x}"),
            ImageError::WriteAndExecute(a) => {
                write!(f, "segment at {a:#x} is writable and executable")
            }
            ImageError::FileLargerThanMemory(a) => {
                write!(f, "segment at {a:#x} has file size > memory size")
            }
            ImageError::BadEntry(a) => {
                write!(f, "entry point {a:#x} is not in an executable segment")
            }
            ImageError::TooLarge { pages, budget } => {
                write!(f, "needs {pages} pages, the domain has {budget}")
            }
        }
    }
}

/// One segment to load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memsz: u64,
    pub file_offset: u64,
    pub filesz: u64,
    pub writable: bool,
    pub executable: bool,
}

impl Segment {
    /// First page and one past the last page the segment touches.
    pub fn pages(&self) -> (u64, u64) {
        let first = self.vaddr & !(PAGE_SIZE - 1);
        let end = (self.vaddr + self.memsz).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        (first, end)
    }
}

/// What to load, all checked.
#[derive(Debug)]
pub struct LoadPlan {
    pub entry: u64,
    pub segments: heapless::Vec<Segment, MAX_SEGMENTS>,
    /// Pages the segments need.
    pub pages: u64,
}

/// Bytes of an image wherever they live (a slice, or a domain's memory).
pub trait ImageSource {
    /// Total length in bytes.
    fn len(&self) -> u64;
    /// Copies `buf.len()` bytes from `offset`; false if they are not all there.
    fn read(&self, offset: u64, buf: &mut [u8]) -> bool;
}

impl ImageSource for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read(&self, offset: u64, buf: &mut [u8]) -> bool {
        let Ok(start) = usize::try_from(offset) else {
            return false;
        };
        match start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
        {
            Some(src) => {
                buf.copy_from_slice(src);
                true
            }
            None => false,
        }
    }
}

fn read_struct<T: FromBytes>(
    image: &(impl ImageSource + ?Sized),
    offset: u64,
) -> Result<T, ImageError> {
    let mut buf = [0u8; 64];
    let n = core::mem::size_of::<T>();
    if !image.read(offset, &mut buf[..n]) {
        return Err(ImageError::Truncated);
    }
    T::read_from_bytes(&buf[..n]).map_err(|_| ImageError::Truncated)
}

/// Checks `image` and plans its loading into at most `budget_pages` pages.
pub fn plan(
    image: &(impl ImageSource + ?Sized),
    budget_pages: u64,
) -> Result<LoadPlan, ImageError> {
    let mut magic = [0u8; 4];
    if !image.read(0, &mut magic) {
        return Err(ImageError::Truncated);
    }
    if &magic != b"\x7fELF" {
        return Err(ImageError::NotElf);
    }
    let h: Header = read_struct(image, 0)?;
    if h.ident[4] != 2 || h.ident[5] != 1 {
        return Err(ImageError::Not64BitLittleEndian);
    }
    if h.machine != EM_X86_64 {
        return Err(ImageError::NotX86_64(h.machine));
    }
    if h.kind != ET_EXEC {
        return Err(ImageError::NotExecutable);
    }
    if h.phentsize as usize != core::mem::size_of::<ProgramHeader>() && h.phnum != 0 {
        return Err(ImageError::Truncated);
    }
    let mut segments: heapless::Vec<Segment, MAX_SEGMENTS> = heapless::Vec::new();
    for i in 0..h.phnum as u64 {
        let at = i
            .checked_mul(h.phentsize as u64)
            .and_then(|o| o.checked_add(h.phoff))
            .ok_or(ImageError::Truncated)?;
        let ph: ProgramHeader = read_struct(image, at)?;
        if ph.kind != PT_LOAD || ph.memsz == 0 {
            continue;
        }
        let end = ph
            .vaddr
            .checked_add(ph.memsz)
            .ok_or(ImageError::OutsideImageRegion(ph.vaddr))?;
        if ph.vaddr < IMAGE_BASE || end > IMAGE_LIMIT {
            return Err(ImageError::OutsideImageRegion(ph.vaddr));
        }
        if ph.filesz > ph.memsz {
            return Err(ImageError::FileLargerThanMemory(ph.vaddr));
        }
        let file_end = ph
            .offset
            .checked_add(ph.filesz)
            .ok_or(ImageError::Truncated)?;
        if file_end > image.len() {
            return Err(ImageError::Truncated);
        }
        let writable = ph.flags & PF_W != 0;
        let executable = ph.flags & PF_X != 0;
        if writable && executable {
            return Err(ImageError::WriteAndExecute(ph.vaddr));
        }
        let seg = Segment {
            vaddr: ph.vaddr,
            memsz: ph.memsz,
            file_offset: ph.offset,
            filesz: ph.filesz,
            writable,
            executable,
        };
        let (first, last) = seg.pages();
        if let Some(other) = segments.iter().find(|s| {
            let (a, b) = s.pages();
            first < b && a < last
        }) {
            return Err(ImageError::Overlap(other.vaddr.max(seg.vaddr)));
        }
        segments
            .push(seg)
            .map_err(|_| ImageError::TooManySegments)?;
    }
    if segments.is_empty() {
        return Err(ImageError::NoSegments);
    }
    if !segments
        .iter()
        .any(|s| s.executable && (s.vaddr..s.vaddr + s.memsz).contains(&h.entry))
    {
        return Err(ImageError::BadEntry(h.entry));
    }
    let pages = segments
        .iter()
        .map(|s| (s.pages().1 - s.pages().0) / PAGE_SIZE)
        .sum();
    if pages > budget_pages {
        return Err(ImageError::TooLarge {
            pages,
            budget: budget_pages,
        });
    }
    Ok(LoadPlan {
        entry: h.entry,
        segments,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Builds an ELF64 x86_64 executable with the given (vaddr, memsz, filesz, flags) segments.
    fn elf(entry: u64, segs: &[(u64, u64, u64, u32)]) -> Vec<u8> {
        let phoff = 64u64;
        let data_at = phoff + 56 * segs.len() as u64;
        let mut v = Vec::new();
        v.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        v.extend_from_slice(&ET_EXEC.to_le_bytes());
        v.extend_from_slice(&EM_X86_64.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        v.extend_from_slice(&entry.to_le_bytes());
        v.extend_from_slice(&phoff.to_le_bytes());
        v.extend_from_slice(&0u64.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        for x in [64u16, 56, segs.len() as u16, 64, 0, 0] {
            v.extend_from_slice(&x.to_le_bytes());
        }
        let mut off = data_at;
        for &(vaddr, memsz, filesz, flags) in segs {
            v.extend_from_slice(&PT_LOAD.to_le_bytes());
            v.extend_from_slice(&flags.to_le_bytes());
            for x in [off, vaddr, vaddr, filesz, memsz, 4096] {
                v.extend_from_slice(&x.to_le_bytes());
            }
            off += filesz;
        }
        let total: u64 = segs.iter().map(|s| s.2).sum();
        v.resize((data_at + total) as usize, 0xcc);
        v
    }

    const RX: u32 = 5;
    const RW: u32 = 6;
    const R: u32 = 4;

    #[test]
    fn a_normal_image_is_planned() {
        let img = elf(
            0x401000,
            &[
                (0x400000, 0x2000, 0x2000, RX),
                (0x402000, 0x3000, 0x100, RW),
            ],
        );
        let p = plan(&img[..], 100).unwrap();
        assert_eq!(p.entry, 0x401000);
        assert_eq!(p.segments.len(), 2);
        assert_eq!(p.pages, 5);
        assert!(p.segments[0].executable && !p.segments[0].writable);
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let img = elf(0x401000, &[(0x400000, 0x2000, 0x2000, RX)]);
        for n in 0..img.len() {
            assert!(plan(&img[..n], 100).is_err(), "accepted a cut at {n}");
        }
    }

    #[test]
    fn garbage_bytes_never_panic() {
        let mut seed = 0x1234_5678u64;
        for len in [0usize, 3, 63, 64, 200, 4096] {
            for _ in 0..200 {
                let mut v: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed
                            .wrapping_mul(6364136223846793005)
                            .wrapping_add(1442695040888963407);
                        (seed >> 56) as u8
                    })
                    .collect();
                if len >= 20 {
                    v[..4].copy_from_slice(b"\x7fELF");
                    v[4] = 2;
                    v[5] = 1;
                    v[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
                    v[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
                }
                let _ = plan(&v[..], 1 << 20);
            }
        }
    }

    #[test]
    fn write_plus_execute_is_refused() {
        let img = elf(0x400000, &[(0x400000, 0x1000, 0x1000, 7)]);
        assert_eq!(
            plan(&img[..], 100).unwrap_err(),
            ImageError::WriteAndExecute(0x400000)
        );
    }

    #[test]
    fn overlapping_segments_are_refused() {
        let img = elf(
            0x400000,
            &[(0x400000, 0x1800, 0x1000, RX), (0x401000, 0x1000, 0, RW)],
        );
        assert!(matches!(plan(&img[..], 100), Err(ImageError::Overlap(_))));
    }

    #[test]
    fn oversized_images_are_refused() {
        let img = elf(
            0x400000,
            &[
                (0x400000, 0x1000, 0x1000, RX),
                (0x500000, 0x100_0000, 0, RW),
            ],
        );
        assert_eq!(
            plan(&img[..], 100).unwrap_err(),
            ImageError::TooLarge {
                pages: 4097,
                budget: 100
            }
        );
    }

    #[test]
    fn segments_outside_the_image_region_are_refused() {
        for vaddr in [0, 0x1000, IMAGE_LIMIT, u64::MAX - 10, 0xffff_ffff_8000_0000] {
            let img = elf(vaddr, &[(vaddr, 0x1000, 0, RX)]);
            assert!(
                matches!(plan(&img[..], 100), Err(ImageError::OutsideImageRegion(_))),
                "{vaddr:#x}"
            );
        }
    }

    #[test]
    fn wrong_machine_class_and_type() {
        let mut img = elf(0x400000, &[(0x400000, 0x1000, 0x1000, RX)]);
        img[18] = 3; // EM_386
        assert_eq!(plan(&img[..], 100).unwrap_err(), ImageError::NotX86_64(3));
        let mut img = elf(0x400000, &[(0x400000, 0x1000, 0x1000, RX)]);
        img[4] = 1;
        assert_eq!(
            plan(&img[..], 100).unwrap_err(),
            ImageError::Not64BitLittleEndian
        );
        let mut img = elf(0x400000, &[(0x400000, 0x1000, 0x1000, RX)]);
        img[16] = 3; // ET_DYN
        assert_eq!(plan(&img[..], 100).unwrap_err(), ImageError::NotExecutable);
        assert_eq!(plan(&b"MZ\x90\0"[..], 100).unwrap_err(), ImageError::NotElf);
    }

    #[test]
    fn entry_must_be_in_an_executable_segment() {
        let img = elf(
            0x402000,
            &[(0x400000, 0x1000, 0x1000, RX), (0x402000, 0x1000, 0, RW)],
        );
        assert_eq!(
            plan(&img[..], 100).unwrap_err(),
            ImageError::BadEntry(0x402000)
        );
        let img = elf(0x400000, &[(0x400000, 0x1000, 0x1000, R)]);
        assert_eq!(
            plan(&img[..], 100).unwrap_err(),
            ImageError::BadEntry(0x400000)
        );
    }

    #[test]
    fn file_size_beyond_memory_size_is_refused() {
        let img = elf(0x400000, &[(0x400000, 0x100, 0x1000, RX)]);
        assert_eq!(
            plan(&img[..], 100).unwrap_err(),
            ImageError::FileLargerThanMemory(0x400000)
        );
    }
}
