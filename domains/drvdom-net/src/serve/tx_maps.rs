//! The pages an interface sends from, mapped into drvdom-net once each.
//!
//! Owns: copying a transmit request's bytes out of the guest's page. A
//! frontend sends from a fixed set of granted pages (`TX_PAGES`, or
//! `JUMBO_TX_PAGES`, granted read-only), so each is mapped here the first
//! time a request names it and copied from by this domain itself after
//! that, with no hypercall a frame; as drvdom-blk maps a frontend's data
//! pages. A grant that cannot be mapped (no free window slot, the table
//! entry taken by another reference, or not a grant at all) is copied by
//! `GrantCopy` instead, which refuses what is not the frontend's to give.
//!
//! Bounds: at most [`MAPS_PER_VIF`] pages of one interface and
//! [`MAPPED_AT_MOST`] in all are mapped, taken from the top of the grant
//! window down to the highest ring's slot; the rings take slots from the
//! bottom up and, if they find none, every mapping is let go first
//! (`Fabric::release_all_maps`). A
//! mapped grant cannot be ended by its granter, so every mapping of an
//! interface is let go when it leaves the switch, and the kernel lets go
//! of all of them if this domain dies.

use core::sync::atomic::{AtomicBool, Ordering};
use domain_runtime::control::CONTROL_SLOT;
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::hypercall::Error;
use domain_runtime::ipc_abi::layout::GRANT_SLOTS;
use domain_runtime::ipc_abi::proto::net::SLOT_BYTES;
use domain_runtime::DomainId;

/// Pages of one interface mapped at most: a jumbo interface's whole set.
pub const MAPS_PER_VIF: usize = domain_runtime::net::JUMBO_TX_PAGES;
/// Pages mapped at most over all interfaces: half the grant window, the
/// other half left to the rings.
pub const MAPPED_AT_MOST: u32 = (GRANT_SLOTS / 2) as u32;

/// `tx_write_test` on the command line: the first granted transmit page
/// to be mapped is first asked for writable, and the kernel's answer
/// printed (a frontend grants its transmit pages read-only: refused).
static WRITE_TEST: AtomicBool = AtomicBool::new(false);

/// Asks for the `tx_write_test` line at the first mapping.
pub fn ask_write_test() {
    WRITE_TEST.store(true, Ordering::Relaxed);
}

/// Which grant-window slots hold a transmit page's mapping.
#[derive(Default)]
pub struct MapSlots {
    used: [u64; (GRANT_SLOTS / 64) as usize],
    count: u32,
}

impl MapSlots {
    pub fn holds(&self, slot: u64) -> bool {
        slot < GRANT_SLOTS && self.used[(slot / 64) as usize] & (1 << (slot % 64)) != 0
    }

    /// The highest free slot from `floor` (above every ring) up to the
    /// control ring's, marked used; None at the bound.
    fn take(&mut self, floor: u64) -> Option<u64> {
        if self.count >= MAPPED_AT_MOST {
            return None;
        }
        let slot = (floor..CONTROL_SLOT).rev().find(|&s| !self.holds(s))?;
        self.used[(slot / 64) as usize] |= 1 << (slot % 64);
        self.count += 1;
        Some(slot)
    }

    fn give_back(&mut self, slot: u64) {
        if self.holds(slot) {
            self.used[(slot / 64) as usize] &= !(1 << (slot % 64));
            self.count -= 1;
        }
    }
}

/// One interface's mapped transmit pages, a table indexed by grant
/// reference (a frontend's pages are granted one after another, so their
/// references fall in different entries).
pub struct TxMaps {
    pages: [Option<(u32, Mapping)>; MAPS_PER_VIF],
}

impl TxMaps {
    pub fn new() -> TxMaps {
        TxMaps {
            pages: core::array::from_fn(|_| None),
        }
    }

    /// Copies `buf.len()` bytes from `offset` in the page `dom` granted as
    /// `gref` (`offset + buf.len()` within the page: the request was
    /// checked): from its mapping, made now if it is the page's first
    /// frame and a window slot above `floor` (every ring's) is free; else
    /// by `GrantCopy`. Whether the bytes came.
    pub fn copy(
        &mut self,
        dom: DomainId,
        gref: u32,
        offset: usize,
        buf: &mut [u8],
        slots: &mut MapSlots,
        floor: u64,
    ) -> bool {
        if offset + buf.len() > SLOT_BYTES {
            return false;
        }
        let entry = &mut self.pages[gref as usize % MAPS_PER_VIF];
        if entry.is_none() {
            if let Some(slot) = slots.take(floor) {
                if WRITE_TEST.load(Ordering::Relaxed) {
                    write_test(dom, gref, slot);
                }
                match Mapping::map(dom, gref, slot) {
                    Ok(m) => *entry = Some((gref, m)),
                    Err(_) => slots.give_back(slot),
                }
            }
        }
        match entry {
            Some((mapped, m)) if *mapped == gref => {
                m.read_bytes(offset, buf);
                true
            }
            _ => hc::grant_copy_from(dom, gref, offset as u64, buf).is_ok(),
        }
    }

    /// How many of its pages are mapped.
    pub fn mapped(&self) -> usize {
        self.pages.iter().flatten().count()
    }

    /// Lets go of every mapping (the interface leaves, or the window's
    /// slots are wanted for a ring).
    pub fn release(&mut self, slots: &mut MapSlots) {
        for (_, m) in self.pages.iter_mut().filter_map(Option::take) {
            slots.give_back(m.slot());
            let _ = m.unmap();
        }
    }
}

/// `tx_write_test`: asks for a frontend's transmit page writable, once a
/// request names a page that is really granted (not a hostile frontend's
/// made-up reference, which says nothing).
fn write_test(dom: DomainId, gref: u32, slot: u64) {
    let said = match Mapping::map_writable(dom, gref, slot) {
        Ok(m) => {
            let _ = m.unmap();
            "allowed"
        }
        Err(Error::PermissionDenied) => "refused (read-only)",
        Err(_) => return,
    };
    WRITE_TEST.store(false, Ordering::Relaxed);
    domain_runtime::println!("drvdom-net: tx_write_test: mapping a transmit page writable: {said}");
}
