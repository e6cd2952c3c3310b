//! The raw-device half of `cargo xtask bench blk` (`bench_raw` on the
//! command line): the guest benchmark's workload issued by this domain
//! straight to the device, so the two can be compared in one run.

use crate::disk::{Disk, Outcome};
use domain_runtime::{println, time};
use virtio_drivers::transport::Transport;

/// Sequential read and write of `mib` MiB in 64 KiB requests, then
/// `random` 4 KiB reads; prints each one's nanoseconds and TSC ticks.
pub fn run<T: Transport>(blk: &mut Disk<T>, mib: u64, random: u64) {
    let Some(buf) = driver_kit::hal::dma_buffer(64 * 1024) else {
        println!("drvdom-blk: no DMA memory for the benchmark");
        return;
    };
    let sectors = blk.capacity();
    let chunks = mib * 16;
    // A pass untimed first: the guest it is compared with is created
    // while this domain starts, and its creation must not be charged here.
    for i in 0..chunks {
        if blk.read_own(i * 128 % sectors, buf) != Outcome::Done {
            println!("drvdom-blk: raw read failed");
            return;
        }
    }
    let (t, c, b) = (time::now_ns(), time::tsc(), time::busy_tsc());
    for i in 0..chunks {
        if blk.read_own(i * 128 % sectors, buf) != Outcome::Done {
            println!("drvdom-blk: raw read failed");
            return;
        }
    }
    println!(
        "drvdom-blk: raw seq-read {} bytes {} ns {} tsc {} busy",
        chunks * 65536,
        time::now_ns() - t,
        time::tsc() - c,
        time::busy_tsc() - b
    );
    let (t, c, b) = (time::now_ns(), time::tsc(), time::busy_tsc());
    for i in 0..chunks {
        if blk.write_own(i * 128 % sectors, buf) != Outcome::Done {
            println!("drvdom-blk: raw write failed");
            return;
        }
    }
    println!(
        "drvdom-blk: raw seq-write {} bytes {} ns {} tsc {} busy",
        chunks * 65536,
        time::now_ns() - t,
        time::tsc() - c,
        time::busy_tsc() - b
    );
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let (t, c, b) = (time::now_ns(), time::tsc(), time::busy_tsc());
    for _ in 0..random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let sector = (x % (sectors / 8)) * 8;
        if blk.read_own(sector, &mut buf[..4096]) != Outcome::Done {
            println!("drvdom-blk: raw random read failed");
            return;
        }
    }
    println!(
        "drvdom-blk: raw random-read {} requests {} ns {} tsc {} busy",
        random,
        time::now_ns() - t,
        time::tsc() - c,
        time::busy_tsc() - b
    );
}
