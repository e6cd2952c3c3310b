//! Domains: the kernel's table of them and what each one holds.
//!
//! Owns: the fixed table of domain slots (index + generation ids), and for
//! each domain its address space, vCPUs, event ports, grants, window of
//! foreign mappings, lifecycle state and crash record. The operations live
//! in the submodules: `lifecycle` (create, load, run, stop, destroy),
//! `vcpus` (start, pin, report vCPUs), `running` (which vCPU runs where;
//! the scheduling unit is one vCPU of a domain, a [`VcpuRef`]), `storage`
//! (each record's frames), `events` (event channels), `grants` (grant
//! tables), `saving` (save and restore), `console` (the debug console).

pub mod balloon;
pub mod console;
pub mod cpu_time;
pub mod debugkeys;
pub mod devices;
pub mod dma;
pub mod dma_space;
pub mod events;
pub mod grants;
pub mod guest_ram;
pub mod lifecycle;
pub mod msi;
pub mod pci;
use crate::channels::ports;
pub use crate::frames::Frame;
#[allow(unsafe_code)] // a vCPU's saved registers as the stack before `iretq`
pub mod resume;
pub mod running;
pub mod saving;
#[allow(unsafe_code)] // the kernel-shared pages through the physmap
pub mod shared_pages;
#[allow(unsafe_code)] // domain records in frames of their own
pub mod storage;
pub mod vcpus;

use crate::arch::addrspace::AddressSpace;
use crate::arch::idt::TrapFrame;
use crate::sched::Entity;
use ipc_abi::domain::{CrashRecord, DomainId, ShutdownReason, NAME_MAX};
use ipc_abi::hypercall::Error;
use ipc_abi::layout::GRANT_SLOTS;
use ports::Ports;
pub use running::{CpuState, VcpuRef, IO_STALE};

/// The kernel's domain state, behind one lock (interrupts are off in the kernel).
pub static KERNEL: spin::Mutex<Kernel> = spin::Mutex::new(Kernel::new());

/// Takes the kernel lock. While another CPU holds it, this one carries out
/// TLB flushes asked of it (the holder may be waiting for that: see
/// `arch::tlb`); interrupts are off here, so the flush IPI could not.
pub fn lock() -> spin::MutexGuard<'static, Kernel> {
    loop {
        if let Some(guard) = KERNEL.try_lock() {
            return guard;
        }
        crate::arch::tlb::service();
        core::hint::spin_loop();
    }
}

/// CPUs the scheduler keeps state for.
pub const MAX_CPUS: usize = crate::arch::cpu::MAX_CPUS;

/// The CPU this code runs on (0: the boot CPU).
#[inline(always)]
pub fn this_cpu() -> usize {
    crate::arch::syscall::this_cpu()
}

/// Most domains alive at once.
pub const MAX_DOMAINS: usize = 128;
/// Grant entries per domain: as many as a domain has window slots to map
/// others' grants in. Domain 0 needs the most: a control ring for each
/// other domain (up to 127), its console ring, and its own network
/// interface's rings and pages (42) for the management channel.
pub const MAX_GRANTS: usize = ipc_abi::layout::GRANT_SLOTS as usize;

/// Where a domain is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "trace", derive(defmt::Format))]
pub enum Life {
    Paused,
    Running,
    Shutdown(ShutdownReason),
    Crashed,
}

/// Most vCPUs of one domain.
pub const MAX_VCPUS: usize = ipc_abi::domain::MAX_VCPUS as usize;

/// One of a domain's virtual CPUs.
pub struct Vcpu {
    /// Started: vCPU 0 from creation, the others by the domain's `VcpuUp`.
    pub up: bool,
    /// Saved ring-3 state while not running.
    pub frame: TrapFrame,
    /// Waiting in `Block` for an event.
    pub blocked: bool,
    pub sched: Entity,
    /// One-shot timer deadline in ns since boot; 0 = none.
    pub timer_deadline: u64,
    /// The timer fired while the vCPU was not blocked: the next `Block` returns at once.
    pub timer_fired: bool,
    /// The CPU whose run queue holds this vCPU.
    pub cpu: usize,
    /// The CPUs it may run on (bit n: CPU n), as `cpus =` or `domain pin` set.
    pub affinity: u64,
    /// The CPU that has it loaded now (its registers live there, not in
    /// `frame`); kept by [`Kernel::set_current`].
    pub loaded_on: Option<usize>,
    /// An HVM domain's vCPU state (VMCB, registers) while it is not running;
    /// the CPU running it holds it meanwhile (`hvm/run.rs`). `None` for a
    /// ring-3 vCPU, whose registers are `frame`.
    pub hvm: Option<crate::hvm::vcpu::HvmVcpu>,
    /// An HVM vCPU waits for its device model's answer to a port access.
    pub io_wait: bool,
    /// Vectors an HVM guest's device model presented (bit n: vector n), taken
    /// when the vCPU can.
    pub extint: [u64; 4],
    /// Fixed IPIs from the guest's other vCPUs (bit n: vector n), moved
    /// into this vCPU's local APIC before it next runs.
    pub ipis: [u64; 4],
    /// An HVM vCPU that is down got INIT: a start-up IPI starts it.
    pub init_received: bool,
    /// An HVM vCPU's exits by kind (kept here, not in `hvm`, which the
    /// CPU running it holds meanwhile: debug key `x` reads them any time).
    pub exits: crate::hvm::exit::ExitCounts,
}

pub use crate::grant_table::{ForeignMap, Grant};

/// One domain.
pub struct Domain {
    pub id: DomainId,
    pub name: heapless::String<NAME_MAX>,
    pub life: Life,
    /// Holds the control right (may create, destroy, inspect others).
    pub control: bool,
    pub space: AddressSpace,
    pub memory_kib: u64,
    /// Heap pages still mapped at HEAP_BASE (image pages are taken from its top).
    pub heap_pages: u64,
    pub image_loaded: bool,
    /// Its heap frames still hold what their previous owner left: creation
    /// does not clear them, `lifecycle::load_into` settles each to its final
    /// bytes (`settle_frame`), and until then nothing reads, writes or runs
    /// the domain's memory (`saving::page_read`/`page_write` refuse;
    /// `unpause` needs the image loaded).
    pub stale_heap: bool,
    /// Its vCPUs; the first `nr_vcpus` exist.
    pub vcpus: [Vcpu; MAX_VCPUS],
    pub nr_vcpus: usize,
    /// A page fault at `.0` resumes at `.1` (`FaultFixup`).
    pub fault_fixup: Option<(u64, u64)>,
    pub ports: Ports,
    pub grants: [Option<Grant>; MAX_GRANTS],
    pub window: [Option<ForeignMap>; GRANT_SLOTS as usize],
    pub crash: CrashRecord,
    pub console: console::RateLimit,
    /// I/O port ranges `(first, count)` it was given.
    pub io_ports: heapless::Vec<(u16, u16), 8>,
    /// Physical IRQs it was given (bit n = IRQ n).
    pub irqs: u32,
    /// Next free address in its device window.
    pub device_next: u64,
    /// Has been unpaused at least once (resources can no longer be added).
    pub started: bool,
    /// PCI functions it holds.
    pub pci: heapless::Vec<crate::pci_rules::Assigned, { crate::pci_rules::MAX_PCI }>,
    /// Its DMA pages: (first physical address, pages).
    pub dma: Option<(u64, u64)>,
    /// Physical frames of the start info and event pages.
    pub start_info: Frame,
    pub event_page: Frame,
    /// Destroyed while its vCPU ran on another CPU: that CPU frees it as it
    /// leaves (see `lifecycle::destroy`). Lookups no longer find it.
    pub teardown: bool,
    /// Paused by its own `Suspend` (ready to be saved) and not unpaused since.
    pub suspended: bool,
    /// An HVM guest's device model.
    pub device_model: crate::hvm::vcpu::DeviceModel,
    /// Its devices' address space under the IOMMU (`dma.rs`), if it has
    /// PCI functions or DMA memory and DMA isolation is on.
    pub dma_space: Option<dma_space::DmaSpace>,
    /// DMA faults its devices caused.
    pub dma_faults: u64,
    /// The most memory it may hold (`balloon.rs`); `memory_kib` is what it holds.
    pub max_kib: u64,
    /// Frames still reserved for an HVM guest's RAM not yet touched
    /// (`guest_ram`); 0 for a ring-3 domain.
    pub ram_reserved: u64,
    /// How its CPU time is reported (`cpu_time`).
    pub cpu_time: CpuTime,
}

/// Whether a domain's reported CPU time moves (`cpu_time`), in TSC ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuTime {
    /// Running: what its vCPUs were charged, less what they were charged
    /// while it was paused.
    Counting { left_out: u64 },
    /// Not running: the figure as it was when it stopped.
    Frozen { at: u64 },
}

impl Domain {
    /// The vCPUs it was created with (started or not).
    pub fn existing_vcpus(&self) -> impl Iterator<Item = &Vcpu> + '_ {
        self.vcpus[..self.nr_vcpus].iter()
    }

    pub fn existing_vcpus_mut(&mut self) -> impl Iterator<Item = &mut Vcpu> + '_ {
        self.vcpus[..self.nr_vcpus].iter_mut()
    }

    /// Whether it is an HVM guest (its address space a nested page table).
    #[inline(always)]
    pub fn is_hvm(&self) -> bool {
        self.space.is_nested()
    }

    /// Whether vCPU `v` may run now as far as the domain goes: it is
    /// running, the vCPU is started and not waiting in `Block`.
    #[inline(always)]
    pub fn wants_cpu(&self, v: &Vcpu) -> bool {
        self.schedulable() && v.ready()
    }

    /// The domain's half of [`Domain::wants_cpu`]: running, not being torn down.
    #[inline(always)]
    pub fn schedulable(&self) -> bool {
        self.life == Life::Running && !self.teardown
    }
}

impl Vcpu {
    /// The vCPU's half of [`Domain::wants_cpu`]: started, and waiting
    /// neither in `Block` nor for a device model.
    #[inline(always)]
    pub fn ready(&self) -> bool {
        self.up && !self.blocked && !self.io_wait
    }

    /// The CPUs that must reschedule when it wakes (bit n: CPU n): the one
    /// whose run queue holds it, and the one running it if another.
    #[inline(always)]
    pub fn resched_mask(&self) -> u64 {
        (1u64 << self.cpu.min(MAX_CPUS - 1)) | self.loaded_on.map_or(0, |c| 1 << c)
    }

    /// Whether CPU `cpu` may run it, its domain being schedulable (the
    /// caller's check: [`Domain::schedulable`]): it is
    /// [`ready`](Vcpu::ready), in `cpu`'s run queue and not loaded on
    /// another CPU (whose frame would not be saved yet).
    #[inline(always)]
    pub fn runs_on(&self, cpu: usize) -> bool {
        self.ready() && self.cpu == cpu && self.loaded_on.is_none_or(|c| c == cpu)
    }
}

struct Slot {
    /// Grows each time the slot gets a new domain; 0 = never used.
    generation: u16,
    domain: Option<storage::DomainBox>,
}

/// Everything the kernel knows about domains, behind one lock.
pub struct Kernel {
    slots: [Slot; MAX_DOMAINS],
    /// Per-CPU scheduling state.
    cpus: [CpuState; MAX_CPUS],
    /// The kernel's own root table (used while no domain runs).
    pub kernel_pml4: u64,
    /// The read-only time page every domain maps (made as domain 0 is).
    pub time_frame: Option<Frame>,
    /// Who handles each physical IRQ: (domain index, domain id, port).
    /// (The I/O APIC's lines first, then the MSI slots: `msi.rs`.)
    pub irq_owner: [Option<(usize, DomainId, u16)>; msi::PIRQS],
    /// What sends each MSI slot's messages (an MSI-X entry, an MSI capability).
    pub msi_source: [msi::Source; msi::MSI_SLOTS],
    /// The console domain that owns COM1 and drains the kernel log, if any.
    pub console_owner: Option<usize>,
    /// The first kernel log line the console domain has not read yet.
    pub console_unread: u64,
    /// Ticks since the scheduler started.
    pub now_ticks: u64,
    /// One past the highest slot ever used: scans stop here.
    high_water: usize,
    /// The IOMMU, when DMA isolation is on (`dma.rs`).
    pub iommu: Option<dma::Iommu>,
    /// What `host info` says of DMA isolation.
    pub dma_isolation: ipc_abi::domain::DmaIsolation,
    /// `iommu=force`: no PCI function is given without the IOMMU.
    pub iommu_force: bool,
}

impl Kernel {
    pub const fn new() -> Kernel {
        Kernel {
            slots: [const {
                Slot {
                    generation: 0,
                    domain: None,
                }
            }; MAX_DOMAINS],
            cpus: [CpuState {
                current: None,
                vcpu: 0,
                need_resched: false,
                io_owner: None,
            }; MAX_CPUS],
            kernel_pml4: 0,
            time_frame: None,
            irq_owner: [None; msi::PIRQS],
            msi_source: [msi::Source::None; msi::MSI_SLOTS],
            console_owner: None,
            console_unread: 0,
            now_ticks: 0,
            high_water: 0,
            iommu: None,
            dma_isolation: ipc_abi::domain::DmaIsolation::NoIommu,
            iommu_force: false,
        }
    }

    /// The slot index of a live domain, or why the id does not name one.
    pub fn lookup(&self, id: DomainId) -> Result<usize, Error> {
        let index = id.index() as usize;
        let slot = self.slots.get(index).ok_or(Error::NoSuchDomain)?;
        crate::checks::domain_id(id, slot.generation, slot.domain.as_deref().map(|d| d.id))?;
        if slot.domain.as_deref().is_some_and(|d| d.teardown) {
            return Err(Error::DeadDomain);
        }
        Ok(index)
    }

    /// The slot of `id` while it exists at all, dying ones included (a dying
    /// domain still owns its memory until its last CPU leaves it).
    pub fn existing(&self, id: DomainId) -> Option<usize> {
        let index = id.index() as usize;
        let slot = self.slots.get(index)?;
        crate::checks::domain_id(id, slot.generation, slot.domain.as_deref().map(|d| d.id))
            .ok()
            .map(|()| index)
    }

    /// Like `lookup`, with `DomainId::SELF` meaning `caller`.
    pub fn resolve(&self, caller: usize, id: DomainId) -> Result<usize, Error> {
        if id == DomainId::SELF {
            Ok(caller)
        } else {
            self.lookup(id)
        }
    }

    /// The id of the domain in slot `index` (for trace events; u32::MAX if none).
    #[cfg_attr(not(feature = "trace"), allow(dead_code))]
    pub fn id_of(&self, index: usize) -> u32 {
        self.domain(index).map_or(u32::MAX, |d| d.id.0)
    }

    pub fn domain(&self, index: usize) -> Option<&Domain> {
        self.slots.get(index)?.domain.as_deref()
    }

    pub fn domain_mut(&mut self, index: usize) -> Option<&mut Domain> {
        self.slots.get_mut(index)?.domain.as_deref_mut()
    }

    /// A domain and the IOMMU at once.
    pub fn domain_and_iommu(
        &mut self,
        index: usize,
    ) -> (Option<&mut Domain>, Option<&mut dma::Iommu>) {
        let d = self
            .slots
            .get_mut(index)
            .and_then(|s| s.domain.as_deref_mut());
        (d, self.iommu.as_mut())
    }

    /// Two distinct domains at once.
    pub fn pair_mut(&mut self, a: usize, b: usize) -> Option<(&mut Domain, &mut Domain)> {
        if a == b || a >= MAX_DOMAINS || b >= MAX_DOMAINS {
            return None;
        }
        let (lo, hi) = self.slots.split_at_mut(a.max(b));
        let (x, y) = (
            lo[a.min(b)].domain.as_deref_mut()?,
            hi[0].domain.as_deref_mut()?,
        );
        Some(if a < b { (x, y) } else { (y, x) })
    }

    /// Every live domain's index.
    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots[..self.high_water]
            .iter()
            .enumerate()
            .filter(|(_, s)| s.domain.is_some())
            .map(|(i, _)| i)
    }

    /// Every live domain with its index (one pass over the table).
    pub fn live_domains(&self) -> impl Iterator<Item = (usize, &Domain)> + '_ {
        self.slots[..self.high_water]
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.domain.as_deref().map(|d| (i, d)))
    }

    /// The index of the domain holding the control right, if one lives.
    pub fn control_domain(&self) -> Option<usize> {
        self.live()
            .find(|&i| self.domain(i).is_some_and(|d| d.control))
    }

    /// Whether domain `index` may read the kernel log: the control domain or the console owner.
    pub fn may_read_log(&self, index: usize) -> bool {
        self.domain(index).is_some_and(|d| d.control) || self.console_owner == Some(index)
    }

    /// Whether a live domain already has this name.
    pub fn name_taken(&self, name: &str) -> bool {
        self.live().any(|i| {
            self.domain(i)
                .is_some_and(|d| !d.teardown && d.name.as_str() == name)
        })
    }

    /// Reserves a free slot: returns its index and the id the new domain gets.
    /// A slot whose generations are used up is never used again.
    fn reserve_slot(&mut self) -> Option<(usize, DomainId)> {
        self.slots.iter().enumerate().find_map(|(index, s)| {
            let generation =
                crate::checks::next_generation(s.generation).filter(|_| s.domain.is_none())?;
            Some((index, DomainId::new(index as u16, generation)))
        })
    }

    /// Puts a new domain in its reserved slot, in the frames taken for it.
    #[inline(always)]
    fn install(
        &mut self,
        index: usize,
        id: DomainId,
        place: storage::Reserved,
        make: impl FnOnce() -> Domain,
    ) {
        let slot = &mut self.slots[index];
        slot.generation = id.generation();
        slot.domain = Some(place.fill(make));
        self.high_water = self.high_water.max(index + 1);
    }

    /// Takes a domain out of the table, its frames given back (its slot's
    /// generation stays, so old ids go stale); `take` moves out what
    /// outlives the record.
    fn remove<R>(
        &mut self,
        index: usize,
        frames: &mut crate::frame_pool::FrameAllocator,
        take: impl FnOnce(&mut Domain) -> R,
    ) -> Option<R> {
        let boxed = self.slots.get_mut(index)?.domain.take()?;
        Some(boxed.release(frames, take))
    }
}
