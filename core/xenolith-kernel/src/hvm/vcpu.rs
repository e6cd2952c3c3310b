//! One HVM vCPU's state while it is not running: its VMCB, the general
//! registers the VMCB does not hold, its x87/SSE state, and the line it is
//! writing to the debug port.
//!
//! Owns: what a new HVM vCPU looks like (the intercepts, nested paging
//! with the domain's table, 32-bit protected mode at the builder's entry)
//! and setting its registers from a `VcpuContext`. While the vCPU runs, its
//! CPU holds this state (`run.rs`), as a ring-3 vCPU's registers are on its
//! CPU's stack.

use super::lapic::Lapic;
use crate::arch::svm::{off, GuestRegs, Segment, StatePage, Vmcb};
use crate::frames::Frame;
use ipc_abi::domain::VcpuContext;
use ipc_abi::hvm::{BOOT_CS, BOOT_DS};

/// The ASID every guest runs with (the TLB is flushed at each switch
/// between guests on a CPU: `run.rs`).
const ASID: u32 = 1;

// Intercepts, vector 3 (offset 0x0C): INTR, NMI, SMI, INIT, CPUID, INVD,
// HLT, IOIO_PROT, MSR_PROT, SHUTDOWN.
const MISC1: u32 =
    1 | 1 << 1 | 1 << 2 | 1 << 3 | 1 << 18 | 1 << 22 | 1 << 24 | 1 << 27 | 1 << 28 | 1 << 31;
// Vector 4 (offset 0x10): VMRUN (required), VMMCALL, VMLOAD, VMSAVE, STGI,
// CLGI, SKINIT, WBINVD, MONITOR, MWAIT, MWAIT_CONDITIONAL, XSETBV.
const MISC2: u32 = 0x7f | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12 | 1 << 13;
/// INT_CTL: V_INTR_MASKING (the guest's IF masks only virtual interrupts;
/// physical ones always exit to the host).
const V_INTR_MASKING: u32 = 1 << 24;

/// Flat 4 GiB code and data segments of the 32-bit boot state.
const CODE32: u16 = 0xC9B;
const DATA32: u16 = 0xC93;

/// An HVM guest's device model: who may be it, and the page it serves by.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceModel {
    pub allowed: Option<ipc_abi::domain::DomainId>,
    /// The device model's slot index, id, and its request page.
    pub serving: Option<(usize, ipc_abi::domain::DomainId, Frame)>,
    /// The port of each doorbell it set (0: none).
    pub doorbells: [u16; ipc_abi::hvm::DOORBELLS],
}

/// A request posted and not answered yet.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    pub seq: u64,
    pub size: u8,
    pub input: bool,
    pub port: u16,
    /// What an output writes.
    pub data: u64,
    /// In device memory (at `address`, a load going to register `reg`)
    /// rather than a port.
    pub memory: Option<(u64, u8)>,
}

/// What the kernel keeps per HVM vCPU beside its registers.
pub struct Extra {
    pub lapic: Lapic,
    /// The debug port's unfinished line (`line_len` bytes of `line`).
    pub line: [u8; 120],
    pub line_len: usize,
    /// The last request number posted to the device model, and the one
    /// it has not answered yet.
    pub io_seq: u64,
    pub waiting: Option<Waiting>,
    /// kvm-clock's system-time MSR as the guest last wrote it.
    pub system_time_msr: u64,
    /// Its paravirtual EOI word (`pv_eoi.rs`).
    pub pv_eoi: PvEoi,
    /// Its last exits, oldest first from `recent_next` (for the triple
    /// fault's report).
    pub recent: [RecentExit; 8],
    pub recent_next: usize,
}

/// A vCPU's paravirtual EOI (`pv_eoi.rs`): the MSR as written, where its
/// word is, and whether the bit was set for the run that is on.
#[derive(Clone, Copy, Debug, Default)]
pub struct PvEoi {
    pub msr: u64,
    pub word: Option<(Frame, usize)>,
    pub set: bool,
}

/// One exit of an HVM vCPU as its triple fault's report shows it.
#[derive(Clone, Copy, Debug, Default)]
pub struct RecentExit {
    pub code: u64,
    pub rip: u64,
    /// What the exit named (EXITINFO1: a port access's port and size, ...).
    pub info1: u64,
    /// The host CPU it ran on, and whether its TLB was flushed for the run.
    pub cpu: u8,
    pub flushed: bool,
    pub tsc: u64,
}

impl Extra {
    /// Its last exits, oldest first.
    pub fn recent_exits(&self) -> impl Iterator<Item = RecentExit> + '_ {
        let n = self.recent.len();
        (0..n).map(move |i| self.recent[(self.recent_next + i) % n])
    }
}

impl core::fmt::Display for RecentExit {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:#x} info1 {:#x} at rip {:#x} on CPU {} (flushed {}) tsc {}",
            self.code, self.info1, self.rip, self.cpu, self.flushed, self.tsc
        )
    }
}

/// An HVM vCPU's state: two frames of its own.
pub struct HvmVcpu {
    pub vmcb: Vmcb,
    /// Registers, x87/SSE state, local APIC, the debug port's line.
    pub state: StatePage<Extra>,
    /// The CPU it last ran on (`usize::MAX`: none yet), for the TLB rule
    /// in `run.rs`.
    pub last_cpu: usize,
    /// Its nested page table's root, as the VMCB must keep saying.
    pub npt: u64,
}

impl HvmVcpu {
    /// A vCPU in `vmcb_frame` and `state_frame` (which it now owns) on
    /// nested page table `npt`, in the 32-bit boot state at address 0.
    pub fn new(vmcb_frame: Frame, state_frame: Frame, npt: u64, vcpu: u32) -> HvmVcpu {
        let mut vmcb = Vmcb::new(vmcb_frame);
        let (iopm, msrpm) = crate::arch::svm::permission_maps();
        vmcb.write32(off::INTERCEPT_CR, 0);
        vmcb.write32(off::INTERCEPT_EXCEPTIONS, 0);
        vmcb.write32(off::INTERCEPT_MISC1, MISC1);
        vmcb.write32(off::INTERCEPT_MISC2, MISC2);
        vmcb.write64(off::IOPM_BASE, iopm);
        vmcb.write64(off::MSRPM_BASE, msrpm);
        vmcb.write32(off::ASID, ASID);
        vmcb.write32(off::INT_CTL, V_INTR_MASKING);
        vmcb.write64(off::NP_ENABLE, 1);
        vmcb.write64(off::N_CR3, npt);
        let flat = |selector, attrib| Segment {
            selector,
            attrib,
            limit: 0xffff_ffff,
            base: 0,
        };
        vmcb.set_segment(off::CS, flat(BOOT_CS, CODE32));
        for seg in [off::DS, off::ES, off::SS, off::FS, off::GS] {
            vmcb.set_segment(seg, flat(BOOT_DS, DATA32));
        }
        let system = |attrib| Segment {
            selector: 0,
            attrib,
            limit: 0xffff,
            base: 0,
        };
        vmcb.set_segment(off::GDTR, system(0));
        vmcb.set_segment(off::IDTR, system(0));
        vmcb.set_segment(off::LDTR, system(0x82));
        vmcb.set_segment(off::TR, system(0x8B));
        vmcb.write8(off::CPL, 0);
        // Protected mode, paging off; EFER.SVME as VMRUN requires it.
        vmcb.write64(off::CR0, 0x11);
        vmcb.write64(off::CR4, 0);
        vmcb.write64(off::CR3, 0);
        vmcb.write64(off::EFER, super::msr::EFER_SVME);
        vmcb.write64(off::RFLAGS, 0x2);
        vmcb.write64(off::DR6, 0xffff_0ff0);
        vmcb.write64(off::DR7, 0x400);
        // The PAT's power-on value.
        vmcb.write64(off::G_PAT, 0x0007_0406_0007_0406);
        HvmVcpu {
            vmcb,
            last_cpu: usize::MAX,
            npt,
            state: StatePage::new(
                state_frame,
                Extra {
                    lapic: Lapic::new(vcpu),
                    line: [0; 120],
                    line_len: 0,
                    io_seq: 0,
                    waiting: None,
                    system_time_msr: 0,
                    pv_eoi: Default::default(),
                    recent: [RecentExit::default(); 8],
                    recent_next: 0,
                },
            ),
        }
    }

    /// Sets the registers it starts with. The boot state stays 32-bit, so
    /// `rip` and `rsp` must lie below 4 GiB; `rflags` keeps only the
    /// arithmetic and direction flags (interrupts stay off).
    pub fn set_start(&mut self, c: &VcpuContext) -> Result<(), ipc_abi::hypercall::Error> {
        if c.rip > u32::MAX as u64 || c.rsp > u32::MAX as u64 {
            return Err(ipc_abi::hypercall::Error::InvalidArgument);
        }
        self.vmcb.write64(off::RIP, c.rip);
        self.vmcb.write64(off::RSP, c.rsp);
        self.vmcb.write64(off::RAX, c.rax);
        self.vmcb
            .write64(off::RFLAGS, 0x2 | crate::checks::user_rflags(c.rflags));
        self.state.get_mut().guest.regs = GuestRegs {
            rbx: c.rbx,
            rcx: c.rcx,
            rdx: c.rdx,
            rsi: c.rsi,
            rdi: c.rdi,
            rbp: c.rbp,
            r8: c.r8,
            r9: c.r9,
            r10: c.r10,
            r11: c.r11,
            r12: c.r12,
            r13: c.r13,
            r14: c.r14,
            r15: c.r15,
        };
        Ok(())
    }

    /// Its frames, to free once the vCPU is gone.
    pub fn into_frames(self) -> [Frame; 2] {
        [self.vmcb.into_frame(), self.state.into_frame()]
    }

    /// Its registers now, for `domain info`, crash records and save.
    pub fn context(&self) -> VcpuContext {
        let r = &self.state.get().guest.regs;
        VcpuContext {
            rax: self.vmcb.read64(off::RAX),
            rbx: r.rbx,
            rcx: r.rcx,
            rdx: r.rdx,
            rsi: r.rsi,
            rdi: r.rdi,
            rbp: r.rbp,
            rsp: self.vmcb.read64(off::RSP),
            r8: r.r8,
            r9: r.r9,
            r10: r.r10,
            r11: r.r11,
            r12: r.r12,
            r13: r.r13,
            r14: r.r14,
            r15: r.r15,
            rip: self.vmcb.read64(off::RIP),
            rflags: self.vmcb.read64(off::RFLAGS),
        }
    }
}
