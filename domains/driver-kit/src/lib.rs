//! driver-kit: what every driver domain needs before it drives anything.
//!
//! A driver domain is given one PCI function (`pci=BB:DD.F`) and DMA pages
//! (`dma=KiB`) by the toolstack. This crate reaches the function only
//! through the kernel (`pci`), hands out the DMA pages (`dma`, `hal`), and
//! gives `virtio-drivers` the `Hal` it asks for, so `drvdom-blk` and
//! `drvdom-net` share one definition of each. All its `unsafe` is in `hal`.

#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_code)]

pub mod dma;
pub mod hal;
pub mod pci;

pub use hal::XenolithHal;
pub use pci::{open, Function};
