//! What a guest's exit was: the SVM exit code and its two information
//! words decoded into one [`Exit`], and how long the exiting instruction
//! was when the CPU does not say (QEMU's SVM has no next-RIP saving).
//!
//! Pure: host-tested. A VMX back end would decode its exit reasons into
//! the same [`Exit`], and everything after the decoding stays as it is.

/// One exit of a guest vCPU, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A physical interrupt (or NMI) arrived for the host.
    HostInterrupt,
    /// The guest can take the interrupt it was waiting to be given.
    InterruptWindow,
    Cpuid,
    Hlt,
    /// Port I/O: `size` in bytes; `next_rip` from the CPU.
    Io {
        port: u16,
        size: u8,
        input: bool,
        string: bool,
        next_rip: u64,
    },
    Msr {
        write: bool,
    },
    /// A triple fault (the guest's IDT could not deliver a fault).
    Shutdown,
    /// An access to guest-physical `gpa` that its memory does not map.
    NestedPageFault {
        gpa: u64,
        write: bool,
        fetch: bool,
    },
    /// An instruction the guest may not use (SVM's own, XSETBV,
    /// MONITOR/MWAIT): it gets #UD.
    Refused,
    /// WBINVD or INVD: the caches are the host's; nothing to do (Linux's
    /// AP start-up code runs WBINVD first thing).
    CacheFlush,
    /// `VMRUN` refused the state the kernel gave it (a kernel bug or a
    /// state the guest reached that the checks missed): the guest crashes.
    InvalidState,
    /// Anything else: the guest crashes, with the code in its record.
    Unexpected(u64),
}

impl Exit {
    /// A short name, for the trace.
    #[cfg_attr(not(feature = "trace"), allow(dead_code))]
    pub fn name(&self) -> &'static str {
        match self {
            Exit::HostInterrupt => "host-interrupt",
            Exit::InterruptWindow => "interrupt-window",
            Exit::Cpuid => "cpuid",
            Exit::Hlt => "hlt",
            Exit::Io { input: true, .. } => "io-in",
            Exit::Io { input: false, .. } => "io-out",
            Exit::Msr { write: true } => "msr-write",
            Exit::Msr { write: false } => "msr-read",
            Exit::Shutdown => "shutdown",
            Exit::NestedPageFault { .. } => "nested-page-fault",
            Exit::Refused => "refused-instruction",
            Exit::CacheFlush => "cache-flush",
            Exit::InvalidState => "invalid-state",
            Exit::Unexpected(_) => "unexpected",
        }
    }
}

/// SVM exit codes (AMD APM vol. 2, appendix C).
pub mod code {
    pub const INTR: u64 = 0x60;
    pub const NMI: u64 = 0x61;
    pub const SMI: u64 = 0x62;
    pub const INIT: u64 = 0x63;
    pub const VINTR: u64 = 0x64;
    pub const CPUID: u64 = 0x72;
    pub const INVD: u64 = 0x76;
    pub const HLT: u64 = 0x78;
    pub const IOIO: u64 = 0x7B;
    pub const MSR: u64 = 0x7C;
    pub const SHUTDOWN: u64 = 0x7F;
    pub const VMRUN: u64 = 0x80;
    pub const VMMCALL: u64 = 0x81;
    pub const VMLOAD: u64 = 0x82;
    pub const VMSAVE: u64 = 0x83;
    pub const STGI: u64 = 0x84;
    pub const CLGI: u64 = 0x85;
    pub const SKINIT: u64 = 0x86;
    pub const WBINVD: u64 = 0x89;
    pub const MONITOR: u64 = 0x8A;
    pub const MWAIT: u64 = 0x8B;
    pub const MWAIT_CONDITIONAL: u64 = 0x8C;
    pub const XSETBV: u64 = 0x8D;
    pub const NPF: u64 = 0x400;
    pub const INVALID: u64 = u64::MAX;
}

/// Decodes an exit from `EXITCODE`, `EXITINFO1` and `EXITINFO2`.
pub fn decode(exit_code: u64, info1: u64, info2: u64) -> Exit {
    match exit_code {
        code::INTR | code::NMI | code::SMI | code::INIT => Exit::HostInterrupt,
        code::VINTR => Exit::InterruptWindow,
        code::CPUID => Exit::Cpuid,
        code::HLT => Exit::Hlt,
        code::IOIO => Exit::Io {
            port: (info1 >> 16) as u16,
            // SZ8, SZ16, SZ32 are bits 4, 5, 6: one of them is set.
            size: match (info1 >> 4) & 7 {
                1 => 1,
                2 => 2,
                _ => 4,
            },
            input: info1 & 1 != 0,
            string: info1 & (1 << 2) != 0,
            next_rip: info2,
        },
        code::MSR => Exit::Msr { write: info1 == 1 },
        code::SHUTDOWN => Exit::Shutdown,
        code::NPF => Exit::NestedPageFault {
            gpa: info2,
            write: info1 & (1 << 1) != 0,
            fetch: info1 & (1 << 4) != 0,
        },
        code::VMRUN
        | code::VMMCALL
        | code::VMLOAD
        | code::VMSAVE
        | code::STGI
        | code::CLGI
        | code::SKINIT
        | code::MONITOR
        | code::MWAIT
        | code::MWAIT_CONDITIONAL
        | code::XSETBV => Exit::Refused,
        code::WBINVD | code::INVD => Exit::CacheFlush,
        code::INVALID => Exit::InvalidState,
        other => Exit::Unexpected(other),
    }
}

/// The length of the instruction behind an exit that completes it
/// (CPUID, HLT, RDMSR/WRMSR, WBINVD/INVD), as their encodings have it
/// without prefixes.
pub fn instruction_length(exit: Exit) -> u64 {
    match exit {
        Exit::Hlt => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_io_is_decoded_from_exitinfo1() {
        // `in al, 0x80`: IN, 8 bits, port 0x80.
        let e = decode(code::IOIO, 0x80 << 16 | 1 << 4 | 1, 0x1234);
        assert_eq!(
            e,
            Exit::Io {
                port: 0x80,
                size: 1,
                input: true,
                string: false,
                next_rip: 0x1234
            }
        );
        // `out dx, eax` to 0x3f8, `rep outsw` to 0xe9.
        assert!(matches!(
            decode(code::IOIO, 0x3f8 << 16 | 1 << 6, 0),
            Exit::Io {
                port: 0x3f8,
                size: 4,
                input: false,
                ..
            }
        ));
        assert!(matches!(
            decode(code::IOIO, 0xe9 << 16 | 1 << 5 | 1 << 3 | 1 << 2, 0),
            Exit::Io {
                port: 0xe9,
                size: 2,
                string: true,
                ..
            }
        ));
    }

    #[test]
    fn svm_instructions_and_unknown_codes_never_run_in_the_guest() {
        for c in [
            code::VMRUN,
            code::VMMCALL,
            code::VMLOAD,
            code::SKINIT,
            code::XSETBV,
        ] {
            assert_eq!(decode(c, 0, 0), Exit::Refused);
        }
        assert_eq!(decode(code::INVALID, 0, 0), Exit::InvalidState);
        assert_eq!(decode(0x4242, 0, 0), Exit::Unexpected(0x4242));
        assert_eq!(decode(code::MSR, 1, 0), Exit::Msr { write: true });
        assert_eq!(decode(code::MSR, 0, 0), Exit::Msr { write: false });
        assert_eq!(decode(code::WBINVD, 0, 0), Exit::CacheFlush);
        assert_eq!(instruction_length(Exit::CacheFlush), 2);
    }

    #[test]
    fn a_nested_page_fault_names_the_guest_physical_address() {
        assert_eq!(
            decode(code::NPF, 0b10, 0xfee0_0000),
            Exit::NestedPageFault {
                gpa: 0xfee0_0000,
                write: true,
                fetch: false
            }
        );
    }
}

/// Exits of one HVM vCPU since it was created, by what they were (debug
/// key `x`, `bench linux`): where a guest's time goes under a hypervisor
/// is mostly in how often it leaves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitCounts([u32; KINDS]);

const KINDS: usize = 12;
/// What each count is, in order.
pub const KIND_NAMES: [&str; KINDS] = [
    "host-interrupt",
    "interrupt-window",
    "cpuid",
    "hlt",
    "io",
    "mmio",
    "ram-first-touch",
    "msr-eoi",
    "msr-timer",
    "msr-ipi",
    "msr-other",
    "other",
];

impl ExitCounts {
    /// Counts exit `e`; `msr` is the MSR an MSR exit named.
    pub fn note(&mut self, e: &Exit, msr: u32) {
        let kind = match e {
            Exit::HostInterrupt => 0,
            Exit::InterruptWindow => 1,
            Exit::Cpuid => 2,
            Exit::Hlt => 3,
            Exit::Io { .. } => 4,
            // Device memory, or its RAM touched for the first time (below
            // the MMIO window: `domain::guest_ram`).
            Exit::NestedPageFault { gpa, .. } if *gpa >= ipc_abi::hvm::MMIO_BASE => 5,
            Exit::NestedPageFault { .. } => 6,
            // x2APIC EOI, TSC-deadline timer, interrupt command register.
            Exit::Msr { .. } if msr == 0x80b => 7,
            Exit::Msr { .. } if msr == 0x6e0 || msr == 0x838 => 8,
            Exit::Msr { .. } if msr == 0x830 => 9,
            Exit::Msr { .. } => 10,
            _ => 11,
        };
        self.0[kind] = self.0[kind].saturating_add(1);
    }

    /// Each kind's name and count, in [`KIND_NAMES`]' order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u32)> + '_ {
        KIND_NAMES.iter().copied().zip(self.0.iter().copied())
    }
}

#[cfg(test)]
mod count_tests {
    use super::*;

    #[test]
    fn exits_are_counted_by_kind_and_msr() {
        let mut c = ExitCounts::default();
        c.note(&Exit::Msr { write: true }, 0x80b);
        c.note(&Exit::Msr { write: true }, 0x80b);
        c.note(&Exit::Msr { write: true }, 0x6e0);
        c.note(&Exit::Msr { write: false }, 0x1b);
        c.note(&Exit::Hlt, 0);
        c.note(&Exit::Shutdown, 0);
        c.note(&decode(code::NPF, 0, 0x1000), 0);
        c.note(&decode(code::NPF, 0, ipc_abi::hvm::MMIO_BASE), 0);
        let count = |name: &str| c.iter().find(|(n, _)| *n == name).map(|(_, v)| v);
        assert_eq!(count("hlt"), Some(1));
        assert_eq!(count("msr-eoi"), Some(2));
        assert_eq!(count("msr-timer"), Some(1));
        assert_eq!(count("msr-other"), Some(1));
        assert_eq!(count("other"), Some(1));
        assert_eq!(count("ram-first-touch"), Some(1));
        assert_eq!(count("mmio"), Some(1));
        assert_eq!(c.iter().map(|(_, v)| v).sum::<u32>(), 8);
    }
}
