//! Domain configuration files: the one parser, shared by the host
//! `toolstack` command (which checks before sending) and the toolstack
//! domain (which checks again).
//!
//! Owns: the `xl.cfg`-like syntax (`key = value` lines, `#` comments, strings
//! in quotes, lists in `[ ]`, numbers) in [`syntax`], and the typed
//! [`DomainConfig`] with its checks in [`config`]. Errors name the file, the
//! line and the key; unknown keys are warnings; a configuration with an error
//! yields no `DomainConfig` at all, so nothing is created from it.
//!
//! A GRUB module line is a second front end of the same checks
//! ([`module_line`]): the same keys, the same values.
//!
//! `no_std` with `alloc`, so the toolstack domain links it too.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod config;
pub mod module_line;
pub mod syntax;

pub use config::{parse, DomainConfig, Kind, OnEvent, Parsed, Role};
pub use syntax::{ConfigError, Value};
