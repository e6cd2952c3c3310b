//! The virtio-blk device (virtio 1.x, section 5.2), driven by this domain.
//!
//! Owns: feature negotiation (read-only, flush, discard, segment limit),
//! the request queue, turning a command and the physical pages of its data
//! into a descriptor chain (header, data, status byte), and collecting
//! finished requests, by INTx interrupt or by polling. Many requests can be
//! in flight; data moves by DMA straight from and to whatever pages the
//! caller names (a frontend's granted page, or a DMA-window buffer).
//!
//! `virtio-drivers` still provides the PCI transport (capabilities, common
//! configuration, notification); only the block protocol is ours.

use bitflags::bitflags;
use domain_runtime::hypercall as hc;
use driver_kit::hal;
use driver_kit::virtqueue::{self, Buffer, VirtQueue};
use virtio_drivers::transport::Transport;

bitflags! {
    /// Feature bits of a virtio-blk device that this driver uses.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Features: u64 {
        const SEG_MAX = 1 << 2;
        const RO = 1 << 5;
        const FLUSH = 1 << 9;
        const DISCARD = 1 << 13;
        const VERSION_1 = 1 << 32;
        /// Its addresses are the platform's (ours are the kernel's device
        /// addresses, `DmaPhys`): a device behind the IOMMU requires it.
        const ACCESS_PLATFORM = driver_kit::transport::ACCESS_PLATFORM;
    }
}

/// Request types (virtio 5.2.6).
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_DISCARD: u32 = 11;
/// Device status byte values.
const S_OK: u8 = 0;
const S_UNSUPP: u8 = 2;

const QUEUE: u16 = 0;
/// Per descriptor head, in DMA memory: the 16-byte header, a 16-byte
/// discard range, the status byte.
const SLOT: usize = 48;
const RANGE_AT: usize = 16;
const STATUS_AT: usize = 32;

/// What a request asks the device to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Read,
    Write,
    Flush,
    Discard { sectors: u32 },
}

/// How the device answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed,
    Unsupported,
}

/// The disk and its one request queue.
pub struct Disk<T: Transport> {
    transport: T,
    queue: VirtQueue,
    /// `SLOT` bytes per descriptor head, in the DMA window.
    slots: &'static mut [u8],
    slots_phys: u64,
    capacity: u64,
    features: Features,
    /// Data buffers one request may carry.
    seg_max: usize,
    /// Sectors one discard may cover.
    discard_max: u32,
    /// The INTx line's event port, if completions come by interrupt.
    irq: Option<u16>,
    /// Its interrupts come by MSI-X (not INTx).
    pub msix: bool,
}

impl<T: Transport> Disk<T> {
    /// Starts the device: negotiates features, sets up the queue, binds INTx
    /// line `line` if given.
    /// Interrupts by MSI-X if function `msix` has it (None: not at all
    /// that way), else by INTx `line`.
    pub fn new(
        mut transport: T,
        msix: Option<u16>,
        line: Option<u8>,
    ) -> Result<Disk<T>, &'static str> {
        let wanted = Features::SEG_MAX
            | Features::RO
            | Features::FLUSH
            | Features::DISCARD
            | Features::VERSION_1
            | Features::ACCESS_PLATFORM;
        let features = transport.begin_init(wanted);
        let config = |at: usize| transport.read_config_space::<u32>(at).unwrap_or(0);
        let capacity = u64::from(config(0)) | u64::from(config(4)) << 32;
        let seg_max = if features.contains(Features::SEG_MAX) {
            config(12) as usize
        } else {
            usize::from(virtqueue::SIZE) - 2
        };
        let discard_max = if features.contains(Features::DISCARD) {
            config(36)
        } else {
            0
        };
        if (transport.max_queue_size(QUEUE) as usize) < usize::from(virtqueue::SIZE) {
            return Err("the device's queue is smaller than 128 descriptors");
        }
        let page = hal::dma_page().ok_or("no DMA memory for the queue")?;
        let queue = VirtQueue::new(page);
        let (desc, avail, used) = queue.areas();
        transport.queue_set(
            QUEUE,
            u32::from(virtqueue::SIZE),
            desc as _,
            avail as _,
            used as _,
        );
        let slots = hal::dma_buffer(SLOT * usize::from(virtqueue::SIZE))
            .ok_or("no DMA memory for request headers")?;
        let slots_phys = hal::phys_of(slots.as_ptr());
        let msix = msix.and_then(|bdf| driver_kit::msix::bind(bdf, &[QUEUE]));
        transport.finish_init();
        let irq = msix.or_else(|| line.and_then(|l| hc::event_bind_pirq(l).ok()));
        Ok(Disk {
            transport,
            queue,
            slots,
            slots_phys,
            capacity,
            features,
            seg_max: seg_max.clamp(1, usize::from(virtqueue::SIZE) - 2),
            discard_max,
            irq,
            msix: msix.is_some(),
        })
    }

    /// Size in 512-byte sectors.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn readonly(&self) -> bool {
        self.features.contains(Features::RO)
    }

    /// Whether the device may cache writes (then a flush is sent to it;
    /// otherwise every completed write is already durable).
    pub fn flushes(&self) -> bool {
        self.features.contains(Features::FLUSH)
    }

    /// Sectors one discard may cover (0: the device does not discard).
    pub fn discard_max(&self) -> u32 {
        self.discard_max
    }

    /// Data buffers one request may carry.
    pub fn seg_max(&self) -> usize {
        self.seg_max
    }

    /// Whether completions come by interrupt.
    pub fn interrupts(&self) -> bool {
        self.irq.is_some()
    }

    /// Queues a request (seen by the device at the next [`Disk::kick`]);
    /// returns its tag, or None when the queue has no room for it now.
    pub fn submit(&mut self, cmd: Command, sector: u64, data: &[Buffer]) -> Option<u16> {
        if data.len() > self.seg_max || self.queue.free() < data.len() + 2 {
            return None;
        }
        let head = self.queue.next_head();
        let at = usize::from(head) * SLOT;
        let slot = &mut self.slots[at..at + SLOT];
        let kind = match cmd {
            Command::Read => T_IN,
            Command::Write => T_OUT,
            Command::Flush => T_FLUSH,
            Command::Discard { .. } => T_DISCARD,
        };
        slot[..4].copy_from_slice(&kind.to_le_bytes());
        slot[4..8].fill(0);
        slot[8..16].copy_from_slice(&sector.to_le_bytes());
        slot[STATUS_AT] = 0xff;
        let phys = self.slots_phys + at as u64;
        let mut chain: heapless::Vec<Buffer, { virtqueue::SIZE as usize }> = heapless::Vec::new();
        let _ = chain.push(Buffer {
            phys,
            len: 16,
            device_writes: false,
        });
        if let Command::Discard { sectors } = cmd {
            slot[RANGE_AT..RANGE_AT + 8].copy_from_slice(&sector.to_le_bytes());
            slot[RANGE_AT + 8..RANGE_AT + 12].copy_from_slice(&sectors.to_le_bytes());
            slot[RANGE_AT + 12..RANGE_AT + 16].fill(0);
            let _ = chain.push(Buffer {
                phys: phys + RANGE_AT as u64,
                len: 16,
                device_writes: false,
            });
        }
        for b in data {
            let _ = chain.push(Buffer {
                device_writes: cmd == Command::Read,
                ..*b
            });
        }
        let _ = chain.push(Buffer {
            phys: phys + STATUS_AT as u64,
            len: 1,
            device_writes: true,
        });
        self.queue.add(&chain)
    }

    /// Hands every submitted request to the device.
    pub fn kick(&mut self) {
        if self.queue.publish() {
            self.transport.notify(QUEUE);
        }
    }

    /// A finished request's tag and outcome, if any finished.
    pub fn finished(&mut self) -> Option<(u16, Outcome)> {
        let (head, _) = self.queue.take_used()?;
        let status = hal::read_device_byte(&self.slots[usize::from(head) * SLOT + STATUS_AT]);
        Some((
            head,
            match status {
                S_OK => Outcome::Done,
                S_UNSUPP => Outcome::Unsupported,
                _ => Outcome::Failed,
            },
        ))
    }

    /// Waits for the device to finish something (by interrupt; without one,
    /// returns at once for the caller to poll again).
    pub fn wait(&mut self) {
        let Some(port) = self.irq else {
            core::hint::spin_loop();
            return;
        };
        // Lower and unmask the line before looking: a completion after the
        // look raises it again. (A completion seen without its interrupt
        // leaves the line masked by the kernel until acknowledged, and the
        // main loop may have swallowed that event.) An MSI-X message is an
        // edge with neither: nothing to do.
        if !self.msix {
            self.transport.ack_interrupt();
            let _ = hc::pirq_ack(port);
        }
        if !self.queue.has_used() {
            domain_runtime::events::wait(port);
        }
    }

    /// Reads into `buf`, a buffer in the DMA window, and waits: for this
    /// domain's own I/O (sector 0, the raw benchmark) while no one else's
    /// requests are in flight.
    pub fn read_own(&mut self, sector: u64, buf: &mut [u8]) -> Outcome {
        self.run_own(Command::Read, sector, buf)
    }

    /// Writes `buf`, a buffer in the DMA window, and waits; as [`Disk::read_own`].
    pub fn write_own(&mut self, sector: u64, buf: &[u8]) -> Outcome {
        self.run_own(Command::Write, sector, buf)
    }

    /// Reads `len` bytes of `sector` to whatever `address` the device is
    /// told (not one the kernel gave: the DMA isolation tests' attack), and
    /// waits.
    pub fn read_to_address(&mut self, sector: u64, address: u64, len: u32) -> Outcome {
        self.run(Command::Read, sector, &[buffer(address, len)])
    }

    /// Reads `sector`, its first 4 bytes to `address` (an interrupt
    /// message, when in 0xfee00000-0xfeefffff: the interrupt remapping
    /// test's attack) and the rest into `rest`, a buffer in the DMA window
    /// of the sector's size less 4; waits.
    pub fn read_message_to(&mut self, sector: u64, address: u64, rest: &mut [u8]) -> Outcome {
        let rest = buffer(hal::phys_of(rest.as_ptr()), rest.len() as u32);
        self.run(Command::Read, sector, &[buffer(address, 4), rest])
    }

    fn run_own(&mut self, cmd: Command, sector: u64, buf: &[u8]) -> Outcome {
        let data = [buffer(hal::phys_of(buf.as_ptr()), buf.len() as u32)];
        self.run(cmd, sector, &data)
    }

    fn run(&mut self, cmd: Command, sector: u64, data: &[Buffer]) -> Outcome {
        let Some(tag) = self.submit(cmd, sector, data) else {
            return Outcome::Failed;
        };
        self.kick();
        loop {
            match self.finished() {
                Some((t, outcome)) if t == tag => return outcome,
                Some(_) => {}
                None => self.wait(),
            }
        }
    }
}

/// A data buffer at device address `phys`.
fn buffer(phys: u64, len: u32) -> Buffer {
    Buffer {
        phys,
        len,
        device_writes: false,
    }
}
