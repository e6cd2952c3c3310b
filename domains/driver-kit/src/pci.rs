//! This domain's PCI function, through the kernel: configuration space by
//! hypercall (only the function it was given answers; the kernel filters
//! writes), its memory BARs where the kernel mapped them, and opening it as
//! a virtio device.

use crate::hal::{MappedBar, XenolithHal};
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::launch;
use domain_runtime::ipc_abi::layout::PAGE_SIZE;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;

/// Configuration access limited to the one function this domain holds.
pub struct KernelCam {
    pub bdf: u16,
}

fn bdf_of(df: DeviceFunction) -> u16 {
    u16::from(df.bus) << 8 | u16::from(df.device) << 3 | u16::from(df.function)
}

/// `bdf` as virtio-drivers names it.
pub fn device_function(bdf: u16) -> DeviceFunction {
    DeviceFunction {
        bus: (bdf >> 8) as u8,
        device: ((bdf >> 3) & 0x1f) as u8,
        function: (bdf & 7) as u8,
    }
}

impl ConfigurationAccess for KernelCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        if bdf_of(df) != self.bdf {
            // Every other function looks absent, as on an empty slot.
            return u32::MAX;
        }
        hc::pci_config_read(self.bdf, offset).unwrap_or(u32::MAX)
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, data: u32) {
        if bdf_of(df) == self.bdf {
            // A refused write (the kernel's filter) changes nothing.
            let _ = hc::pci_config_write(self.bdf, offset, data);
        }
    }

    // An unsafe trait method with nothing unsafe in it: the clone only
    // carries the function number; every access still goes through the kernel.
    #[allow(unsafe_code)]
    unsafe fn unsafe_clone(&self) -> Self {
        KernelCam { bdf: self.bdf }
    }
}

/// The PCI function this domain was given, opened as a virtio device.
pub struct Function {
    /// `bus << 8 | device << 3 | function`.
    pub bdf: u16,
    /// How the command line named it (`00:04.0`).
    pub name: &'static str,
    pub transport: PciTransport,
    /// The INTx line the firmware routed it to, unless `poll` is on the
    /// command line (then completions are polled: `-icount` benchmarks count
    /// instructions that way, since a blocked domain lets virtual time jump).
    pub irq_line: Option<u8>,
    /// Whether to take interrupts at all (`poll` on the command line: no).
    pub interrupts: bool,
}

/// Why the function could not be opened.
#[derive(Debug)]
pub enum OpenError {
    NoPciOption,
    NotAnAddress(&'static str),
    NotVirtio(&'static str, virtio_drivers::transport::pci::VirtioPciError),
}

impl core::fmt::Display for OpenError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OpenError::NoPciOption => write!(f, "no pci= on the command line: no device to drive"),
            OpenError::NotAnAddress(t) => write!(f, "pci={} is not a PCI address", t),
            OpenError::NotVirtio(t, e) => {
                write!(f, "{} is not a virtio device I can drive: {}", t, e)
            }
        }
    }
}

/// Opens the function `pci=` names: maps its memory BARs (where the kernel
/// put them), sets up the DMA pages `dma=KiB` gave, and finds its virtio
/// transport.
pub fn open() -> Result<Function, OpenError> {
    let name = domain_runtime::option(launch::PCI).ok_or(OpenError::NoPciOption)?;
    let bdf = domain_config::config::pci_address(name).ok_or(OpenError::NotAnAddress(name))?;
    let dma_kib: u64 = domain_runtime::option(launch::DMA)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let df = device_function(bdf);
    let mut root = PciRoot::new(KernelCam { bdf });
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
    crate::hal::init((dma_kib * 1024 / PAGE_SIZE) as usize, &bars);
    // Memory decode on, bus mastering off, until the device is reset: a
    // previous holder of the function (dead now; the kernel cleared its
    // bus mastering) left it queues that name its DMA pages, which are free now or
    // someone else's. With bus mastering on first, the device could go on
    // writing there (received frames, say) before we reset it.
    let command = hc::pci_config_read(bdf, 0x04).unwrap_or(0) & 0xffff;
    let _ = hc::pci_config_write(bdf, 0x04, (command & !0b100) | 0b010);
    let mut transport = PciTransport::new::<XenolithHal, _>(&mut root, df)
        .map_err(|e| OpenError::NotVirtio(name, e))?;
    // Reset (virtio 1.x 2.1.2: status 0, and wait until it reads back 0),
    // and only then let it master the bus.
    use virtio_drivers::transport::{DeviceStatus, Transport};
    transport.set_status(DeviceStatus::empty());
    while transport.get_status() != DeviceStatus::empty() {
        core::hint::spin_loop();
    }
    let _ = hc::pci_config_write(bdf, 0x04, command | 0b110);
    let poll = domain_runtime::command_line()
        .split_whitespace()
        .any(|w| w == "poll");
    let irq_line = hc::pci_config_read(bdf, 0x3c)
        .ok()
        .map(|v| v as u8)
        .filter(|&l| l != 0 && l != 0xff && !poll);
    Ok(Function {
        bdf,
        name,
        transport,
        irq_line,
        interrupts: !poll,
    })
}

/// Writes a 16-bit device register at `va`, inside a BAR the kernel mapped
/// for this domain (`pci_bar`).
#[allow(unsafe_code)]
pub fn write16(va: u64, value: u16) {
    // The caller found `va` from `pci_bar` and the device's capability.
    // SAFETY: `va` lies in one of this domain's BAR mappings (device memory,
    // uncached); a volatile 16-bit store is the access the register expects.
    unsafe { core::ptr::write_volatile(va as *mut u16, value) }
}

/// Reads a 16-bit device register at `va` (as `write16`).
#[allow(unsafe_code)]
pub fn read16(va: u64) -> u16 {
    // SAFETY: as in `write16`.
    unsafe { core::ptr::read_volatile(va as *const u16) }
}

/// Writes a 32-bit device register at `va` (as `write16`).
#[allow(unsafe_code)]
pub fn write32(va: u64, value: u32) {
    // SAFETY: as in `write16`, a 32-bit store.
    unsafe { core::ptr::write_volatile(va as *mut u32, value) }
}

/// Reads a 32-bit device register at `va` (as `write16`).
#[allow(unsafe_code)]
pub fn read32(va: u64) -> u32 {
    // SAFETY: as in `write16`, a 32-bit load.
    unsafe { core::ptr::read_volatile(va as *const u32) }
}
