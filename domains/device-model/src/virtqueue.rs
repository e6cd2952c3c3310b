//! A split virtqueue (virtio 1.x, 2.7) as a device sees it: the
//! descriptor table, the driver's (available) ring and the device's (used)
//! ring, all in guest memory the guest may change at any moment.
//!
//! Owns: taking the next request's descriptor chain (checked: indices
//! inside the queue, no loops, no indirect tables, which this device does
//! not offer) and returning it used. Each descriptor is copied out of
//! guest memory once, so what is checked is what is used. A queue the
//! guest broke is reported ([`Broken`]); the device stops serving it until
//! the guest resets the device. Pure over [`Memory`]: host-tested.

extern crate alloc;
use crate::guest_memory::{Memory, OutsideGuest};
use alloc::vec::Vec;
use core::sync::atomic::{fence, Ordering};

/// Descriptor flags.
const NEXT: u16 = 1;
const WRITE: u16 = 2;
const INDIRECT: u16 = 4;
/// The largest queue this device offers.
pub const MAX_SIZE: u16 = 128;
/// VIRTIO_RING_F_EVENT_IDX: the driver says after which used entry it
/// wants an interrupt (`used_event`), the device after which available
/// entry it wants a notification (`avail_event`).
pub const EVENT_IDX: u64 = 1 << 29;

/// One buffer of a request: guest-physical address and length, and
/// whether the device writes it (else reads it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    pub addr: u64,
    pub len: u32,
    pub device_writes: bool,
}

/// A request: the head descriptor's index and its buffers in order.
#[derive(Debug)]
pub struct Chain {
    pub head: u16,
    pub buffers: Vec<Buffer>,
}

/// Why a queue cannot be served any more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    /// A ring or descriptor lies outside the guest's memory.
    Outside,
    /// An index beyond the queue, a chain longer than the queue (a loop),
    /// an indirect table, or more requests published than the queue holds.
    Malformed,
}

impl From<OutsideGuest> for Broken {
    fn from(_: OutsideGuest) -> Broken {
        Broken::Outside
    }
}

/// One queue's registers (as the driver set them) and the device's place in it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Queue {
    pub size: u16,
    pub enabled: bool,
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// EVENT_IDX was negotiated.
    pub event_idx: bool,
    /// The next available entry to take, and the next used entry to fill.
    next_avail: u16,
    next_used: u16,
}

fn u16_at(mem: &mut impl Memory, gpa: u64) -> Result<u16, Broken> {
    let mut b = [0u8; 2];
    mem.read(gpa, &mut b)?;
    Ok(u16::from_le_bytes(b))
}

impl Queue {
    /// A queue of `size` entries, not yet enabled.
    pub fn new(size: u16) -> Queue {
        Queue {
            size,
            ..Queue::default()
        }
    }

    /// The next request the driver made available, if any.
    pub fn pop(&mut self, mem: &mut impl Memory) -> Result<Option<Chain>, Broken> {
        if !self.enabled || self.size == 0 {
            return Ok(None);
        }
        let published = u16_at(mem, self.avail + 2)?;
        let waiting = published.wrapping_sub(self.next_avail);
        if waiting == 0 {
            if self.event_idx {
                // Notify me of the next one; then look again, in case it
                // came before the driver could see this.
                let avail_event = self.used + 4 + 8 * u64::from(self.size);
                mem.write(avail_event, &self.next_avail.to_le_bytes())?;
                fence(Ordering::SeqCst);
                if u16_at(mem, self.avail + 2)? != self.next_avail {
                    return self.pop(mem);
                }
            }
            return Ok(None);
        }
        if waiting > self.size {
            return Err(Broken::Malformed);
        }
        // The entries were written before the index that published them.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = u16_at(mem, self.avail + 4 + 2 * slot)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        let mut buffers = Vec::new();
        let mut index = head;
        loop {
            if index >= self.size || buffers.len() >= usize::from(self.size) {
                return Err(Broken::Malformed);
            }
            let mut d = [0u8; 16];
            mem.read(self.desc + 16 * u64::from(index), &mut d)?;
            let addr = u64::from_le_bytes(d[0..8].try_into().expect("8 bytes"));
            let len = u32::from_le_bytes(d[8..12].try_into().expect("4 bytes"));
            let flags = u16::from_le_bytes([d[12], d[13]]);
            let next = u16::from_le_bytes([d[14], d[15]]);
            if flags & INDIRECT != 0 {
                return Err(Broken::Malformed);
            }
            buffers.push(Buffer {
                addr,
                len,
                device_writes: flags & WRITE != 0,
            });
            if flags & NEXT == 0 {
                break;
            }
            index = next;
        }
        Ok(Some(Chain { head, buffers }))
    }

    /// The used index now (give it to [`Queue::wants_interrupt`] after
    /// returning more).
    pub fn used_index(&self) -> u16 {
        self.next_used
    }

    /// Whether the driver wants an interrupt for the entries used since the
    /// used index was `before`: with EVENT_IDX, if they passed its
    /// `used_event`; else unless it set VRING_AVAIL_F_NO_INTERRUPT (while
    /// it polls; before it clears the flag it looks at the used ring
    /// again, so nothing is missed).
    pub fn wants_interrupt(&self, mem: &mut impl Memory, before: u16) -> bool {
        if self.next_used == before {
            return false;
        }
        // The used index just written is visible before the driver's
        // `used_event` (or flags) is read: the driver writes those, then
        // reads the used index. Without a full fence each side may see the
        // other's old value (x86 lets a load pass an earlier store), and
        // no interrupt comes while the driver waits for one: Linux's
        // transmit queue stalled so ("TX timeout") in one `bench linux`
        // run in five on two CPUs. QEMU's `virtio_should_notify` has the
        // same barrier.
        fence(Ordering::SeqCst);
        // A ring that cannot be read is reported by the next pop.
        if self.event_idx {
            let at = self.avail + 4 + 2 * u64::from(self.size);
            return u16_at(mem, at).map_or(true, |event| {
                self.next_used.wrapping_sub(event).wrapping_sub(1)
                    < self.next_used.wrapping_sub(before)
            });
        }
        u16_at(mem, self.avail).map_or(true, |flags| flags & 1 == 0)
    }

    /// Returns request `head` to the driver, `written` bytes of it written.
    pub fn push(&mut self, mem: &mut impl Memory, head: u16, written: u32) -> Result<(), Broken> {
        if self.size == 0 {
            return Err(Broken::Malformed);
        }
        let slot = u64::from(self.next_used % self.size);
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        entry[4..].copy_from_slice(&written.to_le_bytes());
        mem.write(self.used + 4 + 8 * slot, &entry)?;
        // The entry is visible before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write(self.used + 2, &self.next_used.to_le_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// Guest memory as a plain buffer from address 0.
    pub struct Flat(pub Vec<u8>);

    impl Memory for Flat {
        fn read(&mut self, gpa: u64, buf: &mut [u8]) -> Result<(), OutsideGuest> {
            let at = usize::try_from(gpa).map_err(|_| OutsideGuest)?;
            let src = self.0.get(at..at + buf.len()).ok_or(OutsideGuest)?;
            buf.copy_from_slice(src);
            Ok(())
        }
        fn write(&mut self, gpa: u64, buf: &[u8]) -> Result<(), OutsideGuest> {
            let at = usize::try_from(gpa).map_err(|_| OutsideGuest)?;
            self.0
                .get_mut(at..at + buf.len())
                .ok_or(OutsideGuest)?
                .copy_from_slice(buf);
            Ok(())
        }
    }

    pub const DESC: u64 = 0x1000;
    pub const AVAIL: u64 = 0x2000;
    pub const USED: u64 = 0x3000;

    pub fn queue() -> (Queue, Flat) {
        let mut q = Queue::new(8);
        q.desc = DESC;
        q.avail = AVAIL;
        q.used = USED;
        q.enabled = true;
        (q, Flat(alloc::vec![0; 0x10000]))
    }

    pub fn put_desc(m: &mut Flat, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = (DESC + 16 * u64::from(i)) as usize;
        m.0[at..at + 8].copy_from_slice(&addr.to_le_bytes());
        m.0[at + 8..at + 12].copy_from_slice(&len.to_le_bytes());
        m.0[at + 12..at + 14].copy_from_slice(&flags.to_le_bytes());
        m.0[at + 14..at + 16].copy_from_slice(&next.to_le_bytes());
    }

    /// Makes `head` available as entry `n` (publishing n + 1 entries).
    pub fn publish(m: &mut Flat, n: u16, head: u16) {
        let at = (AVAIL + 4 + 2 * u64::from(n % 8)) as usize;
        m.0[at..at + 2].copy_from_slice(&head.to_le_bytes());
        let idx = (AVAIL + 2) as usize;
        m.0[idx..idx + 2].copy_from_slice(&(n + 1).to_le_bytes());
    }

    #[test]
    fn a_chain_is_taken_in_order_and_returned_used() {
        let (mut q, mut m) = queue();
        put_desc(&mut m, 3, 0x5000, 16, NEXT, 5);
        put_desc(&mut m, 5, 0x6000, 4096, NEXT | WRITE, 1);
        put_desc(&mut m, 1, 0x7000, 1, WRITE, 0);
        publish(&mut m, 0, 3);
        let c = q.pop(&mut m).unwrap().unwrap();
        assert_eq!(c.head, 3);
        assert_eq!(
            c.buffers
                .iter()
                .map(|b| (b.addr, b.device_writes))
                .collect::<Vec<_>>(),
            [(0x5000, false), (0x6000, true), (0x7000, true)]
        );
        assert!(q.pop(&mut m).unwrap().is_none(), "one request only");
        q.push(&mut m, 3, 4097).unwrap();
        let used = USED as usize;
        assert_eq!(u16::from_le_bytes([m.0[used + 2], m.0[used + 3]]), 1);
        assert_eq!(m.0[used + 4], 3);
        assert_eq!(
            u32::from_le_bytes(m.0[used + 8..used + 12].try_into().unwrap()),
            4097
        );
    }

    #[test]
    fn loops_bad_indices_indirect_tables_and_overfull_rings_are_refused() {
        let (mut q, mut m) = queue();
        put_desc(&mut m, 0, 0x5000, 16, NEXT, 1);
        put_desc(&mut m, 1, 0x5000, 16, NEXT, 0);
        publish(&mut m, 0, 0);
        assert_eq!(q.pop(&mut m).unwrap_err(), Broken::Malformed, "a loop");

        let (mut q, mut m) = queue();
        put_desc(&mut m, 0, 0x5000, 16, NEXT, 200);
        publish(&mut m, 0, 0);
        assert_eq!(q.pop(&mut m).unwrap_err(), Broken::Malformed, "next");

        let (mut q, mut m) = queue();
        publish(&mut m, 0, 9);
        assert_eq!(q.pop(&mut m).unwrap_err(), Broken::Malformed, "head");

        let (mut q, mut m) = queue();
        put_desc(&mut m, 0, 0x5000, 16, INDIRECT, 0);
        publish(&mut m, 0, 0);
        assert_eq!(q.pop(&mut m).unwrap_err(), Broken::Malformed, "indirect");

        let (mut q, mut m) = queue();
        publish(&mut m, 20, 0);
        assert_eq!(q.pop(&mut m).unwrap_err(), Broken::Malformed, "21 > 8");

        let (mut q, mut m) = queue();
        q.desc = 1 << 40;
        put_desc(&mut m, 0, 0x5000, 16, 0, 0);
        publish(&mut m, 0, 0);
        assert_eq!(q.pop(&mut m).unwrap_err(), Broken::Outside, "table outside");
    }

    #[test]
    fn a_driver_that_polls_is_not_interrupted() {
        let (mut q, mut m) = queue();
        assert!(!q.wants_interrupt(&mut m, 0), "nothing used");
        q.push(&mut m, 0, 0).unwrap();
        assert!(q.wants_interrupt(&mut m, 0));
        m.0[AVAIL as usize] = 1;
        assert!(!q.wants_interrupt(&mut m, 0));
    }

    #[test]
    fn with_event_idx_the_driver_is_interrupted_once_its_used_event_is_passed() {
        let (mut q, mut m) = queue();
        q.event_idx = true;
        // used_event (after the 8 ring entries) = 2: interrupt when entry 2 is used.
        let at = (AVAIL + 4 + 16) as usize;
        m.0[at..at + 2].copy_from_slice(&2u16.to_le_bytes());
        q.push(&mut m, 0, 0).unwrap();
        q.push(&mut m, 1, 0).unwrap();
        assert!(!q.wants_interrupt(&mut m, 0), "entries 0 and 1");
        q.push(&mut m, 2, 0).unwrap();
        assert!(q.wants_interrupt(&mut m, 2), "entry 2");
        // With nothing available, the device asks to be told of the next one.
        assert!(q.pop(&mut m).unwrap().is_none());
        let avail_event = (USED + 4 + 64) as usize;
        assert_eq!(
            u16::from_le_bytes([m.0[avail_event], m.0[avail_event + 1]]),
            0
        );
    }

    #[test]
    fn a_queue_not_enabled_has_nothing() {
        let (mut q, mut m) = queue();
        q.enabled = false;
        publish(&mut m, 0, 0);
        assert!(q.pop(&mut m).unwrap().is_none());
    }
}
