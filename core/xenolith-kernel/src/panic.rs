//! The panic handler: report, then halt or reset as `noreboot` says.
//!
//! Owns: the last words of the kernel. Prints file, line and message on every
//! console output; then halts with interrupts off (`noreboot`) so the message
//! stays on screen, or resets the machine.

use core::sync::atomic::{AtomicBool, Ordering};

static NOREBOOT: AtomicBool = AtomicBool::new(false);
static PANICKING: AtomicBool = AtomicBool::new(false);

/// Records the `noreboot` setting for the panic path.
pub fn set_noreboot(on: bool) {
    NOREBOOT.store(on, Ordering::Relaxed);
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    use crate::arch::{cpu, reset};
    use crate::console::print_panic;
    x86_64::instructions::interrupts::disable();
    if PANICKING.swap(true, Ordering::Relaxed) {
        // A panic while panicking: do not recurse into anything clever.
        cpu::stop();
    }
    match info.location() {
        Some(l) => print_panic(format_args!(
            "\nPANIC at {}:{}: {}\n",
            l.file(),
            l.line(),
            info.message()
        )),
        None => print_panic(format_args!("\nPANIC: {}\n", info.message())),
    }
    if NOREBOOT.load(Ordering::Relaxed) {
        print_panic(format_args!(
            "noreboot: halted; the machine stays as it is\n"
        ));
        cpu::stop();
    }
    print_panic(format_args!("rebooting\n"));
    reset::reset()
}
