//! The GDT and TSS: kernel and user segments, and the IST stacks.
//!
//! Owns: one GDT and one TSS for the boot CPU (per-CPU copies come with SMP).
//! The TSS gives #DF, NMI and #MC their own known-good stacks.

use super::stacks;
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

/// Segment selectors the kernel loads.
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// Builds and loads the GDT and TSS, and reloads every segment register.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let tops = stacks::ist_tops();
        tss.interrupt_stack_table[IST_DOUBLE_FAULT as usize] = VirtAddr::new(tops[0]);
        tss.interrupt_stack_table[IST_NMI as usize] = VirtAddr::new(tops[1]);
        tss.interrupt_stack_table[IST_MACHINE_CHECK as usize] = VirtAddr::new(tops[2]);
        // Interrupts from ring 3 arrive on the CPU's kernel stack (the boot stack,
        // which the kernel reuses once boot is done; see syscall.rs).
        tss.privilege_stack_table[0] = VirtAddr::new(stacks::boot_stack_top());
        tss
    });
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        // User segments follow in the order sysret expects; domains use them.
        gdt.append(Descriptor::user_data_segment());
        gdt.append(Descriptor::user_code_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
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
