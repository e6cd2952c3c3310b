//! Hardware for driver domains: what the control domain gives a never-run
//! domain (I/O ports, device memory, IRQs, PCI functions, DMA pages), and
//! the filtered configuration writes of a function's holder. The reads and
//! lookups that need no translation go straight to `domain::pci`.

use super::rights::other;
use crate::arch::memory::with_frames;
use crate::domain::{devices, pci, Kernel};
use ipc_abi::hypercall::{args, Error};

pub fn add_io_ports(
    k: &mut Kernel,
    caller: usize,
    a: args::DomainAddIoPorts,
) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    devices::add_io_ports(k, t, a.first_port, a.count).map(|_| 0)
}

pub fn add_mmio(k: &mut Kernel, caller: usize, a: args::DomainAddMmio) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    with_frames(|f| devices::add_mmio(k, f, t, a.phys, a.pages, &|_| false))
}

pub fn add_irq(k: &mut Kernel, caller: usize, a: args::DomainAddIrq) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    devices::add_irq(k, t, a.irq).map(|_| 0)
}

pub fn add_pci(k: &mut Kernel, caller: usize, a: args::DomainAddPci) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    with_frames(|f| pci::assign(k, f, t, a.bdf)).map(|_| 0)
}

pub fn add_dma(k: &mut Kernel, caller: usize, a: args::DomainAddDma) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    with_frames(|f| pci::add_dma(k, f, t, a.pages)).map(|_| 0)
}

pub fn pci_config_write(
    k: &mut Kernel,
    caller: usize,
    a: args::PciConfigWrite,
) -> Result<u64, Error> {
    pci::config_write(k, caller, a.bdf, a.offset, a.value).map(|_| 0)
}
