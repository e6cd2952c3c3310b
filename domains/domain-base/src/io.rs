//! Port I/O and device memory for domains that were given hardware.
//!
//! Safe to call: the kernel's I/O bitmap lets a domain reach only the ports it
//! was given, and a port it was not given faults and ends this domain, which
//! is no memory-safety violation of the domain's own Rust code. Device memory
//! is reached only through [`DeviceMemory`], made from the address the control
//! domain got back when it mapped the device.

/// Reads a byte from an I/O port.
pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: `in` touches no memory; the kernel decides whether the port is
    // allowed (otherwise #GP ends this domain).
    unsafe {
        core::arch::asm!("in al, dx", in("dx") port, out("al") v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// Writes a byte to an I/O port.
pub fn outb(port: u16, value: u8) {
    // SAFETY: as in `inb`.
    unsafe {
        core::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags))
    };
}

/// A window of device memory mapped into this domain (uncached).
pub struct DeviceMemory {
    base: u64,
    len: u64,
}

impl DeviceMemory {
    /// Device memory of `len` bytes at `base` in this domain's device window,
    /// as given at creation (see `layout::DEVICE_WINDOW`). Out-of-window
    /// ranges are refused.
    pub fn new(base: u64, len: u64) -> Option<DeviceMemory> {
        let window = ipc_abi::layout::DEVICE_WINDOW
            ..ipc_abi::layout::DEVICE_WINDOW + ipc_abi::layout::DEVICE_WINDOW_SIZE;
        let end = base.checked_add(len)?;
        (window.contains(&base) && end <= window.end).then_some(DeviceMemory { base, len })
    }

    /// Writes a 16-bit value at `offset` (ignored past the end).
    pub fn write_u16(&self, offset: u64, value: u16) {
        if offset.saturating_add(2) > self.len {
            return;
        }
        // SAFETY: within the window the kernel mapped for this domain's device
        // (an unmapped part would fault this domain only); device memory is
        // not a Rust object, so the write cannot break Rust invariants.
        unsafe { core::ptr::write_volatile((self.base + offset) as *mut u16, value) }
    }

    /// Reads a 16-bit value at `offset` (0 past the end).
    pub fn read_u16(&self, offset: u64) -> u16 {
        if offset.saturating_add(2) > self.len {
            return 0;
        }
        // SAFETY: as in `write_u16`.
        unsafe { core::ptr::read_volatile((self.base + offset) as *const u16) }
    }
}

/// A 16550 UART at `base`, driven by the `uart_16550` crate through port I/O.
/// The domain must have been given the eight ports from `base`; otherwise the
/// first access faults and ends this domain (no memory-safety question).
pub fn uart(base: u16) -> Option<uart_16550::Uart16550<uart_16550::backend::PioBackend>> {
    // SAFETY: the crate's requirement is exclusive, valid port access; the
    // kernel's I/O bitmap grants these ports to this domain alone (the control
    // domain gives a device to one domain), and invalid ones fault this domain.
    unsafe { uart_16550::Uart16550::new_port(base) }.ok()
}
