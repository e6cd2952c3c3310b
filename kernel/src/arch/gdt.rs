//! The GDT and TSS: kernel and user segments, the IST stacks, and the I/O
//! permission bitmap.
//!
//! Owns: one GDT and one TSS for the boot CPU (per-CPU copies come with SMP).
//! The TSS gives #DF, NMI and #MC their own known-good stacks, ring-3
//! interrupts the CPU's kernel stack, and carries the I/O bitmap that decides
//! which ports the running domain may touch (none, unless it was given some).

use super::stacks;
use core::cell::UnsafeCell;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST slots (0-based, as the `x86_64` crate counts them).
pub const IST_DOUBLE_FAULT: u16 = 0;
pub const IST_NMI: u16 = 1;
pub const IST_MACHINE_CHECK: u16 = 2;

/// Bytes of the I/O bitmap: one bit per port, plus the terminating 0xff byte.
const IOMAP_BYTES: usize = 65536 / 8 + 1;

/// The TSS with its I/O bitmap right after it, as the CPU wants them.
#[repr(C)]
struct TssBlock {
    tss: TaskStateSegment,
    iomap: [u8; IOMAP_BYTES],
}

struct TssCell(UnsafeCell<TssBlock>);

// SAFETY: the block is written only at `init` (before the TSS is loaded) and
// by `set_io_ports`, both on this CPU with interrupts off; the CPU itself only
// reads it.
unsafe impl Sync for TssCell {}

static TSS: TssCell = TssCell(UnsafeCell::new(TssBlock {
    tss: TaskStateSegment::new(),
    iomap: [0xff; IOMAP_BYTES],
}));

/// Segment selectors the kernel loads.
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    tss: SegmentSelector,
}

static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// The TSS descriptor (with its I/O bitmap in the limit), built by hand
/// because the `x86_64` crate wants a shared slice for a bitmap we must update.
fn tss_descriptor() -> Descriptor {
    let base = TSS.0.get() as u64;
    let limit = (core::mem::size_of::<TssBlock>() - 1) as u64;
    let mut low = 0u64;
    low |= limit & 0xffff;
    low |= (base & 0xff_ffff) << 16;
    low |= 0b1001 << 40; // available 64-bit TSS
    low |= 1 << 47; // present
    low |= ((limit >> 16) & 0xf) << 48;
    low |= ((base >> 24) & 0xff) << 56;
    Descriptor::SystemSegment(low, base >> 32)
}

/// Builds and loads the GDT and TSS, and reloads every segment register.
pub fn init() {
    let tops = stacks::ist_tops();
    // SAFETY: before the TSS is loaded nothing else reads or writes it.
    unsafe {
        let block = &mut *TSS.0.get();
        block.tss.interrupt_stack_table[IST_DOUBLE_FAULT as usize] = VirtAddr::new(tops[0]);
        block.tss.interrupt_stack_table[IST_NMI as usize] = VirtAddr::new(tops[1]);
        block.tss.interrupt_stack_table[IST_MACHINE_CHECK as usize] = VirtAddr::new(tops[2]);
        // Interrupts from ring 3 arrive on the CPU's kernel stack (the boot
        // stack, which the kernel reuses once boot is done; see syscall.rs).
        block.tss.privilege_stack_table[0] = VirtAddr::new(stacks::boot_stack_top());
        block.tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    }
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        // User segments follow in the order sysret expects; domains use them.
        gdt.append(Descriptor::user_data_segment());
        gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(tss_descriptor());
        (
            gdt,
            Selectors {
                kernel_code,
                kernel_data,
                tss,
            },
        )
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which
    // lives in a static for the rest of time; the TSS descriptor is used once.
    unsafe {
        CS::set_reg(sel.kernel_code);
        SS::set_reg(sel.kernel_data);
        DS::set_reg(sel.kernel_data);
        ES::set_reg(sel.kernel_data);
        load_tss(sel.tss);
    }
}

/// Lets ring 3 use exactly the ports in `ranges` (`(first, count)`); all others fault.
pub fn set_io_ports(ranges: &[(u16, u16)]) {
    // SAFETY: see TssCell: this CPU, interrupts off, and the CPU only reads
    // the bitmap when ring 3 executes an I/O instruction, which cannot happen
    // while the kernel runs.
    let map = unsafe { &mut (*TSS.0.get()).iomap };
    map.fill(0xff);
    for &(first, count) in ranges {
        for port in first as u32..(first as u32 + count as u32).min(65536) {
            map[(port / 8) as usize] &= !(1 << (port % 8));
        }
    }
}
