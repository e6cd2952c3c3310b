//! One client's session of the management protocol, whatever carries it
//! (COM2, or a TCP connection).
//!
//! Owns: the client's frame decoder and what it has under way (a creation
//! being uploaded, a console read waiting for console-dom, a save or a
//! restore), and the answers it is owed, framed, in an outbox its channel
//! sends. Garbage, bad checksums and malformed requests are counted or
//! answered with an error; they never disturb the toolstack or any domain.
//! What each request does is `requests.rs` (saves and restores:
//! `save_requests.rs`).

extern crate alloc;
use super::owned::OwnedRequest;
use super::Started_;
use crate::viewer::Viewer;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use domain_runtime::ipc_abi::mgmt::messages::{self, Answer, Request, KIND_ANSWER, KIND_REQUEST};
use domain_runtime::ipc_abi::mgmt::{encode, Decoder, Event, FrameHeader, HEADER_LEN};

/// Largest answer payload this domain sends (a piece of a save file is the largest).
const ANSWER_MAX: usize = domain_runtime::ipc_abi::mgmt::MAX_PAYLOAD;

/// A client's session.
pub struct Session {
    pub(super) decoder: Box<Decoder>,
    pub(super) frame_errors: u64,
    /// A creation in progress: configuration, image so far, image size, paused.
    pub(super) pending: Option<(String, Vec<u8>, usize, bool)>,
    /// A `ConsoleRead` waiting for console-dom's answer.
    pub(super) console_read: Option<ConsoleRead>,
    /// A save (or core dump) and a restore in progress.
    pub(super) save: Option<crate::save::Save>,
    pub(super) restore: Option<crate::save::Restore>,
    /// Another client's save or core dump is in progress (one at a time
    /// on the machine: a save pauses and reads a whole domain).
    pub(super) saving_elsewhere: bool,
    /// Room to encode an answer in (on the heap: answers may be 16 KiB).
    payload: Vec<u8>,
    frame: Vec<u8>,
    /// Framed answers not yet sent.
    out: Vec<u8>,
}

/// A `ConsoleRead` in progress.
pub(super) struct ConsoleRead {
    pub(super) seq: u32,
    /// The `Peek` asked of console-dom.
    pub(super) peek: u64,
    pub(super) offset: u64,
    /// When it is answered empty if nothing came (ns since boot).
    pub(super) deadline: u64,
    /// The domain runs and will connect a console (it was started after
    /// console-dom): "no such console" from console-dom only means "not yet".
    pub(super) console_coming: bool,
}

impl Session {
    pub fn new() -> Session {
        Session {
            decoder: Box::new(Decoder::new()),
            frame_errors: 0,
            pending: None,
            console_read: None,
            save: None,
            restore: None,
            saving_elsewhere: false,
            payload: alloc::vec![0; ANSWER_MAX],
            frame: alloc::vec![0; HEADER_LEN + ANSWER_MAX],
            out: Vec::new(),
        }
    }

    /// Takes bytes from the client and answers every complete request.
    pub fn feed(&mut self, mut bytes: &[u8], started: &mut Started_, viewer: &mut Option<Viewer>) {
        while !bytes.is_empty() {
            let taken = self.decoder.push(bytes);
            bytes = &bytes[taken..];
            self.drain(started, viewer);
            if taken == 0 {
                // A partial frame fills the buffer: give up on it.
                self.decoder.reset();
            }
        }
    }

    /// The framed answers owed so far (the outbox is emptied).
    pub fn take_output(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.out)
    }

    /// Bytes waiting in the outbox.
    pub fn output_len(&self) -> usize {
        self.out.len()
    }

    /// Whether a save or core dump of this session is in progress.
    pub fn saving(&self) -> bool {
        self.save.is_some()
    }

    fn drain(&mut self, started: &mut Started_, viewer: &mut Option<Viewer>) {
        loop {
            // Copy the request out of the decoder's buffer before answering.
            let (seq, request) = match self.decoder.next_event() {
                None => return,
                Some(Event::Error(_)) => {
                    self.frame_errors += 1;
                    continue;
                }
                Some(Event::Frame(h, payload)) => {
                    if h.kind != KIND_REQUEST {
                        continue;
                    }
                    (
                        h.seq,
                        messages::decode::<Request>(payload).map(OwnedRequest::from),
                    )
                }
            };
            match request {
                Some(r) => self.answer_owned(seq, r, started, viewer),
                None => self.send(
                    seq,
                    &Answer::Error {
                        message: "malformed request",
                    },
                ),
            }
        }
    }

    pub(super) fn send(&mut self, seq: u32, answer: &Answer<'_>) {
        let Some(n) = messages::encode(answer, &mut self.payload).or_else(|| {
            let too_big = Answer::Error {
                message: "answer too large",
            };
            messages::encode(&too_big, &mut self.payload)
        }) else {
            return;
        };
        let header = FrameHeader {
            kind: KIND_ANSWER,
            flags: 0,
            seq,
        };
        if let Some(len) = encode(header, &self.payload[..n], &mut self.frame) {
            self.out.extend_from_slice(&self.frame[..len]);
        }
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}
