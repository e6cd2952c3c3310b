//! Restore epochs: how many times this domain has been restored from a
//! save file. A restored copy has this domain's memory but none of its
//! kernel handles (ports, grants, mappings, fault fixups): whatever was
//! registered in an earlier epoch is registered again.

use core::sync::atomic::{AtomicU32, Ordering};

static EPOCH: AtomicU32 = AtomicU32::new(0);

/// How many times this domain has been restored (0: never).
pub fn get() -> u32 {
    EPOCH.load(Ordering::Acquire)
}

/// A restore happened (`Suspend` returned 1): a new epoch begins.
pub fn advance() {
    EPOCH.fetch_add(1, Ordering::AcqRel);
}
