//! Drives QEMU's `edu` test device (`pci=00:06.0` on its line), a PCI
//! function whose only message interrupt is MSI (no MSI-X): binds it
//! through the kernel (`EventBindMsi`) and has the device raise
//! `interrupts=N` (default 8) interrupts, waiting for each on the port.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::launch;
use domain_runtime::{events, println};
use driver_kit::pci::{read32, write32};

domain_runtime::entry!(run);

/// edu's registers (QEMU's docs/specs/edu.rst): its identification, the
/// interrupt status, "raise" (sets status bits, sends an interrupt) and
/// "acknowledge" (clears them).
const IDENT: u64 = 0x00;
const STATUS: u64 = 0x24;
const RAISE: u64 = 0x60;
const ACK: u64 = 0x64;

fn run(_: &'static domain_runtime::StartInfo) {
    let Some(bdf) =
        domain_runtime::option(launch::PCI).and_then(domain_config::config::pci_address)
    else {
        println!("edu-tester: no pci= function");
        return;
    };
    let Ok(regs) = hc::pci_bar(bdf, 0) else {
        println!("edu-tester: its BAR 0 is not mapped");
        return;
    };
    let ident = read32(regs + IDENT);
    println!("edu-tester: edu device, identification {ident:#010x}");
    // Memory decode and bus mastering (an MSI is a write the device makes).
    let command = hc::pci_config_read(bdf, 0x04).unwrap_or(0) & 0xffff;
    let _ = hc::pci_config_write(bdf, 0x04, command | 0b110);
    let port = match hc::event_bind_msi(bdf) {
        Ok(p) => p,
        Err(e) => {
            println!("edu-tester: binding its MSI refused: {e}");
            return;
        }
    };
    println!("edu-tester: MSI bound to port {port}");
    // A second binding of the same capability is refused.
    if let Err(e) = hc::event_bind_msi(bdf) {
        println!("edu-tester: binding it again refused: {e}");
    }
    let wanted = domain_runtime::option("interrupts")
        .and_then(|v| v.parse().ok())
        .unwrap_or(8u32);
    for i in 0..wanted {
        let bit = 1 << (i % 32);
        write32(regs + RAISE, bit);
        events::wait(port);
        let status = read32(regs + STATUS);
        write32(regs + ACK, status);
        if status & bit == 0 {
            println!("edu-tester: interrupt {i} came with status {status:#x}");
            return;
        }
    }
    println!("edu-tester: {wanted} interrupts by MSI, each on port {port}");
}
