//! One CPU's trace ring: a byte ring that keeps the newest bytes.
//!
//! Owns: positions (free-running byte counts since boot), writing with
//! wrap-around (the oldest bytes are overwritten, never the writer stopped),
//! and copying out from a reader's cursor. Pure: the host tests cover it.

/// A byte ring over memory it owns for as long as it lives.
pub struct ByteRing<'a> {
    buf: &'a mut [u8],
    head: u64,
}

impl<'a> ByteRing<'a> {
    /// A ring over `buf` (its whole length is the capacity).
    pub fn new(buf: &'a mut [u8]) -> ByteRing<'a> {
        ByteRing { buf, head: 0 }
    }

    /// Bytes it keeps.
    pub fn capacity(&self) -> u64 {
        self.buf.len() as u64
    }

    /// Position after the last byte written.
    pub fn head(&self) -> u64 {
        self.head
    }

    /// Appends `bytes`, overwriting the oldest when full.
    pub fn push(&mut self, bytes: &[u8]) {
        let cap = self.buf.len();
        if cap == 0 {
            return;
        }
        // Only the last `cap` bytes of a huge write can survive it.
        let skip = bytes.len().saturating_sub(cap);
        self.head += skip as u64;
        let mut rest = &bytes[skip..];
        while !rest.is_empty() {
            let at = (self.head % cap as u64) as usize;
            let n = rest.len().min(cap - at);
            self.buf[at..at + n].copy_from_slice(&rest[..n]);
            self.head += n as u64;
            rest = &rest[n..];
        }
    }

    /// Copies kept bytes from position `from` on (or from the oldest kept,
    /// if `from` was overwritten) into `out`; returns where the copy starts
    /// and how many bytes it holds.
    pub fn read(&self, from: u64, out: &mut [u8]) -> (u64, usize) {
        let cap = self.buf.len() as u64;
        let oldest = self.head.saturating_sub(cap);
        let start = from.clamp(oldest, self.head);
        let len = ((self.head - start) as usize).min(out.len());
        let mut done = 0;
        while done < len {
            let at = ((start + done as u64) % cap) as usize;
            let n = (len - done).min(cap as usize - at);
            out[done..done + n].copy_from_slice(&self.buf[at..at + n]);
            done += n;
        }
        (start, len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written_across_the_wrap() {
        let mut mem = [0u8; 8];
        let mut r = ByteRing::new(&mut mem);
        r.push(b"abcdef");
        let mut out = [0u8; 16];
        assert_eq!(r.read(0, &mut out), (0, 6));
        assert_eq!(&out[..6], b"abcdef");
        r.push(b"ghij");
        assert_eq!(r.head(), 10);
        // "ab" was overwritten: the read starts at the oldest byte kept.
        assert_eq!(r.read(0, &mut out), (2, 8));
        assert_eq!(&out[..8], b"cdefghij");
        assert_eq!(r.read(7, &mut out), (7, 3));
        assert_eq!(&out[..3], b"hij");
        assert_eq!(r.read(10, &mut out), (10, 0));
        assert_eq!(r.read(99, &mut out), (10, 0));
    }

    #[test]
    fn a_short_buffer_takes_the_oldest_part_and_a_huge_write_its_end() {
        let mut mem = [0u8; 4];
        let mut r = ByteRing::new(&mut mem);
        r.push(b"0123456789");
        assert_eq!(r.head(), 10);
        let mut out = [0u8; 2];
        assert_eq!(r.read(0, &mut out), (6, 2));
        assert_eq!(&out, b"67");
        let mut all = [0u8; 4];
        assert_eq!(r.read(6, &mut all), (6, 4));
        assert_eq!(&all, b"6789");
    }

    #[test]
    fn an_empty_ring_keeps_nothing() {
        let mut r = ByteRing::new(&mut []);
        r.push(b"abc");
        assert_eq!(r.read(0, &mut [0u8; 4]), (0, 0));
    }
}
