//! The granted pages drvdom-blk keeps mapped for one frontend, found by
//! grant reference.
//!
//! Owns: the list of a frontend's mapped data pages (reference, mapping,
//! the page's device address) and an index into it hashed by reference,
//! so that each segment of a request finds its page in a probe or two
//! instead of a walk of the list (five segments a request, forty pages a
//! frontend).

use domain_runtime::grant::Mapping;

/// Granted pages one frontend may have mapped at once (the rest are
/// copied): its runtime's slots (twenty pages) and a 64 KiB buffer and
/// more.
pub const MAPPED_PER_CLIENT: usize = 40;
/// Entries of the index: more than the pages, so a probe always ends.
const INDEX: usize = 64;
const _: () = assert!(INDEX > MAPPED_PER_CLIENT && MAPPED_PER_CLIENT < u8::MAX as usize);

/// One frontend's mapped pages.
pub struct ClientMaps {
    list: heapless::Vec<(u32, Mapping, u64), MAPPED_PER_CLIENT>,
    /// Position in `list` plus one, at the reference's hash or after it
    /// (linear probing); 0 is empty. Entries are never removed one by one:
    /// pages go all together ([`ClientMaps::unmap_all`]).
    index: [u8; INDEX],
}

impl ClientMaps {
    pub const fn new() -> Self {
        ClientMaps {
            list: heapless::Vec::new(),
            index: [0; INDEX],
        }
    }

    /// The device address of the mapped page `gref`, if it is mapped.
    pub fn find(&self, gref: u32) -> Option<u64> {
        let mut h = gref as usize % INDEX;
        loop {
            let at = usize::from(self.index[h]).checked_sub(1)?;
            let (g, _, phys) = &self.list[at];
            if *g == gref {
                return Some(*phys);
            }
            h = (h + 1) % INDEX;
        }
    }

    pub fn is_full(&self) -> bool {
        self.list.is_full()
    }

    /// Keeps `m`, the mapping of `gref` at device address `phys`; gives it
    /// back if the list is full.
    pub fn insert(&mut self, gref: u32, m: Mapping, phys: u64) -> Result<(), Mapping> {
        self.list.push((gref, m, phys)).map_err(|(_, m, _)| m)?;
        let mut h = gref as usize % INDEX;
        while self.index[h] != 0 {
            h = (h + 1) % INDEX;
        }
        self.index[h] = self.list.len() as u8;
        Ok(())
    }

    /// Whether one of the pages is mapped at grant-window slot `s`.
    pub fn uses_slot(&self, s: u64) -> bool {
        self.list.iter().any(|(_, m, _)| m.slot() == s)
    }

    /// Unmaps every page.
    pub fn unmap_all(&mut self) {
        for (_, m, _) in self.list.drain(..) {
            let _ = m.unmap();
        }
        self.index = [0; INDEX];
    }
}
