//! The PC's standard serial ports, as the kernel, console-dom and domain 0
//! use them: COM1 is the console (the kernel's until console-dom takes it
//! over), COM2 domain 0's management line (`mgmt=com2`); and the PCI
//! configuration ports an HVM guest's device model serves and domain 0's
//! ACPI tables describe.

/// COM1's I/O base and IRQ (the kernel's default; `com1=` may move them).
pub const COM1_BASE: u16 = 0x3f8;
pub const COM1_IRQ: u8 = 4;
/// COM2's I/O base and IRQ.
pub const COM2_BASE: u16 = 0x2f8;
pub const COM2_IRQ: u8 = 3;
/// I/O ports a 16550 occupies from its base.
pub const UART_PORTS: u16 = 8;

/// PCI configuration mechanism #1: the address register at 0xcf8, the
/// data window at 0xcfc–0xcff; 8 ports in all.
pub const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
pub const PCI_CONFIG_DATA: u16 = 0xcfc;
pub const PCI_CONFIG_PORTS: u16 = 8;

/// The ISA lines an HVM guest's PCI devices interrupt on (INTA of bus 0
/// device N uses `PCI_INTX_IRQS[(N - 1) % 4]`): the device model raises
/// them, and domain 0's ACPI tables (`_PRT`) tell Linux so.
pub const PCI_INTX_IRQS: [u8; 4] = [10, 11, 5, 7];
/// PCI devices on an HVM guest's bus 0 after the host bridge (00:01.0 on).
pub const PCI_DEVICES: u8 = 8;

/// The line INTA of bus 0 device `device` (1 on) interrupts on.
pub fn pci_intx_irq(device: u8) -> u8 {
    PCI_INTX_IRQS[usize::from(device.saturating_sub(1)) % PCI_INTX_IRQS.len()]
}
