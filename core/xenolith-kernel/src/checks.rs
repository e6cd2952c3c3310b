//! The argument checks of the hypercall boundary, as pure functions.
//!
//! Owns: the rules that turn raw register values into something the kernel
//! may act on — user address ranges, domain-id staleness, copy bounds, I/O
//! port and device-memory ranges. Pure, so property tests on the host can
//! throw arbitrary values at them.

use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;
use ipc_abi::layout::{PAGE_SIZE, USER_LIMIT};

/// Largest single copy a hypercall may ask for (bounds the time spent).
pub const MAX_COPY: u64 = 64 << 20;

/// `[va, va + len)` lies in the user half and is not absurdly long.
pub fn user_range(va: u64, len: u64) -> Result<(), Error> {
    let end = va.checked_add(len).ok_or(Error::BadAddress)?;
    if end > USER_LIMIT || len > MAX_COPY {
        return Err(Error::BadAddress);
    }
    Ok(())
}

/// Whether `id` names the domain in a slot whose generation is
/// `slot_generation` and which holds `live` (if anything).
pub fn domain_id(id: DomainId, slot_generation: u16, live: Option<DomainId>) -> Result<(), Error> {
    match live {
        Some(l) if l == id => Ok(()),
        _ if id.generation() != 0 && id.generation() <= slot_generation => Err(Error::DeadDomain),
        _ => Err(Error::NoSuchDomain),
    }
}

/// The generation a slot's next domain gets, or none once they are used up:
/// a wrapped generation would make a stale id name a new domain (a grant or
/// event port held by id would reach it), so a slot reused 65,535 times is
/// retired (128 slots give about 8 million creations).
pub fn next_generation(current: u16) -> Option<u16> {
    current.checked_add(1)
}

/// `[offset, offset + len)` fits in one page.
pub fn within_page(offset: u64, len: u64) -> Result<(), Error> {
    let end = offset.checked_add(len).ok_or(Error::InvalidArgument)?;
    if end > PAGE_SIZE {
        return Err(Error::InvalidArgument);
    }
    Ok(())
}

/// The PCI configuration ports: the kernel's alone (`domain/pci.rs` mediates).
const PCI_CONFIG_PORTS: core::ops::Range<u64> = 0xcf8..0xd00;

/// I/O ports no domain is ever given: what the kernel drives or what could
/// take the machine (interrupt controllers, timers, NMI mask, resets).
const KERNEL_PORTS: &[core::ops::Range<u64>] = &[
    0x20..0x22,       // master PIC
    0x40..0x44,       // PIT (the watchdog's NMI source)
    0x60..0x61,       // keyboard controller data
    0x61..0x62,       // PIT gate, NMI status
    0x64..0x65,       // keyboard controller command (0xfe resets the machine)
    0x70..0x72,       // CMOS/RTC index (bit 7 masks NMIs) and data
    0x92..0x93,       // system control port A (fast reset)
    0xa0..0xa2,       // slave PIC
    0x4d0..0x4d2,     // edge/level control of the PICs
    PCI_CONFIG_PORTS, // PCI configuration (0xcf9 resets the machine)
];

/// A non-empty range of I/O ports, never one of [`KERNEL_PORTS`].
pub fn io_ports(first: u64, count: u64) -> Result<(u16, u16), Error> {
    if count == 0 || first > 0xffff || first.saturating_add(count) > 0x1_0000 {
        return Err(Error::InvalidArgument);
    }
    if KERNEL_PORTS
        .iter()
        .any(|r| first < r.end && first + count > r.start)
    {
        return Err(Error::PermissionDenied);
    }
    Ok((first as u16, count as u16))
}

/// Physical addresses no domain is ever given as device memory: I/O
/// APICs, HPET, TPM, the local APICs and the firmware flash, all of
/// `0xfec0_0000..4 GiB` by the PC's convention.
const KERNEL_DEVICE_MEMORY: core::ops::Range<u64> = 0xfec0_0000..0x1_0000_0000;

/// Whether `[start, end)` touches [`KERNEL_DEVICE_MEMORY`].
pub fn kernel_device_memory(start: u64, end: u64) -> bool {
    start < KERNEL_DEVICE_MEMORY.end && end > KERNEL_DEVICE_MEMORY.start
}

/// A non-empty, page-aligned physical range below 4 PiB: `(start, end)`.
pub fn device_range(phys: u64, pages: u64) -> Result<(u64, u64), Error> {
    let len = pages.checked_mul(PAGE_SIZE).ok_or(Error::InvalidArgument)?;
    let end = phys.checked_add(len).ok_or(Error::InvalidArgument)?;
    if pages == 0 || !phys.is_multiple_of(PAGE_SIZE) || end > 1 << 52 {
        return Err(Error::InvalidArgument);
    }
    Ok((phys, end))
}

/// The `rflags` bits a restored vCPU may bring: carry, parity, adjust,
/// zero, sign, direction and overflow. Never the trap flag, interrupt
/// flag, I/O privilege level or anything else that is the kernel's.
pub const USER_RFLAGS: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800;

/// What of a saved `rflags` value a restored vCPU keeps.
pub fn user_rflags(saved: u64) -> u64 {
    saved & USER_RFLAGS
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn accepted_user_ranges_stay_in_the_user_half(va: u64, len: u64) {
            if user_range(va, len).is_ok() {
                prop_assert!(va + len <= USER_LIMIT);
                prop_assert!(len <= MAX_COPY);
            }
        }

        #[test]
        fn kernel_addresses_are_never_user_ranges(va in USER_LIMIT.., len: u64) {
            prop_assert_eq!(user_range(va, len), Err(Error::BadAddress));
        }

        #[test]
        fn only_the_live_id_is_accepted(id: u32, generation: u16, live: Option<u32>) {
            let id = DomainId(id);
            let live = live.map(DomainId);
            match domain_id(id, generation, live) {
                Ok(()) => prop_assert_eq!(Some(id), live),
                Err(Error::DeadDomain) => prop_assert!(id.generation() != 0 && id.generation() <= generation),
                Err(e) => prop_assert_eq!(e, Error::NoSuchDomain),
            }
        }

        #[test]
        fn a_stale_generation_is_dead_not_missing(index: u16, current in 2u16.., stale_back in 1u16..) {
            let live = DomainId::new(index, current);
            let stale = DomainId::new(index, current.saturating_sub(stale_back).max(1));
            prop_assume!(stale != live);
            prop_assert_eq!(domain_id(stale, current, Some(live)), Err(Error::DeadDomain));
        }

        #[test]
        fn copies_stay_within_a_page(offset: u64, len: u64) {
            if within_page(offset, len).is_ok() {
                prop_assert!(offset + len <= PAGE_SIZE);
            }
        }

        #[test]
        fn port_ranges_stay_within_64k(first: u64, count: u64) {
            if let Ok((f, c)) = io_ports(first, count) {
                prop_assert!(c > 0 && f as u32 + c as u32 <= 0x1_0000);
                let (f, end) = (u64::from(f), u64::from(f) + u64::from(c));
                for r in KERNEL_PORTS {
                    prop_assert!(end <= r.start || f >= r.end);
                }
            }
        }

        #[test]
        fn restored_rflags_never_carry_privilege(saved: u64) {
            let kept = user_rflags(saved);
            // TF (8), IF (9), IOPL (12-13), NT (14), RF (16), VM (17), AC (18) and up: never.
            prop_assert_eq!(kept & (0x100 | 0x200 | 0x3000 | 0x4000 | !0xfff), 0);
        }

        #[test]
        fn the_interrupt_controllers_and_reset_ports_are_never_given(port in prop::sample::select(
            &[0x20u64, 0x21, 0x40, 0x43, 0x61, 0x64, 0x70, 0x71, 0x92, 0xa0, 0x4d1, 0xcf9][..]
        ), before in 0u64..16, after in 1u64..16) {
            let first = port.saturating_sub(before);
            prop_assert_eq!(io_ports(first, before + after), Err(Error::PermissionDenied));
        }

        #[test]
        fn a_slot_is_retired_rather_than_its_generation_wrapped(current: u16) {
            match next_generation(current) {
                Some(next) => prop_assert!(next > current),
                None => prop_assert_eq!(current, u16::MAX),
            }
        }

        #[test]
        fn device_ranges_are_aligned_and_bounded(phys: u64, pages: u64) {
            if let Ok((s, e)) = device_range(phys, pages) {
                prop_assert!(s % PAGE_SIZE == 0 && e > s && e <= 1 << 52);
            }
        }
    }
}
