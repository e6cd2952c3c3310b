//! Tries to reach a PCI function and DMA memory it was never given: every
//! attempt must be refused (`pci-prober: ... refused: permission denied`).
//! Given a function of its own (`pci=00:05.0`, the NIC), it tries to turn
//! on MSI-X, which would let its device raise any interrupt: refused too;
//! and to switch its decoding off: kept on.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::layout::DMA_WINDOW;
use domain_runtime::println;

domain_runtime::entry!(run);

/// The virtio disk of the tests, 00:04.0.
const DISK: u16 = 4 << 3;
/// The virtio NIC of the tests, 00:05.0 (ours when the line says so).
const NIC: u16 = 5 << 3;

fn report<T: core::fmt::Debug>(what: &str, r: domain_runtime::ipc_abi::hypercall::Result<T>) {
    match r {
        Ok(v) => println!("pci-prober: {} succeeded: {:?}", what, v),
        Err(e) => println!("pci-prober: {} refused: {}", what, e),
    }
}

fn run(_: &'static domain_runtime::StartInfo) {
    report("config read of 00:04.0", hc::pci_config_read(DISK, 0));
    report("command write to 00:04.0", hc::pci_config_write(DISK, 4, 0));
    report("BAR 4 of 00:04.0", hc::pci_bar(DISK, 4));
    report("config read of the host bridge", hc::pci_config_read(0, 0));
    report("DMA address", hc::dma_phys(DMA_WINDOW));
    // Switching its own function's decoding off: the kernel keeps it on
    // (only bus mastering goes), as the memory map must not change while
    // other CPUs drive their devices.
    if hc::pci_config_write(NIC, 4, 0).is_ok() {
        let command = hc::pci_config_read(NIC, 4).unwrap_or(0) & 0xffff;
        println!("pci-prober: its own command register after writing 0: {command:#06x}");
    }
    if let Some(at) = find_msix(NIC) {
        println!("pci-prober: its own function has MSI-X at {:#x}", at);
        let control = hc::pci_config_read(NIC, at).unwrap_or(0);
        report(
            "MSI-X enable",
            hc::pci_config_write(NIC, at, control | 1 << 31),
        );
    }
    println!("pci-prober: done");
}

/// The offset of `bdf`'s MSI-X capability, walking its capability list with
/// configuration reads (which pass through for a function we hold).
fn find_msix(bdf: u16) -> Option<u8> {
    let mut at = (hc::pci_config_read(bdf, 0x34).ok()? & 0xfc) as u8;
    for _ in 0..48 {
        if at < 0x40 {
            return None;
        }
        let head = hc::pci_config_read(bdf, at).ok()?;
        if head & 0xff == 0x11 {
            return Some(at);
        }
        at = ((head >> 8) & 0xfc) as u8;
    }
    None
}
