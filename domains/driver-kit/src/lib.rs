//! driver-kit: what every driver domain needs before it drives anything.
//!
//! A driver domain is given one PCI function (`pci=BB:DD.F`) and DMA pages
//! (`dma=KiB`) by the toolstack. This crate reaches the function only
//! through the kernel (`pci`), hands out the DMA pages (`dma`, `hal`), and
//! gives `virtio-drivers` the `Hal` it asks for, so `drvdom-blk` and
//! `drvdom-net` share one definition of each. It also holds the two pieces
//! of driver code that touch memory a device reads and writes: the split
//! virtqueue drvdom-blk drives its disk with (`virtqueue`) and the NIC's
//! lent buffers (`nic`). Every `unsafe` of a driver domain is here (in
//! `hal`, `pci`, `virtqueue`, `nic`); the drivers themselves forbid it.

#![cfg_attr(target_os = "none", no_std)]
#![deny(unsafe_code)]

pub mod dma;
pub mod hal;
pub mod msix;
pub mod nic;
pub mod pci;
pub mod transport;
pub mod virtqueue;

pub use hal::XenolithHal;
pub use pci::{open, Function};
