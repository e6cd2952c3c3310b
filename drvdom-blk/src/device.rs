//! The disk, driven by interrupt: each request is handed to the device and
//! this domain blocks until the device's INTx line says it is done (other
//! domains run meanwhile), instead of `virtio-drivers` polling for it.
//!
//! Owns: binding the function's INTx line, issuing requests with
//! `virtio-drivers`'s non-blocking calls, and acknowledging the device and
//! the line. Without an interrupt it falls back to the polling calls.

#![allow(unsafe_code)]

use crate::hal::XenolithHal;
use domain_runtime::hypercall as hc;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::Transport;
use virtio_drivers::Result;

/// The virtio disk and, if bound, its interrupt's event port.
pub struct Device<T: Transport> {
    blk: VirtIOBlk<XenolithHal, T>,
    irq: Option<u16>,
}

impl<T: Transport> Device<T> {
    /// Wraps the disk; binds INTx line `line` (from configuration space) if it can.
    pub fn new(mut blk: VirtIOBlk<XenolithHal, T>, line: Option<u8>) -> Self {
        let irq = line.and_then(|l| hc::event_bind_pirq(l).ok());
        if irq.is_some() {
            blk.enable_interrupts();
        }
        Device { blk, irq }
    }

    /// Whether completions come by interrupt.
    pub fn interrupts(&self) -> bool {
        self.irq.is_some()
    }

    pub fn capacity(&self) -> u64 {
        self.blk.capacity()
    }

    pub fn readonly(&self) -> bool {
        self.blk.readonly()
    }

    pub fn flush(&mut self) -> Result {
        self.blk.flush()
    }

    /// Reads whole sectors from `sector` into `buf`.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result {
        let Some(port) = self.irq else {
            return self.blk.read_blocks(sector as usize, buf);
        };
        Self::rearm(&mut self.blk, port);
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        // SAFETY: `req`, `buf` and `resp` stay borrowed here, untouched, until
        // `complete_read_blocks` below returns them (we wait for the token).
        let token = unsafe {
            self.blk
                .read_blocks_nb(sector as usize, &mut req, buf, &mut resp)?
        };
        self.wait(token, port);
        // SAFETY: the same buffers as for `read_blocks_nb`, and the device is done with them.
        unsafe { self.blk.complete_read_blocks(token, &req, buf, &mut resp) }
    }

    /// Writes whole sectors of `buf` from `sector`; returns once the device completed it.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result {
        let Some(port) = self.irq else {
            return self.blk.write_blocks(sector as usize, buf);
        };
        Self::rearm(&mut self.blk, port);
        let mut req = BlkReq::default();
        let mut resp = BlkResp::default();
        // SAFETY: as in `read`: the buffers are left alone until completion.
        let token = unsafe {
            self.blk
                .write_blocks_nb(sector as usize, &mut req, buf, &mut resp)?
        };
        self.wait(token, port);
        // SAFETY: the same buffers as for `write_blocks_nb`, and the device is done with them.
        unsafe { self.blk.complete_write_blocks(token, &req, buf, &mut resp) }
    }

    /// Before a request: the device's interrupt status cleared and the line
    /// unmasked. A completion seen before its interrupt was taken leaves the
    /// line masked (the kernel masks it on delivery until acknowledged), and
    /// the main loop may have swallowed that pending event; without this the
    /// next request would wait for ever.
    fn rearm(blk: &mut VirtIOBlk<XenolithHal, T>, port: u16) {
        blk.ack_interrupt();
        let _ = hc::pirq_ack(port);
    }

    /// Blocks until the device has used `token`.
    fn wait(&mut self, token: u16, port: u16) {
        while self.blk.peek_used() != Some(token) {
            domain_runtime::events::wait(port);
            // The device's status first (lowers the line), then the line.
            self.blk.ack_interrupt();
            let _ = hc::pirq_ack(port);
        }
    }
}
