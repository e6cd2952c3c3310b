//! Kernel trace buffers as the control domain reads them.
//!
//! Owns: the layout of what [`crate::hypercall::Hypercall::TraceRead`]
//! writes into the caller's buffer — a [`TraceChunk`] header, then trace
//! bytes — and the rule for resuming after a reader fell behind.
//!
//! Each CPU's trace buffer is a byte ring of `tbuf_size` pages holding
//! `defmt` frames (rzCOBS-encoded, each ending in a zero byte). Positions are
//! free-running byte counts since boot: the ring keeps the last `capacity`
//! bytes before `head`. A reader asks from its cursor; when older bytes were
//! overwritten, the chunk starts later than asked (`start > from`) and the
//! first frame may be cut: a reader drops bytes up to the first zero.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Header of a `TraceRead` answer; `len` trace bytes follow it.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct TraceChunk {
    /// CPUs with a trace buffer (read each by its number, from 0).
    pub cpus: u32,
    /// Bytes of trace data after this header.
    pub len: u32,
    /// Position of the first byte that follows (at or after the cursor asked).
    pub start: u64,
    /// Position after the last byte written so far on that CPU.
    pub head: u64,
    /// Bytes each CPU's ring holds.
    pub capacity: u64,
    /// The kernel build's mark: the address of its `XENOLITH_TRACE_STAMP`
    /// symbol, so a decoder can refuse an ELF of another build.
    pub stamp: u64,
}

const _: () = assert!(core::mem::size_of::<TraceChunk>() == 40);

/// Name of the symbol whose address is [`TraceChunk::stamp`].
pub const STAMP_SYMBOL: &str = "XENOLITH_TRACE_STAMP";

/// Whether a chunk read from `from` lost bytes, and so may begin mid-frame.
pub fn lost(from: u64, chunk: &TraceChunk) -> u64 {
    chunk.start.saturating_sub(from)
}

/// The bytes of `data` (read after a loss) from the first whole frame on:
/// everything after the first zero byte (frame end), or nothing.
pub fn resync(data: &[u8]) -> &[u8] {
    match data.iter().position(|&b| b == 0) {
        Some(end) => &data[end + 1..],
        None => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_that_fell_behind_skips_to_the_next_frame() {
        let chunk = TraceChunk {
            start: 100,
            head: 150,
            len: 50,
            ..TraceChunk::default()
        };
        assert_eq!(lost(80, &chunk), 20);
        assert_eq!(lost(100, &chunk), 0);
        assert_eq!(resync(&[5, 6, 0, 1, 2, 0]), &[1, 2, 0]);
        assert_eq!(resync(&[5, 6]), &[] as &[u8]);
    }
}
