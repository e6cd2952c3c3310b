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
//! ignores `virtio-drivers`' notifications; [`Gate::release`] decides for
//! each queue once, by the virtio rule, whether the device must hear of
//! what was added. A driver holds for one round of work and releases
//! before it waits, so the device never waits on a notification that was
//! never sent.
//!
//! The decision is this module's, not `virtio-drivers`': that crate (0.11)
//! reads whether the device wants a notification (`avail_event`, or the
//! used ring's flags) right after storing the available index, with no
//! full fence between. x86 lets that load pass the store: the device, going
//! to sleep, publishes the index it waits for and reads the old available
//! index, the driver reads the old `avail_event`, and neither acts; the
//! device then waits for ever on buffers it was given (found by reading;
//! docs/reliability.md). Here the index is read back after a `SeqCst`
//! fence, as Linux's `virtqueue_kick_prepare` does.

extern crate alloc;
use alloc::rc::Rc;
use core::cell::{Cell, RefCell};
use core::sync::atomic::{fence, Ordering};
use virtio_drivers::transport::{DeviceStatus, DeviceType, Transport};
use virtio_drivers::{PhysAddr, Result};
use zerocopy::{FromBytes, Immutable, IntoBytes};

struct Shared<T> {
    inner: RefCell<T>,
    held: Cell<bool>,
    /// Each queue's rings as the driver set them (queues below `QUEUES`).
    rings: RefCell<[Option<Rings>; QUEUES]>,
    /// `VIRTIO_F_EVENT_IDX` was negotiated: `avail_event` decides.
    event_idx: Cell<bool>,
}

/// Queues whose notifications a [`Gate`] decides (the NIC has two).
const QUEUES: usize = 8;
/// Feature bit 29 (virtio 1.x, 6).
const EVENT_IDX: u64 = 1 << 29;
/// `used.flags`: the device asks not to be notified.
const USED_NO_NOTIFY: u16 = 1;

/// Where one queue's rings are, for the device's wishes.
#[derive(Clone, Copy)]
struct Rings {
    /// The available ring (driver area) and used ring (device area), as
    /// DMA addresses of this domain's window.
    avail: u64,
    used: u64,
    size: u16,
    /// The available index at the last decision.
    decided: u16,
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
        rings: RefCell::new([None; QUEUES]),
        event_idx: Cell::new(false),
    });
    (DriverTransport(shared.clone()), Gate(shared))
}

impl<T: Transport> Gate<T> {
    /// Notifications wait from now on until [`Gate::release`].
    pub fn hold(&self) {
        self.0.held.set(true);
    }

    /// Notifies each queue whose new buffers the device must hear of, and
    /// lets later notifications go at once.
    pub fn release(&self) {
        self.0.held.set(false);
        // The available indexes stored before the device's wishes are read.
        fence(Ordering::SeqCst);
        let mut rings = self.0.rings.borrow_mut();
        for (queue, r) in rings.iter_mut().enumerate() {
            let Some(r) = r else { continue };
            // A ring this domain cannot read (never so far): notified.
            let Some(published) = crate::hal::read_shared_u16(r.avail + 2) else {
                self.0.inner.borrow_mut().notify(queue as u16);
                continue;
            };
            if published == r.decided {
                continue;
            }
            let wanted = if self.0.event_idx.get() {
                let event = 4 + 8 * u64::from(r.size);
                crate::hal::read_shared_u16(r.used + event)
                    .is_none_or(|e| needs_event(e, published, r.decided))
            } else {
                crate::hal::read_shared_u16(r.used).is_none_or(|f| f & USED_NO_NOTIFY == 0)
            };
            r.decided = published;
            if wanted {
                self.0.inner.borrow_mut().notify(queue as u16);
            }
        }
    }
}

/// The virtio rule (2.7.10): the device asked to hear when the available
/// index passes `event`; it moved from `old` to `new` since the last
/// decision.
fn needs_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

impl<T: Transport> Transport for DriverTransport<T> {
    fn device_type(&self) -> DeviceType {
        self.0.inner.borrow().device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.0.inner.borrow_mut().read_device_features()
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.event_idx.set(driver_features & EVENT_IDX != 0);
        self.0
            .inner
            .borrow_mut()
            .write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.inner.borrow_mut().max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        // Held: [`Gate::release`] decides (see the module's doc).
        if !self.0.held.get() || usize::from(queue) >= QUEUES {
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
        if let Some(r) = self.0.rings.borrow_mut().get_mut(usize::from(queue)) {
            *r = Some(Rings {
                avail: driver_area as u64,
                used: device_area as u64,
                size: size as u16,
                decided: 0,
            });
        }
        self.0
            .inner
            .borrow_mut()
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        if let Some(r) = self.0.rings.borrow_mut().get_mut(usize::from(queue)) {
            *r = None;
        }
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

#[cfg(test)]
mod tests {
    use super::needs_event;

    #[test]
    fn the_device_hears_of_buffers_past_the_index_it_waits_for() {
        // The device waits for entry 5 (it saw 0..5); the driver adds 5, 6.
        assert!(needs_event(5, 7, 5));
        // It waits for entry 9: buffers 5 and 6 do not concern it yet.
        assert!(!needs_event(9, 7, 5));
        // Nothing new since the last decision: never.
        assert!(!needs_event(4, 5, 5));
        // Across the index's wrap.
        assert!(needs_event(0xffff, 1, 0xfffe));
        assert!(!needs_event(3, 1, 0xfffe));
    }
}
