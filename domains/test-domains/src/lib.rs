//! Helpers shared by the test domains (each domain is a binary in `src/bin/`).

#![no_std]
#![deny(unsafe_code)]

pub mod faults;

/// Value of `key=` in this domain's command line.
pub use domain_runtime::option;

/// Whether the command line holds the bare word `word`.
pub fn flag(word: &str) -> bool {
    domain_runtime::command_line()
        .split_whitespace()
        .any(|w| w == word)
}

/// A numeric option.
pub fn number(key: &str) -> Option<u64> {
    option(key)?.parse().ok()
}

/// A domain id option (`peer=`, `self=`...), as the raw id the toolstack printed.
pub fn domain(key: &str) -> Option<domain_runtime::DomainId> {
    number(key).map(|n| domain_runtime::DomainId(n as u32))
}

/// Prints when service resumed after each backend restart, as
/// `bench restart` reads it: `resumed at (us, busy tsc): 41234/1234567 ...`.
pub struct Resumed<'a>(pub &'a [(u64, u64)]);

impl core::fmt::Display for Resumed<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("resumed at (us, busy tsc):")?;
        for (ns, busy) in self.0 {
            write!(f, " {}/{}", ns / 1000, busy)?;
        }
        Ok(())
    }
}
