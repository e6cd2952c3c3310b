//! drvdom-blk: the block driver domain.
//!
//! Given a PCI function (`pci=BB:DD.F`) and DMA memory (`dma=KiB`) by the
//! toolstack, it alone drives the machine's virtio-blk disk (our own driver,
//! `disk.rs`, on the PCI transport of `virtio-drivers`, over the kernel's
//! mediated PCI access), and serves the
//! virtual disks its command line names (`vdisk=NAME:START+SECTORS` or
//! `vdisk=NAME:all`) to guests over block rings (`serve.rs`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

mod bench;
mod disk;
mod maps;
mod serve;
mod vdisk;

use disk::{Disk, Outcome};
use domain_runtime::ipc_abi::proto::block::SECTOR_SIZE;
use domain_runtime::println;

use domain_runtime::option;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let f = match driver_kit::open() {
        Ok(f) => f,
        Err(e) => {
            println!("drvdom-blk: {}", e);
            return;
        }
    };
    let text = f.name;
    let msix = f.interrupts.then_some(f.bdf);
    let mut blk = match Disk::new(f.transport, msix, f.irq_line) {
        Ok(b) => b,
        Err(e) => {
            println!("drvdom-blk: the virtio-blk device did not start: {}", e);
            return;
        }
    };
    let sectors = blk.capacity();
    let restart = option(domain_runtime::ipc_abi::launch::RESTART);
    // Test only: the device told to write sector 0 where it may not (by
    // the first instance: a restarted one serves).
    let attack = option("dma_test").and_then(parse_address);
    if let Some(at) = attack.filter(|_| restart.is_none()) {
        println!("drvdom-blk: dma_test: the device reads sector 0 to {at:#x}");
        let outcome = blk.read_to_address(0, at, SECTOR_SIZE as u32);
        println!("drvdom-blk: dma_test: {outcome:?}");
    }
    // Test only: the device told to send sector 0's first 4 bytes as an
    // interrupt message to the address given (`dma_test=message:ADDRESS`).
    let message = option("dma_test")
        .and_then(|v| v.strip_prefix("message:"))
        .and_then(parse_address);
    if let Some(at) = message.filter(|_| restart.is_none()) {
        println!("drvdom-blk: dma_test: the device sends sector 0's first word to {at:#x}");
        let outcome = match driver_kit::hal::dma_buffer(SECTOR_SIZE as usize - 4) {
            Some(rest) => blk.read_message_to(0, at, rest),
            None => Outcome::Failed,
        };
        println!("drvdom-blk: dma_test: message sent: {outcome:?}");
    }
    // A restarted instance (`restart=K`) serves at once: the device was
    // described and tested by the first.
    if restart.is_none() {
        describe(&mut blk, text);
    }
    if domain_runtime::command_line()
        .split_whitespace()
        .any(|w| w == "bench_raw")
    {
        let mib = option("mib").and_then(|v| v.parse().ok()).unwrap_or(16);
        let random = option("random")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2000);
        bench::run(&mut blk, mib, random);
    }
    let disks = vdisk::parse(domain_runtime::command_line(), sectors, |bad| {
        println!(
            "drvdom-blk: vdisk={} does not fit the {}-sector device; not served",
            bad, sectors
        )
    });
    match restart {
        Some(k) => println!("drvdom-blk: restart {}: serving again", k),
        None => {
            for d in disks.iter().flatten() {
                println!(
                    "drvdom-blk: serving {} (sectors {}..{})",
                    d.name,
                    d.start,
                    d.start + d.sectors
                );
            }
        }
    }
    let Some(buffer) = driver_kit::hal::dma_buffer(serve::BOUNCE_BYTES) else {
        println!("drvdom-blk: no DMA memory left for requests (raise dma=)");
        return;
    };
    let mode = match option("grant") {
        Some("copy") => serve::GrantMode::Copy,
        _ => serve::GrantMode::Map,
    };
    let mut backend = serve::Backend::new(blk, disks, buffer, mode);
    backend.stale_test = option("dma_test") == Some("stale") && restart.is_none();
    backend.readonly_test = option("dma_test") == Some("readonly") && restart.is_none();
    backend.run();
}

fn parse_address(text: &str) -> Option<u64> {
    u64::from_str_radix(text.strip_prefix("0x")?, 16).ok()
}

/// Says what the device is and reads its first sector (a first start's self-test).
fn describe<T: virtio_drivers::transport::Transport>(blk: &mut Disk<T>, text: &str) {
    let sectors = blk.capacity();
    println!(
        "drvdom-blk: virtio-blk at {}: {} sectors of {} bytes ({} MiB){}",
        text,
        sectors,
        SECTOR_SIZE,
        sectors * SECTOR_SIZE / (1 << 20),
        if blk.readonly() { ", read-only" } else { "" }
    );
    println!(
        "drvdom-blk: completions by {}",
        match (blk.interrupts(), blk.msix) {
            (true, true) => "interrupt (MSI-X)",
            (true, false) => "interrupt (INTx)",
            _ => "polling",
        }
    );
    println!(
        "drvdom-blk: flush {}, discard {}, {} segments a request",
        if blk.flushes() { "sent" } else { "not needed" },
        match blk.discard_max() {
            0 => "unsupported",
            _ => "supported",
        },
        blk.seg_max()
    );
    match driver_kit::hal::dma_buffer(SECTOR_SIZE as usize) {
        Some(first) => match blk.read_own(0, first) {
            Outcome::Done => println!("drvdom-blk: sector 0 begins {:02x?}", &first[..16]),
            other => println!("drvdom-blk: reading sector 0 failed: {:?}", other),
        },
        None => println!("drvdom-blk: no DMA memory (raise dma=)"),
    }
}
