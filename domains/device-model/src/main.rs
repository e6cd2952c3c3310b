//! The device-model domain of one HVM guest (`hvm_guest=ID` on its command
//! line): the PC devices the guest's port I/O reaches, served through the
//! kernel's request page (`ipc_abi::hvm::IoRequest`), as Xen's ioreq
//! servers and NOVA's user-level VMM serve theirs. It is an ordinary
//! domain: if it dies, only its guest does (the kernel crashes it).
//!
//! Serves: COM1 (a 16550A, `uart.rs`; the guest's lines are printed on
//! this domain's console), the two 8259A interrupt controllers (`pic.rs`,
//! whose vectors it presents with `HvmInterrupt`), the ACPI PM1a blocks
//! (soft off: `HvmShutdown` power-off; the power button, which domain 0's
//! shutdown request presses), the reset register and keyboard
//! controller reset (reboot), the pvpanic port (a crash), PCI
//! configuration mechanism #1 with a host bridge (`pci.rs`) and a virtio
//! function for each of the guest's disks (`virtio_blk.rs`, served by
//! drvdom-blk) and interfaces (`virtio_net.rs`, served by drvdom-net)
//! behind it, and the rest of a PC's legacy ports as an empty
//! bus (inputs all ones, outputs dropped).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;

mod guest_memory;
mod pci;
mod pic;
mod uart;
mod virtio_blk;
mod virtio_net;
mod virtio_pci;
mod virtqueue;

use alloc::boxed::Box;
use core::sync::atomic::Ordering;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainId;
use domain_runtime::ipc_abi::domain::ShutdownReason;
use domain_runtime::ipc_abi::hvm::{self, IoPage, ANSWERED, FLOATING, POSTED};
use domain_runtime::ipc_abi::{launch, pc, shared::Virq};
use domain_runtime::{events, println};

domain_runtime::entry!(run);

/// COM1's line on the interrupt controllers.
const COM1_IRQ: u8 = pc::COM1_IRQ;

/// The guest's machine: its devices and what the guest has printed.
struct Machine {
    guest: DomainId,
    uart: uart::Uart,
    uart_irq: bool,
    pic: pic::Pic,
    pci: pci::Pci,
    line: alloc::vec::Vec<u8>,
    /// ACPI PM1 status and enable registers, and the SCI's level.
    pm1_sts: u16,
    pm1_en: u16,
    sci: bool,
    /// The guest's memory, for the virtio devices' queues and buffers.
    mem: guest_memory::GuestMemory,
    /// The virtio devices, function N of the bus being `devices[N]`, and
    /// which functions the guest kicked since they were last served.
    devices: alloc::vec::Vec<Device>,
    kicked: alloc::vec::Vec<bool>,
    /// Each device's refused requests as last reported.
    refused: alloc::vec::Vec<u64>,
    /// The port each function's doorbell is set at (0: none).
    doorbells: [u16; hvm::DOORBELLS],
}

/// What a virtio function is (each boxed: the two differ in size by
/// kilobytes).
enum Device {
    Blk(alloc::boxed::Box<virtio_blk::VirtioBlk>),
    Net(alloc::boxed::Box<virtio_net::VirtioNet>),
}

/// Where the virtio functions' I/O BARs start (one 256-byte BAR each),
/// inside the I/O window the root bridge's `_CRS` gives out.
const VIRTIO_IO_BASE: u16 = 0xc000;
/// The edge/level control registers of the two 8259s.
const ELCR: u16 = 0x4d0;

/// PM1 status/enable: the power button.
const PWRBTN: u16 = 1 << 8;

/// What domain 0 asked (`on_shutdown_request`): 1 power off (the power
/// button), 2 reboot (a reset).
static ASKED: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

fn asked(reboot: bool) {
    ASKED.store(if reboot { 2 } else { 1 }, Ordering::Relaxed);
}

impl Machine {
    /// A port access; returns what an input reads.
    fn port(&mut self, port: u16, size: u32, input: bool, data: u32) -> u32 {
        let com1 = pc::COM1_BASE..pc::COM1_BASE + pc::UART_PORTS;
        let value = match port {
            p if com1.contains(&p) => {
                let offset = p - pc::COM1_BASE;
                if input {
                    self.uart.read(offset) as u32
                } else {
                    if let Some(byte) = self.uart.write(offset, data as u8) {
                        self.output(byte);
                    }
                    0
                }
            }
            p if (pc::PCI_CONFIG_ADDRESS..pc::PCI_CONFIG_ADDRESS + pc::PCI_CONFIG_PORTS)
                .contains(&p) =>
            {
                let value = self
                    .pci
                    .access(p - pc::PCI_CONFIG_ADDRESS, size, input, data);
                if !input {
                    self.update_doorbells();
                }
                value
            }
            p if self
                .pci
                .functions
                .iter()
                .any(|f| f.ports().is_some_and(|r| r.contains(&p))) =>
            {
                self.virtio(p, size, input, data)
            }
            ELCR | 0x4d1 => {
                let chip = usize::from(port - ELCR);
                if input {
                    u32::from(self.pic.elcr(chip))
                } else {
                    self.pic.set_elcr(chip, data as u8);
                    0
                }
            }
            0x20 | 0x21 | 0xa0 | 0xa1 => {
                let (chip, data_port) = ((port >> 7) as usize & 1, port & 1 == 1);
                if input {
                    self.pic.read(chip, data_port) as u32
                } else {
                    self.pic.write(chip, data_port, data as u8);
                    0
                }
            }
            p if (hvm::ACPI_PM1A_EVT..hvm::ACPI_PM1A_EVT + 4).contains(&p) => {
                self.pm1(p - hvm::ACPI_PM1A_EVT, size, input, data)
            }
            hvm::ACPI_PM1A_CNT => {
                if input {
                    // SCI_EN: the machine is in ACPI mode from the start.
                    1
                } else {
                    let sleep_type = (data >> 10) & 7;
                    if data & 1 << 13 != 0 && sleep_type == hvm::ACPI_S5_SLP_TYP as u32 {
                        self.stop(ShutdownReason::PowerOff);
                    }
                    0
                }
            }
            hvm::ACPI_RESET_PORT if !input && data as u8 == hvm::ACPI_RESET_VALUE => {
                self.stop(ShutdownReason::Reboot);
                0
            }
            // The keyboard controller's reset line (Linux's fallback).
            0x64 if !input && data as u8 == 0xfe => {
                self.stop(ShutdownReason::Reboot);
                0
            }
            hvm::PVPANIC_PORT if input => 1,
            hvm::PVPANIC_PORT if data & 1 != 0 => {
                self.stop(ShutdownReason::Crash);
                0
            }
            _ => FLOATING,
        };
        self.update_irq();
        self.update_pci_lines();
        let mask = match size {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        };
        value & mask
    }

    /// An access to a virtio function's BAR.
    fn virtio(&mut self, port: u16, size: u32, input: bool, data: u32) -> u32 {
        let Some((i, base)) = self.pci.functions.iter().enumerate().find_map(|(i, f)| {
            f.ports()
                .filter(|r| r.contains(&port))
                .map(|r| (i, r.start))
        }) else {
            return FLOATING;
        };
        let (value, event) = self.pci.functions[i].io(port - base, size, input, data);
        match event {
            virtio_pci::Event::Notify(_) | virtio_pci::Event::Ready => self.kicked[i] = true,
            virtio_pci::Event::Reset => {
                if let Device::Net(net) = &mut self.devices[i] {
                    net.reset();
                }
            }
            virtio_pci::Event::None => {}
        }
        value
    }

    /// Serves the queues of every disk the guest kicked and of every
    /// interface (frames arrive and leave at any time).
    fn serve_devices(&mut self) {
        let mapped = self.mem.mapped;
        self.serve_each();
        // How often the cache of mapped guest pages missed, on the kernel
        // log at each power of two from 1024 (`bench linux` reports it).
        if (mapped + 1..=self.mem.mapped).any(|n| n >= 1024 && n.is_power_of_two()) {
            say(format_args!(
                "device-model: {} guest pages mapped so far (cache misses)",
                self.mem.mapped
            ));
        }
    }

    fn serve_each(&mut self) {
        for i in 0..self.devices.len() {
            let kicked = core::mem::take(&mut self.kicked[i]);
            let f = &mut self.pci.functions[i];
            let served = match &mut self.devices[i] {
                Device::Blk(_) if !kicked => continue,
                Device::Blk(blk) => blk.serve(f, &mut self.mem),
                Device::Net(net) => net.serve(f, &mut self.mem),
            };
            let refused = match &self.devices[i] {
                Device::Blk(blk) => blk.refused,
                Device::Net(net) => net.refused,
            };
            // Reported on the kernel log at the 1st, 2nd, 4th, 8th... one.
            if refused > self.refused[i] {
                let before = self.refused[i];
                self.refused[i] = refused;
                if (before + 1..=refused).any(|n| n.is_power_of_two()) {
                    say(format_args!(
                        "device-model: refused {} requests of PCI device {} naming memory outside the guest or malformed",
                        refused,
                        i + 1
                    ));
                }
            }
            match served {
                Ok(0) => {}
                Ok(queues) => f.interrupt(queues),
                Err(e) => {
                    say(format_args!(
                        "device-model: the guest broke the queues of PCI device {} ({:?}); it needs a reset",
                        i + 1,
                        e
                    ));
                    f.needs_reset();
                }
            }
        }
        self.update_pci_lines();
        self.send_messages();
    }

    /// Each function's notification port is a doorbell (the kernel lets the
    /// guest go on at once and sets the function's bit; `rung` serves it),
    /// set again whenever the driver moves or enables its I/O BAR.
    fn update_doorbells(&mut self) {
        for (i, f) in self.pci.functions.iter().enumerate() {
            let port = f.notify_port().unwrap_or(0);
            if self.doorbells.get(i) == Some(&port) || i >= hvm::DOORBELLS {
                continue;
            }
            match hc::hvm_doorbell(self.guest, port, i as u8) {
                Ok(_) => {
                    self.doorbells[i] = port;
                    if port != 0 {
                        say(format_args!(
                            "device-model: PCI device {} is kicked through a doorbell at port {port:#x}",
                            i + 1
                        ));
                    }
                }
                Err(e) => say(format_args!(
                    "device-model: the kernel refused a doorbell at port {port:#x}: {e}"
                )),
            }
        }
    }

    /// The doorbells the guest rang since last asked: those functions were kicked.
    fn rung(&mut self, bits: u64) {
        for (i, kicked) in self.kicked.iter_mut().enumerate() {
            if bits & 1 << i != 0 {
                *kicked = true;
            }
        }
    }

    /// Sends the MSI messages the functions have ready.
    fn send_messages(&mut self) {
        for f in self.pci.functions.iter_mut() {
            for (address, data) in f.messages() {
                if let Err(e) = hc::hvm_msi(self.guest, address, data) {
                    say(format_args!(
                        "device-model: the kernel refused an MSI message ({address:#x}, {data:#x}): {e}"
                    ));
                }
            }
        }
    }

    /// An access to device memory at `address` (a function's memory BAR);
    /// what a load reads.
    fn memory(&mut self, address: u64, size: u32, input: bool, data: u64) -> u64 {
        let found = self
            .pci
            .functions
            .iter()
            .position(|f| f.memory().is_some_and(|r| r.contains(&address)));
        let Some(i) = found else {
            return if input { u64::MAX } else { 0 };
        };
        let base = self.pci.functions[i].memory().map_or(0, |r| r.start);
        let value = self.pci.functions[i].mmio(address - base, size, input, data);
        self.send_messages();
        value
    }

    /// Each PCI interrupt line is high while a function on it asks.
    fn update_pci_lines(&mut self) {
        for irq in pc::PCI_INTX_IRQS {
            let high = self.pci.functions.iter().any(|f| f.irq == irq && f.line());
            self.pic.set_line(irq, high);
        }
    }

    /// Where the next PCI device sits: its I/O BAR, its interrupt line,
    /// its memory BAR (in the MMIO window, one page each).
    fn next_function(&self) -> virtio_pci::Slot {
        let slot = self.pci.functions.len() as u8 + 1;
        virtio_pci::Slot {
            io_base: VIRTIO_IO_BASE + u16::from(slot - 1) * virtio_pci::BAR_SIZE,
            irq: pc::pci_intx_irq(slot),
            memory: hvm::MMIO_BASE + u64::from(slot - 1) * virtio_pci::MEMORY_BAR_SIZE,
        }
    }

    fn add(&mut self, device: Device, function: virtio_pci::VirtioPci) {
        self.devices.push(device);
        self.pci.functions.push(function);
        self.kicked.push(false);
        self.refused.push(0);
    }

    /// PM1 status (bytes 0-1, write 1 to clear) and enable (bytes 2-3).
    fn pm1(&mut self, offset: u16, size: u32, input: bool, data: u32) -> u32 {
        let regs = self.pm1_sts as u32 | (self.pm1_en as u32) << 16;
        let shift = offset as u32 * 8;
        if input {
            return regs >> shift;
        }
        let mask = match size {
            1 => 0xff,
            2 => 0xffff,
            _ => u32::MAX,
        } << shift;
        let value = (data << shift) & mask;
        self.pm1_sts &= !(value as u16);
        self.pm1_en = ((self.pm1_en as u32 & !(mask >> 16)) | (value >> 16)) as u16;
        self.update_sci();
        0
    }

    /// Presses the power button: its status bit, and the SCI if enabled.
    fn press_power_button(&mut self) {
        self.pm1_sts |= PWRBTN;
        self.update_sci();
    }

    /// The SCI (ISA line 9): a PM1 event that is both reported and enabled.
    fn update_sci(&mut self) {
        let sci = self.pm1_sts & self.pm1_en & PWRBTN != 0;
        if sci && !self.sci {
            self.pic.raise(hvm::ACPI_SCI_IRQ);
        }
        self.sci = sci;
    }

    /// The guest powered off, reset or panicked.
    fn stop(&mut self, why: ShutdownReason) {
        if let Err(e) = hc::hvm_shutdown(self.guest, why) {
            say(format_args!("device-model: cannot stop the guest: {e}"));
        }
    }

    /// COM1's interrupt line, whose rising edge reaches the PIC.
    fn update_irq(&mut self) {
        let irq = self.uart.irq();
        if irq && !self.uart_irq {
            self.pic.raise(COM1_IRQ);
        }
        self.uart_irq = irq;
    }

    /// A byte the guest sent on COM1: whole lines go to this domain's console.
    fn output(&mut self, byte: u8) {
        match byte {
            b'\n' => {
                let text = core::str::from_utf8(&self.line).unwrap_or("(not UTF-8)");
                println!("{}", text.trim_end_matches('\r'));
                self.line.clear();
            }
            _ if self.line.len() < 512 => self.line.push(byte),
            _ => {}
        }
    }

    /// Presents every vector the interrupt controllers have ready.
    fn interrupts(&mut self) {
        while let Some(vector) = self.pic.take() {
            if let Err(e) = hc::hvm_interrupt(self.guest, vector) {
                say(format_args!(
                    "device-model: cannot interrupt the guest: {e}"
                ));
            }
        }
    }
}

fn run(start: &'static domain_runtime::StartInfo) {
    let Some(guest) = domain_runtime::command_line()
        .split_whitespace()
        .find_map(|w| w.strip_prefix(launch::HVM_GUEST)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .map(DomainId)
    else {
        println!(
            "device-model: no {}= on the command line",
            launch::HVM_GUEST
        );
        return;
    };
    // Its console is the guest's: the runtime's own notes (a driver
    // domain followed) go to the kernel log, as this domain's own do.
    domain_runtime::console::notes_to_kernel_log();
    let port = hc::event_bind_virq(Virq::DeviceModel).expect("bind the device-model VIRQ");
    let page: Box<IoPage> = Box::default();
    let va = &*page as *const IoPage as u64;
    if let Err(e) = hc::hvm_serve(guest, va) {
        say(format_args!(
            "device-model: cannot serve domain {}: {}",
            guest, e
        ));
        return;
    }
    say(format_args!("device-model: serving domain {}", guest));
    let mut m = Machine {
        guest,
        uart: uart::Uart::new(),
        uart_irq: false,
        pic: pic::Pic::new(),
        pci: pci::Pci::default(),
        line: alloc::vec::Vec::new(),
        pm1_sts: 0,
        pm1_en: 0,
        sci: false,
        mem: guest_memory::GuestMemory::new(guest, DomainId(start.domain_id)),
        devices: alloc::vec::Vec::new(),
        kicked: alloc::vec::Vec::new(),
        refused: alloc::vec::Vec::new(),
        doorbells: [0; hvm::DOORBELLS],
    };
    // The guest's disks, PCI devices 1, 2, ... in the order of its list.
    let disks = launch::values(domain_runtime::command_line(), launch::HVM_DISK)
        .filter_map(|v| v.parse::<u32>().ok());
    for device in disks.take(usize::from(pc::PCI_DEVICES)) {
        match virtio_blk::VirtioBlk::connect(device, m.next_function()) {
            Ok((blk, function)) => m.add(Device::Blk(alloc::boxed::Box::new(blk)), function),
            Err(e) => say(format_args!(
                "device-model: disk {} cannot be connected: {:?}",
                device, e
            )),
        }
    }
    // Its interfaces after them (`vif=` words name their MACs).
    let vifs = launch::values(domain_runtime::command_line(), launch::VIF).count();
    for vif in 0..vifs.min(usize::from(pc::PCI_DEVICES) - m.devices.len()) {
        match virtio_net::VirtioNet::connect(vif as u32, m.next_function()) {
            Ok((net, function)) => m.add(Device::Net(alloc::boxed::Box::new(net)), function),
            Err(()) => say(format_args!(
                "device-model: interface {} cannot be connected",
                vif
            )),
        }
    }
    domain_runtime::suspend::on_shutdown_request(asked);
    let mut input = [0u8; 256];
    loop {
        events::take(port);
        // Its console's notifications are looked at below (input); taken
        // here so that waiting for them does not return at once for ever.
        if let Some(c) = domain_runtime::console::port() {
            events::take(c);
        }
        // Likewise the interfaces' (their rings are looked at each turn).
        for d in &m.devices {
            if let Device::Net(net) = d {
                events::take(net.port());
            }
        }
        m.rung(page.doorbells.swap(0, Ordering::AcqRel));
        if page.guest_gone.load(Ordering::Acquire) != 0 {
            say(format_args!(
                "device-model: domain {} is gone; stopping",
                guest
            ));
            return;
        }
        for (vcpu, slot) in page.slots.iter().enumerate() {
            if slot.state.load(Ordering::Acquire) != POSTED {
                continue;
            }
            let size = slot.size.load(Ordering::Relaxed);
            let input = slot.input.load(Ordering::Relaxed) != 0;
            let data = slot.data.load(Ordering::Relaxed);
            let answer = if slot.space.load(Ordering::Relaxed) == hvm::SPACE_MEMORY {
                let address = slot.address.load(Ordering::Relaxed);
                m.memory(address, size, input, data)
            } else {
                let at = slot.port.load(Ordering::Relaxed) as u16;
                u64::from(m.port(at, size, input, data as u32))
            };
            slot.data.store(answer, Ordering::Relaxed);
            slot.state.store(ANSWERED, Ordering::Release);
            if let Err(e) = hc::hvm_io_done(guest, vcpu as u32) {
                say(format_args!(
                    "device-model: the kernel refused an answer: {e}"
                ));
            }
        }
        // Domain 0's requests: a shutdown is the power button, a reboot a reset.
        domain_runtime::suspend::serve_while_waiting(None);
        match ASKED.swap(0, Ordering::Relaxed) {
            1 => m.press_power_button(),
            2 => m.stop(ShutdownReason::Reboot),
            _ => {}
        }
        // What is typed at the guest's console arrives on COM1.
        // As much as the UART's FIFO takes; the rest waits in console-dom
        // until the guest has read what is there.
        let room = m.uart.room().min(input.len());
        let typed = if room > 0 {
            domain_runtime::console::try_read(&mut input[..room])
        } else {
            0
        };
        if typed > 0 {
            m.uart.receive(&input[..typed]);
            m.update_irq();
        }
        m.serve_devices();
        m.interrupts();
        let busy = typed > 0
            || page
                .slots
                .iter()
                .any(|s| s.state.load(Ordering::Acquire) == POSTED);
        if !busy {
            let mut ports: heapless::Vec<u16, { 3 + pc::PCI_DEVICES as usize }> =
                heapless::Vec::new();
            let _ = ports.push(port);
            ports.extend(domain_runtime::console::port());
            ports.extend(domain_runtime::control::port());
            for d in &m.devices {
                if let Device::Net(net) = d {
                    let _ = ports.push(net.port());
                }
            }
            events::block_for(&ports);
        }
    }
}

/// This domain's own messages go to the kernel's log (`[domid]` of the
/// device model); its console ring carries the guest's COM1 alone.
fn say(args: core::fmt::Arguments<'_>) {
    let mut line: heapless::String<{ domain_runtime::ipc_abi::hypercall::LOG_LINE_MAX }> =
        heapless::String::new();
    let _ = core::fmt::Write::write_fmt(&mut line, args);
    let _ = line.push('\n');
    let _ = hc::console_write(line.as_bytes());
}
