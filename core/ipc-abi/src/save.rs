//! The save file: what `toolstack domain save` writes and `domain restore`
//! reads back (one definition for the toolstack domain, which produces and
//! consumes the records, and the host command, which stores them).
//!
//! ```text
//! offset size  field
//!      0    8  magic "XNLSAVE\0"
//!      8    4  format version (LE, FORMAT_VERSION)
//!     12       records, each:
//!                4  payload length (LE, at most RECORD_MAX)
//!                4  CRC-32 (LE) of the payload
//!                n  payload: a postcard-encoded `Record`
//! ```
//!
//! Records come in this order: one `Header`; `Image` pieces adding up to
//! the header's `image_len`; one `Context` per vCPU; a `Device` per
//! connected device; `Page`s in rising address order; one `End` whose
//! counts must match, and nothing after it. [`Checker`] enforces all of
//! that as records arrive, so a truncated, reordered, corrupted or foreign
//! file is refused before (host) or while (toolstack domain) it is used.

use serde::{Deserialize, Serialize};

/// The file's first bytes.
pub const MAGIC: [u8; 8] = *b"XNLSAVE\0";
/// Version of the format this code writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Bytes before the first record.
pub const FILE_HEADER_LEN: usize = 12;
/// Bytes before a record's payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest record payload (a page and its address, with room to spare).
pub const RECORD_MAX: usize = 4096 + 64;
/// Largest image piece in one `Image` record.
pub const IMAGE_PIECE: usize = 4096;
/// Bytes of a saved page.
pub const PAGE_BYTES: usize = 4096;

/// One record of a save file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// What the domain was: its name, memory, the start line it was
    /// created from (its configuration), the size of its image, its id.
    Header {
        name: &'a str,
        memory_kib: u64,
        vcpus: u32,
        line: &'a str,
        image_len: u64,
        /// The saved domain's id, and a stamp of the boot it ran in (a
        /// restore in the same boot carries its console history over).
        domain: u32,
        boot: u64,
    },
    /// The next piece of the ELF image the domain was loaded from.
    Image {
        #[serde(serialize_with = "crate::byte_field::write")]
        data: &'a [u8],
    },
    /// A vCPU's registers, in `VcpuContext` order.
    Context { vcpu: u32, regs: [u64; 18] },
    /// A device it had connected: kind (`proto::control::DeviceKind`),
    /// index, and the name of the domain serving it.
    Device {
        kind: u32,
        index: u32,
        backend: &'a str,
    },
    /// One page of its memory at `va` (pages of a fresh domain that would
    /// read as zero are left out).
    Page {
        va: u64,
        #[serde(serialize_with = "crate::byte_field::write")]
        data: &'a [u8],
    },
    /// The end, with the counts of what came before.
    End { pages: u64, devices: u32 },
}

/// Why a save file (or part of one) is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveError {
    /// It does not start with the magic: not a save file.
    Foreign,
    /// It is a save file of another format version.
    Version(u32),
    /// It ends inside a record, or before its `End`.
    Truncated,
    /// A record's checksum does not match its bytes.
    Corrupted,
    /// A record is malformed, out of order or out of range.
    Malformed(&'static str),
    /// Bytes follow the `End` record.
    TrailingBytes,
}

impl core::fmt::Display for SaveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SaveError::Foreign => f.write_str("not a Xenolith save file"),
            SaveError::Version(v) => write!(
                f,
                "save file format version {v}; this toolstack reads version {FORMAT_VERSION}"
            ),
            SaveError::Truncated => f.write_str("the save file is truncated"),
            SaveError::Corrupted => f.write_str("the save file is corrupted (checksum mismatch)"),
            SaveError::Malformed(what) => write!(f, "the save file is malformed: {what}"),
            SaveError::TrailingBytes => f.write_str("the save file has bytes after its end"),
        }
    }
}

/// Whether the page at `va` (which the domain may write or not) holding
/// `zero` bytes only or not is what a freshly created domain has there
/// too, so a save file leaves it out: a read-only page of the image (the
/// restore loads it from the image the file carries), or a zero page
/// outside the image (a fresh domain's memory is zeroed). A writable
/// image page always goes in: its data or BSS may have changed.
pub fn fresh_page(va: u64, writable: bool, zero: bool) -> bool {
    use crate::layout::{IMAGE_BASE, IMAGE_LIMIT};
    if (IMAGE_BASE..IMAGE_LIMIT).contains(&va) {
        !writable
    } else {
        zero
    }
}

/// The file header (magic and version).
pub fn file_header() -> [u8; FILE_HEADER_LEN] {
    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    h[8..].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h
}

/// Checks the file header; returns the bytes after it.
pub fn check_file_header(bytes: &[u8]) -> Result<&[u8], SaveError> {
    if bytes.len() < 8 || bytes[..8] != MAGIC {
        return Err(SaveError::Foreign);
    }
    let version = bytes
        .get(8..12)
        .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        .ok_or(SaveError::Truncated)?;
    if version != FORMAT_VERSION {
        return Err(SaveError::Version(version));
    }
    Ok(&bytes[FILE_HEADER_LEN..])
}

/// Writes a framed record into `out`; returns its length, or None if `out` is too small.
pub fn encode(record: &Record<'_>, out: &mut [u8]) -> Option<usize> {
    let body = out.get_mut(RECORD_HEADER_LEN..)?;
    let n = postcard::to_slice(record, body).ok()?.len();
    if n > RECORD_MAX {
        return None;
    }
    let sum = crc32fast::hash(&out[RECORD_HEADER_LEN..RECORD_HEADER_LEN + n]);
    out[..4].copy_from_slice(&(n as u32).to_le_bytes());
    out[4..8].copy_from_slice(&sum.to_le_bytes());
    Some(RECORD_HEADER_LEN + n)
}

/// Takes the first framed record off `bytes`: the record and the rest.
pub fn next_record(bytes: &[u8]) -> Result<(Record<'_>, &[u8]), SaveError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(SaveError::Truncated);
    }
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let sum = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if len > RECORD_MAX {
        return Err(SaveError::Corrupted);
    }
    let end = RECORD_HEADER_LEN + len;
    let payload = bytes
        .get(RECORD_HEADER_LEN..end)
        .ok_or(SaveError::Truncated)?;
    if crc32fast::hash(payload) != sum {
        return Err(SaveError::Corrupted);
    }
    let record =
        postcard::from_bytes(payload).map_err(|_| SaveError::Malformed("undecodable record"))?;
    Ok((record, &bytes[end..]))
}

/// Where a [`Checker`] is in the record order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Header,
    Image,
    Contexts,
    Devices,
    Pages,
    Done,
}

/// Checks that records come in the file's order with consistent counts.
#[derive(Clone, Debug)]
pub struct Checker {
    stage: Stage,
    vcpus: u32,
    image_len: u64,
    image_got: u64,
    contexts: u32,
    devices: u32,
    pages: u64,
    /// The address after the last page (pages must rise).
    next_va: u64,
}

/// Most vCPUs a saved domain may have.
pub const MAX_VCPUS: u32 = crate::domain::MAX_VCPUS;
/// Largest image a save file may carry (as an upload).
pub const MAX_IMAGE: u64 = crate::mgmt::MAX_IMAGE as u64;

impl Default for Checker {
    fn default() -> Self {
        Checker::new()
    }
}

impl Checker {
    pub const fn new() -> Checker {
        Checker {
            stage: Stage::Header,
            vcpus: 0,
            image_len: 0,
            image_got: 0,
            contexts: 0,
            devices: 0,
            pages: 0,
            next_va: 0,
        }
    }

    /// Accepts the next record, or says why it cannot come now.
    pub fn accept(&mut self, r: &Record<'_>) -> Result<(), SaveError> {
        use SaveError::Malformed as M;
        // Sections may be empty: move on to the stage this record belongs to.
        let want = match r {
            Record::Header { .. } => Stage::Header,
            Record::Image { .. } => Stage::Image,
            Record::Context { .. } => Stage::Contexts,
            Record::Device { .. } => Stage::Devices,
            Record::Page { .. } => Stage::Pages,
            Record::End { .. } => Stage::Done,
        };
        if self.stage == Stage::Done {
            return Err(SaveError::TrailingBytes);
        }
        if want < self.stage || (self.stage == Stage::Header && want != Stage::Header) {
            return Err(M("records out of order"));
        }
        if want > Stage::Image && self.image_got != self.image_len {
            return Err(M("the image is incomplete"));
        }
        if want > Stage::Contexts && self.contexts != self.vcpus {
            return Err(M("a vCPU's registers are missing"));
        }
        match *r {
            Record::Header {
                name,
                memory_kib,
                vcpus,
                image_len,
                ..
            } => {
                if self.stage != Stage::Header || want != Stage::Header || self.vcpus != 0 {
                    return Err(M("a second header"));
                }
                if name.is_empty() || name.len() > crate::domain::NAME_MAX {
                    return Err(M("bad domain name"));
                }
                if !(1..=MAX_VCPUS).contains(&vcpus) || memory_kib == 0 {
                    return Err(M("bad vCPU count or memory size"));
                }
                if image_len == 0 || image_len > MAX_IMAGE {
                    return Err(M("bad image size"));
                }
                self.vcpus = vcpus;
                self.image_len = image_len;
                self.stage = Stage::Image;
                return Ok(());
            }
            Record::Image { data } => {
                if data.is_empty() || data.len() > IMAGE_PIECE {
                    return Err(M("bad image piece"));
                }
                self.image_got += data.len() as u64;
                if self.image_got > self.image_len {
                    return Err(M("more image than the header says"));
                }
            }
            Record::Context { vcpu, .. } => {
                if vcpu != self.contexts {
                    return Err(M("vCPU registers out of order"));
                }
                self.contexts += 1;
                if self.contexts > self.vcpus {
                    return Err(M("registers of a vCPU the domain lacks"));
                }
            }
            Record::Device { backend, .. } => {
                if backend.len() > crate::domain::NAME_MAX || self.devices >= 64 {
                    return Err(M("bad device"));
                }
                self.devices += 1;
            }
            Record::Page { va, data } => {
                if data.len() != PAGE_BYTES || va % PAGE_BYTES as u64 != 0 {
                    return Err(M("bad page"));
                }
                if va < self.next_va || va >= crate::layout::USER_LIMIT {
                    return Err(M("pages out of order or out of range"));
                }
                self.next_va = va + PAGE_BYTES as u64;
                self.pages += 1;
            }
            Record::End { pages, devices } => {
                if pages != self.pages || devices != self.devices {
                    return Err(M("counts at the end do not match"));
                }
            }
        }
        self.stage = want;
        Ok(())
    }

    /// Whether the `End` record has come.
    pub fn done(&self) -> bool {
        self.stage == Stage::Done
    }

    /// Pages accepted so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }
}

/// What a whole file holds, once checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub name: heapless::String<{ crate::domain::NAME_MAX }>,
    pub memory_kib: u64,
    pub pages: u64,
    pub devices: u32,
}

/// Checks a whole file: magic, version, every record's checksum and the order.
pub fn check_file(bytes: &[u8]) -> Result<Summary, SaveError> {
    let mut rest = check_file_header(bytes)?;
    let mut checker = Checker::new();
    let mut summary = Summary {
        name: heapless::String::new(),
        memory_kib: 0,
        pages: 0,
        devices: 0,
    };
    while !checker.done() {
        if rest.is_empty() {
            return Err(SaveError::Truncated);
        }
        let (record, after) = next_record(rest)?;
        checker.accept(&record)?;
        if let Record::Header {
            name, memory_kib, ..
        } = record
        {
            let _ = summary.name.push_str(name);
            summary.memory_kib = memory_kib;
        }
        if let Record::End { pages, devices } = record {
            summary.pages = pages;
            summary.devices = devices;
        }
        rest = after;
    }
    if !rest.is_empty() {
        return Err(SaveError::TrailingBytes);
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_save_leaves_out_read_only_image_pages_and_zero_pages_outside_the_image() {
        use crate::layout::{HEAP_BASE, IMAGE_BASE};
        assert!(fresh_page(IMAGE_BASE, false, false));
        assert!(!fresh_page(IMAGE_BASE, true, true));
        assert!(fresh_page(HEAP_BASE, true, true));
        assert!(!fresh_page(HEAP_BASE, true, false));
    }
    extern crate std;
    use std::vec::Vec;

    #[test]
    fn a_page_record_is_written_as_files_of_before_hold_it() {
        // Before `byte_field`, serde wrote the page as a sequence of bytes.
        #[derive(serde::Serialize)]
        enum Before<'a> {
            Header,
            Image,
            Context,
            Device,
            Page { va: u64, data: &'a [u8] },
        }
        let data: [u8; PAGE_BYTES] = core::array::from_fn(|i| (i * 7) as u8);
        let mut now = [0u8; RECORD_HEADER_LEN + RECORD_MAX];
        let n = encode(
            &Record::Page {
                va: 0x1000,
                data: &data,
            },
            &mut now,
        )
        .unwrap();
        let mut before = [0u8; RECORD_MAX];
        let m = postcard::to_slice(
            &Before::Page {
                va: 0x1000,
                data: &data,
            },
            &mut before,
        )
        .unwrap()
        .len();
        assert_eq!(&now[RECORD_HEADER_LEN..n], &before[..m]);
        let _ = (
            Before::Header,
            Before::Image,
            Before::Context,
            Before::Device,
        );
    }

    fn push(file: &mut Vec<u8>, r: &Record<'_>) {
        let mut buf = [0u8; RECORD_HEADER_LEN + RECORD_MAX];
        let n = encode(r, &mut buf).unwrap();
        file.extend_from_slice(&buf[..n]);
    }

    fn sample() -> Vec<u8> {
        let mut f = file_header().to_vec();
        let page = [7u8; PAGE_BYTES];
        push(
            &mut f,
            &Record::Header {
                name: "counter",
                memory_kib: 1024,
                vcpus: 1,
                line: "counter memory=1M",
                image_len: 5,
                domain: 2,
                boot: 7,
            },
        );
        push(&mut f, &Record::Image { data: b"\x7fEL" });
        push(&mut f, &Record::Image { data: b"F!" });
        push(
            &mut f,
            &Record::Context {
                vcpu: 0,
                regs: [1; 18],
            },
        );
        push(
            &mut f,
            &Record::Device {
                kind: 1,
                index: 0,
                backend: "console-dom",
            },
        );
        push(
            &mut f,
            &Record::Page {
                va: 0x40_0000,
                data: &page,
            },
        );
        push(
            &mut f,
            &Record::Page {
                va: 0x40_1000,
                data: &page,
            },
        );
        push(
            &mut f,
            &Record::End {
                pages: 2,
                devices: 1,
            },
        );
        f
    }

    #[test]
    fn a_whole_file_checks() {
        let s = check_file(&sample()).unwrap();
        assert_eq!(
            (s.name.as_str(), s.memory_kib, s.pages, s.devices),
            ("counter", 1024, 2, 1)
        );
    }

    #[test]
    fn every_truncation_is_refused() {
        let f = sample();
        for n in 0..f.len() {
            let e = check_file(&f[..n]).unwrap_err();
            assert!(
                matches!(e, SaveError::Truncated | SaveError::Foreign),
                "cut at {n}: {e:?}"
            );
        }
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let f = sample();
        for i in 0..f.len() {
            let mut g = f.clone();
            g[i] ^= 0x20;
            assert!(check_file(&g).is_err(), "byte {i} flipped passed");
        }
    }

    #[test]
    fn foreign_version_order_and_trailing_bytes_are_refused() {
        assert_eq!(check_file(b"\x7fELF...."), Err(SaveError::Foreign));
        let mut v2 = sample();
        v2[8] = 2;
        assert_eq!(check_file(&v2), Err(SaveError::Version(2)));
        let mut extra = sample();
        extra.push(0);
        assert!(check_file(&extra).is_err());
        // A page below the one before it.
        let mut c = Checker::new();
        let page = [0u8; PAGE_BYTES];
        for r in [
            Record::Header {
                name: "a",
                memory_kib: 512,
                vcpus: 1,
                line: "a",
                image_len: 1,
                domain: 1,
                boot: 1,
            },
            Record::Image { data: b"x" },
            Record::Context {
                vcpu: 0,
                regs: [0; 18],
            },
            Record::Page {
                va: 0x2000,
                data: &page,
            },
        ] {
            c.accept(&r).unwrap();
        }
        assert!(c
            .accept(&Record::Page {
                va: 0x1000,
                data: &page
            })
            .is_err());
        // Pages before the registers, and an image cut short.
        let mut c = Checker::new();
        c.accept(&Record::Header {
            name: "a",
            memory_kib: 512,
            vcpus: 1,
            line: "a",
            image_len: 2,
            domain: 1,
            boot: 1,
        })
        .unwrap();
        c.accept(&Record::Image { data: b"x" }).unwrap();
        assert!(c
            .accept(&Record::Context {
                vcpu: 0,
                regs: [0; 18]
            })
            .is_err());
    }
}
