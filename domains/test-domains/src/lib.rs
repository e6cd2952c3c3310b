//! Helpers shared by the test domains (each domain is a binary in `src/bin/`).

#![no_std]
#![deny(unsafe_code)]

pub mod faults;

/// Value of `key=` in this domain's command line.
pub use domain_runtime::option;

/// Whether the command line holds the bare word `word`.
pub fn flag(word: &str) -> bool {
    domain_runtime::command_line()
        .split_whitespace()
        .any(|w| w == word)
}

/// A numeric option.
pub fn number(key: &str) -> Option<u64> {
    option(key)?.parse().ok()
}

/// A domain id option (`peer=`, `self=`...), as the raw id the toolstack printed.
pub fn domain(key: &str) -> Option<domain_runtime::DomainId> {
    number(key).map(|n| domain_runtime::DomainId(n as u32))
}

/// What `tlb-check part=granter` fills its two granted pages with (refs 0
/// and 1), which `tlb-check part=prober` and `tlb-stress` check they read.
pub const TLB_PATTERNS: [u64; 2] = [0xaaaa_aaaa_aaaa_aaaa, 0xbbbb_bbbb_bbbb_bbbb];

/// Waits until `tlb-check part=granter` (domain `granter`) has granted its
/// pages and filled them: it fills them after granting, so a page mapped
/// early reads zeros (once taken for a stale TLB entry). The last word it
/// writes is the second page's last; window slot `slot` maps it meanwhile.
pub fn wait_for_filled_grants(granter: domain_runtime::DomainId, slot: u64) {
    use domain_runtime::grant::Mapping;
    let second = loop {
        match Mapping::map(granter, 1, slot) {
            Ok(m) => break m,
            Err(_) => domain_runtime::time::sleep_ns(10_000_000),
        }
    };
    while second.read_u64(511) != TLB_PATTERNS[1] {
        domain_runtime::time::sleep_ns(1_000_000);
    }
    let _ = second.unmap();
}

/// Prints when service resumed after each backend restart, as
/// `bench restart` reads it: `resumed at (us, busy tsc): 41234/1234567 ...`.
pub struct Resumed<'a>(pub &'a [(u64, u64)]);

impl core::fmt::Display for Resumed<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("resumed at (us, busy tsc):")?;
        for (ns, busy) in self.0 {
            write!(f, " {}/{}", ns / 1000, busy)?;
        }
        Ok(())
    }
}

/// The EtherType of raw test frames (IEEE local experimental).
const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// A raw test frame: broadcast, from `src`, carrying `text` (padded to 60 bytes).
pub fn test_frame(
    src: domain_runtime::ipc_abi::proto::net::Mac,
    text: &str,
) -> heapless::Vec<u8, 128> {
    let mut f = heapless::Vec::new();
    let _ = f.extend_from_slice(&[0xff; 6]);
    let _ = f.extend_from_slice(&src);
    let _ = f.extend_from_slice(&ETHERTYPE);
    let _ = f.extend_from_slice(text.as_bytes());
    while f.len() < 60 {
        let _ = f.push(0);
    }
    f
}

/// The source and text of a raw test frame, if it is one.
pub fn test_frame_text(frame: &[u8]) -> Option<(domain_runtime::ipc_abi::proto::net::Mac, &str)> {
    if frame.len() < 14 || frame[12..14] != ETHERTYPE {
        return None;
    }
    let mut src = [0u8; 6];
    src.copy_from_slice(&frame[6..12]);
    let text = core::str::from_utf8(&frame[14..]).ok()?;
    Some((src, text.trim_end_matches('\0')))
}
