//! drvdom-blk: the block driver domain.
//!
//! Given a PCI function (`pci=BB:DD.F`) and DMA memory (`dma=KiB`) by the
//! toolstack, it alone drives the machine's virtio-blk disk (our own driver,
//! `disk.rs`, on the PCI transport of `virtio-drivers`, over the kernel's
//! mediated PCI access), and serves the
//! virtual disks its command line names (`vdisk=NAME:START+SECTORS` or
//! `vdisk=NAME:all`) to guests over block rings (`serve.rs`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_code)]

mod bench;
mod disk;
mod dma;
mod hal;
mod pci;
mod serve;
mod vdisk;
mod virtqueue;

use disk::{Disk, Outcome};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::layout::PAGE_SIZE;
use domain_runtime::ipc_abi::proto::block::SECTOR_SIZE;
use domain_runtime::println;
use hal::{MappedBar, XenolithHal};
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;

domain_runtime::entry!(run);

/// Value of `key=` on the command line.
fn option(key: &str) -> Option<&'static str> {
    domain_runtime::command_line()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

fn run(_: &'static domain_runtime::StartInfo) {
    let Some(text) = option("pci") else {
        println!("drvdom-blk: no pci= on the command line: no disk to drive");
        return;
    };
    let Some(bdf) = domain_config::config::pci_address(text) else {
        println!("drvdom-blk: pci={} is not a PCI address", text);
        return;
    };
    let dma_kib: u64 = option("dma").and_then(|v| v.parse().ok()).unwrap_or(0);
    let df = pci::device_function(bdf);
    let mut root = PciRoot::new(pci::KernelCam { bdf });
    let mut bars: heapless::Vec<MappedBar, 6> = heapless::Vec::new();
    let mut i = 0u8;
    while i < 6 {
        let info = root.bar_info(df, i).ok().flatten();
        if let Some((phys, size)) = info.as_ref().and_then(|b| b.memory_address_size()) {
            if let Ok(va) = hc::pci_bar(bdf, i) {
                let _ = bars.push(MappedBar { phys, size, va });
            }
        }
        i += if info.is_some_and(|b| b.takes_two_entries()) {
            2
        } else {
            1
        };
    }
    hal::init((dma_kib * 1024 / PAGE_SIZE) as usize, &bars);
    let transport = match PciTransport::new::<XenolithHal, _>(&mut root, df) {
        Ok(t) => t,
        Err(e) => {
            println!(
                "drvdom-blk: {} is not a virtio device I can drive: {}",
                text, e
            );
            return;
        }
    };
    let poll = domain_runtime::command_line()
        .split_whitespace()
        .any(|w| w == "poll");
    let line = hc::pci_config_read(bdf, 0x3c)
        .ok()
        .map(|v| v as u8)
        .filter(|&l| l != 0 && l != 0xff && !poll);
    let mut blk = match Disk::new(transport, line) {
        Ok(b) => b,
        Err(e) => {
            println!("drvdom-blk: the virtio-blk device did not start: {}", e);
            return;
        }
    };
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
        if blk.interrupts() {
            "interrupt"
        } else {
            "polling"
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
    match hal::dma_buffer(SECTOR_SIZE as usize) {
        Some(first) => match blk.read_own(0, first) {
            Outcome::Done => println!("drvdom-blk: sector 0 begins {:02x?}", &first[..16]),
            other => println!("drvdom-blk: reading sector 0 failed: {:?}", other),
        },
        None => println!("drvdom-blk: no DMA memory (raise dma=)"),
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
    for d in disks.iter().flatten() {
        println!(
            "drvdom-blk: serving {} (sectors {}..{})",
            d.name,
            d.start,
            d.start + d.sectors
        );
    }
    let Some(buffer) = hal::dma_buffer(serve::BOUNCE_BYTES) else {
        println!("drvdom-blk: no DMA memory left for requests (raise dma=)");
        return;
    };
    let mode = match option("grant") {
        Some("copy") => serve::GrantMode::Copy,
        _ => serve::GrantMode::Map,
    };
    serve::Backend::new(blk, disks, buffer, mode).run();
}
