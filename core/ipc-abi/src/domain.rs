//! Domain ids, creation parameters and the records the kernel keeps of a domain.

use core::fmt;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A domain id: a table index and a generation (the Hubris pattern).
///
/// The generation grows each time an index is reused, so a handle that
/// outlived its domain is detectably stale: calls with it fail with
/// [`crate::hypercall::Error::DeadDomain`].
#[repr(transparent)]
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct DomainId(pub u32);

impl DomainId {
    /// "The calling domain", accepted wherever a domain id is.
    pub const SELF: DomainId = DomainId(u32::MAX);

    pub const fn new(index: u16, generation: u16) -> DomainId {
        DomainId(((generation as u32) << 16) | index as u32)
    }

    /// The slot in the kernel's domain table; what the console prefix shows.
    pub const fn index(self) -> u16 {
        self.0 as u16
    }

    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

impl fmt::Debug for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == DomainId::SELF {
            f.write_str("self")
        } else {
            write!(f, "{}.{}", self.index(), self.generation())
        }
    }
}

impl fmt::Display for DomainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.index())
    }
}

/// A domain's scheduler weight when none is asked for (`weight` 0 at
/// `DomainCreate`, or no `weight =` in a configuration).
pub const DEFAULT_WEIGHT: u32 = 256;

/// Longest domain name.
pub const NAME_MAX: usize = 32;
/// Longest domain command line.
pub const CMDLINE_MAX: usize = 1024;
/// Longest crash message kept.
pub const MESSAGE_MAX: usize = 160;
/// Most vCPUs a domain may have (`vcpus =` in its configuration).
pub const MAX_VCPUS: u32 = 8;

/// Parameters of [`crate::hypercall::Hypercall::DomainCreate`].
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CreateDomain {
    pub name: [u8; NAME_MAX],
    pub name_len: u32,
    /// Proportional CPU share (1..=65535; 256 is the default, as Xen's credit scheduler).
    pub weight: u32,
    /// Memory budget in KiB, allocated (zeroed) at creation.
    pub memory_kib: u64,
    /// Upper bound of CPU use in percent of one CPU; 0 means no cap.
    pub cap_percent: u32,
    /// vCPUs (1..=[`MAX_VCPUS`]; 0 means 1). vCPU 0 runs from the entry
    /// point; the domain starts the others itself (`VcpuUp`).
    pub vcpus: u32,
    /// [`CREATE_HVM`] or 0.
    pub flags: u32,
    pub _reserved: u32,
}

/// [`CreateDomain::flags`]: an HVM guest (see [`crate::hvm`]): its memory
/// is guest-physical RAM from address 0, filled by the control domain with
/// `DomainPageWrite`, and vCPU 0 starts as `DomainSetContext` says in the
/// 32-bit boot state. `Disabled` where the CPU cannot run HVM guests.
pub const CREATE_HVM: u32 = 1;

const _: () = assert!(core::mem::size_of::<CreateDomain>() == 64);
const _: () = assert!(core::mem::size_of::<VcpuInfo>() == 32);
const _: () = assert!(core::mem::size_of::<DomainInfo>() == 336);

crate::numbered! {
/// Why a domain stopped, for [`crate::hypercall::Hypercall::Shutdown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ShutdownReason: u64 {
    PowerOff = 0,
    Reboot = 1,
    /// The domain's own code failed (its panic handler reports this).
    Crash = 2,
}
}

/// A domain's lifecycle state, as [`DomainInfo::state`] reports it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainState {
    /// Created, not yet unpaused (or paused by the control domain).
    Paused = 0,
    /// Runnable or running or blocked on events.
    Running = 1,
    /// Stopped by its own request (poweroff or reboot).
    Shutdown = 2,
    /// Stopped by a fault or its own crash report; see the crash record.
    Crashed = 3,
}

/// What the kernel recorded when a domain crashed.
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct CrashRecord {
    /// CPU exception vector, or u64::MAX when the domain reported its own crash.
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    /// The faulting address (CR2) for page faults.
    pub address: u64,
    /// When: nanoseconds since boot, and the CPU's busy TSC ticks (see
    /// `shared::TimePage::idle_tsc`; instructions under `-icount`).
    pub at_ns: u64,
    pub at_busy_tsc: u64,
    pub message_len: u32,
    pub _reserved: u32,
    pub message: [u8; MESSAGE_MAX],
}

impl CrashRecord {
    pub const EMPTY: CrashRecord = CrashRecord {
        vector: 0,
        error_code: 0,
        rip: 0,
        address: 0,
        at_ns: 0,
        at_busy_tsc: 0,
        message_len: 0,
        _reserved: 0,
        message: [0; MESSAGE_MAX],
    };

    /// The domain's own message, as text.
    pub fn message(&self) -> &str {
        let n = (self.message_len as usize).min(MESSAGE_MAX);
        core::str::from_utf8(&self.message[..n]).unwrap_or("(not UTF-8)")
    }
}

/// Answer of [`crate::hypercall::Hypercall::DomainInfo`].
#[repr(C)]
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct DomainInfo {
    pub id: DomainId,
    /// A [`DomainState`] value.
    pub state: u32,
    /// A [`ShutdownReason`] value when `state` is Shutdown.
    pub shutdown_reason: u64,
    pub memory_kib: u64,
    /// CPU time used, in scheduler ticks of 10 ms: what its vCPUs were
    /// charged as they ran (to the TSC tick), standing still while it is
    /// paused.
    pub cpu_ticks: u64,
    pub name: [u8; NAME_MAX],
    pub name_len: u32,
    pub weight: u32,
    pub crash: CrashRecord,
    /// The CPU whose run queue holds its vCPU, and the CPUs it may run on
    /// (bit n: CPU n).
    pub cpu: u32,
    /// Its vCPU is loaded on a CPU right now (1) or not (0).
    pub running: u32,
    pub affinity: u64,
    /// 1 when it is paused because it suspended itself (`Suspend`), ready
    /// to be saved; 0 otherwise.
    pub suspended: u32,
    /// vCPUs it was created with (`VcpuInfo` tells about each).
    pub vcpus: u32,
    /// DMA its devices attempted that the IOMMU refused.
    pub dma_faults: u64,
    /// Its scheduler cap: percent of one CPU (0: none).
    pub cap_percent: u32,
    pub _reserved: u32,
    /// The most memory it may hold (`memory_kib` is what it holds now).
    pub max_kib: u64,
}

/// Answer of [`crate::hypercall::Hypercall::VcpuInfo`]: one vCPU of a domain.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
pub struct VcpuInfo {
    /// The CPU whose run queue holds it.
    pub cpu: u32,
    /// A [`VcpuState`] value.
    pub state: u32,
    /// The CPUs it may run on (bit n: CPU n).
    pub affinity: u64,
    /// CPU time it used, in scheduler ticks.
    pub cpu_ticks: u64,
    /// Loaded on its CPU right now (1) or not (0).
    pub running: u32,
    pub _reserved: u32,
}

crate::numbered! {
/// What a vCPU is doing, in [`VcpuInfo::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuState: u32 {
    /// Not started (the domain has not called `VcpuUp` for it).
    Down = 0,
    /// Runs or waits for a CPU.
    Runnable = 1,
    /// Waits in `Block` for an event.
    Blocked = 2,
}
}

/// A vCPU's registers, for [`crate::hypercall::Hypercall::DomainGetContext`]
/// and `DomainSetContext` (save and restore). Segment registers are not
/// part of it: every domain runs with the same flat user segments.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct VcpuContext {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub rsp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl VcpuContext {
    /// Bytes of a context.
    pub const SIZE: usize = 18 * 8;

    /// The registers in the order above.
    pub fn to_words(&self) -> [u64; 18] {
        let c = self;
        [
            c.rax, c.rbx, c.rcx, c.rdx, c.rsi, c.rdi, c.rbp, c.rsp, c.r8, c.r9, c.r10, c.r11,
            c.r12, c.r13, c.r14, c.r15, c.rip, c.rflags,
        ]
    }

    /// A context from its registers in the order above.
    pub fn from_words(w: &[u64; 18]) -> VcpuContext {
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] =
            *w;
        VcpuContext {
            rax,
            rbx,
            rcx,
            rdx,
            rsi,
            rdi,
            rbp,
            rsp,
            r8,
            r9,
            r10,
            r11,
            r12,
            r13,
            r14,
            r15,
            rip,
            rflags,
        }
    }
}

const _: () = assert!(core::mem::size_of::<VcpuContext>() == VcpuContext::SIZE);

/// Answer of [`crate::hypercall::Hypercall::KernelStats`]: what the kernel has in use.
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
pub struct KernelStats {
    pub free_frames: u64,
    pub live_domains: u64,
    pub open_ports: u64,
    pub live_grants: u64,
    /// CPUs running.
    pub cpus: u64,
    /// A [`HvmSupport`] value: whether HVM guests can run, or why not.
    pub hvm: u64,
    /// A [`DmaIsolation`] value: whether driver domains' DMA is confined.
    pub dma_isolation: u64,
}

crate::numbered! {
/// Whether driver domains' devices reach only what they were given
/// ([`KernelStats::dma_isolation`], `host info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaIsolation: u64 {
    On = 0,
    NoIommu = 1,
    OffByOption = 2,
    Failed = 3,
}
}

impl DmaIsolation {
    /// What `host info` says.
    pub fn describe(self) -> &'static str {
        match self {
            DmaIsolation::On => "on (Intel VT-d): each driver domain's devices reach only its DMA memory and the pages granted to it",
            DmaIsolation::NoIommu => "OFF: no IOMMU found (enable VT-d in the firmware): driver domains' devices can reach all memory",
            DmaIsolation::OffByOption => "OFF (iommu=off): driver domains' devices can reach all memory",
            DmaIsolation::Failed => "OFF: the IOMMU could not be started (see the boot log): driver domains' devices can reach all memory",
        }
    }
}

crate::numbered! {
/// Whether the machine can run HVM guests ([`KernelStats::hvm`], `host info`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HvmSupport: u64 {
    Ready = 0,
    NoSvm = 1,
    NoNestedPaging = 2,
    DisabledByFirmware = 3,
}
}

impl HvmSupport {
    /// What `host info` and the boot log say.
    pub fn describe(self) -> &'static str {
        match self {
            HvmSupport::Ready => "AMD SVM with nested paging",
            HvmSupport::NoSvm => "no: the CPU has no AMD SVM (Intel VMX is not supported yet)",
            HvmSupport::NoNestedPaging => "no: the CPU's SVM has no nested paging",
            HvmSupport::DisabledByFirmware => "no: SVM is disabled in the firmware (VM_CR.SVMDIS)",
        }
    }
}
