//! The management requests of save and restore (`crate::save` does the work).
//!
//! Owns: one save on the machine and one restore per session at a time,
//! the deferred answer to `SaveBegin` (given once the domain has
//! suspended, or has not in time), the domains whose save was given up on
//! (run on if they suspend after all, whichever session gave up), and
//! turning each step's outcome into an answer.

use super::session::Session;
use super::Started_;
use crate::save::{Restore, Save};
extern crate alloc;
use alloc::vec::Vec;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::mgmt::messages::{Answer, SAVE_READ_MAX};
use domain_runtime::{println, DomainId};

/// Domains whose save was given up on or cancelled: unpaused if they
/// suspend after all.
static LATE: spin::Mutex<Vec<DomainId>> = spin::Mutex::new(Vec::new());

/// A domain whose save was given up on runs on as itself, now or when it
/// suspends after all.
fn run_on(id: DomainId) {
    LATE.lock().push(id);
    let _ = hc::domain_unpause(id);
}

/// Lets a domain that suspended after its save was given up on run on.
/// The main loop calls this after every wake-up.
pub(super) fn settle_late() {
    LATE.lock().retain(|&id| match hc::domain_info(id) {
        Ok(info) if info.suspended == 1 => hc::domain_unpause(id).is_err(),
        Ok(info) => info.state == domain_runtime::ipc_abi::domain::DomainState::Running as u32,
        Err(_) => false,
    });
}

/// The client of a save went away: its domain runs on (a core dump's
/// domain runs on if it ran before).
pub(super) fn abandon(save: Save) {
    println!(
        "toolstack: the save of domain {} was abandoned by its client; it runs on",
        save.id
    );
    match save.core {
        Some(ran) => {
            if ran {
                let _ = hc::domain_unpause(save.id);
            }
        }
        None => run_on(save.id),
    }
}

impl Session {
    /// The client went away: what it had under way is undone. A creation
    /// never committed creates nothing; a domain being saved runs on; a
    /// restore is abandoned.
    pub fn close(mut self) {
        if let Some(save) = self.save.take() {
            abandon(save);
        }
        if let Some(r) = self.restore.take() {
            r.abandon();
        }
    }

    pub(super) fn save_begin(&mut self, seq: u32, started: &mut Started_, domain: u32) {
        if self.save.is_some() || self.saving_elsewhere {
            return self.send(
                seq,
                &Answer::Error {
                    message: "another save is in progress",
                },
            );
        }
        match crate::save::begin(started, domain, seq) {
            Ok(save) => {
                self.save = Some(save);
                self.on_save_progress(started);
            }
            Err(message) => self.send(seq, &Answer::Error { message: &message }),
        }
    }

    /// Answers a waiting `SaveBegin` once its domain has suspended (or
    /// failed to in time). The main loop calls this after every wake-up.
    pub fn on_save_progress(&mut self, started: &mut Started_) {
        let Some(save) = self.save.as_mut() else {
            return;
        };
        let Some((seq, _)) = save.waiting else {
            return;
        };
        match save.ready(started, domain_runtime::time::now_ns()) {
            None => {}
            Some(Ok(())) => self.send(seq, &Answer::Ok),
            Some(Err(message)) => {
                let id = save.id;
                self.save = None;
                println!("toolstack: {}", message);
                // If it suspends later after all, it runs on as itself.
                LATE.lock().push(id);
                self.send(seq, &Answer::Error { message: &message });
            }
        }
    }

    /// When a waiting `SaveBegin` gives up (ns since boot).
    pub(super) fn save_deadline(&self) -> Option<u64> {
        self.save.as_ref()?.waiting.map(|(_, d)| d)
    }

    /// The save in progress if it is `domain`'s and its domain has suspended.
    fn save_of(&self, domain: u32) -> Option<&Save> {
        self.save
            .as_ref()
            .filter(|s| s.waiting.is_none() && (s.id.0 == domain || s.id.index() as u32 == domain))
    }

    /// Up to `count` pieces of the file from `cursor` on, each its own answer.
    pub(super) fn save_read(&mut self, seq: u32, domain: u32, mut cursor: u64, count: u32) {
        let mut data = Vec::with_capacity(16 * 1024);
        for _ in 0..count.clamp(1, SAVE_READ_MAX) {
            let Some(save) = self.save_of(domain) else {
                return self.send(seq, &NO_SAVE);
            };
            let pages = save.pages;
            data.clear();
            match save.read(cursor, &mut data) {
                Ok((next, done)) => {
                    self.send(
                        seq,
                        &Answer::SaveData {
                            cursor,
                            next,
                            pages,
                            done,
                            data: &data,
                        },
                    );
                    if done {
                        return;
                    }
                    cursor = next;
                }
                Err(message) => return self.send(seq, &Answer::Error { message: &message }),
            }
        }
    }

    pub(super) fn core_begin(&mut self, seq: u32, started: &mut Started_, domain: u32) {
        if self.save.is_some() || self.saving_elsewhere {
            return self.send(
                seq,
                &Answer::Error {
                    message: "another save or core dump is in progress",
                },
            );
        }
        match crate::save::core(started, domain) {
            Ok(save) => {
                self.save = Some(save);
                self.send(seq, &Answer::Ok)
            }
            Err(message) => self.send(seq, &Answer::Error { message: &message }),
        }
    }

    pub(super) fn core_end(&mut self, seq: u32, domain: u32) {
        let Some(ran) = self
            .save_of(domain)
            .and_then(|s| s.core.map(|ran| (s.id, ran)))
        else {
            return self.send(seq, &NO_SAVE);
        };
        self.save = None;
        let (id, ran) = ran;
        if ran {
            let _ = hc::domain_unpause(id);
        }
        println!("toolstack: domain {} dumped", id);
        self.send(seq, &Answer::Ok)
    }

    pub(super) fn save_end(&mut self, seq: u32, domain: u32, keep: bool) {
        let Some(save) = self.save_of(domain).filter(|s| s.core.is_none()) else {
            return self.send(seq, &NO_SAVE);
        };
        let id = save.id;
        self.save = None;
        if keep {
            println!("toolstack: domain {} saved; kept paused", id);
        } else {
            println!("toolstack: domain {} saved; destroying it", id);
            let _ = hc::domain_destroy(id);
        }
        self.send(seq, &Answer::Ok)
    }

    pub(super) fn save_cancel(&mut self, seq: u32, domain: u32) {
        let Some(save) = self
            .save
            .as_ref()
            .filter(|s| s.id.0 == domain || s.id.index() as u32 == domain)
        else {
            return self.send(seq, &NO_SAVE);
        };
        let id = save.id;
        self.save = None;
        println!(
            "toolstack: the save of domain {} was cancelled; it runs on",
            id
        );
        // Suspended or about to: it runs on as itself.
        run_on(id);
        self.send(seq, &Answer::Ok)
    }

    pub(super) fn restore_begin(&mut self, seq: u32) {
        if let Some(old) = self.restore.take() {
            old.abandon();
        }
        self.restore = Some(Restore::default());
        self.send(seq, &Answer::Ok)
    }

    pub(super) fn restore_data(&mut self, seq: u32, data: &[u8]) {
        let Some(r) = self.restore.as_mut() else {
            return self.send(seq, &NO_RESTORE);
        };
        match r.feed(data) {
            Ok(()) => self.send(seq, &Answer::Ok),
            Err(message) => {
                if let Some(r) = self.restore.take() {
                    r.abandon();
                }
                println!("toolstack: restore abandoned: {}", message);
                self.send(seq, &Answer::Error { message: &message })
            }
        }
    }

    pub(super) fn restore_commit(&mut self, seq: u32, started: &mut Started_, paused: bool) {
        let Some(r) = self.restore.take() else {
            return self.send(seq, &NO_RESTORE);
        };
        match r.commit(started, paused) {
            Ok(id) => self.send(seq, &Answer::Created { id: id.0 }),
            Err(message) => self.send(seq, &Answer::Error { message: &message }),
        }
    }
}

const NO_SAVE: Answer<'static> = Answer::Error {
    message: "no save of that domain is in progress (SaveBegin first)",
};

const NO_RESTORE: Answer<'static> = Answer::Error {
    message: "no restore is in progress (RestoreBegin first)",
};
