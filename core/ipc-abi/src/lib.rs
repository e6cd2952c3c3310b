//! The one definition of every interface between the Xenolith kernel, its
//! driver domains, guests and the toolstack.
//!
//! Owns: hypercall numbers, argument registers and typed error codes
//! ([`hypercall`]); domain ids and lifecycle records ([`domain`]); the domain
//! virtual memory layout ([`layout`]); the pages the kernel shares with every
//! domain ([`shared`]); the shared-memory ring ([`ring`]) and the protocols
//! carried on rings: console, block, network and control ([`proto`]); the
//! layout of kernel trace reads ([`trace`]); what an HVM guest sees ([`hvm`]); the save file ([`save`]); the management
//! protocol's network form ([`mgmt_net`]); the
//! serial ports everyone agrees on ([`pc`]); how a message's byte strings are
//! written ([`byte_field`]); the words a domain finds on its
//! command line ([`launch`]).
//!
//! Everything here is `#[repr(C)]` or a plain integer with compile-time size
//! checks, so the ABI can be checked from another language.

#![no_std]
#![forbid(unsafe_code)]

pub mod byte_field;
pub mod domain;
pub mod hvm;
pub mod hypercall;
pub mod launch;
pub mod layout;
pub mod mgmt;
pub mod mgmt_net;
mod numbered;
pub mod pc;
pub mod proto;
pub mod ring;
pub mod ring_view;
pub mod save;
pub mod shared;
pub mod trace;
