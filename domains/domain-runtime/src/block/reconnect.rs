//! Following a disk's backend through restarts, detaches and restores.
//!
//! Owns: noticing (from the control domain's news) that the backend was
//! restarted, given up on, or that the disk was detached; granting the
//! ring and every data page to the new backend; announcing the ring again;
//! and sending again every request that had no answer, with its pages'
//! new grants.

use super::{Disk, DiskError};
use crate::hypercall as hc;
use ipc_abi::hypercall::Error;
use ipc_abi::proto::block::{BLOCK_VERSION, MAX_SEGMENTS};
use ipc_abi::proto::control::{ControlMessage, ControlOp, DeviceKind};
use ipc_abi::ring::Front;

impl Disk {
    /// If the control domain said our backend was restarted: grant the ring
    /// and data pages to the new one, initialise the ring at a new epoch,
    /// announce it, and send again every request that had no answer (with
    /// its pages' new grants). Nothing is lost or failed back to the caller;
    /// a write the old backend had carried out is carried out again, with
    /// the same data.
    pub(super) fn follow_restart(&mut self) -> core::result::Result<(), DiskError> {
        let device = self.device;
        let is = |m: &ControlMessage, op: ControlOp| {
            m.check() == Some(op) && m.kind == DeviceKind::Block as u32 && m.index == device
        };
        let restarted = |m: &ControlMessage| is(m, ControlOp::PeerRestarted);
        let gone = |m: &ControlMessage| is(m, ControlOp::PeerGone);
        if self.detached {
            return Err(DiskError::Detached);
        }
        if self.gone {
            return Err(DiskError::Gone);
        }
        // Nothing came since the last look, and no restore: nothing to follow.
        if !self.news.anything_new() && self.epoch == crate::epoch::get() {
            return Ok(());
        }
        if crate::hotplug::is_detached(DeviceKind::Block, device) {
            self.detach();
            return Err(DiskError::Detached);
        }
        let (news, restored) = crate::control::backend_news(DeviceKind::Block, device, self.epoch);
        self.epoch = crate::epoch::get();
        let Some(mut news) = news else {
            return Ok(());
        };
        if gone(&news) {
            self.gone = true;
            return Err(DiskError::Gone);
        }
        if !restored {
            let _ = hc::event_close(self.port);
            // The dead backend's mappings are gone, so every grant can end.
            for &g in self.ring_grefs.iter() {
                let _ = hc::grant_end(g);
            }
        }
        // A restored domain's grants were its last incarnation's: not ours to end.
        let mut foreign = restored;
        let (backend, grefs, port) = loop {
            let backend = news.peer;
            let granted = self.data.grant_all(backend, core::mem::take(&mut foreign));
            self.front = Front::init(self.ring.shared(), 1).map_err(|_| DiskError::Ring)?;
            let announced = granted.and_then(|()| {
                crate::ring::announce(
                    &[self.ring],
                    backend,
                    DeviceKind::Block,
                    self.device,
                    BLOCK_VERSION,
                )
            });
            match announced {
                Ok((grefs, port)) => break (backend, grefs, port),
                // That instance died too before it accepted (or before it
                // was granted our pages): follow the next.
                Err(Error::DeadDomain) => {
                    news = crate::control::wait_news(|m| restarted(m) || gone(m));
                    if gone(&news) {
                        self.gone = true;
                        return Err(DiskError::Gone);
                    }
                }
                Err(_) => return Err(DiskError::Ring),
            }
        };
        self.ring_grefs = grefs;
        self.port = port;
        self.backend = backend;
        self.restarts += 1;
        self.gaps.restarted();
        crate::console::note(format_args!(
            "block: disk {} reconnected to domain {} (restart {}), {} requests sent again",
            self.device,
            backend,
            self.restarts,
            self.in_flight.len()
        ));
        let replay = core::mem::take(&mut self.in_flight);
        for (mut r, place) in replay {
            if let Some(place) = place {
                let used = usize::from(r.segments_used).min(MAX_SEGMENTS);
                for (i, s) in r.segments[..used].iter_mut().enumerate() {
                    s.gref = self.data.gref(place, i);
                }
            }
            self.queue(r, place)?;
        }
        self.publish();
        Ok(())
    }

    /// The disk was taken away: its backend stopped serving the ring, so
    /// nothing in flight will be answered and nothing more is sent.
    fn detach(&mut self) {
        self.detached = true;
        self.in_flight.clear();
        let _ = hc::event_close(self.port);
        // Every grant ends (the backend let go of the ring at the detach);
        // pages a backend still maps are never freed.
        let mut all_ended = self.data.end_grants();
        for &g in self.ring_grefs.iter() {
            all_ended &= hc::grant_end(g).is_ok();
        }
        if !all_ended {
            self.data.keep_for_ever();
        }
        crate::console::note(format_args!("block: disk {} was detached", self.device));
    }
}
