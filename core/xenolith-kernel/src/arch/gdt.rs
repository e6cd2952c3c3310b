//! The GDT and TSS: kernel and user segments, the IST stacks, and the I/O
//! permission bitmap.
//!
//! Owns: a GDT and a TSS per CPU.
//! The TSS gives #DF, NMI and #MC their own known-good stacks, ring-3
//! interrupts the CPU's kernel stack, and carries the I/O bitmap that decides
//! which ports the running domain may touch (none, unless it was given some).

use super::cpu::MAX_CPUS;
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

// SAFETY: a CPU's block is written by `set_stacks` before that CPU loads
// it (the boot CPU prepares an AP's before starting it) and then only by
// `set_io_ports` on its own CPU with interrupts off; the CPU only reads it.
unsafe impl Sync for TssCell {}

static TSS: [TssCell; MAX_CPUS] = [const {
    TssCell(UnsafeCell::new(TssBlock {
        tss: TaskStateSegment::new(),
        iomap: [0xff; IOMAP_BYTES],
    }))
}; MAX_CPUS];

/// Segment selectors the kernel loads.
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    tss: SegmentSelector,
}

static GDT: [Once<(GlobalDescriptorTable, Selectors)>; MAX_CPUS] =
    [const { Once::new() }; MAX_CPUS];

/// The TSS descriptor (with its I/O bitmap in the limit), built by hand
/// because the `x86_64` crate wants a shared slice for a bitmap we must update.
fn tss_descriptor(cpu: usize) -> Descriptor {
    let base = TSS[cpu].0.get() as u64;
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

/// Builds and loads the boot CPU's GDT and TSS (its stacks are the ones
/// `boot/entry.S` lays out), and reloads every segment register.
pub fn init() {
    set_stacks(0, stacks::ist_tops(), stacks::boot_stack_top());
    init_cpu(0);
}

/// Gives CPU `cpu`'s TSS its IST stacks (#DF, NMI, #MC) and its kernel
/// stack, before that CPU loads it.
pub fn set_stacks(cpu: usize, ist_tops: [u64; 3], kernel_stack_top: u64) {
    let Some(cell) = TSS.get(cpu) else { return };
    // SAFETY: see TssCell: CPU `cpu` has not loaded this TSS yet.
    unsafe {
        let block = &mut *cell.0.get();
        block.tss.interrupt_stack_table[IST_DOUBLE_FAULT as usize] = VirtAddr::new(ist_tops[0]);
        block.tss.interrupt_stack_table[IST_NMI as usize] = VirtAddr::new(ist_tops[1]);
        block.tss.interrupt_stack_table[IST_MACHINE_CHECK as usize] = VirtAddr::new(ist_tops[2]);
        // Interrupts from ring 3 arrive on the CPU's kernel stack (which
        // the kernel reuses once the CPU's boot is done; see syscall.rs).
        block.tss.privilege_stack_table[0] = VirtAddr::new(kernel_stack_top);
        block.tss.iomap_base = core::mem::size_of::<TaskStateSegment>() as u16;
    }
}

/// Builds and loads CPU `cpu`'s GDT and TSS, on that CPU.
pub fn init_cpu(cpu: usize) {
    let cpu = cpu.min(MAX_CPUS - 1);
    let (gdt, sel) = GDT[cpu].call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        // User segments follow in the order sysret expects; domains use them.
        gdt.append(Descriptor::user_data_segment());
        gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(tss_descriptor(cpu));
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

/// Lets ring 3 on CPU `cpu` (the one this runs on) use exactly the ports in
/// `ranges` (`(first, count)`); all others fault.
pub fn set_io_ports(cpu: usize, ranges: &[(u16, u16)]) {
    let cpu = cpu.min(MAX_CPUS - 1);
    // SAFETY: see TssCell: this CPU's own TSS, interrupts off, and the CPU
    // only reads the bitmap when ring 3 executes an I/O instruction, which
    // cannot happen while the kernel runs.
    let map = unsafe { &mut (*TSS[cpu].0.get()).iomap };
    map.fill(0xff);
    for &(first, count) in ranges {
        for port in first as u32..(first as u32 + count as u32).min(65536) {
            map[(port / 8) as usize] &= !(1 << (port % 8));
        }
    }
}
