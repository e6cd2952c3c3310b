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
