//! The 8254 PIT's channel 0 as a steady interrupt source (the NMI watchdog's).
//!
//! Owns: programming channel 0 as a rate generator. Channel 2 is the timer
//! calibration's (`apic.rs`) and is left alone.

use x86_64::instructions::port::Port;

/// Starts channel 0 as a rate generator dividing 1,193,182 Hz by `divisor`
/// (0 means 65,536: about 18.2 Hz, the slowest).
pub fn start_periodic(divisor: u16) {
    let mut cmd = Port::<u8>::new(0x43);
    let mut ch0 = Port::<u8>::new(0x40);
    // SAFETY: ports 0x40 and 0x43 are the PIT's, which only the kernel
    // touches (no domain is given them); command 0x34 selects channel 0,
    // low then high byte, mode 2, binary.
    unsafe {
        cmd.write(0x34);
        ch0.write(divisor as u8);
        ch0.write((divisor >> 8) as u8);
    }
}
