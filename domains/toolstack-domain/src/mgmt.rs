//! The management protocol server (`ipc_abi::mgmt`): the channels clients
//! reach domain 0 by, COM2 (`com2.rs`) and TCP through drvdom-net
//! (`net.rs`, encrypted and authenticated as `ipc_abi::mgmt_net` says),
//! each client with its own session (`session.rs`).
//!
//! Owns: the set of channels, and handing them what the main loop sees
//! (their events, console-dom's answers, the clock). What each request
//! does is `requests.rs` (saves and restores: `save_requests.rs`).

extern crate alloc;
mod com2;
mod net;
mod owned;
mod requests;
mod save_requests;
mod secure;
mod session;

use crate::viewer::Viewer;
use domain_runtime::ipc_abi::proto::console::ConsoleResponse;
pub use session::Session;

/// The toolstack's list of domains it started.
type Started_ = crate::table::Domains;

/// Every management channel domain 0 serves.
pub struct Channels {
    com2: Option<com2::Com2>,
    net: Option<net::NetChannel>,
}

impl Channels {
    /// Starts the channels domain 0's command line asks for.
    pub fn start() -> Channels {
        Channels {
            com2: com2::Com2::start(),
            net: net::NetChannel::start(),
        }
    }

    /// Connects domain 0's interface to drvdom-net when it runs (again
    /// after each restart).
    pub fn follow(&mut self, started: &mut Started_) {
        if let Some(n) = self.net.as_mut() {
            n.follow(started);
        }
    }

    /// Serves `port` if it is a channel's; whether it was.
    pub fn serve(
        &mut self,
        port: u16,
        started: &mut Started_,
        viewer: &mut Option<Viewer>,
    ) -> bool {
        let net_saving = self.net.as_ref().is_some_and(|n| n.saving());
        if let Some(c) = self.com2.as_mut().filter(|c| c.port == port) {
            c.session.saving_elsewhere = net_saving;
            c.poll(started, viewer);
            return true;
        }
        let saving_outside = self.com2.as_ref().is_some_and(|c| c.session.saving());
        match self.net.as_mut() {
            Some(n) if n.port() == Some(port) => {
                n.poll(started, viewer, saving_outside);
                true
            }
            _ => false,
        }
    }

    /// console-dom answered a `Peek`: the session waiting for it gets it.
    pub fn on_peek(&mut self, rsp: &ConsoleResponse) {
        if let Some(c) = self.com2.as_mut() {
            c.session.on_peek(rsp);
            c.flush();
        }
        if let Some(n) = self.net.as_mut() {
            n.sessions().for_each(|s| s.on_peek(rsp));
            n.flush_all();
        }
    }

    /// After each wake-up: console reads and saves whose time has come.
    pub fn on_wake(&mut self, now: u64, started: &mut Started_, viewer: &mut Option<Viewer>) {
        save_requests::settle_late();
        if let Some(c) = self.com2.as_mut() {
            c.session.on_timer(now);
            c.session.on_save_progress(started);
            c.flush();
        }
        let saving_outside = self.com2.as_ref().is_some_and(|c| c.session.saving());
        if let Some(n) = self.net.as_mut() {
            for s in n.sessions() {
                s.on_timer(now);
                s.on_save_progress(started);
            }
            // smoltcp's timers (retransmissions, acknowledgements) too.
            n.poll(started, viewer, saving_outside);
        }
    }

    /// When a channel next needs the clock (ns since boot).
    pub fn deadline(&mut self) -> Option<u64> {
        let com2 = self.com2.as_ref().and_then(|c| c.session.deadline());
        let net = self.net.as_mut().and_then(|n| n.deadline());
        com2.into_iter().chain(net).min()
    }
}
