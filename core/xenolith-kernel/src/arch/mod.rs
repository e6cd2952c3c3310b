//! x86_64 hardware, wrapped in small safe types.
//!
//! Owns: every `unsafe` touch of the machine (port I/O, MSRs, control
//! registers, page tables, descriptor tables, MMIO). The rest of the kernel
//! calls these modules and needs no `unsafe` of its own.

pub mod acpi;
pub mod addrspace;
pub mod apic;
pub mod backtrace;
pub mod cpu;
pub mod deadline;
pub mod gdt;
pub mod idt;
pub mod image;
pub mod ioapic;
pub mod log;
pub mod memory;
pub mod paging;
pub mod pci;
pub mod pit;
pub mod reset;
pub mod serial;
pub mod smp;
pub mod stacks;
pub mod svm;
pub mod syscall;
pub mod time;
pub mod tlb;
pub mod vga;
pub mod vtd;

// The multiboot2 header, the 32-bit entry and the kernel stacks.
core::arch::global_asm!(include_str!("../../boot/entry.S"));
