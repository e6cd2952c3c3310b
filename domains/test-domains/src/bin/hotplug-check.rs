//! Uses the devices it is given and loses while it runs (`toolstack domain
//! block-attach` and the rest), as the runtime's `hotplug` tells it.
//!
//! Writes numbered sectors to every disk it has (its own `xvda` from the
//! start, and each one attached), sector n holding n, its device and each
//! 16-byte row's number, and reads each back; says how many writes each
//! disk answered when it goes, and why a write failed. Each interface
//! attached broadcasts one raw test frame `attached`; after its detach, it
//! tries to send `after-detach` and says what happened.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use alloc::vec::Vec;
use domain_runtime::block::Disk;
use domain_runtime::hotplug::{self, Change};
use domain_runtime::ipc_abi::proto::control::DeviceKind;
use domain_runtime::ipc_abi::proto::net::MacText;
use domain_runtime::net::NetFront;
use domain_runtime::{println, time};

domain_runtime::entry!(run);

/// A disk being written, sector after sector.
struct Writer {
    index: u32,
    disk: Disk,
    /// Writes it answered (sectors 0 to this hold their numbers).
    answered: u64,
    /// It failed or filled up: no more writes.
    stopped: bool,
}

/// What sector `n` of device `device` holds once written.
fn sector(device: u32, n: u64) -> [u8; 512] {
    let mut b = [0u8; 512];
    for (row, chunk) in b.chunks_mut(16).enumerate() {
        chunk[..8].copy_from_slice(&n.to_le_bytes());
        chunk[8..12].copy_from_slice(&device.to_le_bytes());
        chunk[12..16].copy_from_slice(&(row as u32).to_le_bytes());
    }
    b
}

fn run(_: &'static domain_runtime::StartInfo) {
    let mut disks: Vec<Writer> = Vec::new();
    let mut nets: Vec<(u32, NetFront)> = Vec::new();
    if domain_runtime::option(domain_runtime::ipc_abi::launch::BLOCK_BACKEND).is_some() {
        attach_disk(&mut disks, 0);
    }
    println!("hotplug-check: ready with {} disk(s)", disks.len());
    loop {
        while let Some(change) = hotplug::next() {
            apply(change, &mut disks, &mut nets);
        }
        if disks.iter().all(|w| w.stopped) {
            let change = hotplug::wait();
            apply(change, &mut disks, &mut nets);
            continue;
        }
        for w in disks.iter_mut().filter(|w| !w.stopped) {
            write_one(w);
        }
        time::sleep_ns(1_000_000);
    }
}

fn write_one(w: &mut Writer) {
    let n = w.answered;
    if n >= w.disk.info().sectors {
        w.stopped = true;
        return println!("hotplug-check: disk {} is full", w.index);
    }
    let data = sector(w.index, n);
    if let Err(e) = w.disk.write(n, &data) {
        w.stopped = true;
        return println!(
            "hotplug-check: disk {} write {} failed: {:?}",
            w.index, n, e
        );
    }
    w.answered += 1;
    let mut back = [0u8; 512];
    match w.disk.read(n, &mut back) {
        Ok(()) if back == data => {}
        Ok(()) => {
            w.stopped = true;
            println!(
                "hotplug-check: disk {} sector {} read back WRONG",
                w.index, n
            );
        }
        Err(e) => {
            w.stopped = true;
            println!(
                "hotplug-check: disk {} read of {} failed: {:?}",
                w.index, n, e
            );
        }
    }
}

fn attach_disk(disks: &mut Vec<Writer>, index: u32) {
    match Disk::connect(index) {
        Ok(disk) => {
            println!(
                "hotplug-check: disk {} connected, {} sectors",
                index,
                disk.info().sectors
            );
            disks.retain(|w| w.index != index);
            disks.push(Writer {
                index,
                disk,
                answered: 0,
                stopped: false,
            });
        }
        Err(e) => println!("hotplug-check: disk {} cannot connect: {}", index, e),
    }
}

fn apply(change: Change, disks: &mut Vec<Writer>, nets: &mut Vec<(u32, NetFront)>) {
    match change {
        Change::Attached {
            kind: DeviceKind::Block,
            index,
        } => attach_disk(disks, index),
        Change::Detached {
            kind: DeviceKind::Block,
            index,
        } => {
            if let Some(at) = disks.iter().position(|w| w.index == index) {
                let mut w = disks.remove(at);
                // A write after the detach fails at once.
                let after = w.disk.write(0, &sector(index, 0));
                println!(
                    "hotplug-check: disk {} detached after {} answered writes; a write now: {:?}",
                    index, w.answered, after
                );
            }
        }
        Change::Attached {
            kind: DeviceKind::Net,
            index,
        } => match NetFront::connect(index) {
            Ok(mut net) => {
                let sent = net
                    .tx
                    .send(&test_domains::test_frame(net.mac(), "attached"));
                println!(
                    "hotplug-check: interface {} connected as {}; MTU {}; sent attached: {:?}",
                    index,
                    MacText(net.mac()),
                    net.mtu(),
                    sent
                );
                nets.push((index, net));
            }
            Err(e) => println!("hotplug-check: interface {} cannot connect: {}", index, e),
        },
        Change::Detached {
            kind: DeviceKind::Net,
            index,
        } => {
            if let Some(at) = nets.iter().position(|(i, _)| *i == index) {
                let (_, mut net) = nets.remove(at);
                let followed = net.follow_restart();
                let sent = net
                    .tx
                    .send(&test_domains::test_frame(net.mac(), "after-detach"));
                println!(
                    "hotplug-check: interface {} detached ({:?}); sending now: {:?}",
                    index, followed, sent
                );
            }
        }
        other => println!("hotplug-check: {:?}", other),
    }
}
