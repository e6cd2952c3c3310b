//! What RDMSR and WRMSR do in an HVM guest.
//!
//! Owns: the MSR policy. The MSRs `VMLOAD`/`VMSAVE` switch (FS and GS
//! bases, the syscall MSRs, SYSENTER) pass straight through to the guest's
//! own copies (`passed_through`); EFER and PAT are the guest's copies in
//! its VMCB, checked before they are written; the TSC reads as the guest's
//! clock; the APIC base says x2APIC mode. Every other MSR (SVM's own, the
//! host's configuration, anything unknown) faults with #GP, as on a CPU
//! that lacks it, and changes nothing. Pure: host-tested.

/// EFER bits a guest may set: SCE, LME, LMA (kept as the CPU sets it),
/// NXE, FFXSR. SVME stays set in the VMCB (VMRUN needs it) and reads as 0.
pub const EFER: u32 = 0xC000_0080;
const EFER_GUEST_BITS: u64 = 1 | 1 << 8 | 1 << 10 | 1 << 11 | 1 << 14;
pub const EFER_SVME: u64 = 1 << 12;
pub const PAT: u32 = 0x277;
pub const TSC: u32 = 0x10;
pub const APIC_BASE: u32 = 0x1B;
/// The x2APIC base, enabled and in x2APIC mode (bit 8: the boot CPU).
const APIC_BASE_VALUE: u64 = 0xFEE0_0000 | 1 << 11 | 1 << 10;
const PATCH_LEVEL: u32 = 0x8B;
/// AMD's interrupt-pending message register (Linux reads it to decide on C1E).
const INT_PENDING: u32 = 0xC001_0055;
const VM_CR: u32 = 0xC001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;

/// MSRs the guest reads and writes directly: `VMLOAD`/`VMSAVE` switch them
/// with the guest (SYSENTER CS/ESP/EIP, STAR, LSTAR, CSTAR, SFMASK, FS
/// and GS bases, KernelGSBase).
pub const PASSED_THROUGH: [u32; 10] = [
    0x174,
    0x175,
    0x176,
    0xC000_0081,
    0xC000_0082,
    0xC000_0083,
    0xC000_0084,
    0xC000_0100,
    0xC000_0101,
    0xC000_0102,
];

/// The vCPU's MSR state the policy reads.
#[derive(Clone, Copy, Debug)]
pub struct State {
    pub vcpu: u32,
    /// EFER as the VMCB holds it.
    pub efer: u64,
    /// The guest's TSC now.
    pub tsc: u64,
    /// The guest's PAT (the VMCB's).
    pub pat: u64,
}

/// What a write does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Set the VMCB's EFER to this (SVME included).
    Efer(u64),
    /// Set the VMCB's guest PAT.
    Pat(u64),
    /// Accepted and changes nothing.
    Ignored,
    /// #GP, nothing changed.
    Fault,
}

/// RDMSR: the value, or `None` for #GP.
pub fn read(msr: u32, s: State) -> Option<u64> {
    match msr {
        EFER => Some(s.efer & !EFER_SVME),
        TSC => Some(s.tsc),
        PAT => Some(s.pat),
        APIC_BASE => Some(APIC_BASE_VALUE | if s.vcpu == 0 { 1 << 8 } else { 0 }),
        PATCH_LEVEL | INT_PENDING => Some(0),
        VM_CR => Some(VM_CR_SVMDIS),
        _ => None,
    }
}

/// Whether a PAT value is valid: every byte one of the memory types
/// UC, WC, WT, WP, WB, UC- (0, 1, 4, 5, 6, 7).
fn valid_pat(value: u64) -> bool {
    value
        .to_le_bytes()
        .iter()
        .all(|&t| matches!(t, 0 | 1 | 4..=7))
}

/// WRMSR of `value`.
pub fn write(msr: u32, value: u64, s: State) -> Write {
    match msr {
        EFER => {
            if value & !EFER_GUEST_BITS != 0 {
                return Write::Fault;
            }
            // LMA is the CPU's to set (CR0.PG with LME); a write keeps it,
            // and may not change LME while long mode is active (a CPU
            // faults so; the VMCB would hold a state VMRUN refuses).
            let (lma, lme) = (1 << 10, 1 << 8);
            if s.efer & lma != 0 && (value ^ s.efer) & lme != 0 {
                return Write::Fault;
            }
            Write::Efer((value & !lma) | (s.efer & lma) | EFER_SVME)
        }
        PAT if valid_pat(value) => Write::Pat(value),
        // Linux writes its TSC only to line CPUs up; the guest's clock is
        // the host's with an offset the kernel keeps.
        TSC => Write::Ignored,
        APIC_BASE if value & !(1 << 8) == APIC_BASE_VALUE => Write::Ignored,
        PATCH_LEVEL => Write::Ignored,
        _ => Write::Fault,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: State = State {
        vcpu: 0,
        efer: 1 << 8 | 1 << 10 | EFER_SVME,
        tsc: 1234,
        pat: 0x0007_0406_0007_0406,
    };

    #[test]
    fn efer_hides_svme_and_refuses_reserved_bits() {
        assert_eq!(read(EFER, S), Some(1 << 8 | 1 << 10));
        assert_eq!(write(EFER, 1 << 12, S), Write::Fault);
        assert_eq!(write(EFER, 1 << 3, S), Write::Fault);
        assert_eq!(
            write(EFER, 1 | 1 << 8 | 1 << 11, S),
            Write::Efer(1 | 1 << 8 | 1 << 10 | 1 << 11 | EFER_SVME)
        );
        // LMA cannot be cleared by a write either.
        assert_eq!(
            write(EFER, 1 << 8, S),
            Write::Efer(1 << 8 | 1 << 10 | EFER_SVME)
        );
    }

    #[test]
    fn svm_and_host_msrs_fault_and_change_nothing() {
        for msr in [
            0xC001_0117,
            0xC001_0015,
            0x1A0,
            0x3A,
            0xFE,
            0x2FF,
            0x4B56_4D01,
            0xdead_beef,
        ] {
            assert_eq!(read(msr, S), None, "{msr:#x} readable");
            assert_eq!(write(msr, 0, S), Write::Fault, "{msr:#x} writable");
        }
        assert_eq!(read(VM_CR, S), Some(VM_CR_SVMDIS));
        assert_eq!(write(VM_CR, 0, S), Write::Fault);
    }

    #[test]
    fn pat_takes_only_memory_types_and_the_apic_base_stays() {
        assert_eq!(
            write(PAT, 0x0007_0406_0007_0406, S),
            Write::Pat(0x0007_0406_0007_0406)
        );
        assert_eq!(write(PAT, 0x0000_0000_0000_0002, S), Write::Fault);
        assert_eq!(read(APIC_BASE, S), Some(0xFEE0_0D00));
        assert_eq!(read(APIC_BASE, State { vcpu: 1, ..S }), Some(0xFEE0_0C00));
        assert_eq!(write(APIC_BASE, 0xFEE0_0D00, S), Write::Ignored);
        assert_eq!(write(APIC_BASE, 0xFEE0_0000, S), Write::Fault);
        assert_eq!(read(TSC, S), Some(1234));
        assert_eq!(read(PAT, S), Some(0x0007_0406_0007_0406));
    }
}
