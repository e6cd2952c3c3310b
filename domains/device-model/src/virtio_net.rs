//! A virtio-net device (virtio 1.x, 5.1) whose interface is one of the
//! guest's `vif` entries, served by drvdom-net: this device model is an
//! ordinary network frontend of it (`domain_runtime::net::NetFront`), so
//! the broker's checks and drvdom-net's anti-spoofing (the frame's source
//! MAC must be the interface's) hold as for a Rust guest, and a restarted
//! drvdom-net is followed (frames in flight are lost, as on a wire; TCP
//! sends them again).
//!
//! Owns: moving frames between the guest's queues (receive 0, transmit 1;
//! each buffer starts with the 12-byte `virtio_net_hdr_v1`) and the
//! interface, each frame copied once, between the guest's buffers and the
//! interface's granted pages. A frame arrives only when the guest has a
//! receive buffer for it (until then it waits in drvdom-net's ring, which
//! drops what does not fit, as a NIC does).

use crate::guest_memory::{GuestMemory, Memory};
use crate::virtio_pci::{Identity, Slot, VirtioPci, VERSION_1};
use crate::virtqueue::{Broken, Chain, EVENT_IDX};
use domain_runtime::ipc_abi::proto::net::MAX_FRAME;
use domain_runtime::net::{NetFront, SendError};

/// VIRTIO_NET_F_MAC: the device gives the MAC.
const F_MAC: u64 = 1 << 5;
/// Bytes of `virtio_net_hdr_v1` before each frame.
const HEADER: usize = 12;
const RX: usize = 0;
const TX: usize = 1;

pub struct VirtioNet {
    pub net: NetFront,
    /// A receive buffer taken from the guest before a frame was there.
    held: Option<Chain>,
    /// A frame to send that found no free transmit page: tried again first.
    stalled: Option<Chain>,
    /// Frames refused because they named memory outside the guest, or
    /// were malformed.
    pub refused: u64,
}

impl VirtioNet {
    /// Connects guest interface `vif` to drvdom-net and describes it as a
    /// PCI function in `slot`.
    pub fn connect(vif: u32, slot: Slot) -> Result<(VirtioNet, VirtioPci), ()> {
        // A receive ring of 64 slots: drvdom-net hands over a burst from
        // the NIC while this domain waits for the CPU, and with one page's
        // 32 slots the rest was dropped (`no buffer`), which TCP pays for
        // with retransmission timeouts. (128 slots would take more grants
        // than a domain has, beside its disks.)
        let net = NetFront::connect_with_rx_ring(vif, 2).map_err(|_| ())?;
        let mut f = VirtioPci::new(
            Identity {
                device_type: 1,
                // Network controller, Ethernet.
                class: 0x02_00_00,
                features: VERSION_1 | EVENT_IDX | F_MAC,
                queues: 2,
            },
            slot,
        );
        f.config[..6].copy_from_slice(&net.mac());
        Ok((
            VirtioNet {
                net,
                held: None,
                stalled: None,
                refused: 0,
            },
            f,
        ))
    }

    /// The driver reset the device: buffers taken from its old queues are
    /// forgotten (never returned into the new ones).
    pub fn reset(&mut self) {
        self.held = None;
        self.stalled = None;
    }

    /// The event port drvdom-net signals.
    pub fn port(&self) -> u16 {
        self.net.port()
    }

    /// Follows a restarted drvdom-net, sends what the guest queued, and
    /// hands it what arrived; the queues whose interrupt the guest is to
    /// get (bit n: queue n was used and its driver did not ask not to be).
    pub fn serve(&mut self, f: &mut VirtioPci, mem: &mut GuestMemory) -> Result<u32, Broken> {
        // A given-up backend: frames go nowhere (sends fail below).
        let _ = self.net.follow_restart();
        if !f.ready() {
            return Ok(0);
        }
        let (tx_before, rx_before) = (f.queues[TX].used_index(), f.queues[RX].used_index());
        self.transmit(f, mem)?;
        self.receive(f, mem)?;
        let tx = f.queues[TX].wants_interrupt(mem, tx_before);
        let rx = f.queues[RX].wants_interrupt(mem, rx_before);
        Ok(u32::from(tx) << TX | u32::from(rx) << RX)
    }

    /// Sends what the guest queued, as one batch to drvdom-net (one
    /// notification and one wake-up of it, not one per frame).
    fn transmit(&mut self, f: &mut VirtioPci, mem: &mut GuestMemory) -> Result<(), Broken> {
        self.net.tx.hold();
        let sent = self.transmit_queued(f, mem);
        self.net.tx.flush();
        sent
    }

    fn transmit_queued(&mut self, f: &mut VirtioPci, mem: &mut GuestMemory) -> Result<(), Broken> {
        loop {
            let chain = match self.stalled.take() {
                Some(c) => c,
                None => match f.queues[TX].pop(mem)? {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            let total: usize = chain.buffers.iter().map(|b| b.len as usize).sum();
            let len = total.saturating_sub(HEADER);
            if chain.buffers.iter().any(|b| b.device_writes) || len > usize::from(MAX_FRAME) {
                self.refused += 1;
            } else {
                let mut outside = false;
                let sent = self.net.tx.send_with(len, |page| {
                    gather(&chain, HEADER, page, mem, &mut outside);
                });
                match sent {
                    Err(SendError::Busy) => {
                        // Every transmit page is in flight: once drvdom-net
                        // answers (its event wakes us), this goes first.
                        self.stalled = Some(chain);
                        return Ok(());
                    }
                    // Too short, or the interface is gone: dropped, as a
                    // wire drops it.
                    Err(_) => {}
                    Ok(()) if outside => self.refused += 1,
                    Ok(()) => {}
                }
            }
            f.queues[TX].push(mem, chain.head, 0)?;
        }
    }

    fn receive(&mut self, f: &mut VirtioPci, mem: &mut GuestMemory) -> Result<(), Broken> {
        loop {
            let chain = match self.held.take() {
                Some(c) => c,
                None => match f.queues[RX].pop(mem)? {
                    Some(c) => c,
                    None => return Ok(()),
                },
            };
            let Some(frame) = self.net.rx.next_frame() else {
                self.held = Some(chain);
                return Ok(());
            };
            let mut header = [0u8; HEADER];
            // num_buffers: the frame is in this one buffer chain.
            header[10] = 1;
            let room: usize = chain
                .buffers
                .iter()
                .filter(|b| b.device_writes)
                .map(|b| b.len as usize)
                .sum();
            let written = if room < HEADER + frame.len() {
                self.refused += 1;
                0
            } else {
                let mut outside = false;
                scatter(&chain, &header, frame, mem, &mut outside);
                if outside {
                    self.refused += 1;
                }
                (HEADER + frame.len()) as u32
            };
            f.queues[RX].push(mem, chain.head, written)?;
        }
    }
}

/// Copies the chain's bytes from `skip` on into `out`.
fn gather(chain: &Chain, skip: usize, out: &mut [u8], mem: &mut GuestMemory, outside: &mut bool) {
    let mut at = 0usize; // offset in the chain
    let mut done = 0usize; // bytes of `out` filled
    for b in &chain.buffers {
        let len = b.len as usize;
        let from = skip.max(at);
        let to = (at + len).min(skip + out.len());
        if from < to {
            let dst = &mut out[done..done + (to - from)];
            *outside |= mem.read(b.addr + (from - at) as u64, dst).is_err();
            done += to - from;
        }
        at += len;
        if done == out.len() {
            break;
        }
    }
}

/// Writes the header then the frame across the chain's device-writable buffers.
fn scatter(chain: &Chain, header: &[u8], frame: &[u8], mem: &mut GuestMemory, outside: &mut bool) {
    let mut pieces = [header, frame];
    let mut piece = 0;
    for b in chain.buffers.iter().filter(|b| b.device_writes) {
        let mut at = 0usize;
        while at < b.len as usize && piece < pieces.len() {
            let n = pieces[piece].len().min(b.len as usize - at);
            *outside |= mem.write(b.addr + at as u64, &pieces[piece][..n]).is_err();
            pieces[piece] = &pieces[piece][n..];
            at += n;
            if pieces[piece].is_empty() {
                piece += 1;
            }
        }
    }
}
