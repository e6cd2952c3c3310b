//! A driver domain's devices' address space under the IOMMU: the
//! second-level page tables its PCI functions' context entries point at.
//!
//! Owns: which frame a device address reaches and with which rights, and
//! the tables that say so (taken from the allocator as needed, freed with
//! the space). Device addresses are laid out by `dma_remap`: the DMA
//! memory, then one page per grant window slot. The leaf frames are the
//! domain's or its granters'; this never frees them.

use crate::arch::vtd;
use crate::dma_remap::{sl_index, sl_leaf, sl_table};
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;

/// One domain's device address space.
pub struct DmaSpace {
    root: Frame,
    levels: u8,
    /// The remapping domain number its context entries carry.
    pub did: u16,
}

impl DmaSpace {
    /// An empty space (every device access faults), `levels` deep.
    pub fn new(frames: &mut FrameAllocator, levels: u8, did: u16) -> Option<DmaSpace> {
        Some(DmaSpace {
            root: fresh_table(frames)?,
            levels,
            did,
        })
    }

    /// The root table's address (for context entries).
    pub fn root(&self) -> u64 {
        self.root.addr()
    }

    pub fn levels(&self) -> u8 {
        self.levels
    }

    /// The last-level table covering `iova`, made on the way if `frames`
    /// are given.
    fn last_table(&self, iova: u64, mut frames: Option<&mut FrameAllocator>) -> Option<Frame> {
        let mut table = self.root;
        for level in (2..=self.levels).rev() {
            let index = sl_index(iova, level);
            table = match vtd::sl_child(table, index) {
                Some(t) => t,
                None => {
                    let t = fresh_table(frames.as_deref_mut()?)?;
                    vtd::write_sl_entry(table, index, sl_table(t.addr()));
                    t
                }
            };
        }
        Some(table)
    }

    /// Lets devices reach `frame` at `iova` (4 KiB), readable, and
    /// writable if `write`. False if a table could not be had.
    pub fn map(
        &mut self,
        frames: &mut FrameAllocator,
        iova: u64,
        frame: Frame,
        write: bool,
    ) -> bool {
        let Some(table) = self.last_table(iova, Some(frames)) else {
            return false;
        };
        vtd::write_sl_entry(table, sl_index(iova, 1), sl_leaf(frame.addr(), write));
        true
    }

    /// Takes `iova` away from devices (the caller empties the IOTLB
    /// before the frame may be used for anything else).
    pub fn unmap(&mut self, iova: u64) {
        if let Some(t) = self.last_table(iova, None) {
            vtd::write_sl_entry(t, sl_index(iova, 1), 0);
        }
    }

    /// Frees every table (no context entry may point here any more, and
    /// the IOTLB was emptied).
    pub fn destroy(self, frames: &mut FrameAllocator) {
        free_tree(frames, self.root, self.levels);
    }
}

/// Frees `table` (at `level`) and the tables below it, not the leaves' frames.
fn free_tree(frames: &mut FrameAllocator, table: Frame, level: u8) {
    if level > 1 {
        for index in 0..512 {
            if let Some(child) = vtd::sl_child(table, index) {
                free_tree(frames, child, level - 1);
            }
        }
    }
    let _ = frames.free(table);
}

fn fresh_table(frames: &mut FrameAllocator) -> Option<Frame> {
    let t = frames.allocate()?;
    crate::arch::addrspace::zero_frame(t);
    vtd::flush_lines(t, 0, 4096);
    Some(t)
}
