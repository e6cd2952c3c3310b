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

/// What [`protect_kernel`] turned on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Protections {
    pub smep: bool,
    pub smap: bool,
}

/// Turns on, on this CPU and where it has them, SMEP (the kernel never
/// executes a ring-3 page) and SMAP (it never reads or writes one: it
/// reaches domains' memory through the physmap alone, `usermem`), which
/// turn a kernel bug that follows a domain's pointer into a fault; and
/// global pages with 4 MiB pages (no mapping is global yet). These are
/// also the bits a guest kernel sets (Linux does): an emulator that
/// flushes its TLB whenever they change (QEMU's TCG) then does not at
/// each `VMRUN` and `#VMEXIT` (performance.md).
///
/// `syscall` clears RFLAGS.AC (SFMASK) and the interrupt entry from ring 3
/// too, so a domain cannot lift SMAP for the kernel by setting it.
pub fn protect_kernel() -> Protections {
    use x86_64::registers::control::{Cr4, Cr4Flags};
    let features = __cpuid(1).edx;
    let extended = if __cpuid(0).eax >= 7 {
        __cpuid_count(7, 0).ebx
    } else {
        0
    };
    let on = Protections {
        smep: extended & (1 << 7) != 0,
        smap: extended & (1 << 20) != 0,
    };
    let mut add = Cr4Flags::empty();
    add.set(Cr4Flags::PAGE_SIZE_EXTENSION, features & (1 << 3) != 0);
    add.set(Cr4Flags::PAGE_GLOBAL, features & (1 << 13) != 0);
    add.set(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION, on.smep);
    add.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, on.smap);
    // The kernel runs no code from, and makes no access through, a ring-3
    // mapping (usermem.rs walks the domain's tables and uses the physmap).
    // SAFETY: each bit only if CPUID has it; SMEP and SMAP fault nothing
    // the kernel does (above); no mapping is global, so PGE changes none.
    unsafe { Cr4::update(|f| *f |= add) };
    on
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
