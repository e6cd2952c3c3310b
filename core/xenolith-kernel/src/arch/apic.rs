//! The local APIC (x2APIC where present), its periodic timer, and the legacy
//! 8259 PICs, which are remapped and masked so only the APIC interrupts.
//!
//! Owns: APIC mode selection, timer calibration against PIT channel 2, EOI.

use super::idt::{VECTOR_PIC_BASE, VECTOR_SPURIOUS, VECTOR_TIMER};
use super::paging::Caching;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
const APIC_X2_ENABLE: u64 = 1 << 10;
const X2APIC_MSR_BASE: u32 = 0x800;

// Register offsets (xAPIC MMIO offsets; x2APIC MSR = 0x800 + offset / 16).
const REG_ID: u32 = 0x20;
const REG_EOI: u32 = 0xb0;
const REG_SVR: u32 = 0xf0;
const REG_LVT_TIMER: u32 = 0x320;
const REG_TIMER_INITIAL: u32 = 0x380;
const REG_TIMER_CURRENT: u32 = 0x390;
const REG_TIMER_DIVIDE: u32 = 0x3e0;
const REG_ICR_LOW: u32 = 0x300;
const REG_ICR_HIGH: u32 = 0x310;
/// ICR: delivery status (xAPIC: the IPI has not been accepted yet).
const ICR_PENDING: u32 = 1 << 12;
/// ICR: level assert, with delivery mode INIT (0b101) or start-up (0b110).
const ICR_INIT: u32 = (1 << 14) | (0b101 << 8);
const ICR_STARTUP: u32 = (1 << 14) | (0b110 << 8);

const LVT_MASKED: u32 = 1 << 16;
const LVT_PERIODIC: u32 = 1 << 17;
const DIVIDE_BY_16: u32 = 0x3;

const MODE_NONE: u8 = 0;
const MODE_XAPIC: u8 = 1;
const MODE_X2APIC: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(MODE_NONE);
/// Virtual address of the xAPIC register page (xAPIC mode only).
static MMIO: AtomicU64 = AtomicU64::new(0);

/// Which local APIC interface is in use.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    XApic,
    X2Apic,
}

fn read(reg: u32) -> u32 {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => {
            // SAFETY: x2APIC mode is enabled, so every APIC register is a valid MSR.
            unsafe { Msr::new(X2APIC_MSR_BASE + reg / 16).read() as u32 }
        }
        MODE_XAPIC => {
            let va = MMIO.load(Ordering::Relaxed) + reg as u64;
            // SAFETY: MMIO holds an uncached mapping of the APIC's 4 KiB page
            // (set before MODE), and `reg` is one of the offsets above.
            unsafe { core::ptr::read_volatile(va as *const u32) }
        }
        _ => 0,
    }
}

fn write(reg: u32, value: u32) {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => {
            // SAFETY: as in `read`; writes of these registers have no memory effects.
            unsafe { Msr::new(X2APIC_MSR_BASE + reg / 16).write(value as u64) }
        }
        MODE_XAPIC => {
            let va = MMIO.load(Ordering::Relaxed) + reg as u64;
            // SAFETY: as in `read`.
            unsafe { core::ptr::write_volatile(va as *mut u32, value) }
        }
        _ => {}
    }
}

/// Remaps the 8259 PICs away from the exception vectors and masks every line.
pub fn disable_pic() {
    let mut cmd1 = Port::<u8>::new(0x20);
    let mut data1 = Port::<u8>::new(0x21);
    let mut cmd2 = Port::<u8>::new(0xa0);
    let mut data2 = Port::<u8>::new(0xa1);
    // SAFETY: the standard 8259 initialisation sequence on the PC's fixed
    // ports; the kernel owns the PICs, and the result is every line masked.
    unsafe {
        cmd1.write(0x11);
        cmd2.write(0x11);
        data1.write(VECTOR_PIC_BASE);
        data2.write(VECTOR_PIC_BASE + 8);
        data1.write(4);
        data2.write(2);
        data1.write(0x01);
        data2.write(0x01);
        data1.write(0xff);
        data2.write(0xff);
    }
}

/// Enables the local APIC (x2APIC if the CPU has it and `allow_x2apic`).
pub fn init(allow_x2apic: bool) -> Result<Mode, super::paging::PagingError> {
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    let base = unsafe { base_msr.read() };
    let mode = if allow_x2apic && super::cpu::has_x2apic() {
        // SAFETY: enabling x2APIC (global enable + EXTD) is the documented
        // transition from xAPIC; the CPU advertises support.
        unsafe { base_msr.write(base | APIC_GLOBAL_ENABLE | APIC_X2_ENABLE) };
        MODE.store(MODE_X2APIC, Ordering::Relaxed);
        Mode::X2Apic
    } else {
        let phys = base & 0xf_ffff_f000;
        let va = super::memory::map_physical(phys, 4096, Caching::Uncached)?;
        MMIO.store(va, Ordering::Relaxed);
        // SAFETY: sets the global-enable bit at the current base.
        unsafe { base_msr.write(base | APIC_GLOBAL_ENABLE) };
        MODE.store(MODE_XAPIC, Ordering::Relaxed);
        Mode::XApic
    };
    write(REG_SVR, 0x100 | VECTOR_SPURIOUS as u32);
    Ok(mode)
}

/// Enables an AP's local APIC in the mode the boot CPU chose.
pub fn init_ap() {
    let mut base_msr = Msr::new(IA32_APIC_BASE);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU; the bits set are
    // the ones the boot CPU set on its own (the same hardware, same mode).
    unsafe {
        let base = base_msr.read();
        let extra = if MODE.load(Ordering::Relaxed) == MODE_X2APIC {
            APIC_X2_ENABLE
        } else {
            0
        };
        base_msr.write(base | APIC_GLOBAL_ENABLE | extra);
    }
    write(REG_SVR, 0x100 | VECTOR_SPURIOUS as u32);
}

/// Sends an inter-processor interrupt (`low`: the ICR's low word) to the
/// CPU with APIC id `dest`, and waits until the APIC has sent it.
fn send_ipi(dest: u32, low: u32) {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => {
            // SAFETY: x2APIC mode: the ICR is one 64-bit MSR, destination in
            // the high half; sending an IPI has no memory effect.
            unsafe {
                Msr::new(X2APIC_MSR_BASE + REG_ICR_LOW / 16).write((dest as u64) << 32 | low as u64)
            }
        }
        _ => {
            write(REG_ICR_HIGH, dest << 24);
            write(REG_ICR_LOW, low);
            while read(REG_ICR_LOW) & ICR_PENDING != 0 {
                core::hint::spin_loop();
            }
        }
    }
}

/// A fixed interrupt `vector` to the CPU with APIC id `dest`.
pub fn send_fixed(dest: u32, vector: u8) {
    send_ipi(dest, vector as u32);
}

/// An NMI to the CPU with APIC id `dest` (the watchdog's: it reaches a CPU
/// with interrupts off).
pub fn send_nmi(dest: u32) {
    send_ipi(dest, 0b100 << 8);
}

/// INIT to an AP (it waits for a start-up IPI).
pub fn send_init(dest: u32) {
    send_ipi(dest, ICR_INIT);
}

/// A start-up IPI: the AP begins in real mode at `page << 12`.
pub fn send_startup(dest: u32, page: u8) {
    send_ipi(dest, ICR_STARTUP | page as u32);
}

/// Starts this CPU's periodic timer with an initial count the boot CPU calibrated.
pub fn start_timer_count(initial: u32) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | VECTOR_TIMER as u32);
    write(REG_TIMER_INITIAL, initial.max(1));
}

/// Arms this CPU's timer to interrupt once, `count` timer counts (divided
/// by 16) from now (`arch::deadline` on the boot CPU).
pub fn one_shot(count: u32) {
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, VECTOR_TIMER as u32);
    write(REG_TIMER_INITIAL, count.max(1));
}

/// This CPU's APIC id.
pub fn id() -> u32 {
    match MODE.load(Ordering::Relaxed) {
        MODE_X2APIC => read(REG_ID),
        _ => read(REG_ID) >> 24,
    }
}

/// Counts APIC timer ticks (divide-by-16) and TSC cycles during 10 ms of PIT channel 2.
fn calibrate_10ms() -> (u32, u64) {
    let mut gate = Port::<u8>::new(0x61);
    let mut pit_cmd = Port::<u8>::new(0x43);
    let mut pit_ch2 = Port::<u8>::new(0x42);
    const PIT_HZ: u32 = 1_193_182;
    let count = (PIT_HZ / 100) as u16;
    let tsc_start;
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_MASKED | VECTOR_TIMER as u32);
    // SAFETY: PIT channel 2 and its gate at port 0x61 are fixed PC hardware
    // owned by the kernel; the speaker output stays off.
    unsafe {
        let g = gate.read() & 0xfc;
        gate.write(g); // gate low, speaker off
        pit_cmd.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0
        pit_ch2.write(count as u8);
        pit_ch2.write((count >> 8) as u8);
        write(REG_TIMER_INITIAL, u32::MAX);
        tsc_start = super::cpu::rdtsc();
        gate.write(g | 1); // start counting
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
    }
    let elapsed = u32::MAX - read(REG_TIMER_CURRENT);
    let tsc = super::cpu::rdtsc() - tsc_start;
    write(REG_TIMER_INITIAL, 0);
    (elapsed.max(1), tsc)
}

/// Starts the periodic timer at `hz` interrupts per second; returns the
/// count per period and the TSC frequency measured on the way.
pub fn start_timer(hz: u32) -> (u32, u64) {
    let (per_10ms, tsc_10ms) = calibrate_10ms();
    let per_10ms = per_10ms as u64;
    let initial = (per_10ms * 100 / hz as u64).clamp(1, u32::MAX as u64) as u32;
    write(REG_TIMER_DIVIDE, DIVIDE_BY_16);
    write(REG_LVT_TIMER, LVT_PERIODIC | VECTOR_TIMER as u32);
    write(REG_TIMER_INITIAL, initial);
    (initial, tsc_10ms * 100)
}

/// Acknowledges the interrupt being serviced.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}
