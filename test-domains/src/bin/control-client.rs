//! Talks to the control domain over its control ring: `beats=` heartbeats
//! (default 3), each answered, then a malformed message, which must be refused.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::ipc_abi::proto::control::{ControlMessage, Status};
use domain_runtime::{control, println};
use zerocopy::FromZeros;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let beats = test_domains::number("beats").unwrap_or(3);
    let mut ok = 0;
    for _ in 0..beats {
        if control::heartbeat() == Ok(control::OK) {
            ok += 1;
        }
    }
    println!(
        "control-client: {} of {} heartbeats answered OK (connected: {})",
        ok,
        beats,
        control::connected()
    );
    let mut bad = ControlMessage::new_zeroed();
    bad.op = 999;
    let answer = control::call(bad).map(|a| a.version_or_status);
    println!(
        "control-client: a malformed message is answered {:?} (Invalid is {})",
        answer,
        Status::Invalid as u32
    );
}
