//! The guest itself: its 32-bit start, its long mode, its checks.

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU64, Ordering};
use ipc_abi::hvm::DEBUG_PORT;

global_asm!(
    r#"
    .section .text._start, "ax"
    .code32
    .global _start
_start:
    movl $0x9f000, %esp
    movl %esi, %ebp
    /* Page tables at 0x1000 (PML4), 0x2000 (PDPT), 0x3000 (PD: 2 MiB
       pages for the first GiB, identity). */
    movl $0x1000, %edi
    xorl %eax, %eax
    movl $(3 * 1024), %ecx
    rep stosl
    movl $0x2003, 0x1000
    movl $0x3003, 0x2000
    xorl %ecx, %ecx
1:  movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax
    movl %eax, 0x3000(,%ecx,8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b
    movl $0x1000, %eax
    movl %eax, %cr3
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    /* EFER.LME, through the kernel's WRMSR policy. */
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    orl $0x80000001, %eax
    movl %eax, %cr0
    lgdt gdt_pointer
    ljmp $0x08, $long_mode

    .code64
long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movq $0x9f000, %rsp
    movl %ebp, %edi
    call guest_main
2:  hlt
    jmp 2b

    .balign 8
gdt:
    .quad 0
    .quad 0x00af9a000000ffff
    .quad 0x00cf92000000ffff
gdt_pointer:
    .word 23
    .long gdt

    /* The APIC timer's vector: count it, end the interrupt (x2APIC EOI). */
    .global timer_isr
timer_isr:
    pushq %rax
    pushq %rcx
    pushq %rdx
    lock incq {ticks}(%rip)
    movl $0x80b, %ecx
    xorl %eax, %eax
    xorl %edx, %edx
    wrmsr
    popq %rdx
    popq %rcx
    popq %rax
    iretq

    /* COM1's interrupt through the 8259 (vector 0x24): read IIR (which
       clears the transmitter-empty interrupt), end it at the PIC. */
    .global com1_isr
com1_isr:
    pushq %rax
    pushq %rdx
    movw $0x3fa, %dx
    inb %dx, %al
    movb %al, {iir}(%rip)
    movb $0x20, %al
    outb %al, $0x20
    lock incq {com1}(%rip)
    popq %rdx
    popq %rax
    iretq

    /* #UD and #GP: note the vector, skip the faulting instruction
       (SKIP bytes) and go on. */
    .global fault_ud
fault_ud:
    movq $6, {last}(%rip)
    jmp 3f
    .global fault_gp
fault_gp:
    addq $8, %rsp
    movq $13, {last}(%rip)
3:  pushq %rax
    movq {skip}(%rip), %rax
    addq %rax, 8(%rsp)
    popq %rax
    iretq
"#,
    last = sym LAST_FAULT,
    ticks = sym TICKS,
    com1 = sym COM1_IRQS,
    iir = sym COM1_IIR,
    skip = sym SKIP,
    options(att_syntax)
);

/// The vector of the last fault the handlers saw (0: none).
static LAST_FAULT: AtomicU64 = AtomicU64::new(0);
/// Timer interrupts taken.
static TICKS: AtomicU64 = AtomicU64::new(0);
/// COM1 interrupts taken, and the last IIR their handler read.
static COM1_IRQS: AtomicU64 = AtomicU64::new(0);
static COM1_IIR: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);
/// Where the 8259s put their lines (COM1's, line 4, at 0x24).
const PIC_BASE: u8 = 0x20;
/// The vector the APIC timer raises.
const TIMER_VECTOR: usize = 0x40;
/// Bytes the fault handlers skip.
static SKIP: AtomicU64 = AtomicU64::new(0);

extern "C" {
    fn fault_ud();
    fn fault_gp();
    fn timer_isr();
    fn com1_isr();
}

/// An interrupt gate in the 64-bit IDT.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate([u64; 2]);

static mut IDT: [Gate; 256] = [Gate([0; 2]); 256];

fn gate(handler: unsafe extern "C" fn()) -> Gate {
    let a = handler as usize as u64;
    let low = (a & 0xffff) | 0x08 << 16 | 0x8e00 << 32 | (a >> 16 & 0xffff) << 48;
    Gate([low, a >> 32])
}

fn load_idt() {
    // SAFETY: one vCPU, before any fault can happen; the IDT is static and
    // its gates point at the handlers above, in the flat code segment.
    unsafe {
        let idt = &raw mut IDT;
        (*idt)[6] = gate(fault_ud);
        (*idt)[13] = gate(fault_gp);
        (*idt)[TIMER_VECTOR] = gate(timer_isr);
        (*idt)[PIC_BASE as usize + 4] = gate(com1_isr);
        let pointer: [u16; 5] = {
            let base = idt as u64;
            [
                (256 * 16 - 1) as u16,
                base as u16,
                (base >> 16) as u16,
                (base >> 32) as u16,
                (base >> 48) as u16,
            ]
        };
        asm!("lidt [{}]", in(reg) pointer.as_ptr());
    }
}

fn out8(port: u16, value: u8) {
    // SAFETY: port output; the kernel decides what it does.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value) }
}

fn in8(port: u16) -> u8 {
    let v: u8;
    // SAFETY: port input; the kernel decides what it reads.
    unsafe { asm!("in al, dx", in("dx") port, out("al") v) }
    v
}

struct Debug;

impl core::fmt::Write for Debug {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        s.bytes().for_each(|b| out8(DEBUG_PORT, b));
        Ok(())
    }
}

macro_rules! say {
    ($($t:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut Debug, format_args!($($t)*));
        out8(DEBUG_PORT, b'\n');
    }};
}

/// Runs `f` (an instruction of `length` bytes); `Err(vector)` if it faulted.
fn trying(length: u64, f: impl FnOnce()) -> Result<(), u64> {
    LAST_FAULT.store(0, Ordering::SeqCst);
    SKIP.store(length, Ordering::SeqCst);
    f();
    match LAST_FAULT.load(Ordering::SeqCst) {
        0 => Ok(()),
        v => Err(v),
    }
}

fn rdmsr(msr: u32) -> Result<u64, u64> {
    let (mut lo, mut hi) = (0u32, 0u32);
    // SAFETY: RDMSR in the guest; a refusal is a #GP the handler skips.
    trying(2, || unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi)
    })?;
    Ok((hi as u64) << 32 | lo as u64)
}

fn wrmsr(msr: u32, value: u64) -> Result<(), u64> {
    // SAFETY: WRMSR in the guest; a refusal is a #GP the handler skips.
    trying(2, || unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32)
    })
}

/// SVM instructions a guest may not use.
enum Svm {
    Vmrun,
    Vmmcall,
    Stgi,
}

/// Runs one of them: each must fault (#UD).
fn svm_instruction(which: Svm) -> Result<(), u64> {
    // Each is 3 bytes long; the fault handler skips it.
    trying(3, || match which {
        // SAFETY: in a guest it faults, and the handler resumes after it.
        Svm::Vmrun => unsafe { asm!("vmrun rax", in("rax") 0u64) },
        // SAFETY: as above.
        Svm::Vmmcall => unsafe { asm!("vmmcall") },
        // SAFETY: as above.
        Svm::Stgi => unsafe { asm!("stgi") },
    })
}

fn fault_name(r: Result<(), u64>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(6) => "#UD",
        Err(13) => "#GP",
        Err(_) => "another fault",
    }
}

fn cpuid(leaf: u32) -> [u32; 4] {
    let r = core::arch::x86_64::__cpuid_count(leaf, 0);
    [r.eax, r.ebx, r.ecx, r.edx]
}

fn rdtsc() -> u64 {
    // SAFETY: reads the time-stamp counter.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Halts with interrupts on until the timer has fired `n` times in all.
fn halt_until(n: u64) {
    while TICKS.load(Ordering::SeqCst) < n {
        // SAFETY: `sti; hlt` waits for the next interrupt (the shadow of
        // STI makes the pair atomic); the handler is in the IDT.
        unsafe { asm!("sti", "hlt", "cli") }
    }
}

/// The local APIC in x2APIC mode: its TSC-deadline timer wakes a halted
/// vCPU once, then its periodic timer three times; each interrupt ends with
/// an EOI. The APIC's registers are MSRs.
fn timer_checks() {
    let apic = |reg: u32| 0x800 + reg;
    let ok = |r: Result<(), u64>| fault_name(r);
    say!(
        "hvm-test: apic id {:#x} version {:#x}",
        rdmsr(apic(0x02)).unwrap_or(99),
        rdmsr(apic(0x03)).unwrap_or(0)
    );
    say!("hvm-test: apic enable: {}", ok(wrmsr(apic(0x0f), 0x1ff)));
    // TSC-deadline mode (bits 17-18 = 2), vector 0x40, about 20 ms ahead.
    let _ = wrmsr(apic(0x32), 2 << 17 | TIMER_VECTOR as u64);
    let _ = wrmsr(0x6e0, rdtsc() + 20_000_000);
    halt_until(1);
    say!(
        "hvm-test: tsc-deadline timer woke hlt: {} interrupt",
        TICKS.load(Ordering::SeqCst)
    );
    // Periodic mode, divide by 1, 5 ms periods.
    let _ = wrmsr(apic(0x3e), 0b1011);
    let _ = wrmsr(apic(0x32), 1 << 17 | TIMER_VECTOR as u64);
    let _ = wrmsr(apic(0x38), 5_000_000);
    halt_until(4);
    let _ = wrmsr(apic(0x32), 1 << 16);
    say!(
        "hvm-test: periodic timer: {} interrupts in all",
        TICKS.load(Ordering::SeqCst)
    );
    short_sleeps(apic(0x32));
    say!(
        "hvm-test: isr after eoi: {:#x}",
        rdmsr(apic(0x12)).unwrap_or(99)
    );
    say!(
        "hvm-test: write to the apic id: {}",
        ok(wrmsr(apic(0x02), 5))
    );
}

/// Sleeps in TSC-deadline mode whose deadlines (0 to 100,000 TSC counts
/// ahead) fall about when the guest reaches HLT: each must wake it. (A
/// timer that came due while the guest ran, just before its HLT, once
/// left Linux halted for ever.)
fn short_sleeps(lvt_timer: u32) {
    const SLEEPS: u64 = 1000;
    let _ = wrmsr(lvt_timer, 2 << 17 | TIMER_VECTOR as u64);
    let start = TICKS.load(Ordering::SeqCst);
    for i in 0..SLEEPS {
        let _ = wrmsr(0x6e0, rdtsc() + (i % 100) * 1_000);
        halt_until(start + i + 1);
    }
    say!(
        "hvm-test: {SLEEPS} short tsc-deadline sleeps woke hlt: {} interrupts",
        TICKS.load(Ordering::SeqCst) - start
    );
    // Deadlines that pass while the guest runs with interrupts off, for
    // from a fraction of the kernel's tick to more than one (its timer for
    // this vCPU may then fire while the vCPU is not halted, with no exit
    // of the vCPU after it), and only then `sti; hlt`.
    const LATE: u64 = 60;
    let start = TICKS.load(Ordering::SeqCst);
    for i in 0..LATE {
        let _ = wrmsr(0x6e0, rdtsc() + 100_000);
        let until = rdtsc() + (i + 1) * 500_000;
        while rdtsc() < until {
            core::hint::spin_loop();
        }
        halt_until(start + i + 1);
    }
    let _ = wrmsr(lvt_timer, 1 << 16);
    say!(
        "hvm-test: {LATE} sleeps that came due with interrupts off woke hlt: {} interrupts",
        TICKS.load(Ordering::SeqCst) - start
    );
}

/// COM1 and the 8259s, which the device-model domain emulates: a line
/// sent byte by byte, and the transmitter-empty interrupt through the PIC.
fn device_model_checks() {
    say!("hvm-test: com1 scratch register: {:#x}", {
        out8(0x3ff, 0x5a);
        in8(0x3ff)
    });
    for b in b"hvm-test: a line through COM1\n" {
        while in8(0x3fd) & 0x20 == 0 {}
        out8(0x3f8, *b);
    }
    // Linux's 8259 set-up: ICW1-4 on both, then only line 4 unmasked.
    for (cmd, base, icw3) in [(0x20, PIC_BASE, 4), (0xa0, PIC_BASE + 8, 2)] {
        out8(cmd, 0x11);
        out8(cmd + 1, base);
        out8(cmd + 1, icw3);
        out8(cmd + 1, 0x01);
    }
    out8(0x21, 0xef);
    out8(0xa1, 0xff);
    say!("hvm-test: pic mask reads {:#x}", in8(0x21));
    // OUT2 lets COM1's line reach the PIC; THRE interrupts on.
    out8(0x3fc, 0x08);
    out8(0x3f9, 0x02);
    while COM1_IRQS.load(Ordering::SeqCst) < 1 {
        // SAFETY: as in `halt_until`.
        unsafe { asm!("sti", "hlt", "cli") }
    }
    out8(0x3f9, 0);
    say!(
        "hvm-test: com1 interrupt taken at vector 0x24, iir {:#x}",
        COM1_IIR.load(Ordering::SeqCst)
    );
}

/// `end=touch touch_mib=N`: writes every page of its RAM from 8 MiB (above
/// its image, stack and page tables) up to N MiB with a word naming the
/// page, then reads them all back: each first touch is a page the kernel
/// gives it then (`domain::guest_ram`).
fn touch(line: &str) {
    const FROM: u64 = 8 << 20;
    let mib: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("touch_mib="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let end = (mib << 20).min(1 << 30);
    for page in (FROM..end).step_by(4096) {
        // SAFETY: RAM of this guest (below `end`, its size as the test
        // says) in the first GiB's identity map, above everything the
        // guest itself uses.
        unsafe { core::ptr::write_volatile(page as *mut u64, page ^ 0x5a5a) };
    }
    let good = (FROM..end)
        .step_by(4096)
        // SAFETY: as above.
        .filter(|&page| unsafe { core::ptr::read_volatile(page as *const u64) } == page ^ 0x5a5a)
        .count();
    say!(
        "hvm-test: wrote {} pages and read back {good}",
        end.saturating_sub(FROM) / 4096
    );
}

/// Path lengths of two exits, in TSC ticks (instructions under `-icount`):
/// a CPUID (the kernel answers) and a port input the device model serves
/// (port 0x80), the mean of 1,000 each.
fn bench() {
    const N: u64 = 1000;
    let t0 = rdtsc();
    for _ in 0..N {
        let _ = cpuid(0);
    }
    let t1 = rdtsc();
    for _ in 0..N {
        let _ = in8(0x80);
    }
    let t2 = rdtsc();
    say!("hvm-test: cpuid exit: {}", (t1 - t0) / N);
    say!("hvm-test: port exit to the device model: {}", (t2 - t1) / N);
}

/// What a hostile guest does: writes 0 to every MSR of the three ranges
/// CPUs have (each refused one is a #GP, skipped), then writes 0 to and
/// reads every I/O port but the debug port. It must harm only itself.
fn hostile() {
    let mut refused = 0u64;
    for base in [0u32, 0xC000_0000, 0xC001_0000] {
        for msr in base..base + 0x2000 {
            if wrmsr(msr, 0).is_err() {
                refused += 1;
            }
        }
    }
    say!("hvm-test: wrote every MSR, {refused} refused");
    let mut floating = 0u32;
    for port in 0..=0xffffu16 {
        if port == DEBUG_PORT {
            continue;
        }
        out8(port, 0);
        if in8(port) == 0xff {
            floating += 1;
        }
    }
    say!("hvm-test: wrote and read every port, {floating} read all ones");
    say!("hvm-test: hostile guest still here");
}

/// The command line at `at` (ESI at entry), up to its NUL.
fn cmdline(at: u64) -> &'static str {
    // SAFETY: the builder wrote a NUL-terminated string of less than a
    // page there, in identity-mapped RAM.
    let bytes = unsafe { core::slice::from_raw_parts(at as *const u8, 4096) };
    let n = bytes.iter().position(|&b| b == 0).unwrap_or(0);
    core::str::from_utf8(&bytes[..n]).unwrap_or("")
}

#[no_mangle]
extern "C" fn guest_main(cmdline_at: u64) -> ! {
    load_idt();
    say!("hvm-test: in long mode");
    let [max, b, c, d] = cpuid(0x4000_0000);
    let mut sig = [0u8; 12];
    sig[..4].copy_from_slice(&b.to_le_bytes());
    sig[4..8].copy_from_slice(&c.to_le_bytes());
    sig[8..].copy_from_slice(&d.to_le_bytes());
    let sig = core::str::from_utf8(&sig)
        .unwrap_or("?")
        .trim_end_matches('\0');
    say!("hvm-test: cpuid 0x40000000: {sig} up to {max:#x}");
    let [_, b, c, _] = cpuid(1);
    let yes = |bit: bool| if bit { "yes" } else { "no" };
    say!(
        "hvm-test: cpuid 1: hypervisor {} x2apic {} apic id {}",
        yes(c & 1 << 31 != 0),
        yes(c & 1 << 21 != 0),
        b >> 24
    );
    say!(
        "hvm-test: cpuid 0x80000001: svm {}",
        yes(cpuid(0x8000_0001)[2] & 1 << 2 != 0)
    );
    match rdmsr(0xC000_0080) {
        Ok(v) => say!("hvm-test: rdmsr efer: {v:#x}"),
        Err(_) => say!("hvm-test: rdmsr efer: fault"),
    }
    say!(
        "hvm-test: rdmsr vm_hsave_pa: {}",
        fault_name(rdmsr(0xC001_0117).map(drop))
    );
    say!(
        "hvm-test: wrmsr vm_hsave_pa: {}",
        fault_name(wrmsr(0xC001_0117, 0x1000))
    );
    say!(
        "hvm-test: wrmsr efer.svme: {}",
        fault_name(wrmsr(0xC000_0080, 0x1d00))
    );
    let pat = 0x0007_0106_0007_0406;
    let written = fault_name(wrmsr(0x277, pat));
    say!(
        "hvm-test: wrmsr pat: {} then reads {:#x}",
        written,
        rdmsr(0x277).unwrap_or(0)
    );
    say!("hvm-test: in 0x80: {:#x}", in8(0x80));
    say!(
        "hvm-test: vmrun: {}",
        fault_name(svm_instruction(Svm::Vmrun))
    );
    say!(
        "hvm-test: vmmcall: {}",
        fault_name(svm_instruction(Svm::Vmmcall))
    );
    say!("hvm-test: stgi: {}", fault_name(svm_instruction(Svm::Stgi)));
    timer_checks();
    device_model_checks();
    let line = cmdline(cmdline_at);
    say!("hvm-test: command line: {line}");
    say!("hvm-test: done");
    let end = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("end="))
        .unwrap_or("halt");
    match end {
        "mmio" => {
            say!("hvm-test: reading guest-physical 0x30000000");
            // SAFETY: identity-mapped in the guest's page tables, outside
            // its memory: the kernel ends the guest here.
            let v = unsafe { core::ptr::read_volatile(0x3000_0000 as *const u32) };
            say!("hvm-test: read {v:#x} and went on");
        }
        "device" => device_memory(),
        "triple" => {
            say!("hvm-test: triple fault");
            // SAFETY: an empty IDT and a fault: no handler, no double
            // fault handler, a triple fault (the CPU's shutdown).
            unsafe {
                let empty = [0u16; 5];
                asm!("lidt [{}]", "ud2", in(reg) empty.as_ptr());
            }
        }
        "hostile" => hostile(),
        "bench" => bench(),
        "touch" => touch(&line),
        "spin" => {
            say!("hvm-test: spinning");
            loop {
                core::hint::spin_loop();
            }
        }
        _ => say!("hvm-test: halting"),
    }
    loop {
        // SAFETY: halting with interrupts off: nothing wakes the vCPU.
        unsafe { asm!("cli", "hlt") }
    }
}

/// `end=device`: device memory nobody serves (the MMIO window holds no
/// BAR for this guest, whose device model has no PCI function): loads of
/// 4 and 8 bytes into RAX and R9 read all ones, a store goes nowhere; then
/// an instruction the kernel does not decode there (`add`) ends the guest.
fn device_memory() {
    const AT: u64 = ipc_abi::hvm::MMIO_BASE + 0x10_0000;
    // Pages 0x4000 and 0x5000 map AT's 2 MiB identity (PML4 entry 1, its
    // first PDPT and PD entries); rewriting CR3 flushes the TLB.
    // SAFETY: both pages are free RAM below the stack, unused by the
    // tables at 0x1000-0x3fff; nothing else maps PML4 entry 1.
    unsafe {
        core::ptr::write_bytes(0x4000 as *mut u8, 0, 0x2000);
        core::ptr::write_volatile(0x1008 as *mut u64, 0x4003);
        core::ptr::write_volatile(0x4000 as *mut u64, 0x5003);
        core::ptr::write_volatile(0x5000 as *mut u64, AT & !0x1f_ffff | 0x83);
        asm!("mov {0}, cr3", "mov cr3, {0}", out(reg) _);
    }
    let (four, eight): (u32, u64);
    // SAFETY: AT is mapped just above; the loads and the store are exits
    // the kernel hands to the device model (and nobody serves).
    unsafe {
        asm!("mov {0:e}, [{1}]", out(reg) four, in(reg) AT);
        asm!("mov r9, [{0}]", "mov {1}, r9", in(reg) AT, out(reg) eight, out("r9") _);
        asm!("mov dword ptr [{0}], 0x12345678", in(reg) AT);
    }
    say!("hvm-test: device memory read {four:#x} and {eight:#x}");
    // SAFETY: as above; `add` to memory is not a move: the kernel stops
    // the guest here.
    unsafe { asm!("add dword ptr [{0}], eax", in(reg) AT, in("eax") 1) };
    say!("hvm-test: an add to device memory went on");
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    say!("hvm-test: panic");
    loop {
        // SAFETY: as above.
        unsafe { asm!("cli", "hlt") }
    }
}
