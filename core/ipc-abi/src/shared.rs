//! Pages the kernel shares with every domain: start info, events, time.

use core::sync::atomic::AtomicU64;

/// Event ports per domain.
pub const PORTS: usize = 256;
const WORDS: usize = PORTS / 64;

/// The event page: one pending and one mask bit per port.
///
/// The kernel sets pending bits (atomically) and reads mask bits; the domain
/// clears pending bits and sets or clears mask bits. The kernel never trusts
/// what it reads here beyond "should I wake the domain".
#[repr(C)]
pub struct EventPage {
    pub pending: [AtomicU64; WORDS],
    pub mask: [AtomicU64; WORDS],
}

const _: () = assert!(core::mem::size_of::<EventPage>() == 64);

crate::numbered! {
/// Virtual IRQs a domain may bind a port to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Virq: u64 {
    /// The vCPU's one-shot timer expired.
    Timer = 0,
    /// The kernel console has new lines (control domain).
    ConsoleLog = 1,
    /// Some domain changed state: crashed, shut down, destroyed (control domain).
    DomainState = 2,
    /// A guest this domain is the device model of posted a request (`HvmServe`).
    DeviceModel = 3,
}
}

/// Number of VIRQ kinds.
pub const VIRQS: usize = 4;

/// Most boot modules handed to domain 0.
pub const MAX_MODULES: usize = 16;
/// Longest module command line kept (the kernel says so when it cuts one).
pub const MODULE_CMDLINE_MAX: usize = 160;

/// A boot module as domain 0 sees it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleInfo {
    /// Where the module's bytes are mapped (read-only).
    pub va: u64,
    pub len: u64,
    pub cmdline_len: u64,
    pub cmdline: [u8; MODULE_CMDLINE_MAX],
}

/// Magic value at the start of [`StartInfo`].
pub const START_INFO_MAGIC: u64 = 0x786e_6c74_6873_7431; // "xnlthst1"

/// The start info page, read-only, at `layout::START_INFO`.
#[repr(C)]
pub struct StartInfo {
    pub magic: u64,
    pub domain_id: u32,
    /// 1 if this domain holds the control right.
    pub control: u32,
    pub memory_kib: u64,
    /// The heap: `[heap_base, heap_base + heap_size)`, zeroed, read-write.
    pub heap_base: u64,
    pub heap_size: u64,
    pub cmdline_len: u64,
    pub cmdline: [u8; crate::domain::CMDLINE_MAX],
    pub module_count: u64,
    pub modules: [ModuleInfo; MAX_MODULES],
}

const _: () = assert!(core::mem::size_of::<StartInfo>() <= 4096);

/// The time page, read-only, at `layout::TIME_PAGE`: a clock without a hypercall.
///
/// Nanoseconds since boot = `(rdtsc - tsc_at_boot) * 1e9 / tsc_hz`.
/// `idle_tsc` counts the TSC ticks the CPU spent halted, with nothing to
/// run (the kernel adds to it after each halt): `rdtsc - idle_tsc` is the
/// CPU's busy time, which under QEMU `-icount` is the instructions retired
/// (a halt there jumps the clock forward instead).
#[repr(C)]
pub struct TimePage {
    pub tsc_hz: u64,
    pub tsc_at_boot: u64,
    pub idle_tsc: u64,
}

/// Byte offset of [`TimePage::idle_tsc`] in the page.
pub const IDLE_TSC_OFFSET: usize = 16;

impl TimePage {
    /// Nanoseconds since boot for a TSC reading.
    pub fn ns(&self, tsc: u64) -> u64 {
        let hz = self.tsc_hz.max(1) as u128;
        ((tsc.saturating_sub(self.tsc_at_boot) as u128 * 1_000_000_000) / hz) as u64
    }
}
