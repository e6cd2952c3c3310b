//! A virtio device's interrupts by MSI-X: the kernel binds table entry 0
//! of the function to an event port (it alone writes the table), and the
//! device is told to signal every queue on that entry and nothing for
//! configuration changes (virtio 1.x, 4.1.4.3 and 4.1.5.1.2).
//!
//! Owns: finding the virtio common configuration (the vendor capability
//! of type 1) and its MSI-X vector registers.

use domain_runtime::hypercall as hc;

/// PCI capability: vendor-specific (virtio's), and its common-config type.
const CAP_VENDOR: u32 = 0x09;
const VIRTIO_COMMON_CFG: u32 = 1;
/// Common configuration offsets (virtio 1.x, 4.1.4.3).
const MSIX_CONFIG: usize = 0x10;
const QUEUE_SELECT: usize = 0x16;
const QUEUE_MSIX_VECTOR: usize = 0x1a;
/// The vector meaning "none".
const NO_VECTOR: u16 = 0xffff;

/// Where function `bdf`'s virtio common configuration is mapped.
fn common_config(bdf: u16) -> Option<u64> {
    let read = |o: u32| hc::pci_config_read(bdf, o as u8).ok();
    let mut at = read(0x34)? & 0xfc;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let head = read(at)?;
        if head & 0xff == CAP_VENDOR && (head >> 24) & 0xff == VIRTIO_COMMON_CFG {
            let bar = read(at + 4)? & 0xff;
            let offset = read(at + 8)?;
            let base = hc::pci_bar(bdf, bar as u8).ok()?;
            return Some(base + u64::from(offset));
        }
        at = (head >> 8) & 0xfc;
    }
    None
}

/// Interrupts of function `bdf`'s `queues` by MSI-X: the port they raise,
/// or None (no MSI-X, or the device did not take the vector: then it
/// interrupts by nothing, and its driver polls).
pub fn bind(bdf: u16, queues: &[u16]) -> Option<u16> {
    let common = common_config(bdf)?;
    let port = hc::event_bind_msix(bdf, 0).ok()?;
    crate::pci::write16(common + MSIX_CONFIG as u64, NO_VECTOR);
    for &q in queues {
        crate::pci::write16(common + QUEUE_SELECT as u64, q);
        crate::pci::write16(common + QUEUE_MSIX_VECTOR as u64, 0);
        if crate::pci::read16(common + QUEUE_MSIX_VECTOR as u64) != 0 {
            let _ = hc::event_close(port);
            return None;
        }
    }
    Some(port)
}
