//! This domain's PCI function, through the kernel: configuration space by
//! hypercall (only the function it was given answers; the kernel filters
//! writes), and its memory BARs where the kernel mapped them.

use domain_runtime::hypercall as hc;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

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
