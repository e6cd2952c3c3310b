//! What the example guests share (pure, host-tested): the key-value
//! store's on-disk log (`kvlog`) and the web guest's HTTP (`web`).

#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

pub mod kvlog;
pub mod web;

pub use kvlog::*;
