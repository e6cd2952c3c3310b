//! Small CPU facts and controls: identification, interrupts on/off, halting.

use core::arch::x86_64::{__cpuid, __cpuid_count};

/// CPUs the kernel keeps state for (the boot CPU and up to seven APs).
pub const MAX_CPUS: usize = 8;
const _: () = assert!(MAX_CPUS.is_power_of_two());

/// The CPU vendor string ("GenuineIntel", "AuthenticAMD", ...).
pub fn vendor() -> [u8; 12] {
    let r = __cpuid(0);
    let mut v = [0u8; 12];
    v[0..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..12].copy_from_slice(&r.ecx.to_le_bytes());
    v
}

/// Whether the local APIC can run in x2APIC mode.
pub fn has_x2apic() -> bool {
    __cpuid(1).ecx & (1 << 21) != 0
}

/// How many APIC-id bits name SMT threads within a core (0 without SMT).
pub fn smt_id_bits() -> u32 {
    if __cpuid(0).eax >= 0xb {
        let leaf = __cpuid_count(0xb, 0);
        // Level type 1 is SMT; eax[4:0] is the shift to the next level.
        if (leaf.ecx >> 8) & 0xff == 1 {
            return leaf.eax & 0x1f;
        }
    }
    0
}

/// The time-stamp counter (under `-icount`, retired instructions).
#[inline(always)]
pub fn rdtsc() -> u64 {
    // SAFETY: rdtsc only reads a counter; it has no memory effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Halts until the next interrupt, forever.
pub fn halt_forever() -> ! {
    loop {
        x86_64::instructions::hlt();
    }
}

/// Halts with interrupts off: the CPU stops for good (NMIs aside).
pub fn stop() -> ! {
    x86_64::instructions::interrupts::disable();
    halt_forever()
}
