//! What an HVM guest sees of Xenolith: the interfaces a guest that was not
//! written for Xenolith (Linux, the HVM test guest) finds in the machine
//! the kernel presents.
//!
//! Owns: the CPUID leaves that name the hypervisor, the debug port, where
//! a guest starts, the guest-physical address of the kernel-shared pages
//! of an HVM domain, and the page through which the kernel hands a guest's
//! port I/O to its device-model domain ([`IoRequest`]).

use core::sync::atomic::{AtomicU32, AtomicU64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

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

/// Guest-physical addresses of device memory the device model serves
/// (its PCI functions' memory BARs; the host bridge's memory window in
/// the guest's ACPI tables): above any guest's memory (16 GiB at most),
/// below [`SHARED_GPA`]. A guest's access there is an [`IoRequest`] in
/// [`SPACE_MEMORY`].
pub const MMIO_BASE: u64 = 0x80_0000_0000;
pub const MMIO_SIZE: u64 = 0x1000_0000;

const _: () = assert!(MMIO_BASE >= 16 << 30 && MMIO_BASE + MMIO_SIZE <= SHARED_GPA);

/// [`IoRequest::space`]: a port, or device memory.
pub const SPACE_PORT: u32 = 0;
pub const SPACE_MEMORY: u32 = 1;

/// One vCPU's port or device-memory access waiting for the device model,
/// in the page the device model gave the kernel (`HvmServe`): slot `n` is
/// vCPU `n`'s.
/// The kernel writes a request and sets `state` to [`POSTED`] (then raises
/// the device model's `Virq::DeviceModel`); the device model writes `data`
/// for an input, sets [`ANSWERED`] and calls `HvmIoDone`; the kernel takes
/// the answer (checking `seq`), sets [`IDLE`] and lets the vCPU go on.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct IoRequest {
    pub state: u32,
    /// 1, 2 or 4 bytes (8 too, in device memory).
    pub size: u32,
    /// 1: an input (the device model answers `data`); 0: an output of `data`.
    pub input: u32,
    /// The port ([`SPACE_PORT`]).
    pub port: u32,
    pub data: u64,
    /// Counts this vCPU's requests: the answer names the one posted.
    pub seq: u64,
    /// [`SPACE_PORT`] or [`SPACE_MEMORY`].
    pub space: u32,
    pub _reserved: u32,
    /// The guest-physical address ([`SPACE_MEMORY`], in the MMIO window).
    pub address: u64,
}

/// `IoRequest::state`.
pub const IDLE: u32 = 0;
pub const POSTED: u32 = 1;
pub const ANSWERED: u32 = 2;
/// Slots in the page (one per vCPU).
pub const IO_SLOTS: usize = crate::domain::MAX_VCPUS as usize;

const _: () = assert!(core::mem::size_of::<IoRequest>() == 48);
const _: () = assert!(IO_SLOTS * core::mem::size_of::<IoRequest>() <= 4096);

/// The same slot as the device model reads and writes it in its page
/// while the kernel may write it too: every field an atomic.
#[repr(C)]
#[derive(Default)]
pub struct IoSlot {
    pub state: AtomicU32,
    pub size: AtomicU32,
    pub input: AtomicU32,
    pub port: AtomicU32,
    pub data: AtomicU64,
    pub seq: AtomicU64,
    pub space: AtomicU32,
    pub _reserved: AtomicU32,
    pub address: AtomicU64,
}

/// The device model's request page: one slot per vCPU, a word the kernel
/// sets to 1 (then raising `Virq::DeviceModel`) when the guest is
/// destroyed (the device model then has nothing left to serve), and the
/// doorbells the guest rang (`HvmDoorbell`: bit n, doorbell n), which the
/// device model takes with a swap.
#[repr(C, align(4096))]
#[derive(Default)]
pub struct IoPage {
    pub slots: [IoSlot; IO_SLOTS],
    pub guest_gone: AtomicU32,
    pub doorbells: AtomicU64,
}

/// Where `IoPage::guest_gone` and `IoPage::doorbells` are in the page.
pub const GUEST_GONE_OFFSET: usize = core::mem::offset_of!(IoPage, guest_gone);
pub const DOORBELLS_OFFSET: usize = core::mem::offset_of!(IoPage, doorbells);
/// Doorbells a device model may set for its guest.
pub const DOORBELLS: usize = 8;

const _: () = assert!(core::mem::size_of::<IoSlot>() == core::mem::size_of::<IoRequest>());
const _: () =
    assert!(core::mem::offset_of!(IoSlot, port) == core::mem::offset_of!(IoRequest, port));
const _: () = assert!(core::mem::offset_of!(IoSlot, seq) == core::mem::offset_of!(IoRequest, seq));
const _: () =
    assert!(core::mem::offset_of!(IoSlot, address) == core::mem::offset_of!(IoRequest, address));
const _: () = assert!(core::mem::size_of::<IoPage>() == 4096);

/// The PC a Linux guest finds, as domain 0's ACPI tables describe it and
/// the device model serves it: the ACPI PM1a event and control blocks
/// (power button, sleep states), the SCI's ISA line, the reset register,
/// and the sleep type `\_S5` names (soft off).
pub const ACPI_PM1A_EVT: u16 = 0x600;
pub const ACPI_PM1A_CNT: u16 = 0x604;
pub const ACPI_SCI_IRQ: u8 = 9;
pub const ACPI_RESET_PORT: u16 = 0xcf9;
pub const ACPI_RESET_VALUE: u8 = 0x06;
pub const ACPI_S5_SLP_TYP: u8 = 5;
/// The pvpanic device (ACPI `QEMU0001`): a guest writes 1 when it panics.
pub const PVPANIC_PORT: u16 = 0x505;
