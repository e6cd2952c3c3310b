//! A virtio transport that accepts `VIRTIO_F_ACCESS_PLATFORM` when the
//! device offers it: a device behind the IOMMU (QEMU's `iommu_platform=on`)
//! refuses a driver that does not, because its addresses are then device
//! addresses, not physical ones. Ours always are the kernel's (`DmaPhys`),
//! so accepting it is true whether or not an IOMMU is on.
//!
//! Owns: that one feature bit; everything else goes to the inner
//! transport unchanged (`virtio-drivers`' own drivers do not know the bit).

use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// Feature bit 33 (virtio 1.x, 6 "Reserved Feature Bits").
pub const ACCESS_PLATFORM: u64 = 1 << 33;

/// `T`, accepting `ACCESS_PLATFORM` whenever the device offers it.
pub struct Platform<T>(pub T);

impl<T: Transport> Transport for Platform<T> {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        let offered = self.0.read_device_features() & ACCESS_PLATFORM;
        self.0.write_driver_features(driver_features | offered)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        self.0.notify(queue)
    }

    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.0.set_status(status)
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
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
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> bool {
        self.0.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }

    fn read_config_space<V: FromBytes + IntoBytes>(&self, offset: usize) -> Result<V> {
        self.0.read_config_space(offset)
    }

    fn write_config_space<V: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: V,
    ) -> Result<()> {
        self.0.write_config_space(offset, value)
    }
}
