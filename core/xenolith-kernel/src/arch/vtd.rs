//! An Intel VT-d DMA remapping unit: its registers, its root table and the
//! context tables under it, and their caches.
//!
//! Owns: switching translation on (root table, then the caches emptied,
//! then translation), writing a device's context entry and emptying the
//! caches that may hold the old one, emptying a remapping domain's IOTLB
//! entries, and reading (and clearing) fault records, with the fault event
//! interrupt sent to the boot CPU. What goes in a context entry and the
//! second-level tables is `domain/dma_space.rs`'s business; the encodings
//! are `dma_remap.rs`'s.
//!
//! Invalidation is register-based (the context command and IOTLB
//! registers) on a unit that does not remap interrupts: the kernel
//! invalidates at a few rare moments (a device given or taken back, a
//! grant unmapped) and waits for each to finish before going on, which is
//! what the register interface does; a queue pays off when invalidations
//! are many and can be batched. A unit that remaps interrupts uses its
//! invalidation queue for everything (its interrupt entry cache can only
//! be emptied through the queue, and once the queue is on the registers
//! must not be used), still one batch at a time, waited for.
//!
//! Also owns switching interrupt remapping on (the table's address, the
//! entry cache emptied, remapping on, compatibility-format messages left
//! blocked); what goes in the table is `intr_remap.rs`'s.

use super::memory::{map_physical, write_frame};
use super::paging::Caching;
use crate::dma_remap::{self as rules, reg, Caps, Fault};
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;

/// How long a command may take before the unit is declared broken
/// (TSC cycles; far beyond what hardware or QEMU takes).
const COMMAND_BUDGET: u64 = 1 << 32;

/// One remapping unit, switched on.
pub struct Unit {
    /// Where its registers are mapped (uncached).
    regs: u64,
    pub caps: Caps,
    /// Its root table: entry n points at bus n's context table, if it has one.
    root: Frame,
    /// Its invalidation queue, when it remaps interrupts.
    queue: Option<Queue>,
}

/// An invalidation queue: a page of descriptors, the next one to write,
/// and a page where the unit writes the number of the last batch done.
struct Queue {
    page: Frame,
    tail: usize,
    status: Frame,
    batch: u32,
}

/// Why a unit could not be used.
#[derive(Clone, Copy, Debug)]
pub enum StartError {
    Map,
    Unsupported,
    NoFrames,
    Timeout,
}

impl core::fmt::Display for StartError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            StartError::Map => "its registers cannot be mapped",
            StartError::Unsupported => "it offers no 3- or 4-level tables",
            StartError::NoFrames => "no frames for its root table",
            StartError::Timeout => "it did not carry out a command",
        })
    }
}

impl Unit {
    fn read32(&self, offset: usize) -> u32 {
        // SAFETY: `regs` maps the unit's 4 KiB register page uncached (set
        // up by `start` and never unmapped); offsets are the
        // specification's registers, aligned to their size.
        unsafe { core::ptr::read_volatile((self.regs + offset as u64) as *const u32) }
    }

    fn write32(&self, offset: usize, value: u32) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.regs + offset as u64) as *mut u32, value) }
    }

    fn read64(&self, offset: usize) -> u64 {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::read_volatile((self.regs + offset as u64) as *const u64) }
    }

    fn write64(&self, offset: usize, value: u64) {
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile((self.regs + offset as u64) as *mut u64, value) }
    }

    /// Waits until `done` says the unit finished; false after the budget.
    fn wait(&self, done: impl Fn(&Self) -> bool) -> bool {
        let start = super::cpu::rdtsc();
        while !done(self) {
            if super::cpu::rdtsc().wrapping_sub(start) > COMMAND_BUDGET {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    /// Sets one GCMD bit and waits for its GSTS bit to follow.
    fn command(&self, bit: u32, on: bool) -> bool {
        let kept = self.read32(reg::GSTS) & !reg::ONE_SHOT;
        let value = if on { kept | bit } else { kept & !bit };
        self.write32(reg::GCMD, value);
        self.wait(|u| (u.read32(reg::GSTS) & bit != 0) == on)
    }

    /// Turns translation off again (a unit started beside one that failed:
    /// half an IOMMU would fault devices while `host info` says it is off).
    pub fn stop(&self) {
        if !self.command(reg::TE, false) {
            crate::kprintln!("iommu: a unit did not turn its translation off");
        }
    }

    /// Maps the unit at `base`, gives it an empty root table (every DMA
    /// faults until a context entry says otherwise) and turns translation
    /// on; a unit that can remap interrupts gets its invalidation queue
    /// first.
    pub fn start(base: u64) -> Result<Unit, StartError> {
        let regs = map_physical(base, 4096, Caching::Uncached).map_err(|_| StartError::Map)?;
        let read = |offset: usize| {
            // SAFETY: `regs` maps the unit's register page (just above);
            // CAP and ECAP are 64-bit registers at aligned offsets.
            unsafe { core::ptr::read_volatile((regs + offset as u64) as *const u64) }
        };
        let caps = rules::caps(read(reg::CAP), read(reg::ECAP)).ok_or(StartError::Unsupported)?;
        let mut unit = Unit {
            regs,
            caps,
            root: super::memory::with_frames(|f| f.allocate()).ok_or(StartError::NoFrames)?,
            queue: None,
        };
        super::addrspace::zero_frame(unit.root);
        flush_lines(unit.root, 0, 4096);
        // Interrupt remapping, the queue and translation off while the
        // tables change (a warm reboot may have left them on).
        for bit in [reg::IRE, reg::QIE, reg::TE] {
            if unit.read32(reg::GSTS) & bit != 0 && !unit.command(bit, false) {
                return Err(StartError::Timeout);
            }
        }
        unit.write64(reg::RTADDR, unit.root.addr());
        let kept = unit.read32(reg::GSTS) & !reg::ONE_SHOT;
        unit.write32(reg::GCMD, kept | reg::SRTP);
        if !unit.wait(|u| u.read32(reg::GSTS) & reg::SRTP != 0) {
            return Err(StartError::Timeout);
        }
        if caps.interrupt_remapping {
            unit.start_queue()?;
        }
        unit.invalidate_contexts();
        unit.invalidate_iotlb(None);
        if !unit.command(reg::TE, true) {
            return Err(StartError::Timeout);
        }
        Ok(unit)
    }

    /// Gives the unit an empty invalidation queue and turns it on.
    fn start_queue(&mut self) -> Result<(), StartError> {
        let (page, status) = super::memory::with_frames(|f| Some((f.allocate()?, f.allocate()?)))
            .ok_or(StartError::NoFrames)?;
        super::addrspace::zero_frame(page);
        super::addrspace::zero_frame(status);
        flush_lines(status, 0, 4);
        self.write64(reg::IQT, 0);
        self.write64(reg::IQA, rules::queue::address(page.addr()));
        if !self.command(reg::QIE, true) {
            return Err(StartError::Timeout);
        }
        self.queue = Some(Queue {
            page,
            tail: 0,
            status,
            batch: 0,
        });
        Ok(())
    }

    /// Puts `descriptors` and a wait descriptor on the queue and waits for
    /// the unit to have carried them all out; false if it did not.
    fn submit(&mut self, descriptors: &[[u64; 2]]) -> bool {
        let Some(q) = self.queue.as_mut() else {
            return false;
        };
        q.batch = q.batch.wrapping_add(1);
        let wait = rules::queue::wait(q.status.addr(), q.batch);
        for d in descriptors.iter().chain([&wait]) {
            write_entry(q.page, q.tail, *d);
            q.tail = (q.tail + 1) % rules::queue::LEN;
        }
        let (tail, status, batch) = (q.tail, q.status, q.batch);
        self.write64(reg::IQT, (tail as u64) << 4);
        let done = self.wait(|u| {
            let mut b = [0u8; 4];
            super::memory::read_frame(status, 0, &mut b);
            u32::from_le_bytes(b) == batch || u.read32(reg::FSTS) & reg::FSTS_IQE != 0
        });
        if self.read32(reg::FSTS) & reg::FSTS_IQE != 0 {
            crate::kprintln!("iommu: the unit refused an invalidation descriptor");
            self.write32(reg::FSTS, reg::FSTS_IQE);
            return false;
        }
        if !done {
            crate::kprintln!("iommu: an invalidation did not finish");
        }
        done
    }

    /// Empties the context cache (all devices).
    fn invalidate_contexts(&mut self) {
        if self.queue.is_some() {
            self.submit(&[rules::queue::contexts()]);
            return;
        }
        self.write64(reg::CCMD, reg::CCMD_ICC | reg::CCMD_GLOBAL);
        if !self.wait(|u| u.read64(reg::CCMD) & reg::CCMD_ICC == 0) {
            crate::kprintln!("iommu: the context cache invalidation did not finish");
        }
    }

    /// Empties the IOTLB of remapping domain `did`, or of all (`None`),
    /// draining DMA in flight; returns once the unit says it is done.
    pub fn invalidate_iotlb(&mut self, did: Option<u16>) {
        if self.queue.is_some() {
            self.submit(&[rules::queue::iotlb(did)]);
            return;
        }
        let at = self.caps.iotlb + 8;
        let granularity = match did {
            Some(d) => reg::IOTLB_DOMAIN | u64::from(d) << 32,
            None => reg::IOTLB_GLOBAL,
        };
        self.write64(at, reg::IOTLB_IVT | reg::IOTLB_DRAIN | granularity);
        if !self.wait(|u| u.read64(at) & reg::IOTLB_IVT == 0) {
            crate::kprintln!("iommu: the IOTLB invalidation did not finish");
        }
    }

    /// Writes device `bdf`'s context entry (`None`: no entry, so its DMA
    /// faults) and empties the caches that may hold the old one. A bus's
    /// context table is made the first time one of its devices gets one.
    pub fn set_context(
        &mut self,
        frames: &mut FrameAllocator,
        bdf: u16,
        entry: Option<[u64; 2]>,
    ) -> bool {
        let bus = usize::from(bdf >> 8);
        // SAFETY: a root entry's table is a frame this unit allocated below.
        let known = rules::root_context(read_entry(self.root, bus))
            .map(|addr| unsafe { Frame::of_ram(addr) });
        let table = match (known, entry) {
            (Some(t), _) => t,
            (None, None) => return true,
            (None, Some(_)) => {
                let Some(t) = frames.allocate() else {
                    return false;
                };
                super::addrspace::zero_frame(t);
                flush_lines(t, 0, 4096);
                write_entry(self.root, bus, rules::root_entry(t.addr()));
                t
            }
        };
        write_entry(table, usize::from(bdf & 0xff), entry.unwrap_or([0, 0]));
        self.invalidate_contexts();
        self.invalidate_iotlb(None);
        true
    }

    /// Points the unit at the interrupt remapping table `table` (shared by
    /// every unit) and turns remapping on, compatibility-format messages
    /// blocked; false if the unit cannot (no queue) or did not.
    pub fn remap_interrupts(&mut self, table: Frame) -> bool {
        if self.queue.is_none() {
            return false;
        }
        self.write64(reg::IRTA, table.addr() | crate::intr_remap::SIZE_FIELD);
        let kept = self.read32(reg::GSTS) & !reg::ONE_SHOT;
        self.write32(reg::GCMD, kept | reg::SIRTP);
        if !self.wait(|u| u.read32(reg::GSTS) & reg::SIRTP != 0) {
            return false;
        }
        self.invalidate_interrupt_entries() && self.command(reg::IRE, true)
    }

    /// Turns interrupt remapping off again (a unit beside one that could
    /// not remap: every unit remaps, or none).
    pub fn stop_remapping_interrupts(&self) {
        if !self.command(reg::IRE, false) {
            crate::kprintln!("iommu: a unit did not turn interrupt remapping off");
        }
    }

    /// Empties the unit's interrupt entry cache, once an entry changed.
    pub fn invalidate_interrupt_entries(&mut self) -> bool {
        self.submit(&[rules::queue::interrupt_entries()])
    }

    /// Takes every fault recorded since the last call, clearing the
    /// records (and an overflow) so the unit can record more.
    pub fn take_faults(&self) -> heapless::Vec<Fault, 8> {
        let mut found = heapless::Vec::new();
        for i in 0..self.caps.fault_count.min(256) {
            let at = self.caps.fault_records + 16 * i;
            let hi = self.read64(at + 8);
            if let Some(f) = rules::fault(self.read64(at), hi) {
                let _ = found.push(f);
                // The F bit is cleared by writing it.
                self.write64(at + 8, 1 << 63);
            }
        }
        self.write32(reg::FSTS, reg::FSTS_PFO | reg::FSTS_PPF);
        found
    }

    /// Sends the fault event interrupt to `vector` on the CPU with local
    /// APIC id `apic` (physical destination, fixed delivery).
    pub fn fault_interrupt(&self, vector: u8, apic: u32) {
        self.write32(reg::FEDATA, u32::from(vector));
        self.write32(reg::FEADDR, 0xfee0_0000 | (apic & 0xff) << 12);
        self.write32(reg::FEUADDR, 0);
        self.write32(reg::FECTL, 0);
    }
}

/// Writes a 16-byte table entry at `index` of `table`, the high half first
/// so that the present bit (in the low half) is written last.
/// Reads entry `index` of a table of 16-byte entries.
fn read_entry(table: Frame, index: usize) -> [u64; 2] {
    let mut bytes = [0u8; 16];
    super::memory::read_frame(table, index * 16, &mut bytes);
    let word = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().unwrap_or([0; 8]));
    [word(0), word(8)]
}

pub fn write_entry(table: Frame, index: usize, entry: [u64; 2]) {
    write_frame(table, index * 16 + 8, &entry[1].to_le_bytes());
    write_frame(table, index * 16, &entry[0].to_le_bytes());
    flush_lines(table, index * 16, 16);
}

/// Makes sure a unit that does not snoop the CPU's caches sees `len`
/// bytes written at `offset` of `frame` (a table write).
pub fn flush_lines(frame: Frame, offset: usize, len: usize) {
    let va = crate::layout::phys_to_virt(frame.addr()) + offset as u64;
    let mut line = va & !63;
    while line < va + len as u64 {
        // SAFETY: `line` lies in `frame`, RAM the physmap maps; CLFLUSH only
        // writes the line back and drops it from the caches.
        unsafe { core::arch::asm!("clflush [{}]", in(reg) line, options(nostack)) };
        line += 64;
    }
    // SAFETY: a store fence orders the flushes before what follows.
    unsafe { core::arch::asm!("sfence", options(nostack)) };
}

/// Writes one 64-bit table entry, flushed for the unit.
pub fn write_sl_entry(table: Frame, index: usize, entry: u64) {
    write_frame(table, index * 8, &entry.to_le_bytes());
    flush_lines(table, index * 8, 8);
}

/// Reads entry `index` of a second-level table.
fn read_sl_entry(table: Frame, index: usize) -> u64 {
    let mut b = [0u8; 8];
    super::memory::read_frame(table, index * 8, &mut b);
    u64::from_le_bytes(b)
}

/// The lower table entry `index` of the second-level table `table`
/// points at, if it points at one (for tables above the last level).
pub fn sl_child(table: Frame, index: usize) -> Option<Frame> {
    let e = read_sl_entry(table, index);
    if e & (rules::SL_READ | rules::SL_WRITE) == 0 {
        return None;
    }
    // Entries above the last level are written only by `domain::dma_space`.
    // SAFETY: they hold frames it took from the allocator for its tables
    // (freed only after every context entry reaching them is cleared).
    Some(unsafe { Frame::of_ram(e & rules::SL_ADDR) })
}
