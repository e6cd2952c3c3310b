//! The balloon: this domain's memory following domain 0's target
//! (`toolstack domain mem-set`), as Xen's balloon driver does for a guest.
//!
//! Owns: the heap blocks the balloon holds (taken from the allocator; the
//! frames of their first `released` pages given back to the machine) and
//! moving toward a target: inflating gives pages back (`MemoryRelease`),
//! deflating takes them again (`MemoryPopulate`) and returns whole blocks
//! to the allocator. The domain's data is never touched: only blocks the
//! allocator had free go in.

extern crate alloc;
use crate::hypercall as hc;
use alloc::vec::Vec;
use domain_base::HeapPages;

/// Pages taken from the heap at once (each allocation costs the allocator
/// a little room beside it: a page at a time would waste half the heap).
const BLOCK_PAGES: usize = 16;

/// A block the balloon holds: pages `[0, released)` are given back.
struct Held {
    block: HeapPages,
    released: usize,
}

impl Held {
    fn page(&self, i: usize) -> u64 {
        self.block.addr() + i as u64 * 4096
    }
}

/// The blocks the balloon holds now; only the last may be partly released.
static HELD: spin::Mutex<Vec<Held>> = spin::Mutex::new(Vec::new());

/// What this domain holds now, in KiB (from the kernel's record).
fn holding_kib() -> Option<u64> {
    let me = crate::DomainId(crate::start_info().domain_id);
    hc::domain_info(me).ok().map(|i| i.memory_kib)
}

/// Moves toward holding `target_kib` of memory, as far as the heap allows
/// (it can give back only pages its allocator has free, and take back
/// only pages it gave). Returns what it holds afterwards.
pub fn set_target(target_kib: u64) -> u64 {
    let Some(mut now) = holding_kib() else {
        return 0;
    };
    let mut held = HELD.lock();
    // Room for the list itself first: it never comes from a page given back.
    held.reserve(((now.saturating_sub(target_kib) / 4) as usize).div_ceil(BLOCK_PAGES) + 1);
    'inflate: while now > target_kib {
        // The last block's pages first, then a new block.
        if held.last().is_none_or(|h| h.released == h.block.pages()) {
            let want = (((now - target_kib) / 4) as usize).clamp(1, BLOCK_PAGES);
            let block = (1..=want).rev().find_map(crate::take_heap_pages);
            let Some(block) = block else {
                break;
            };
            held.push(Held { block, released: 0 });
        }
        let Some(h) = held.last_mut() else {
            break;
        };
        while h.released < h.block.pages() && now > target_kib {
            if hc::memory_release(h.page(h.released)).is_err() {
                break 'inflate;
            }
            h.released += 1;
            now -= 4;
        }
    }
    while now < target_kib {
        let Some(h) = held.last_mut() else {
            break;
        };
        if h.released > 0 {
            if hc::memory_populate(h.page(h.released - 1)).is_err() {
                break;
            }
            h.released -= 1;
            now += 4;
        }
        if h.released == 0 {
            if let Some(h) = held.pop() {
                crate::give_heap_pages(h.block);
            }
        }
    }
    // A last block none of whose pages was given back goes back too.
    if held.last().is_some_and(|h| h.released == 0) {
        if let Some(h) = held.pop() {
            crate::give_heap_pages(h.block);
        }
    }
    now
}

/// After a restore: the restored domain was created with every page of its
/// heap mapped, so the pages the balloon had given back are there again
/// (fresh, zero): they are given back again, and the domain holds what it
/// held when it was saved (the balloon can take each back later).
pub fn after_restore() {
    let mut held = HELD.lock();
    for h in held.iter_mut() {
        for i in 0..h.released {
            if hc::memory_release(h.page(i)).is_err() {
                // Kept mapped: counted as taken back (the prefix rule
                // holds for this block; a later one starts released).
                crate::println!("balloon: a page could not be given back after the restore");
                h.released = i;
                break;
            }
        }
    }
}

/// KiB the balloon holds (given back to the machine).
pub fn held_kib() -> u64 {
    HELD.lock().iter().map(|h| h.released as u64 * 4).sum()
}
