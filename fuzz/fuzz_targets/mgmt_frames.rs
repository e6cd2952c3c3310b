//! The management protocol on COM2, both sides: bytes from the host (or
//! from a compromised machine, for the host's side) become frames, and
//! frame payloads requests and answers, or errors; never a panic.
#![no_main]

use ipc_abi::mgmt::messages::{self, Answer, Request};
use ipc_abi::mgmt::{Decoder, Event};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut decoder = Decoder::new();
    let mut rest = data;
    // Offered in pieces of varying size, as a serial line delivers them.
    let mut piece = 1usize;
    while !rest.is_empty() {
        let n = piece.min(rest.len());
        let taken = decoder.push(&rest[..n]);
        rest = &rest[taken..];
        while let Some(event) = decoder.next_event() {
            if let Event::Frame(_, payload) = event {
                let _ = messages::decode::<Request>(payload);
                let _ = messages::decode::<Answer>(payload);
            }
        }
        if taken == 0 {
            decoder.reset();
        }
        piece = piece * 7 % 61 + 1;
    }
    let _ = messages::decode::<Request>(data);
    let _ = messages::decode::<Answer>(data);
});
