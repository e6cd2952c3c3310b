//! Where each trap the CPU takes goes: the `syscall` instruction, ring-3
//! and kernel exceptions, the timer, the IPIs, device IRQs and NMIs.
//!
//! Owns: `syscall_dispatch`, `trap_dispatch` and `paranoid_dispatch`, the functions the
//! entry stubs of `arch/idt.rs` call by name with the trap frame (so the
//! hardware layer names nothing above it), and the report of an exception
//! the kernel itself took. What each handler does is `trap.rs`,
//! `watchdog.rs` and `arch/tlb.rs`.

use crate::arch::idt::{
    exception_name, TrapFrame, VECTOR_DMA_FAULT, VECTOR_PIC_BASE, VECTOR_RESCHED, VECTOR_SPURIOUS,
    VECTOR_TIMER, VECTOR_TLB_FLUSH,
};
use crate::arch::{apic, ioapic};

const IRQ_BASE: u64 = ioapic::VECTOR_IRQ_BASE as u64;
const MSI_BASE: u64 = crate::domain::msi::VECTOR_MSI_BASE as u64;
const MSI_SLOTS: u64 = crate::domain::msi::MSI_SLOTS as u64;

/// Called by `paranoid_entry` for NMI, #DF and #MC, with the kernel's GS
/// whatever was interrupted. It returns to what it interrupted (no vCPU
/// switch: the entry swaps GS back by what it found, not by the frame).
#[no_mangle] // the name `arch/idt.rs`'s entry stubs call
#[allow(unsafe_code)] // `no_mangle` only: there is no unsafe block
extern "C" fn paranoid_dispatch(frame: &mut TrapFrame) {
    match frame.vector {
        // The watchdog's NMI (a stuck CPU panics inside).
        2 if crate::watchdog::nmi(frame) => {}
        // Otherwise machine trouble, not a domain's doing.
        _ => exception(frame),
    }
}

/// Called by `trap_save_in_record` for `syscall`, with the address of the
/// caller's registers in its vCPU's record (not a reference: the kernel's
/// lock guards that record, and `trap::syscall` reaches it through it).
#[no_mangle] // the name `arch/idt.rs`'s entry stubs call
#[allow(unsafe_code)] // `no_mangle` only: there is no unsafe block
extern "C" fn syscall_dispatch(frame: *mut TrapFrame) {
    crate::trap::syscall(frame)
}

/// Called by `isr_common` for every other interrupt and exception.
#[no_mangle] // the name `arch/idt.rs`'s entry stubs call
#[allow(unsafe_code)] // `no_mangle` only: there is no unsafe block
extern "C" fn trap_dispatch(frame: &mut TrapFrame) {
    let from_user = frame.cs & 3 == 3;
    match frame.vector {
        // (NMI, #DF and #MC come through `paranoid_dispatch`.)
        v if v < 32 && from_user => {
            let cr2 = x86_64::registers::control::Cr2::read_raw();
            crate::trap::user_exception(frame, cr2)
        }
        v if v < 32 => exception(frame),
        v if v == VECTOR_TIMER as u64 => timer_interrupt(frame, from_user),
        v if v == VECTOR_SPURIOUS as u64 => {}
        v if v == VECTOR_TLB_FLUSH as u64 => {
            crate::arch::tlb::service();
            apic::end_of_interrupt();
        }
        v if v == VECTOR_DMA_FAULT as u64 => {
            apic::end_of_interrupt();
            crate::trap::dma_fault(frame, from_user);
        }
        v if v == VECTOR_RESCHED as u64 => {
            apic::end_of_interrupt();
            if crate::trap::scheduler_running() {
                crate::trap::resched_ipi(frame, from_user);
            }
        }
        v if (IRQ_BASE..IRQ_BASE + ipc_abi::layout::MAX_IRQS).contains(&v) => {
            apic::end_of_interrupt();
            if crate::trap::scheduler_running() {
                crate::trap::physical_irq(frame, (v - IRQ_BASE) as u8, from_user);
            }
        }
        v if (MSI_BASE..MSI_BASE + MSI_SLOTS).contains(&v) => {
            apic::end_of_interrupt();
            if crate::trap::scheduler_running() {
                let irq = (ipc_abi::layout::MAX_IRQS + v - MSI_BASE) as u8;
                crate::trap::physical_irq(frame, irq, from_user);
            }
        }
        v if (VECTOR_PIC_BASE as u64..VECTOR_PIC_BASE as u64 + 16).contains(&v) => {
            // A spurious IRQ from the masked 8259s: nothing to acknowledge.
        }
        v => {
            crate::kprintln!("interrupt: unexpected vector {:#x}, ignored", v);
            apic::end_of_interrupt();
        }
    }
}

fn exception(frame: &TrapFrame) -> ! {
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::console::print_panic(format_args!(
        "\nexception: {} (vector {}) error={:#x} rip={:#x} cr2={:#x}\n{}\n",
        exception_name(frame.vector),
        frame.vector,
        frame.error_code,
        frame.rip,
        cr2,
        frame
    ));
    panic!(
        "unhandled CPU exception {} in the kernel",
        exception_name(frame.vector)
    );
}

/// The timer's vector. Time is the boot CPU's ticks; every CPU schedules
/// on its own. The boot CPU's timer also fires for vCPU deadlines between
/// ticks (`arch::deadline`), and at another CPU's request. Out of line:
/// in the dispatcher it made the compiler lay the hypercall path out
/// dearer (the tracing test counts the event path).
#[inline(never)]
fn timer_interrupt(frame: &mut TrapFrame, from_user: bool) {
    let cpu = crate::domain::this_cpu();
    let tick = cpu != 0 || crate::arch::deadline::interrupt(crate::arch::time::now_ns());
    if tick {
        if cpu == 0 {
            crate::arch::time::tick();
        }
        crate::watchdog::tick(cpu);
    }
    apic::end_of_interrupt();
    if crate::trap::scheduler_running() {
        crate::trap::timer_tick(frame, from_user, tick);
    }
}
