//! What an HVM guest sees of Xenolith: the interfaces a guest that was not
//! written for Xenolith (Linux, the HVM test guest) finds in the machine
//! the kernel presents.
//!
//! Owns: the CPUID leaves that name the hypervisor, the debug port, where
//! a guest starts, and the guest-physical address of the kernel-shared
//! pages of an HVM domain.

/// CPUID leaf 0x4000_0000 answers this signature in EBX, ECX, EDX (and
/// the highest hypervisor leaf in EAX): Xenolith's own.
pub const CPUID_SIGNATURE: &[u8; 12] = b"XenolithHVM\0";
/// The first leaf of Xenolith's own range.
pub const CPUID_BASE: u32 = 0x4000_0000;
/// Where the KVM-compatible leaves are (KVM's signature, its paravirtual
/// features), which Linux finds by scanning the hypervisor range in steps
/// of 0x100, as it finds KVM's beside Hyper-V's under other hypervisors.
pub const CPUID_KVM_BASE: u32 = 0x4000_0100;
/// KVM's signature in its leaf.
pub const CPUID_KVM_SIGNATURE: &[u8; 12] = b"KVMKVMKVM\0\0\0";

/// Bytes written to this port (8 bits at a time) go to the domain's debug
/// console, a line at a time, prefixed `[domid]` like the `ConsoleWrite`
/// hypercall's (the port Bochs, QEMU and Xen's HVM guests use the same way).
pub const DEBUG_PORT: u16 = 0xe9;
/// What an input from a port nobody serves reads: all ones, as an empty bus.
pub const FLOATING: u32 = 0xffff_ffff;

/// Where an HVM guest's vCPU 0 starts: 32-bit protected mode, paging off,
/// flat code (selector 0x10) and data (0x18) segments, interrupts off, at
/// the entry the domain builder sets, with the registers it sets (the
/// Linux 32-bit boot protocol and PVH both begin so).
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

/// The guest-physical address the kernel-shared pages of an HVM domain
/// (start info, event page) sit at: above any guest's memory, where a
/// guest finds them only if it looks for them.
pub const SHARED_GPA: u64 = 0x100_0000_0000;

/// An HVM guest loaded from an ELF image (not a Linux bzImage) finds its
/// NUL-terminated command line in the page at this guest-physical
/// address, and ESI pointing at it, as PVH guests find their start info.
pub const ELF_CMDLINE_GPA: u64 = 0x7000;
