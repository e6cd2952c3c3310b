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
mod owned;
mod requests;
mod save_requests;
mod session;

use crate::viewer::Viewer;
use domain_runtime::ipc_abi::proto::console::ConsoleResponse;
pub use session::Session;

/// The toolstack's list of domains it started.
type Started_ = crate::table::Domains;

/// Every management channel domain 0 serves.
pub struct Channels {
    com2: Option<com2::Com2>,
}

impl Channels {
    /// Starts the channels domain 0's command line asks for.
    pub fn start() -> Channels {
        Channels {
            com2: com2::Com2::start(),
        }
    }

    /// Serves `port` if it is a channel's; whether it was.
    pub fn serve(
        &mut self,
        port: u16,
        started: &mut Started_,
        viewer: &mut Option<Viewer>,
    ) -> bool {
        match self.com2.as_mut() {
            Some(c) if c.port == port => {
                c.poll(started, viewer);
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
    }

    /// After each wake-up: console reads and saves whose time has come.
    pub fn on_wake(&mut self, now: u64, started: &mut Started_) {
        save_requests::settle_late();
        if let Some(c) = self.com2.as_mut() {
            c.session.on_timer(now);
            c.session.on_save_progress(started);
            c.flush();
        }
    }

    /// When a channel next needs the clock (ns since boot).
    pub fn deadline(&self) -> Option<u64> {
        self.com2.as_ref().and_then(|c| c.session.deadline())
    }
}
