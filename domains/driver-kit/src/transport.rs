//! The virtio transport our drivers hand to `virtio-drivers`: the PCI
//! transport with what a driver domain adds to it.
//!
//! Owns two things. Accepting `VIRTIO_F_ACCESS_PLATFORM` when the device
//! offers it: a device behind the IOMMU (QEMU's `iommu_platform=on`)
//! refuses a driver that does not, because its addresses are then device
//! addresses, not physical ones; ours always are the kernel's (`DmaPhys`),
//! so accepting it is true whether or not an IOMMU is on (`virtio-drivers`'
//! own drivers do not know the bit).
//!
//! And holding notifications: `virtio-drivers` notifies the device for
//! every buffer it adds unless the device said to skip it; under QEMU each
//! notification is a trap to the emulator (about 20 µs of TCG wall time
//! for the NIC's transmit queue), and one per frame was a quarter of a
//! save's time over the network. While its [`Gate`] holds, the transport
//! remembers which queues asked; [`Gate::release`] notifies each once. A
//! driver holds for one round of work and releases before it waits, so the
//! device never waits on a notification that was never sent.

extern crate alloc;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

struct Shared<T> {
    inner: RefCell<T>,
    held: Cell<bool>,
    /// Queues (bit N for queue N < 64) that asked to notify while held.
    pending: Cell<u64>,
}

/// Feature bit 33 (virtio 1.x, 6 "Reserved Feature Bits").
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// `T`, accepting `ACCESS_PLATFORM` whenever the device offers it, whose
/// notifications wait while its [`Gate`] holds them.
pub struct DriverTransport<T>(Rc<Shared<T>>);

/// Holds and releases the notifications of a [`DriverTransport`].
pub struct Gate<T>(Rc<Shared<T>>);

/// Wraps `transport`; the gate starts open (notifications go at once).
pub fn wrap<T>(transport: T) -> (DriverTransport<T>, Gate<T>) {
    let shared = Rc::new(Shared {
        inner: RefCell::new(transport),
        held: Cell::new(false),
        pending: Cell::new(0),
    });
    (DriverTransport(shared.clone()), Gate(shared))
}

impl<T: Transport> Gate<T> {
    /// Notifications wait from now on until [`Gate::release`].
    pub fn hold(&self) {
        self.0.held.set(true);
    }

    /// Sends each notification that waited, once per queue, and lets
    /// later ones go at once.
    pub fn release(&self) {
        self.0.held.set(false);
        let mut pending = self.0.pending.replace(0);
        while pending != 0 {
            let queue = pending.trailing_zeros() as u16;
            pending &= pending - 1;
            self.0.inner.borrow_mut().notify(queue);
        }
    }
}

impl<T: Transport> Transport for DriverTransport<T> {
    fn device_type(&self) -> DeviceType {
        self.0.inner.borrow().device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.0.inner.borrow_mut().read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.0
            .inner
            .borrow_mut()
            .write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.inner.borrow_mut().max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        if self.0.held.get() && queue < 64 {
            self.0.pending.set(self.0.pending.get() | 1 << queue);
        } else {
            self.0.inner.borrow_mut().notify(queue)
        }
    }

    fn get_status(&self) -> DeviceStatus {
        self.0.inner.borrow().get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.0.inner.borrow_mut().set_status(status)
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0
            .inner
            .borrow_mut()
            .set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.0.inner.borrow().requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0
            .inner
            .borrow_mut()
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.0.inner.borrow_mut().queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.inner.borrow_mut().queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> bool {
        self.0.inner.borrow_mut().ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.0.inner.borrow().read_config_generation()
    }

    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V> {
        self.0.inner.borrow().read_config_space(offset)
    }

    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<()> {
        self.0.inner.borrow_mut().write_config_space(offset, value)
    }
}
