//! Every request a backend decodes from a frontend's ring slot, and every
//! control message domain 0 decodes: checked or refused, never a panic.
#![no_main]

use ipc_abi::proto::block::BlockRequest;
use ipc_abi::proto::console::ConsoleRequest;
use ipc_abi::proto::control::ControlMessage;
use ipc_abi::proto::net::{RxRequest, TxRequest};
use zerocopy::FromBytes;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok((r, _)) = BlockRequest::read_from_prefix(data) {
        let _ = r.check();
    }
    if let Ok((r, _)) = ConsoleRequest::read_from_prefix(data) {
        let _ = r.check();
    }
    if let Ok((m, _)) = ControlMessage::read_from_prefix(data) {
        let _ = m.check();
        let _ = ipc_abi::proto::block::BlockConnect::decode(m.index);
    }
    if let Ok((r, _)) = TxRequest::read_from_prefix(data) {
        let _ = r.check();
    }
    if let Ok((r, _)) = RxRequest::read_from_prefix(data) {
        let _ = core::hint::black_box(r);
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = ipc_abi::proto::net::parse_mac(text);
    }
});
