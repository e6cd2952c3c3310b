//! The virtio-net NIC, driven with `virtio-drivers`'s `VirtIONetRaw`.
//!
//! Owns: the NIC's receive and transmit buffers (in the DMA window, each
//! lent to the device while a request holds it), its INTx line, and the
//! only `unsafe` of drvdom-net: the non-blocking `virtio-drivers` calls,
//! whose contract is that a lent buffer is left alone until the device
//! hands it back.

#![allow(unsafe_code)]

use crate::hal::{dma_buffer, XenolithHal};
use crate::transport::{wrap, DriverTransport, Gate};
use domain_runtime::hypercall as hc;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;

/// Descriptors per queue.
const QUEUE: usize = 64;
/// Buffers posted for receiving, and kept for transmitting.
const RX_BUFFERS: usize = 32;
const TX_BUFFERS: usize = 32;
/// Bytes of each buffer: the virtio-net header and a whole frame.
const BUFFER: usize = 2048;

/// One buffer and the device's token for it while lent.
struct Slot {
    buf: &'static mut [u8],
    token: Option<u16>,
    /// Bytes lent (a transmit lends only the frame's).
    len: usize,
}

/// The NIC.
pub struct Nic<T: Transport> {
    dev: VirtIONetRaw<XenolithHal, DriverTransport<T>, QUEUE>,
    /// Holds the device's notifications for a round of work ([`Nic::hold`]).
    gate: Gate<T>,
    rx: heapless::Vec<Slot, RX_BUFFERS>,
    tx: heapless::Vec<Slot, TX_BUFFERS>,
    irq: Option<u16>,
    /// Its interrupts come by MSI-X (not INTx).
    pub msix: bool,
    /// The transmit buffer [`Nic::frame_room`] gave (index, header bytes).
    room: Option<(usize, usize)>,
    /// Bit `i`: transmit buffer `i` is free (not lent to the device).
    tx_free: u32,
    /// The transmit buffer lent with each token (a descriptor's index, so
    /// below `QUEUE`): finding a finished send's buffer costs no search.
    tx_of_token: [u8; QUEUE],
}

const _: () = assert!(TX_BUFFERS <= 32 && TX_BUFFERS <= u8::MAX as usize);

impl<T: Transport> Nic<T> {
    /// Starts the NIC, posts its receive buffers, and takes its interrupts
    /// by MSI-X when function `msix` has it, else by INTx line `line` if given.
    pub fn new(transport: T, msix: Option<u16>, line: Option<u8>) -> Result<Nic<T>, &'static str> {
        let (transport, gate) = wrap(transport);
        let dev = VirtIONetRaw::new(transport).map_err(|e| {
            domain_runtime::println!("drvdom-net: virtio-net: {:?}", e);
            "the virtio-net device did not start"
        })?;
        let mut nic = Nic {
            dev,
            gate,
            rx: heapless::Vec::new(),
            tx: heapless::Vec::new(),
            irq: None,
            msix: false,
            room: None,
            tx_free: 0,
            tx_of_token: [0; QUEUE],
        };
        let pool =
            dma_buffer(BUFFER * (RX_BUFFERS + TX_BUFFERS)).ok_or("no DMA memory for frames")?;
        let mut chunks = pool.chunks_exact_mut(BUFFER);
        for _ in 0..RX_BUFFERS {
            let buf = chunks.next().ok_or("no DMA memory for frames")?;
            // SAFETY: `buf` is a DMA-window buffer this NIC owns for ever and
            // leaves alone until `poll_receive` returns its token.
            let token =
                unsafe { nic.dev.receive_begin(buf) }.map_err(|_| "cannot post receive buffers")?;
            let len = buf.len();
            let _ = nic.rx.push(Slot {
                buf,
                token: Some(token),
                len,
            });
        }
        for buf in chunks.take(TX_BUFFERS) {
            if nic
                .tx
                .push(Slot {
                    buf,
                    token: None,
                    len: 0,
                })
                .is_ok()
            {
                nic.tx_free |= 1 << (nic.tx.len() - 1);
            }
        }
        nic.irq = msix
            .and_then(|bdf| crate::msix::bind(bdf, &[0, 1]))
            .inspect(|_| nic.msix = true)
            .or_else(|| line.and_then(|l| hc::event_bind_pirq(l).ok()));
        if nic.irq.is_some() {
            nic.dev.enable_interrupts();
        }
        Ok(nic)
    }

    /// The NIC's own MAC (the switch does not use it; printed at start).
    pub fn mac(&self) -> [u8; 6] {
        self.dev.mac_address()
    }

    /// Frames sent and receive buffers posted from now on reach the
    /// device together at [`Nic::release`]: one notification a queue for
    /// the batch, not one a frame.
    pub fn hold(&mut self) {
        self.gate.hold();
    }

    /// Tells the device of everything since [`Nic::hold`]; later sends go
    /// at once again. Before the driver waits for the device.
    pub fn release(&mut self) {
        self.gate.release();
    }

    /// Whether received frames and finished sends are signalled by interrupt.
    pub fn interrupts(&self) -> bool {
        self.irq.is_some()
    }

    /// Lowers and unmasks the interrupt line before the caller looks at the
    /// queues (so anything that arrives after the look raises it again).
    /// An MSI-X message is an edge with no line or status to reset: then
    /// nothing (no read of the device's ISR, no hypercall a round).
    pub fn rearm(&mut self) {
        if let (Some(port), false) = (self.irq, self.msix) {
            self.dev.ack_interrupt();
            let _ = hc::pirq_ack(port);
        }
    }

    /// Hands every received frame to `each`, then posts its buffer again;
    /// at most `limit` frames. Returns how many.
    pub fn receive(&mut self, limit: usize, mut each: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < limit {
            let Some(token) = self.dev.poll_receive() else {
                break;
            };
            let Some(slot) = self.rx.iter_mut().find(|s| s.token == Some(token)) else {
                break;
            };
            // SAFETY: the same buffer `receive_begin` lent with this token,
            // and the device says it is done with it.
            let got = unsafe { self.dev.receive_complete(token, slot.buf) };
            slot.token = None;
            if let Ok((header, len)) = got {
                if let Some(frame) = slot.buf.get(header..header + len) {
                    each(frame);
                }
            }
            // SAFETY: as in `new`: the buffer is ours, left alone until returned.
            slot.token = unsafe { self.dev.receive_begin(slot.buf) }.ok();
            n += 1;
        }
        n
    }

    /// Takes back transmit buffers the device has finished with.
    fn reclaim(&mut self) {
        while let Some(token) = self.dev.poll_transmit() {
            let i = self
                .tx_of_token
                .get(usize::from(token))
                .map_or(usize::MAX, |&i| usize::from(i));
            let Some(slot) = self.tx.get_mut(i).filter(|s| s.token == Some(token)) else {
                break;
            };
            // SAFETY: the same buffer `transmit_begin` lent with this token.
            let _ = unsafe { self.dev.transmit_complete(token, &slot.buf[..slot.len]) };
            slot.token = None;
            self.tx_free |= 1 << i;
        }
    }

    /// Whether the device has sent every frame it was given (every
    /// transmit buffer is free again).
    pub fn sent_all(&mut self) -> bool {
        self.reclaim();
        self.tx_free.count_ones() as usize == self.tx.len()
    }

    /// Queues `frame` for sending; false if no buffer is free (the frame is dropped).
    pub fn send(&mut self, frame: &[u8]) -> bool {
        let Some(room) = self.frame_room() else {
            return false;
        };
        let Some(room) = room.get_mut(..frame.len()) else {
            return false;
        };
        room.copy_from_slice(frame);
        self.send_room(frame.len())
    }

    /// A free transmit buffer's frame area (after the virtio-net header),
    /// for a frame to be written in place and sent by [`Nic::send_room`]:
    /// one copy fewer than [`Nic::send`]. None if every buffer is lent.
    pub fn frame_room(&mut self) -> Option<&mut [u8]> {
        self.reclaim();
        if self.tx_free == 0 {
            return None;
        }
        let i = self.tx_free.trailing_zeros() as usize;
        let header = self.dev.fill_buffer_header(self.tx[i].buf).ok()?;
        self.room = Some((i, header));
        self.tx[i].buf.get_mut(header..)
    }

    /// Sends the first `len` bytes of the room [`Nic::frame_room`] gave
    /// last; false if there was none or `len` does not fit.
    pub fn send_room(&mut self, len: usize) -> bool {
        let Some((i, header)) = self.room.take() else {
            return false;
        };
        let slot = &mut self.tx[i];
        let len = header + len;
        if slot.token.is_some() || len > slot.buf.len() {
            return false;
        }
        slot.len = len;
        // SAFETY: the buffer is ours and free; it is left alone until
        // `reclaim` gets its token back.
        slot.token = unsafe { self.dev.transmit_begin(&slot.buf[..len]) }.ok();
        let Some(token) = slot.token else {
            return false;
        };
        self.tx_free &= !(1 << i);
        if let Some(t) = self.tx_of_token.get_mut(usize::from(token)) {
            *t = i as u8;
        }
        true
    }
}
