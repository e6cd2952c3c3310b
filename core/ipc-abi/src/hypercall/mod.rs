//! Hypercalls: the numbers, the register convention and the error codes.
//!
//! A domain calls the kernel with `syscall`:
//!
//! | register | in | out |
//! |---|---|---|
//! | `rax` | hypercall number ([`Hypercall`]) | 0, or an [`Error`] code |
//! | `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9` | arguments 0–5 | `rdx`: the result value |
//!
//! `rcx` and `r11` are clobbered (the `syscall` instruction uses them); every
//! other register is preserved. The reference for each call (arguments,
//! errors, who may call it) is `docs/hypercalls.md`.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

mod calls;
pub use calls::{args, Args, Hypercall, Register};

/// Longest kernel log line, in bytes (what `ConsoleRead` returns).
pub const LOG_LINE_MAX: usize = 160;
/// A `ConsoleRead` buffer: the longest line and its terminating zero.
pub const LOG_LINE_BUF: usize = LOG_LINE_MAX + 1;
/// Most bytes one `ConsoleWrite` takes.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// Most pages one `DomainPageRead` with `skip_fresh` passes over before
/// it answers (so the kernel lock is not held for a whole domain's scan).
pub const PAGE_READ_SCAN: u64 = 1024;
/// `DomainPageRead`'s answer: bit 0, the domain may write the page; bit
/// 1, no page was copied and the address is where to go on from.
pub const PAGE_READ_WRITABLE: u64 = 1;
pub const PAGE_READ_GO_ON: u64 = 2;

/// Most copies one `GrantCopyBatch` takes (a frame of
/// `proto::net::MAX_FRAME_SLOTS` pages fits, twice over).
pub const GRANT_COPY_BATCH: usize = 8;

/// One end of a [`GrantCopyOp`]: a page granted to the caller, or the
/// caller's own memory.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct CopyEnd {
    /// The granting domain, or [`CopyEnd::LOCAL`].
    pub granter: u32,
    pub gref: u32,
    /// The offset in the granted page, or the caller's address.
    pub at: u64,
}

impl CopyEnd {
    /// `granter` of an end in the caller's own memory (`DomainId::SELF`).
    pub const LOCAL: u32 = crate::domain::DomainId::SELF.0;

    /// The caller's memory at `va`.
    pub fn local(va: u64) -> CopyEnd {
        CopyEnd {
            granter: CopyEnd::LOCAL,
            gref: 0,
            at: va,
        }
    }

    /// `offset` bytes into page `gref` that `granter` granted the caller.
    pub fn granted(granter: u32, gref: u32, offset: u64) -> CopyEnd {
        CopyEnd {
            granter,
            gref,
            at: offset,
        }
    }
}

/// One copy of a `GrantCopyBatch`, as Xen's `gnttab_copy`: `len` bytes
/// from one end to the other, at least one of them a granted page (the
/// copy stays within it); the destination page must be granted writable.
/// Between two granted pages the bytes go from page to page, never
/// through the caller.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct GrantCopyOp {
    pub from: CopyEnd,
    pub to: CopyEnd,
    pub len: u32,
    pub _reserved: u32,
}

const _: () = assert!(core::mem::size_of::<GrantCopyOp>() == 40);

/// Number of hypercall slots (numbers at or above are invalid).
pub const HYPERCALL_LIMIT: u64 = 81;

/// What `DomainDestroy` did.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destroyed {
    /// The domain is gone, with everything it held.
    Gone = 0,
    /// Another CPU still runs it; that CPU frees it as it leaves.
    Dying = 1,
}

crate::numbered! {
/// Why a hypercall failed. `rax` carries the code; 0 means success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error: u64 {
    /// No such hypercall.
    UnknownCall = 1,
    /// A pointer or length does not describe memory the caller may use that way.
    BadAddress = 2,
    /// An argument is out of range or malformed.
    InvalidArgument = 3,
    /// The domain id names a domain that has died (stale generation).
    DeadDomain = 4,
    /// No domain has that id.
    NoSuchDomain = 5,
    /// The caller lacks the right (control, I/O) for this call.
    PermissionDenied = 6,
    /// Not enough free memory or table space.
    OutOfResources = 7,
    /// The port number is not an open port of the caller.
    BadPort = 8,
    /// The port exists but is not in a state that allows this (e.g. not unbound for the caller).
    PortState = 9,
    /// The grant ref is not a live grant to the caller (or of the caller).
    BadGrant = 10,
    /// The grant is still mapped.
    GrantInUse = 11,
    /// Another live domain has that name.
    NameTaken = 12,
    /// The ELF image is not acceptable; see the console for the reason.
    BadImage = 13,
    /// The domain is not in a state that allows this (e.g. unpause of a crashed domain).
    DomainState = 14,
    /// The window slot is in use, or empty for an unmap.
    SlotState = 15,
    /// Nothing to read yet.
    Empty = 16,
    /// The device already belongs to another domain.
    DeviceTaken = 17,
    /// The facility is switched off (tracing with `tbuf_size=0`).
    Disabled = 18,
}
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::UnknownCall => "no such hypercall",
            Error::BadAddress => "bad address",
            Error::InvalidArgument => "invalid argument",
            Error::DeadDomain => "dead domain",
            Error::NoSuchDomain => "no such domain",
            Error::PermissionDenied => "permission denied",
            Error::OutOfResources => "out of resources",
            Error::BadPort => "bad event port",
            Error::PortState => "event port in the wrong state",
            Error::BadGrant => "bad grant reference",
            Error::GrantInUse => "grant still mapped",
            Error::NameTaken => "name taken",
            Error::BadImage => "bad ELF image",
            Error::DomainState => "domain in the wrong state",
            Error::SlotState => "window slot in the wrong state",
            Error::Empty => "nothing to read",
            Error::DeviceTaken => "device already given to another domain",
            Error::Disabled => "switched off",
        };
        f.write_str(s)
    }
}

/// The result of a hypercall.
pub type Result<T> = core::result::Result<T, Error>;

/// Decodes the `(rax, rdx)` pair a hypercall returns.
pub fn decode(rax: u64, rdx: u64) -> Result<u64> {
    if rax == 0 {
        Ok(rdx)
    } else {
        Err(Error::from_number(rax).unwrap_or(Error::UnknownCall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..HYPERCALL_LIMIT + 10 {
            if let Some(h) = Hypercall::from_number(n) {
                assert_eq!(h as u64, n);
            }
        }
        assert_eq!(Hypercall::from_number(u64::MAX), None);
    }

    #[test]
    fn the_limit_is_one_past_the_last_hypercall() {
        // The fuzzer and the hostile guest try every number below it (it
        // stood at 64 while the HVM calls 64–68 were added, and they were
        // never tried).
        assert!(Hypercall::from_number(HYPERCALL_LIMIT - 1).is_some());
        assert!(
            (HYPERCALL_LIMIT..HYPERCALL_LIMIT + 64).all(|n| Hypercall::from_number(n).is_none())
        );
    }

    #[test]
    fn error_codes_round_trip() {
        for code in 1..=18 {
            let e = Error::from_number(code).unwrap();
            assert_eq!(e as u64, code);
            assert_eq!(decode(code, 7), Err(e));
        }
        assert_eq!(decode(0, 7), Ok(7));
        assert_eq!(decode(999, 0), Err(Error::UnknownCall));
    }
}
