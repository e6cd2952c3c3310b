//! Domain 0's logic, as a library so test control domains can reuse it.

#![no_std]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod broker;
pub mod bundle;
pub mod control;
pub mod hotplug;
pub mod hvm;
pub mod linux;
pub mod mgmt;
pub mod ops;
pub mod save;
pub mod shell;
pub mod start;
pub mod supervise;
pub mod table;
pub mod viewer;
pub mod watch;
