//! drvdom-net: the network driver domain.
//!
//! Given a PCI function (`pci=BB:DD.F`) and DMA memory (`dma=KiB`) by the
//! toolstack, it alone drives the machine's virtio-net NIC (`nic.rs`, with
//! `virtio-drivers`), and switches frames between it and every guest's
//! interface (`switch.rs`, `serve.rs`). `ifname=dummy` (the hypervisor
//! option, passed on by the toolstack) leaves the NIC alone: guests then
//! reach only each other.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

mod bench;
mod serve;
mod switch;
mod switched;

use domain_runtime::ipc_abi::proto::net::MacText;
use domain_runtime::option;
use domain_runtime::println;
use driver_kit::nic::Nic;

domain_runtime::entry!(run);

/// Whether the command line holds the bare word `word`.
fn flag(word: &str) -> bool {
    domain_runtime::command_line()
        .split_whitespace()
        .any(|w| w == word)
}

fn run(_: &'static domain_runtime::StartInfo) {
    let ifname = option(domain_runtime::ipc_abi::launch::IFNAME).unwrap_or("auto");
    let mut nic = if ifname == "dummy" {
        println!("drvdom-net: ifname=dummy: no NIC; guests reach each other through the switch");
        None
    } else {
        open_nic(ifname)
    };
    if let (Some(n), true) = (nic.as_mut(), flag("bench_raw")) {
        bench::run(
            n,
            option("frames")
                .and_then(|v| v.parse().ok())
                .unwrap_or(20_000),
        );
    }
    if flag("tx_write_test") {
        serve::ask_write_test();
    }
    serve::Backend::new(nic).run()
}

/// The NIC `pci=` names, started; None (and a line saying why) if it cannot be.
/// A device that is there but does not start is tried again (up to three
/// times, each after a reset): about once in fifteen boots the first start
/// reads a queue as already in use (`docs/reliability.md`, "Known, not yet
/// understood"), and a second start has always worked.
fn open_nic(ifname: &str) -> Option<Nic<virtio_drivers::transport::pci::PciTransport>> {
    for attempt in 1..=3 {
        let f = match driver_kit::open() {
            Ok(f) => f,
            Err(e) => {
                println!("drvdom-net: {}; switching between guests only", e);
                return None;
            }
        };
        let msix = f.interrupts.then_some(f.bdf);
        match Nic::new(f.transport, msix, f.irq_line) {
            Ok(n) => {
                println!(
                    "drvdom-net: virtio-net at {} ({}), MAC {}, {}",
                    f.name,
                    ifname,
                    MacText(n.mac()),
                    match (n.interrupts(), n.msix) {
                        (true, true) => "interrupts (MSI-X)",
                        (true, false) => "interrupts (INTx)",
                        _ => "polling",
                    }
                );
                return Some(n);
            }
            Err(e) if attempt < 3 => {
                println!("drvdom-net: {}: {}; trying again", f.name, e);
                domain_runtime::events::sleep_ns(10_000_000);
            }
            Err(e) => {
                println!(
                    "drvdom-net: {}: {}; switching between guests only",
                    f.name, e
                );
            }
        }
    }
    None
}
