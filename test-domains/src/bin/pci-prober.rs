//! Tries to reach a PCI function and DMA memory it was never given: every
//! attempt must be refused (`pci-prober: ... refused: permission denied`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::layout::DMA_WINDOW;
use domain_runtime::println;

domain_runtime::entry!(run);

/// The virtio disk of the tests, 00:04.0.
const DISK: u16 = 4 << 3;

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
    println!("pci-prober: done");
}
