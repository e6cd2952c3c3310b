//! The on-disk format of the example key-value store (pure, host-tested).
//!
//! Owns: the log's layout. Sector 0 is the header (magic, number of
//! records, CRC-32); record `n` lives in sector `n + 1`: key length, value
//! length, key, value, and a CRC-32 of the sector's first 508 bytes in its
//! last 4. A put writes its record, flushes, then the header, and flushes
//! again, so a crash leaves either the old or the new log, never a torn one.

extern crate alloc;
use alloc::string::String;
use alloc::vec::Vec;

pub const SECTOR: usize = 512;
pub const MAGIC: &[u8; 8] = b"XNKVLOG1";
/// Longest key and value.
pub const KEY_MAX: usize = 64;
pub const VALUE_MAX: usize = 400;

fn crc(bytes: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(bytes);
    h.finalize()
}

/// The header sector for a log of `records` records.
pub fn header(records: u64) -> [u8; SECTOR] {
    let mut s = [0u8; SECTOR];
    s[..8].copy_from_slice(MAGIC);
    s[8..16].copy_from_slice(&records.to_le_bytes());
    let c = crc(&s[..16]);
    s[16..20].copy_from_slice(&c.to_le_bytes());
    s
}

/// The number of records a header sector announces; None for a disk
/// without a log (fresh, or someone else's data).
pub fn read_header(s: &[u8]) -> Option<u64> {
    if s.len() < 20 || &s[..8] != MAGIC {
        return None;
    }
    let stored = u32::from_le_bytes(s[16..20].try_into().ok()?);
    (stored == crc(&s[..16])).then(|| u64::from_le_bytes(s[8..16].try_into().unwrap_or_default()))
}

/// A record sector, if the key and value fit.
pub fn record(key: &str, value: &str) -> Option<[u8; SECTOR]> {
    if key.is_empty() || key.len() > KEY_MAX || value.len() > VALUE_MAX {
        return None;
    }
    let mut s = [0u8; SECTOR];
    s[0] = key.len() as u8;
    s[1..3].copy_from_slice(&(value.len() as u16).to_le_bytes());
    s[3..3 + key.len()].copy_from_slice(key.as_bytes());
    s[3 + key.len()..3 + key.len() + value.len()].copy_from_slice(value.as_bytes());
    let c = crc(&s[..SECTOR - 4]);
    s[SECTOR - 4..].copy_from_slice(&c.to_le_bytes());
    Some(s)
}

/// The key and value of a record sector, if it is intact.
pub fn read_record(s: &[u8]) -> Option<(String, String)> {
    if s.len() != SECTOR {
        return None;
    }
    let stored = u32::from_le_bytes(s[SECTOR - 4..].try_into().ok()?);
    if stored != crc(&s[..SECTOR - 4]) {
        return None;
    }
    let klen = s[0] as usize;
    let vlen = u16::from_le_bytes([s[1], s[2]]) as usize;
    if klen == 0 || klen > KEY_MAX || vlen > VALUE_MAX {
        return None;
    }
    let key = core::str::from_utf8(&s[3..3 + klen]).ok()?;
    let value = core::str::from_utf8(&s[3 + klen..3 + klen + vlen]).ok()?;
    Some((key.into(), value.into()))
}

/// The store in memory: the latest value of each key.
#[derive(Default)]
pub struct Store {
    entries: Vec<(String, String)>,
}

impl Store {
    pub fn apply(&mut self, key: String, value: String) {
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_headers_round_trip_and_damage_is_seen() {
        let h = header(42);
        assert_eq!(read_header(&h), Some(42));
        let mut bad = h;
        bad[9] ^= 1;
        assert_eq!(read_header(&bad), None);
        assert_eq!(read_header(&[0u8; SECTOR]), None);
        let r = record("colour", "blue").unwrap();
        assert_eq!(read_record(&r), Some(("colour".into(), "blue".into())));
        let mut torn = r;
        torn[5] = b'X';
        assert_eq!(read_record(&torn), None);
        assert!(record("", "x").is_none());
        assert!(record(&"k".repeat(65), "x").is_none());
        assert!(record("k", &"v".repeat(401)).is_none());
    }

    #[test]
    fn the_latest_value_wins() {
        let mut s = Store::default();
        s.apply("a".into(), "1".into());
        s.apply("b".into(), "2".into());
        s.apply("a".into(), "3".into());
        assert_eq!(s.get("a"), Some("3"));
        assert_eq!(s.len(), 2);
        assert_eq!(s.keys().collect::<Vec<_>>(), ["a", "b"]);
    }
}
