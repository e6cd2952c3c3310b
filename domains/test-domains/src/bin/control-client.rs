//! Talks to the control domain over its control ring: `beats=` heartbeats
//! (default 3), each answered, then a malformed message, which must be refused.
//!
//! With `burst=N` it posts N `Disconnect`s of devices it does not have in
//! one go, without waiting, and counts the answers by status (each must be
//! answered `NoDevice`; none refused or lost). With `flood` it keeps its
//! control ring full of heartbeats for ever, taking the answers as they
//! come, without ever blocking (a domain trying to hold domain 0).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::ipc_abi::proto::control::{ControlMessage, Status};
use domain_runtime::{control, println};
use zerocopy::FromZeros;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    if let Some(n) = test_domains::number("burst") {
        return burst(n as usize);
    }
    if test_domains::flag("flood") {
        flood();
    }
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

fn burst(n: usize) {
    use domain_runtime::ipc_abi::proto::control::{ControlOp, DeviceKind};
    let mut ids = heapless::Vec::<u32, 64>::new();
    for i in 0..n {
        let mut m = ControlMessage::new_zeroed();
        m.op = ControlOp::Disconnect as u32;
        m.kind = DeviceKind::Block as u32;
        m.index = i as u32;
        m.peer = domain_runtime::DomainId(0x7fff_0fff);
        match control::post(m) {
            Ok(id) => {
                let _ = ids.push(id);
            }
            Err(e) => println!("control-client: message {} not sent: {:?}", i, e),
        }
    }
    let (mut no_device, mut other) = (0, 0);
    let deadline = domain_runtime::time::now_ns() + 10_000_000_000;
    while no_device + other < ids.len() && domain_runtime::time::now_ns() < deadline {
        match control::poll() {
            Ok(Some(a)) if ids.contains(&a.id) => {
                if a.version_or_status == Status::NoDevice as u32 {
                    no_device += 1;
                } else {
                    other += 1;
                }
            }
            _ => domain_runtime::time::sleep_ns(1_000_000),
        }
    }
    println!(
        "control-client: burst of {}: {} answered NoDevice, {} otherwise, {} unanswered",
        n,
        no_device,
        other,
        ids.len() - no_device - other
    );
}

fn flood() -> ! {
    use domain_runtime::ipc_abi::proto::control::ControlOp;
    println!("control-client: flooding the control ring");
    let mut sent: u64 = 0;
    let mut report = 1 << 16;
    loop {
        let mut m = ControlMessage::new_zeroed();
        m.op = ControlOp::Heartbeat as u32;
        while control::post(m).is_ok() {
            sent += 1;
        }
        while let Ok(Some(_)) = control::poll() {}
        if sent >= report {
            println!("control-client: {} heartbeats sent", sent);
            report *= 2;
        }
    }
}
