//! The raw-NIC half of `cargo xtask bench net` (`bench_raw frames=N` on the
//! command line): the guest benchmark's frames sent by this domain straight
//! to the NIC, so the two can be compared in one run.

use domain_runtime::{println, time};
use driver_kit::nic::Nic;
use virtio_drivers::transport::Transport;

/// QEMU's user-network gateway, which drops frames of a type it does not know.
const GATEWAY: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];

/// Sends `frames` frames of 1,514 bytes, each as soon as a buffer is free;
/// prints nanoseconds and TSC ticks.
pub fn run<T: Transport>(nic: &mut Nic<T>, frames: u64) {
    let mut frame = [0u8; 1514];
    frame[..6].copy_from_slice(&GATEWAY);
    frame[6..12].copy_from_slice(&nic.mac());
    frame[12..14].copy_from_slice(&[0x88, 0xb6]);
    // The frames once untimed first: the guest it is compared with is
    // created while this domain starts, and its creation must not be
    // charged here. Each pass ends once the NIC has sent everything, so
    // that neither the timed pass nor the guest after it starts behind
    // frames queued before.
    send(nic, &frame, frames);
    drain(nic);
    let (t, c) = (time::now_ns(), time::tsc());
    let sent = send(nic, &frame, frames);
    drain(nic);
    println!(
        "drvdom-net: raw sent {} frames of 1514 bytes {} ns {} tsc",
        sent,
        time::now_ns() - t,
        time::tsc() - c
    );
}

/// Sends `frame` `frames` times, each as soon as a buffer is free, in
/// bursts of up to 32 that reach the device together (as the guest's
/// frames do, one notification of the NIC a round).
fn send<T: Transport>(nic: &mut Nic<T>, frame: &[u8], frames: u64) -> u64 {
    let mut sent = 0;
    while sent < frames {
        nic.hold();
        let mut burst = 0;
        while burst < 32 && sent < frames && nic.send(frame) {
            sent += 1;
            burst += 1;
        }
        nic.release();
        if burst == 0 {
            core::hint::spin_loop();
        }
    }
    sent
}

/// Waits until the NIC has sent every frame it was given.
fn drain<T: Transport>(nic: &mut Nic<T>) {
    while !nic.sent_all() {
        core::hint::spin_loop();
    }
}
