//! Entering and leaving ring 3: the `syscall` entry, the per-CPU block that
//! `swapgs` reaches, and `resume_user_at`, which starts or resumes a
//! domain's vCPU from its saved registers.
//!
//! Owns: the EFER/STAR/LSTAR/SFMASK setup and the assembly that turns a
//! `syscall` into the same [`TrapFrame`] an interrupt from ring 3 builds,
//! in the calling vCPU's record (where the per-CPU block says:
//! [`set_syscall_frame`]), then joins the interrupt path (`arch/idt.rs`) to
//! save registers, dispatch on the kernel stack and return. The kernel
//! keeps one kernel stack per CPU and never blocks on it: a vCPU's state
//! lives in its domain, not on a stack.

use super::cpu::MAX_CPUS;
use super::idt::TrapFrame;
use super::stacks;
use x86_64::registers::model_specific::{
    Efer, EferFlags, GsBase, KernelGsBase, LStar, SFMask, Star,
};
use x86_64::registers::rflags::RFlags;
use x86_64::VirtAddr;

/// The pseudo-vector a `syscall` frame carries.
pub const VECTOR_SYSCALL: u64 = 0x100;
/// Ring-3 selectors (see `gdt.rs`: user data at 0x18, user code at 0x20).
pub const USER_CS: u64 = 0x23;
pub const USER_SS: u64 = 0x1b;

/// What `%gs` points at in the kernel: per-CPU scratch for the entry path.
#[repr(C)]
struct PerCpu {
    /// Top of this CPU's kernel stack.
    kernel_stack_top: u64,
    /// The user `rsp` while the entry path switches stacks.
    user_rsp_scratch: u64,
    /// This CPU's number (0: the boot CPU), for [`cpu_index`].
    cpu: u64,
    /// The end of the saved-register frame in the record of the ring-3
    /// vCPU loaded here ([`set_syscall_frame`]): `syscall` saves the
    /// caller's registers there, not on the kernel stack, so a switch to
    /// another vCPU copies nothing.
    syscall_frame_top: u64,
}

const CPU_OFFSET: usize = core::mem::offset_of!(PerCpu, cpu);
const FRAME_TOP_OFFSET: usize = core::mem::offset_of!(PerCpu, syscall_frame_top);

static mut PER_CPU: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        kernel_stack_top: 0,
        user_rsp_scratch: 0,
        cpu: 0,
        syscall_frame_top: 0,
    }
}; MAX_CPUS];

/// The number of the CPU this runs on (0: the boot CPU), as an index below
/// `MAX_CPUS`.
#[inline(always)]
pub fn this_cpu() -> usize {
    // Masked rather than checked: the number is always below MAX_CPUS (a
    // power of two), and indexing with it then needs no bounds check.
    cpu_index() & (MAX_CPUS - 1)
}

/// The number of the CPU this runs on, from its per-CPU block (`%gs` in
/// the kernel). Valid from `init_cpu` on; the boot CPU sets it first thing.
#[inline(always)]
pub fn cpu_index() -> usize {
    let cpu: u64;
    // SAFETY: in the kernel GS base is this CPU's PerCpu (set by init_cpu
    // before anything asks; the entry paths swap it in from ring 3), and the
    // read is of its `cpu` field.
    unsafe {
        core::arch::asm!(
            "mov {}, gs:[{off}]",
            out(reg) cpu,
            off = const CPU_OFFSET,
            // Pure: a CPU's number never changes under the code asking (the
            // kernel is not preempted), so the compiler may reuse a read.
            options(nostack, preserves_flags, readonly, pure)
        );
    }
    cpu as usize
}

core::arch::global_asm!(
    r#"
    .section .text
    .global syscall_entry
syscall_entry:
    swapgs
    movq %rsp, %gs:8
    movq %gs:{frame_top}, %rsp
    pushq ${user_ss}
    pushq %gs:8
    pushq %r11
    pushq ${user_cs}
    pushq %rcx
    pushq $0
    pushq ${vector}
    jmp trap_save_in_record

    .global resume_user_asm
resume_user_asm:
    movq %rdi, %rsp
    jmp trap_restore

    .global on_fresh_stack_asm
on_fresh_stack_asm:
    movq %gs:0, %rsp
    xorl %ebp, %ebp
    movq %rdi, %rax
    movq %rsi, %rdi
    call *%rax
    ud2
"#,
    user_ss = const USER_SS,
    user_cs = const USER_CS,
    vector = const VECTOR_SYSCALL,
    frame_top = const FRAME_TOP_OFFSET,
    options(att_syntax)
);

extern "C" {
    fn syscall_entry();
    fn on_fresh_stack_asm(f: extern "C" fn(u64) -> !, arg: u64) -> !;
    fn resume_user_asm(frame: *const TrapFrame) -> !;
}

/// Returns to ring 3 with the registers at `frame`, popped where they lie
/// (the frame becomes the stack for the last few instructions before
/// `iretq`): no copy to the kernel stack first. Abandons the current
/// kernel stack.
///
/// # Safety
/// `frame` is a sanitized ring-3 frame (see [`sanitize`]) that nothing
/// else writes or frees until this CPU's `iretq` has read it; interrupts
/// are off (NMI, #DF and #MC have stacks of their own, so nothing else is
/// pushed below it meanwhile).
pub unsafe fn resume_user_at(frame: *const TrapFrame) -> ! {
    // SAFETY: as the caller promises; the asm only reads the frame.
    unsafe { resume_user_asm(frame) }
}

/// Calls `f(arg)` at the top of this CPU's kernel stack, abandoning what is
/// on it (as `resume_user_at` does): how a CPU starts running an HVM vCPU from
/// wherever it decided to, without the stack growing at each switch.
pub fn on_fresh_stack(f: extern "C" fn(u64) -> !, arg: u64) -> ! {
    x86_64::instructions::interrupts::disable();
    // SAFETY: interrupts are off; nothing on this CPU's kernel stack is
    // needed again (the kernel keeps no state on it between traps: see the
    // module doc); `f` never returns, so its frame is the stack's base.
    unsafe { on_fresh_stack_asm(f, arg) }
}

/// Makes `frame` (in the record of the ring-3 vCPU being loaded on this
/// CPU) where this CPU's `syscall` entry saves the caller's registers.
/// Only the vCPU loaded here can execute `syscall` on this CPU, and its
/// record stays where it is while it is loaded (`domain::resume`).
#[inline(always)]
pub fn set_syscall_frame(frame: &mut TrapFrame) {
    let top = (frame as *mut TrapFrame as u64) + core::mem::size_of::<TrapFrame>() as u64;
    // SAFETY: in the kernel GS base is this CPU's PerCpu (see `cpu_index`);
    // the write is of its `syscall_frame_top`, which only this CPU's
    // `syscall` entry reads, with interrupts off.
    unsafe {
        core::arch::asm!(
            "mov gs:[{off}], {}",
            in(reg) top,
            off = const FRAME_TOP_OFFSET,
            options(nostack, preserves_flags)
        );
    }
}

/// Records CPU `cpu`'s kernel stack top before it starts.
pub fn set_kernel_stack(cpu: usize, top: u64) {
    if cpu >= MAX_CPUS {
        return;
    }
    // SAFETY: written by the boot CPU before CPU `cpu` runs (or by the boot
    // CPU for itself, before any entry path); nothing reads it meanwhile.
    unsafe {
        PER_CPU[cpu].kernel_stack_top = top;
        PER_CPU[cpu].cpu = cpu as u64;
    }
}

/// Sets up `syscall` and the per-CPU block of the boot CPU (CPU 0).
pub fn init() {
    set_kernel_stack(0, stacks::boot_stack_top());
    init_cpu(0);
}

/// Sets up `syscall` and points GS at CPU `cpu`'s block, on that CPU.
pub fn init_cpu(cpu: usize) {
    let cpu = cpu.min(MAX_CPUS - 1);
    // SAFETY: GS base is this CPU's PerCpu and the user's starts at 0 (the entry
    // paths swap them once each way); STAR/LSTAR/SFMASK match gdt.rs and the
    // entry above, and SFMASK clears IF so the kernel runs with interrupts off.
    unsafe {
        GsBase::write(VirtAddr::new(&raw const PER_CPU[cpu] as u64));
        KernelGsBase::write(VirtAddr::new(0));
        LStar::write(VirtAddr::new(syscall_entry as *const () as u64));
        Star::write_raw(0x10, 0x08);
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK,
        );
        Efer::update(|f| *f |= EferFlags::SYSTEM_CALL_EXTENSIONS);
    }
}

/// A fresh ring-3 frame: start at `rip` with stack `rsp` and `rdi = arg`.
pub fn initial_frame(rip: u64, rsp: u64, arg: u64) -> TrapFrame {
    TrapFrame {
        r15: 0,
        r14: 0,
        r13: 0,
        r12: 0,
        r11: 0,
        r10: 0,
        r9: 0,
        r8: 0,
        rbp: 0,
        rdi: arg,
        rsi: 0,
        rdx: 0,
        rcx: 0,
        rbx: 0,
        rax: 0,
        vector: 0,
        error_code: 0,
        rip,
        cs: USER_CS,
        rflags: RFlags::INTERRUPT_FLAG.bits() | 0x2,
        rsp,
        ss: USER_SS,
    }
}

/// Makes a frame safe to return to ring 3 with: user selectors, IF on, IOPL 0.
pub fn sanitize(frame: &mut TrapFrame) {
    frame.cs = USER_CS;
    frame.ss = USER_SS;
    let allowed = RFlags::CARRY_FLAG
        | RFlags::PARITY_FLAG
        | RFlags::AUXILIARY_CARRY_FLAG
        | RFlags::ZERO_FLAG
        | RFlags::SIGN_FLAG
        | RFlags::DIRECTION_FLAG
        | RFlags::OVERFLOW_FLAG;
    frame.rflags = (frame.rflags & allowed.bits()) | RFlags::INTERRUPT_FLAG.bits() | 0x2;
}
