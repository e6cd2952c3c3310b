//! What CPUID answers an HVM guest: the host's answers, minus what the
//! guest must not use or cannot have, plus the hypervisor's own leaves.
//!
//! Owns: the CPUID policy. Hidden: SVM and VMX (no nesting), XSAVE and AVX
//! (the kernel saves x87/SSE state only), MONITOR/MWAIT, MTRRs, machine
//! checks, performance counters, RDTSCP and RDPID, PCID/INVPCID, 5-level paging and
//! everything the kernel has not thought about (leaf 7 passes only bits
//! it names). Shown: the hypervisor bit, x2APIC, the APIC id of the vCPU,
//! Xenolith's signature at 0x4000_0000 and KVM's at 0x4000_0100 (where
//! Linux looks for its paravirtual clock). Pure: host-tested.

use ipc_abi::hvm::{CPUID_BASE, CPUID_KVM_BASE, CPUID_KVM_SIGNATURE, CPUID_SIGNATURE};

/// EAX, EBX, ECX, EDX.
pub type Regs = [u32; 4];

/// The vCPU asking and what the guest was given.
#[derive(Clone, Copy, Debug)]
pub struct Asker {
    pub vcpu: u32,
    pub vcpus: u32,
    /// KVM paravirtual feature bits offered in leaf 0x4000_0101 EAX.
    pub kvm_features: u32,
}

/// Highest basic leaf shown.
const MAX_BASIC: u32 = 0x7;
/// Highest extended leaf shown (0x8000_000A, SVM's, is hidden).
const MAX_EXTENDED: u32 = 0x8000_0008;

// Leaf 1 ECX.
const SSE3: u32 = 1 << 0;
const PCLMULQDQ: u32 = 1 << 1;
const SSSE3: u32 = 1 << 9;
const FMA: u32 = 1 << 12;
const CX16: u32 = 1 << 13;
const SSE41: u32 = 1 << 19;
const SSE42: u32 = 1 << 20;
const X2APIC: u32 = 1 << 21;
const MOVBE: u32 = 1 << 22;
const POPCNT: u32 = 1 << 23;
const TSC_DEADLINE: u32 = 1 << 24;
const AES: u32 = 1 << 25;
const RDRAND: u32 = 1 << 30;
const HYPERVISOR: u32 = 1 << 31;
const LEAF1_ECX: u32 =
    SSE3 | PCLMULQDQ | SSSE3 | CX16 | SSE41 | SSE42 | MOVBE | POPCNT | AES | RDRAND;
// (FMA needs AVX's state: hidden with it.)
const _: () = assert!(LEAF1_ECX & FMA == 0);

// Leaf 1 EDX: FPU VME DE PSE TSC MSR PAE CX8 APIC SEP PGE CMOV PAT PSE36
// CLFSH MMX FXSR SSE SSE2 (not MCE, MTRR, MCA, ACPI, TM, PBE, HTT unless SMP).
const LEAF1_EDX: u32 = 1
    | 1 << 1
    | 1 << 2
    | 1 << 3
    | 1 << 4
    | 1 << 5
    | 1 << 6
    | 1 << 8
    | 1 << 9
    | 1 << 11
    | 1 << 13
    | 1 << 15
    | 1 << 16
    | 1 << 17
    | 1 << 19
    | 1 << 23
    | 1 << 24
    | 1 << 25
    | 1 << 26;
const HTT: u32 = 1 << 28;

// Leaf 7 EBX: FSGSBASE BMI1 SMEP BMI2 ERMS ADX SMAP CLFLUSHOPT CLWB SHA.
const LEAF7_EBX: u32 =
    1 | 1 << 3 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 19 | 1 << 20 | 1 << 23 | 1 << 24 | 1 << 29;
// Leaf 7 ECX: UMIP. (Not RDPID: like RDTSCP it reads TSC_AUX, which the
// kernel neither switches per vCPU nor lets a guest write; Linux writes it
// on every CPU it brings up when either is shown, and its secondary CPUs
// died of the #GP, as QEMU 10's `-cpu max` and any recent AMD CPU show.)
const LEAF7_ECX: u32 = 1 << 2;
const RDPID: u32 = 1 << 22;
const _: () = assert!(LEAF7_ECX & RDPID == 0);

// 0x8000_0001 ECX: LAHF CMP_LEGACY ABM SSE4A MISALIGNSSE 3DNOWPREFETCH.
const EXT1_ECX: u32 = 1 | 1 << 1 | 1 << 5 | 1 << 6 | 1 << 7 | 1 << 8;
// 0x8000_0001 EDX: SYSCALL NX MMXEXT FFXSR PDPE1GB LM, and the leaf-1 bits AMD repeats.
const EXT1_EDX: u32 =
    LEAF1_EDX & 0x0183_f3ff | 1 << 11 | 1 << 20 | 1 << 22 | 1 << 25 | 1 << 26 | 1 << 29;
const SVM: u32 = 1 << 2;
const RDTSCP: u32 = 1 << 27;
const _: () = assert!(EXT1_ECX & SVM == 0 && EXT1_EDX & RDTSCP == 0);

fn signature(sig: &[u8; 12]) -> [u32; 3] {
    let w = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
    [w(0), w(4), w(8)]
}

/// The guest's answer to CPUID `leaf`/`subleaf`, from the host's (`host`).
pub fn answer(leaf: u32, subleaf: u32, who: Asker, host: impl Fn(u32, u32) -> Regs) -> Regs {
    match leaf {
        0 => {
            let [max, b, c, d] = host(0, 0);
            [max.min(MAX_BASIC), b, c, d]
        }
        1 => {
            let [a, b, c, d] = host(1, 0);
            // EBX: the initial APIC id (31:24), logical CPUs (23:16), CLFLUSH size (15:8).
            let b = who.vcpu << 24 | (who.vcpus & 0xff) << 16 | (b & 0xff00);
            let c = (c & LEAF1_ECX) | X2APIC | TSC_DEADLINE | HYPERVISOR;
            let d = (d & LEAF1_EDX) | if who.vcpus > 1 { HTT } else { 0 };
            [a, b, c, d]
        }
        7 if subleaf == 0 => {
            let [_, b, c, _] = host(7, 0);
            [0, b & LEAF7_EBX, c & LEAF7_ECX, 0]
        }
        CPUID_BASE => {
            let [b, c, d] = signature(CPUID_SIGNATURE);
            [CPUID_BASE + 1, b, c, d]
        }
        CPUID_KVM_BASE => {
            let [b, c, d] = signature(CPUID_KVM_SIGNATURE);
            [CPUID_KVM_BASE + 1, b, c, d]
        }
        l if l == CPUID_KVM_BASE + 1 => [who.kvm_features, 0, 0, 0],
        0x8000_0000 => {
            let [max, b, c, d] = host(0x8000_0000, 0);
            [max.min(MAX_EXTENDED), b, c, d]
        }
        0x8000_0001 => {
            let [a, b, c, d] = host(0x8000_0001, 0);
            [a, b, c & EXT1_ECX, d & EXT1_EDX]
        }
        // The brand string and the cache descriptions.
        0x8000_0002..=0x8000_0006 => host(leaf, subleaf),
        // Invariant TSC (the guest's clock comes from it).
        0x8000_0007 => [0, 0, 0, 1 << 8],
        0x8000_0008 => {
            let [a, _, _, _] = host(0x8000_0008, 0);
            // Address sizes; ECX: the vCPUs as cores of one package.
            [a & 0xffff, 0, who.vcpus.saturating_sub(1) & 0xff, 0]
        }
        _ => [0; 4],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that sets every bit of every leaf (max leaves included).
    fn everything(_: u32, _: u32) -> Regs {
        [u32::MAX; 4]
    }

    const ONE: Asker = Asker {
        vcpu: 1,
        vcpus: 2,
        kvm_features: 0,
    };

    #[test]
    fn svm_vmx_xsave_and_avx_are_hidden_whatever_the_host_has() {
        let [_, _, c, _] = answer(1, 0, ONE, everything);
        for (bit, name) in [
            (5, "VMX"),
            (26, "XSAVE"),
            (27, "OSXSAVE"),
            (28, "AVX"),
            (3, "MONITOR"),
        ] {
            assert_eq!(c & (1 << bit), 0, "{name} shown");
        }
        let [_, _, c, d] = answer(0x8000_0001, 0, ONE, everything);
        assert_eq!(c & SVM, 0);
        assert_eq!(d & RDTSCP, 0);
        let [_, b, c, _] = answer(7, 0, ONE, everything);
        assert_eq!(b & (1 << 5), 0, "AVX2 shown");
        assert_eq!(c & RDPID, 0, "RDPID shown (Linux then writes TSC_AUX)");
        assert_eq!(answer(0x8000_000A, 0, ONE, everything), [0; 4]);
        assert_eq!(answer(0xD, 0, ONE, everything), [0; 4]);
    }

    #[test]
    fn the_hypervisor_bit_x2apic_and_the_vcpus_apic_id_are_shown() {
        let [_, b, c, d] = answer(1, 0, ONE, |_, _| [0; 4]);
        assert_eq!(b >> 24, 1);
        assert_eq!((b >> 16) & 0xff, 2);
        assert!(c & HYPERVISOR != 0 && c & X2APIC != 0 && c & TSC_DEADLINE != 0);
        assert!(d & HTT != 0);
        assert_eq!(answer(0, 0, ONE, everything)[0], MAX_BASIC);
        assert_eq!(answer(0x8000_0000, 0, ONE, everything)[0], MAX_EXTENDED);
    }

    #[test]
    fn xenolith_and_kvm_signatures_are_where_linux_looks() {
        let [max, b, c, d] = answer(0x4000_0000, 0, ONE, everything);
        assert_eq!(max, 0x4000_0001);
        let mut s = [0u8; 12];
        s[..4].copy_from_slice(&b.to_le_bytes());
        s[4..8].copy_from_slice(&c.to_le_bytes());
        s[8..].copy_from_slice(&d.to_le_bytes());
        assert_eq!(&s, b"XenolithHVM\0");
        let [max, b, _, _] = answer(0x4000_0100, 0, ONE, everything);
        assert_eq!(max, 0x4000_0101);
        assert_eq!(&b.to_le_bytes(), b"KVMK");
        let with_clock = Asker {
            kvm_features: 1 << 3,
            ..ONE
        };
        assert_eq!(answer(0x4000_0101, 0, with_clock, everything)[0], 1 << 3);
    }
}
