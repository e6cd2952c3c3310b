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
    let (t, c) = (time::now_ns(), time::tsc());
    let mut sent = 0;
    while sent < frames {
        if nic.send(&frame) {
            sent += 1;
        } else {
            core::hint::spin_loop();
        }
    }
    println!(
        "drvdom-net: raw sent {} frames of 1514 bytes {} ns {} tsc",
        sent,
        time::now_ns() - t,
        time::tsc() - c
    );
}
