//! AMD SVM: the hardware half of running HVM guests.
//!
//! Owns: finding out whether this CPU has SVM with nested paging (and
//! whether the firmware locked it off), switching it on per CPU (EFER.SVME
//! and the host save area), the VMCB as a frame with typed reads and writes
//! at the offsets the AMD APM (vol. 2, appendix B) gives, the permission
//! maps that make every I/O port and MSR exit, and `run`: one `VMRUN` of a
//! vCPU with its general registers and its x87/SSE state loaded around it.
//! What an exit means and what happens next is `hvm/` (safe code); the
//! seam for an Intel VMX back end is this file and `hvm/exit.rs`'s
//! `Exit`, which the VMX exit reasons would decode into as well.

use crate::frames::Frame;
use crate::layout::phys_to_virt;
use core::arch::x86_64::__cpuid;
use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags, Msr};

/// MSR: the physical address of the host save area `VMRUN` uses.
const VM_HSAVE_PA: u32 = 0xC001_0117;
/// MSR: SVM control; bit 4 set means the firmware disabled SVM.
const VM_CR: u32 = 0xC001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// Why this machine can or cannot run HVM guests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// SVM with nested paging, on.
    Ready { nrips: bool, asids: u32 },
    /// The CPU has no SVM (an Intel CPU: VMX is not supported yet).
    NoSvm,
    /// SVM without nested paging (needed: shadow paging is not done).
    NoNestedPaging,
    /// The firmware switched SVM off (VM_CR.SVMDIS).
    DisabledByFirmware,
}

impl Support {
    /// The same, as the ABI reports it (`KernelStats::hvm`).
    pub fn abi(self) -> ipc_abi::domain::HvmSupport {
        use ipc_abi::domain::HvmSupport as H;
        match self {
            Support::Ready { .. } => H::Ready,
            Support::NoSvm => H::NoSvm,
            Support::NoNestedPaging => H::NoNestedPaging,
            Support::DisabledByFirmware => H::DisabledByFirmware,
        }
    }
}

/// What CPUID and VM_CR say about SVM on this CPU.
pub fn probe() -> Support {
    let max_ext = __cpuid(0x8000_0000).eax;
    if max_ext < 0x8000_000A || __cpuid(0x8000_0001).ecx & (1 << 2) == 0 {
        return Support::NoSvm;
    }
    let svm = __cpuid(0x8000_000A);
    if svm.edx & 1 == 0 {
        return Support::NoNestedPaging;
    }
    // SAFETY: VM_CR exists on every CPU with SVM (CPUID just said so);
    // reading it has no side effects.
    if unsafe { Msr::new(VM_CR).read() } & VM_CR_SVMDIS != 0 {
        return Support::DisabledByFirmware;
    }
    Support::Ready {
        nrips: svm.edx & (1 << 3) != 0,
        asids: svm.ebx,
    }
}

/// Set once the boot CPU found SVM usable: 1 + whether it has next-RIP saving.
static READY: AtomicU64 = AtomicU64::new(0);

/// Whether HVM guests can run (the boot CPU switched SVM on).
pub fn ready() -> bool {
    READY.load(Ordering::Relaxed) != 0
}

/// Whether `VMCB.next_rip` is filled on exits (otherwise instruction
/// lengths are known from what exited).
pub fn has_next_rip() -> bool {
    READY.load(Ordering::Relaxed) == 2
}

/// Per CPU: the host save area and the VMCB `VMSAVE` keeps the host's
/// FS/GS/TR/LDTR and syscall MSRs in while a guest runs.
struct HostPages {
    hsave: AtomicU64,
    host_vmcb: AtomicU64,
}

static HOST: [HostPages; super::cpu::MAX_CPUS] = [const {
    HostPages {
        hsave: AtomicU64::new(0),
        host_vmcb: AtomicU64::new(0),
    }
}; super::cpu::MAX_CPUS];

/// A 4 KiB page-aligned block in the kernel image.
#[repr(C, align(4096))]
struct Pages<const N: usize>([u8; N]);

/// Every I/O port intercepted (12 KiB: one bit per port, plus the bits an
/// access running past port 0xffff reads). Filled with ones at `enable`.
static mut IOPM: Pages<{ 3 * 4096 }> = Pages([0; 3 * 4096]);
/// Every MSR intercepted, read and write (8 KiB).
static mut MSRPM: Pages<{ 2 * 4096 }> = Pages([0; 2 * 4096]);

/// The physical address of a static in the kernel image.
fn image_phys(va: u64) -> u64 {
    va - crate::layout::KERNEL_VMA
}

/// Physical addresses of the I/O and MSR permission maps (all ones).
pub fn permission_maps() -> (u64, u64) {
    (
        image_phys(&raw const IOPM as u64),
        image_phys(&raw const MSRPM as u64),
    )
}

/// Where an MSR's read-intercept bit is in the MSR permission map (its
/// write bit follows it), for the three ranges the map covers.
fn msrpm_bit(msr: u32) -> Option<usize> {
    let (range_byte, base) = match msr {
        0..=0x1FFF => (0, 0),
        0xC000_0000..=0xC000_1FFF => (0x800, 0xC000_0000),
        0xC001_0000..=0xC001_1FFF => (0x1000, 0xC001_0000),
        _ => return None,
    };
    Some(range_byte * 8 + (msr - base) as usize * 2)
}

/// Switches SVM on for this CPU with `hsave` and `host_vmcb` (two fresh
/// frames); on the boot CPU (`cpu` 0) it also decides whether HVM guests
/// can run at all and fills the permission maps: every port and MSR
/// exits but those in `passed_through`. Returns what the CPU supports.
pub fn enable(cpu: usize, hsave: Frame, host_vmcb: Frame, passed_through: &[u32]) -> Support {
    let support = probe();
    let Support::Ready { nrips, .. } = support else {
        return support;
    };
    if cpu == 0 {
        // SAFETY: only the boot CPU writes the maps, once, before any
        // guest exists; afterwards they are only read (by the CPU, by
        // physical address).
        unsafe {
            let iopm = (&raw mut IOPM).cast::<u8>();
            core::ptr::write_bytes(iopm, 0xff, core::mem::size_of::<Pages<{ 3 * 4096 }>>());
            let msrpm = (&raw mut MSRPM).cast::<u8>();
            core::ptr::write_bytes(msrpm, 0xff, core::mem::size_of::<Pages<{ 2 * 4096 }>>());
            for bit in passed_through.iter().filter_map(|&m| msrpm_bit(m)) {
                *msrpm.add(bit / 8) &= !(0b11 << (bit % 8));
            }
        }
    }
    // EFER.SVME only permits the SVM instructions; CR4.OSFXSR lets
    // FXSAVE/FXRSTOR move guests' XMM registers (the kernel and the ring-3
    // domains are built without SSE).
    // SAFETY: SVM exists and is not disabled (`probe`); VM_HSAVE_PA names
    // a frame the kernel gave this CPU for it alone.
    unsafe {
        Efer::update(|f| *f |= EferFlags::SECURE_VIRTUAL_MACHINE_ENABLE);
        Msr::new(VM_HSAVE_PA).write(hsave.addr());
        Cr4::update(|f| *f |= Cr4Flags::OSFXSR | Cr4Flags::OSXMMEXCPT_ENABLE);
        Cr0::update(|f| {
            f.remove(Cr0Flags::EMULATE_COPROCESSOR | Cr0Flags::TASK_SWITCHED);
            f.insert(Cr0Flags::MONITOR_COPROCESSOR);
        });
    }
    HOST[cpu].hsave.store(hsave.addr(), Ordering::Relaxed);
    HOST[cpu]
        .host_vmcb
        .store(host_vmcb.addr(), Ordering::Relaxed);
    if cpu == 0 {
        READY.store(1 + nrips as u64, Ordering::Relaxed);
    }
    support
}

/// Offsets in the VMCB (AMD APM vol. 2, table B-1 and B-2).
pub mod off {
    // Control area.
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    pub const INTERCEPT_MISC1: usize = 0x00C;
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE: usize = 0x040;
    pub const MSRPM_BASE: usize = 0x048;
    pub const TSC_OFFSET: usize = 0x050;
    pub const ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05C;
    pub const INT_CTL: usize = 0x060;
    pub const INT_STATE: usize = 0x068;
    pub const EXIT_CODE: usize = 0x070;
    pub const EXIT_INFO1: usize = 0x078;
    pub const EXIT_INFO2: usize = 0x080;
    pub const EXIT_INT_INFO: usize = 0x088;
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENT_INJ: usize = 0x0A8;
    pub const N_CR3: usize = 0x0B0;
    pub const NEXT_RIP: usize = 0x0C8;
    // State save area.
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4CB;
    pub const EFER: usize = 0x4D0;
    pub const CR2: usize = 0x640;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5D8;
    pub const RAX: usize = 0x5F8;
    pub const G_PAT: usize = 0x668;
}

/// A segment register as the VMCB keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    /// Descriptor bits 40–47 in 0–7 and 52–55 in 8–11 (type, S, DPL, P; AVL, L, D/B, G).
    pub attrib: u16,
    pub limit: u32,
    pub base: u64,
}

/// A guest vCPU's control block: one frame only the kernel maps.
pub struct Vmcb(Frame);

impl Vmcb {
    /// A zeroed VMCB in `frame`, which it now owns.
    pub fn new(frame: Frame) -> Vmcb {
        crate::arch::addrspace::zero_frame(frame);
        Vmcb(frame)
    }

    /// The frame, to free once the vCPU is gone.
    pub fn into_frame(self) -> Frame {
        self.0
    }

    pub fn phys(&self) -> u64 {
        self.0.addr()
    }

    fn at<T>(&self, offset: usize) -> *mut T {
        assert!(offset + core::mem::size_of::<T>() <= 4096);
        assert!(offset.is_multiple_of(core::mem::align_of::<T>()));
        (phys_to_virt(self.0.addr()) + offset as u64) as *mut T
    }

    pub fn read64(&self, offset: usize) -> u64 {
        // SAFETY: inside the VMCB's frame, aligned (`at` checks); the frame
        // is RAM owned by this Vmcb and no guest runs on it now (the
        // kernel touches a VMCB only between runs, under the domain lock).
        unsafe { self.at::<u64>(offset).read_volatile() }
    }

    pub fn write64(&mut self, offset: usize, value: u64) {
        // SAFETY: as in `read64`.
        unsafe { self.at::<u64>(offset).write_volatile(value) }
    }

    pub fn read32(&self, offset: usize) -> u32 {
        // SAFETY: as in `read64`.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }

    pub fn write32(&mut self, offset: usize, value: u32) {
        // SAFETY: as in `read64`.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }

    pub fn write8(&mut self, offset: usize, value: u8) {
        // SAFETY: as in `read64`.
        unsafe { self.at::<u8>(offset).write_volatile(value) }
    }

    pub fn set_segment(&mut self, offset: usize, s: Segment) {
        // SAFETY: as in `read64`.
        unsafe {
            self.at::<u16>(offset).write_volatile(s.selector);
            self.at::<u16>(offset + 2).write_volatile(s.attrib);
            self.at::<u32>(offset + 4).write_volatile(s.limit);
            self.at::<u64>(offset + 8).write_volatile(s.base);
        }
    }
}

/// A guest's general registers other than rax and rsp (which the VMCB
/// holds), in the order `svm_vmrun` loads and stores them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

/// A guest's x87/MMX/SSE state in the FXSAVE format.
#[repr(C, align(16))]
#[derive(Clone)]
pub struct FpuState(pub [u8; 512]);

impl FpuState {
    /// The state after reset: FCW 0x37f, MXCSR 0x1f80, registers empty.
    pub const fn initial() -> FpuState {
        let mut b = [0u8; 512];
        b[0] = 0x7f;
        b[1] = 0x03;
        b[24] = 0x80;
        b[25] = 0x1f;
        FpuState(b)
    }
}

/// What a guest vCPU keeps besides its VMCB: the x87/SSE state and the
/// general registers.
#[repr(C, align(16))]
pub struct GuestState {
    pub fpu: FpuState,
    pub regs: GuestRegs,
}

/// A frame holding a vCPU's [`GuestState`] and `X`, what the layer above
/// keeps per vCPU (its local APIC...), owned by this value alone: the
/// domain's record stays small (the boot stack builds records).
pub struct StatePage<X> {
    frame: Frame,
    _x: core::marker::PhantomData<X>,
}

/// What a state page holds.
#[repr(C)]
pub struct PageContents<X> {
    pub guest: GuestState,
    pub extra: X,
}

impl<X> StatePage<X> {
    /// A fresh state in `frame`, which it now owns: registers zero, the
    /// x87/SSE state as after reset, and `extra`.
    pub fn new(frame: Frame, extra: X) -> StatePage<X> {
        const { assert!(core::mem::size_of::<PageContents<X>>() <= 4096) };
        const { assert!(core::mem::align_of::<PageContents<X>>() <= 4096) };
        // `into_frame` gives the frame back without dropping the contents.
        const { assert!(!core::mem::needs_drop::<X>()) };
        let contents = PageContents {
            guest: GuestState {
                fpu: FpuState::initial(),
                regs: GuestRegs::default(),
            },
            extra,
        };
        // SAFETY: the frame is RAM the caller gave this StatePage (a
        // `Frame`), 4096-aligned, and the contents fit in it (asserted
        // above); nothing else refers to it.
        unsafe { (phys_to_virt(frame.addr()) as *mut PageContents<X>).write(contents) };
        StatePage {
            frame,
            _x: core::marker::PhantomData,
        }
    }

    pub fn get(&self) -> &PageContents<X> {
        // SAFETY: written as a PageContents<X> by `new` and only through
        // `get_mut` since; the frame belongs to this value alone.
        unsafe { &*(phys_to_virt(self.frame.addr()) as *const PageContents<X>) }
    }

    pub fn get_mut(&mut self) -> &mut PageContents<X> {
        // SAFETY: as in `get`; `&mut self` makes the reference unique.
        unsafe { &mut *(phys_to_virt(self.frame.addr()) as *mut PageContents<X>) }
    }

    /// The frame, to free once the vCPU is gone (its contents need no drop).
    pub fn into_frame(self) -> Frame {
        self.frame
    }
}

/// The x87/SSE state the CPU is left with once a guest's is saved: what
/// the next guest, or a ring-3 domain's x87 instructions, would otherwise
/// find of the last guest's registers.
static CLEAN_FPU: FpuState = FpuState::initial();

core::arch::global_asm!(
    // Its own section: the assembler keeps whatever section the last
    // `global_asm!` of the crate left (the AP start code's is read-only
    // data, and code placed there faults when called).
    ".section .text.svm_vmrun, \"ax\"",
    ".global svm_vmrun",
    // svm_vmrun(regs: *mut GuestRegs [rdi], vmcb: u64 [rsi], host_vmcb: u64 [rdx])
    "svm_vmrun:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdx", // [rsp+16] after the next two: the host VMCB
    "push rdi", // [rsp+8]: where the guest registers go back
    "push rsi", // [rsp]: the guest VMCB
    // Interrupts stay held (GIF = 0) until the host state is whole again;
    // IF = 1 so that a physical interrupt ends the guest's run (INTR exit).
    "clgi",
    "sti",
    "mov rax, rdx",
    "vmsave rax",
    "mov rax, rsi",
    "mov rbx, [rdi + 0x00]",
    "mov rcx, [rdi + 0x08]",
    "mov rdx, [rdi + 0x10]",
    "mov rsi, [rdi + 0x18]",
    "mov rbp, [rdi + 0x28]",
    "mov r8,  [rdi + 0x30]",
    "mov r9,  [rdi + 0x38]",
    "mov r10, [rdi + 0x40]",
    "mov r11, [rdi + 0x48]",
    "mov r12, [rdi + 0x50]",
    "mov r13, [rdi + 0x58]",
    "mov r14, [rdi + 0x60]",
    "mov r15, [rdi + 0x68]",
    "mov rdi, [rdi + 0x20]",
    "vmload rax",
    "vmrun rax",
    // #VMEXIT: rax and rsp are the host's again; the rest is the guest's.
    "vmsave rax",
    "push rdi",
    "mov rdi, [rsp + 16]",
    "mov [rdi + 0x00], rbx",
    "mov [rdi + 0x08], rcx",
    "mov [rdi + 0x10], rdx",
    "mov [rdi + 0x18], rsi",
    "mov [rdi + 0x28], rbp",
    "mov [rdi + 0x30], r8",
    "mov [rdi + 0x38], r9",
    "mov [rdi + 0x40], r10",
    "mov [rdi + 0x48], r11",
    "mov [rdi + 0x50], r12",
    "mov [rdi + 0x58], r13",
    "mov [rdi + 0x60], r14",
    "mov [rdi + 0x68], r15",
    "pop rax",
    "mov [rdi + 0x20], rax",
    "pop rsi",
    "pop rdi",
    "pop rax", // the host VMCB
    "vmload rax",
    // Whatever interrupt ended the run is taken here, on this stack, by
    // the kernel's own handlers (as in the idle loop's halt).
    "stgi",
    "nop",
    "cli",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
);

extern "C" {
    fn svm_vmrun(regs: *mut GuestRegs, vmcb: u64, host_vmcb: u64);
}

/// Runs the guest vCPU of `vmcb` until its next exit, with the registers
/// and x87/SSE state of `state` loaded around the run and saved back after
/// it. Interrupts must be off (they are taken at the end, once the host's
/// state is back).
pub fn run<X>(cpu: usize, vmcb: &mut Vmcb, state: &mut StatePage<X>) {
    let GuestState { fpu, regs } = &mut state.get_mut().guest;
    let host_vmcb = HOST[cpu].host_vmcb.load(Ordering::Relaxed);
    assert!(host_vmcb != 0, "SVM is not on for CPU {cpu}");
    // `vmcb` is one the kernel filled (VMRUN intercepted, ASID not 0, a
    // nested page table of the guest's memory only); the stub restores every
    // callee-saved register and the host state (`VMLOAD` of `host_vmcb`).
    // SAFETY: SVM is on for this CPU, interrupts are off, `regs` is valid;
    // FXRSTOR/FXSAVE get 16-byte aligned 512-byte areas (CR4.OSFXSR is set).
    unsafe {
        core::arch::asm!("fxrstor64 [{}]", in(reg) fpu.0.as_ptr(), options(nostack, readonly));
        svm_vmrun(regs, vmcb.phys(), host_vmcb);
        core::arch::asm!("fxsave64 [{}]", in(reg) fpu.0.as_mut_ptr(), options(nostack));
        core::arch::asm!("fxrstor64 [{}]", in(reg) CLEAN_FPU.0.as_ptr(), options(nostack, readonly));
    }
}
