//! Measures its disk through the ring (`cargo xtask bench blk`): sequential
//! read and write of `mib=` MiB in 64 KiB calls in a buffer the backend
//! fills and empties itself (`Disk::buffer`: as drvdom-blk's raw workload
//! uses its own DMA memory), the same copied to and from the caller's
//! memory, then `random=` 4 KiB reads at pseudo-random places. Prints
//! nanoseconds and TSC ticks for each (under `-icount` the TSC counts
//! instructions) and the ring's notifications.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use domain_runtime::block::Disk;
use domain_runtime::{println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let mib = test_domains::number("mib").unwrap_or(16);
    let random = test_domains::number("random").unwrap_or(2000);
    let Ok(mut disk) = Disk::connect(0) else {
        println!("disk-bench: no disk");
        return;
    };
    let sectors = disk.info().sectors;
    let mut buf = alloc::vec![0u8; 64 * 1024];
    let Ok(own) = disk.buffer(buf.len()) else {
        println!("disk-bench: no buffer");
        return;
    };
    let chunks = mib * 16;
    let len = buf.len();
    let sector = |i: u64| i * 128 % sectors;
    // In the buffer, then copied to and from the caller's memory.
    for what in [
        "seq-read",
        "seq-write",
        "copied seq-read",
        "copied seq-write",
    ] {
        let (t, c, b) = (time::now_ns(), time::tsc(), time::busy_tsc());
        for i in 0..chunks {
            let done = match what {
                "seq-read" => disk.read_to_buffer(sector(i), own, len),
                "seq-write" => disk.write_from_buffer(sector(i), own, len),
                "copied seq-read" => disk.read(sector(i), &mut buf),
                _ => disk.write(sector(i), &buf),
            };
            if done.is_err() {
                println!("disk-bench: {} failed", what);
                return;
            }
        }
        println!(
            "disk-bench: {} {} bytes {} ns {} tsc {} busy",
            what,
            chunks * 65536,
            time::now_ns() - t,
            time::tsc() - c,
            time::busy_tsc() - b
        );
    }
    let (requests_before, notified_before) = disk.stats();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let (t, c, b) = (time::now_ns(), time::tsc(), time::busy_tsc());
    for _ in 0..random {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let sector = (x % (sectors / 8)) * 8;
        if disk.read(sector, &mut buf[..4096]).is_err() {
            println!("disk-bench: random read failed");
            return;
        }
    }
    let (requests, notified) = disk.stats();
    println!(
        "disk-bench: random-read {} requests {} ns {} tsc {} busy {} notifications",
        random,
        time::now_ns() - t,
        time::tsc() - c,
        time::busy_tsc() - b,
        notified - notified_before
    );
    let _ = requests - requests_before;
    let (all, notes) = disk.stats();
    println!("disk-bench: ring {} requests {} notifications", all, notes);
}
