//! Machine reset and power-off.
//!
//! Owns: the ways out of the kernel. Reset tries the ACPI reset register, then
//! the keyboard controller, then a triple fault. Power-off uses ACPI S5.

use super::acpi::{Platform, Register};
use spin::Once;
use x86_64::instructions::port::Port;

/// The firmware's reset and power-off controls, as far as they are known.
#[derive(Default, Clone, Copy)]
pub struct PowerControls {
    reset: Option<(Register, u8)>,
    pm1a_control: Option<u16>,
    pm1b_control: Option<u16>,
    s5: Option<(u8, u8)>,
    acpi_enable: Option<(u16, u8)>,
}

static CONTROLS: Once<PowerControls> = Once::new();

/// Remembers the controls found in ACPI.
pub fn set_controls(p: &Platform) {
    CONTROLS.call_once(|| PowerControls {
        reset: p.reset,
        pm1a_control: p.pm1a_control,
        pm1b_control: p.pm1b_control,
        s5: p.s5,
        acpi_enable: p.acpi_enable,
    });
}

fn outb(port: u16, v: u8) {
    // SAFETY: only called with the fixed reset/PM ports the firmware named or
    // the PC standard ones; writing them can only reset or power off the machine.
    unsafe { Port::<u8>::new(port).write(v) }
}

/// Resets the machine. Never returns.
pub fn reset() -> ! {
    x86_64::instructions::interrupts::disable();
    let controls = CONTROLS.get().copied().unwrap_or_default();
    if let Some((reg, value)) = controls.reset {
        super::log::print_panic(format_args!("reset: via the ACPI reset register\n"));
        match reg {
            Register::Port(port) => outb(port, value),
            Register::Memory(addr) => {
                if let Ok(va) =
                    super::memory::map_physical(addr, 1, super::paging::Caching::Uncached)
                {
                    // SAFETY: the FADT names this byte as the reset register.
                    unsafe { core::ptr::write_volatile(va as *mut u8, value) };
                }
            }
        }
        spin_a_while();
    }
    super::log::print_panic(format_args!("reset: via the keyboard controller\n"));
    for _ in 0..16 {
        // SAFETY: reading the 8042 status port has no side effects.
        let busy = unsafe { Port::<u8>::new(0x64).read() } & 2 != 0;
        if !busy {
            break;
        }
        spin_a_while();
    }
    outb(0x64, 0xfe);
    spin_a_while();
    super::log::print_panic(format_args!("reset: via a triple fault\n"));
    triple_fault()
}

fn spin_a_while() {
    for _ in 0..10_000_000 {
        core::hint::spin_loop();
    }
}

fn triple_fault() -> ! {
    static EMPTY: Once<x86_64::structures::idt::InterruptDescriptorTable> = Once::new();
    let idt = EMPTY.call_once(x86_64::structures::idt::InterruptDescriptorTable::new);
    idt.load();
    // SAFETY: with an IDT of absent entries, int3 faults, the fault faults and
    // the CPU shuts down, which resets the machine. That is the intent.
    unsafe { core::arch::asm!("int3", options(noreturn)) }
}

/// Powers the machine off via ACPI S5. Returns only if that is not possible.
pub fn power_off() -> Result<(), &'static str> {
    let c = CONTROLS.get().copied().ok_or("ACPI is not in use")?;
    let (typ_a, typ_b) = c.s5.ok_or("the DSDT declares no S5 state")?;
    let pm1a = c.pm1a_control.ok_or("the FADT has no PM1a control port")?;
    const SCI_EN: u16 = 1;
    const SLP_EN: u16 = 1 << 13;
    // SAFETY: PM1 control ports named by the FADT; SMI_CMD likewise.
    unsafe {
        let mut cnt = Port::<u16>::new(pm1a);
        if cnt.read() & SCI_EN == 0 {
            if let Some((smi, enable)) = c.acpi_enable {
                outb(smi, enable);
                for _ in 0..1_000_000 {
                    if cnt.read() & SCI_EN != 0 {
                        break;
                    }
                    core::hint::spin_loop();
                }
            }
        }
        x86_64::instructions::interrupts::disable();
        cnt.write(((typ_a as u16) << 10) | SLP_EN);
        if let Some(pm1b) = c.pm1b_control {
            Port::<u16>::new(pm1b).write(((typ_b as u16) << 10) | SLP_EN);
        }
    }
    spin_a_while();
    Err("the chipset ignored the S5 request")
}
