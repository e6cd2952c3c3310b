//! Uses its disk xvda through drvdom-blk, as its command line says:
//! `sum` prints the SHA-256 of the whole disk; `write=SECTOR+COUNT fill=BYTE`
//! writes that pattern, flushes and reads it back; `discard=SECTOR+COUNT`
//! discards those sectors and flushes; `records=N` writes N checksummed
//! 4 KiB records from sector 0, flushes, reads them back and checks each
//! (with `disks=2`, on xvda and xvdb in turn, the same records on each;
//! every other call copies through the disk, the rest use its own buffer);
//! `sum repeat=N` sums N times; `cycles=N` writes and reads back a sector N
//! times, 20 ms apart (save and restore tests);
//! `read_all` reads the whole disk and does nothing with it; `gaps`
//! prints the long waits between answers and those across restarts of
//! drvdom-blk; `forbidden` tries writes a read-only or too-small disk must
//! refuse; `hold=SECONDS` keeps the disk connected that long at the end.
//! Each result is one line.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use domain_runtime::block::{BufferId, Disk};
use domain_runtime::println;
use sha2::{Digest, Sha256};

domain_runtime::entry!(run);

/// Bytes read or written per call.
const CHUNK: usize = 64 * 1024;

fn run(_: &'static domain_runtime::StartInfo) {
    let mut disk = match Disk::connect(0) {
        Ok(d) => d,
        Err(e) => {
            println!("disk-tool: no disk: {}", e);
            return;
        }
    };
    let info = disk.info();
    println!(
        "disk-tool: xvda has {} sectors of {} bytes, features {:?}",
        info.sectors, info.sector_size, info.features
    );
    let mut buf = alloc::vec![0u8; CHUNK];
    if let Some(spec) = test_domains::option("write") {
        let Some((start, count)) = sector_range(spec) else {
            println!("disk-tool: write= wants SECTOR+COUNT");
            return;
        };
        let fill = test_domains::number("fill").unwrap_or(0xa5) as u8;
        let bytes = alloc::vec![fill; (count * 512) as usize];
        let wrote = disk.write(start, &bytes).and_then(|()| disk.flush());
        let mut back = alloc::vec![0u8; bytes.len()];
        let read = disk.read(start, &mut back);
        println!(
            "disk-tool: wrote {} sectors of {:#04x} at {}: {:?}, read back {}",
            count,
            fill,
            start,
            wrote,
            if read.is_ok() && back == bytes {
                "the same"
            } else {
                "something else"
            }
        );
    }
    if let Some((start, count)) = test_domains::option("discard").and_then(sector_range) {
        let done = disk
            .discard(start, count as u32)
            .and_then(|()| disk.flush());
        println!(
            "disk-tool: discarded {} sectors at {}: {:?}",
            count, start, done
        );
    }
    if test_domains::flag("forbidden") {
        let past_end = disk.read(info.sectors, &mut buf[..512]);
        println!("disk-tool: read past the end: {:?}", past_end);
        let write = disk.write(0, &buf[..512]);
        println!("disk-tool: write at 0: {:?}", write);
    }
    if let Some(n) = test_domains::number("records") {
        let mut disks = alloc::vec![disk];
        for i in 1..test_domains::number("disks").unwrap_or(1) {
            match Disk::connect(i as u32) {
                Ok(d) => disks.push(d),
                Err(e) => return println!("disk-tool: no disk {}: {}", i, e),
            }
        }
        records(&mut disks, n);
        disk = disks.swap_remove(0);
    }
    let rounds = if test_domains::flag("sum") {
        test_domains::number("repeat").unwrap_or(1)
    } else {
        0
    };
    for _ in 0..rounds {
        let mut hash = Sha256::new();
        if read_whole(&mut disk, &mut buf, |chunk| hash.update(chunk)) {
            let digest = hash.finalize();
            let mut hex: heapless::String<64> = heapless::String::new();
            for b in digest.iter() {
                let _ = core::fmt::Write::write_fmt(&mut hex, format_args!("{:02x}", b));
            }
            println!(
                "disk-tool: sha256 of xvda ({} sectors) {}",
                info.sectors, hex
            );
        }
    }
    if let Some(n) = test_domains::number("cycles") {
        cycles(&mut disk, n);
    }
    if test_domains::flag("read_all") {
        let start_us = domain_runtime::time::now_ns() / 1000;
        if read_whole(&mut disk, &mut buf, |_| {}) {
            let end_us = domain_runtime::time::now_ns() / 1000;
            println!(
                "disk-tool: read all {} sectors from {} us to {} us",
                info.sectors, start_us, end_us
            );
        }
    }
    if test_domains::flag("gaps") {
        let mut text: heapless::String<512> = heapless::String::new();
        for g in disk.gaps() {
            let _ = core::fmt::Write::write_fmt(&mut text, format_args!(" {}", g / 1000));
        }
        println!(
            "disk-tool: {} restarts; waits over 2 ms (us):{}",
            disk.restarts(),
            text
        );
        println!("disk-tool: {}", test_domains::Resumed(disk.resumed()));
    }
    if let Some(seconds) = test_domains::number("hold") {
        domain_runtime::time::sleep_ns(seconds * 1_000_000_000);
    }
    println!("disk-tool: done");
}

/// `cycles=N`: N times, 20 ms apart, writes a sector of its cycle number
/// (at a sector that moves on each cycle), flushes, reads it back and says
/// whether it came back. A domain saved and restored midway carries on.
fn cycles(disk: &mut Disk, n: u64) {
    for cycle in 1..=n {
        let sector = (cycle % 64) * 8;
        let mut data = [0u8; 512];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (cycle as u8).wrapping_add(i as u8);
        }
        let wrote = disk.write(sector, &data).and_then(|()| disk.flush());
        let mut back = [0u8; 512];
        let read = disk.read(sector, &mut back);
        let verdict = if wrote.is_ok() && read.is_ok() && back == data {
            "ok"
        } else {
            "FAILED"
        };
        println!("disk-tool: cycle {} {}", cycle, verdict);
        domain_runtime::time::sleep_ns(20_000_000);
    }
}

/// `SECTOR+COUNT`.
fn sector_range(spec: &str) -> Option<(u64, u64)> {
    let (a, b) = spec.split_once('+')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Reads the whole disk in [`CHUNK`]s, handing each to `each`; false (and
/// a line saying why) if a read fails.
fn read_whole(disk: &mut Disk, buf: &mut [u8], mut each: impl FnMut(&[u8])) -> bool {
    let sectors = disk.info().sectors;
    let mut sector = 0;
    while sector < sectors {
        let n = ((sectors - sector) as usize * 512).min(CHUNK);
        if let Err(e) = disk.read(sector, &mut buf[..n]) {
            println!("disk-tool: read at sector {} failed: {:?}", sector, e);
            return false;
        }
        each(&buf[..n]);
        sector += (n / 512) as u64;
    }
    true
}

/// Record `index`: `XNRECORD`, the index, a payload made from the index,
/// and a CRC-32 of all that in the last four bytes.
fn record(index: u64, out: &mut [u8]) {
    out[..8].copy_from_slice(b"XNRECORD");
    out[8..16].copy_from_slice(&index.to_le_bytes());
    let mut x = index.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for b in out[16..4092].iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let crc = crc32fast::hash(&out[..4092]);
    out[4092..4096].copy_from_slice(&crc.to_le_bytes());
}

/// Whether the call moving records from `i` on uses the disk's own buffer
/// (every other call) rather than copying through the disk.
fn in_buffer(i: u64) -> bool {
    (i / (CHUNK / 4096) as u64) % 2 == 1
}

/// Writes `n` records, flushes, reads them back and compares; one line says how it went.
fn records(disks: &mut [Disk], n: u64) {
    const PER_CALL: u64 = (CHUNK / 4096) as u64;
    let mut buf = alloc::vec![0u8; CHUNK];
    let mut want = alloc::vec![0u8; CHUNK];
    let mut own: alloc::vec::Vec<BufferId> = alloc::vec::Vec::new();
    for (d, disk) in disks.iter_mut().enumerate() {
        match disk.buffer(CHUNK) {
            Ok(b) => own.push(b),
            Err(e) => return println!("disk-tool: no buffer for disk {}: {}", d, e),
        }
    }
    let mut i = 0;
    while i < n {
        let k = (n - i).min(PER_CALL);
        let len = (k * 4096) as usize;
        for j in 0..k {
            let at = (j * 4096) as usize;
            record(i + j, &mut buf[at..at + 4096]);
        }
        for (d, disk) in disks.iter_mut().enumerate() {
            let wrote = if in_buffer(i) {
                disk.buffer_bytes_mut(own[d])[..len].copy_from_slice(&buf[..len]);
                disk.write_from_buffer(i * 8, own[d], len)
            } else {
                disk.write(i * 8, &buf[..len])
            };
            if let Err(e) = wrote {
                return println!(
                    "disk-tool: writing record {} to disk {} failed: {:?}",
                    i, d, e
                );
            }
        }
        i += k;
    }
    for disk in disks.iter_mut() {
        if let Err(e) = disk.flush() {
            return println!("disk-tool: flush failed: {:?}", e);
        }
    }
    let mut i = 0;
    while i < n {
        let k = (n - i).min(PER_CALL);
        let len = (k * 4096) as usize;
        for j in 0..k {
            let at = (j * 4096) as usize;
            record(i + j, &mut want[at..at + 4096]);
        }
        for (d, disk) in disks.iter_mut().enumerate() {
            let read = if in_buffer(i) {
                disk.read_to_buffer(i * 8, own[d], len)
            } else {
                disk.read(i * 8, &mut buf[..len])
            };
            if let Err(e) = read {
                return println!(
                    "disk-tool: reading record {} of disk {} failed: {:?}",
                    i, d, e
                );
            }
            let got = if in_buffer(i) {
                &disk.buffer_bytes(own[d])[..len]
            } else {
                &buf[..len]
            };
            if got != &want[..len] {
                return println!(
                    "disk-tool: record {} and on of disk {} read back wrong",
                    i, d
                );
            }
        }
        i += k;
    }
    let restarts: alloc::vec::Vec<u64> = disks.iter().map(|d| d.restarts()).collect();
    println!(
        "disk-tool: {} records written and read back right on {} disks, every other call in the disk's own buffer (backend restarted {:?} times)",
        n,
        disks.len(),
        restarts
    );
}
