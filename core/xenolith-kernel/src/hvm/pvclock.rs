//! The paravirtual clock Linux finds through KVM's interface (kvm-clock):
//! the guest names a page of its memory with an MSR, and the kernel fills
//! it with what turns the TSC into nanoseconds, so the guest needs no
//! calibration loop against a timer that costs an exit per read.
//!
//! Owns: the MSR numbers and feature bits, the scale (a multiplier and a
//! shift, as `pvclock_vcpu_time_info` has them), and the bytes of the time
//! record and of the wall clock. Pure: host-tested; the kernel writes the
//! bytes into the guest (`handle.rs`).

/// MSR_KVM_WALL_CLOCK_NEW: the guest-physical address of the wall clock.
pub const WALL_CLOCK: u32 = 0x4b56_4d00;
/// MSR_KVM_SYSTEM_TIME_NEW: the address of the vCPU's time record, bit 0 enabling it.
pub const SYSTEM_TIME: u32 = 0x4b56_4d01;
/// CPUID 0x4000_0101 EAX: KVM_FEATURE_CLOCKSOURCE2 and the stable bit.
pub const FEATURES: u32 = 1 << 3 | 1 << 24;
/// `flags`: the TSC is the same on every vCPU (PVCLOCK_TSC_STABLE_BIT).
const TSC_STABLE: u8 = 1;

/// `(mul, shift)` with `ns = ((tsc_delta << shift or >> -shift) * mul) >> 32`.
pub fn scale(tsc_hz: u64) -> (u32, i8) {
    const NS: u128 = 1_000_000_000;
    let hz = tsc_hz.max(1) as u128;
    // The smallest shift that keeps the multiplier below 2^32.
    for shift in -8i8..=31 {
        let ticks = if shift >= 0 {
            hz << shift
        } else {
            hz >> -shift
        };
        if ticks == 0 {
            continue;
        }
        let mul = (NS << 32) / ticks;
        if mul < 1 << 32 {
            return (mul as u32, shift);
        }
    }
    (u32::MAX, 31)
}

/// Nanoseconds for `delta` TSC ticks by `scale` (what the guest computes;
/// the tests check the scale with it).
#[cfg(test)]
pub fn to_ns(delta: u64, (mul, shift): (u32, i8)) -> u64 {
    let d = if shift >= 0 {
        (delta as u128) << shift
    } else {
        (delta as u128) >> -shift
    };
    ((d * mul as u128) >> 32) as u64
}

/// The 32 bytes of a `pvclock_vcpu_time_info`: at `tsc` the guest's clock
/// read `ns`. `version` must be even (the record is whole).
pub fn time_record(version: u32, tsc: u64, ns: u64, tsc_hz: u64) -> [u8; 32] {
    let (mul, shift) = scale(tsc_hz);
    let mut r = [0u8; 32];
    r[0..4].copy_from_slice(&version.to_le_bytes());
    r[8..16].copy_from_slice(&tsc.to_le_bytes());
    r[16..24].copy_from_slice(&ns.to_le_bytes());
    r[24..28].copy_from_slice(&mul.to_le_bytes());
    r[28] = shift as u8;
    r[29] = TSC_STABLE;
    r
}

/// The 12 bytes of a `pvclock_wall_clock`: the wall time when the guest's
/// clock read 0 (`sec`, `nsec`).
pub fn wall_clock(version: u32, sec: u32, nsec: u32) -> [u8; 12] {
    let mut r = [0u8; 12];
    r[0..4].copy_from_slice(&version.to_le_bytes());
    r[4..8].copy_from_slice(&sec.to_le_bytes());
    r[8..12].copy_from_slice(&nsec.to_le_bytes());
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_of_ticks_is_a_second_within_a_nanosecond_per_million() {
        for hz in [
            1_000_000u64,
            999_999_937,
            1_000_000_000,
            2_400_000_000,
            3_999_999_999,
            7_000_000_000,
        ] {
            let s = scale(hz);
            let ns = to_ns(hz, s);
            assert!(
                ns.abs_diff(1_000_000_000) <= 1_000,
                "{hz} Hz: {ns} ns with {s:?}"
            );
            assert_eq!(to_ns(0, s), 0);
        }
    }

    #[test]
    fn the_record_has_the_layout_linux_reads() {
        let r = time_record(2, 0x1122, 0x3344, 1_000_000_000);
        assert_eq!(&r[0..4], &2u32.to_le_bytes());
        assert_eq!(&r[8..16], &0x1122u64.to_le_bytes());
        assert_eq!(&r[16..24], &0x3344u64.to_le_bytes());
        assert_eq!(r[29], TSC_STABLE);
        let (mul, shift) = scale(1_000_000_000);
        assert_eq!(u32::from_le_bytes(r[24..28].try_into().unwrap()), mul);
        assert_eq!(r[28] as i8, shift);
        assert_eq!(wall_clock(2, 7, 9)[4..8], 7u32.to_le_bytes());
    }
}
