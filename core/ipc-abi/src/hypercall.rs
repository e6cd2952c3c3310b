//! Hypercalls: the numbers, the register convention and the error codes.
//!
//! A domain calls the kernel with `syscall`:
//!
//! | register | in | out |
//! |---|---|---|
//! | `rax` | hypercall number ([`Hypercall`]) | 0, or an [`Error`] code |
//! | `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9` | arguments 0–5 | `rdx`: the result value |
//!
//! `rcx` and `r11` are clobbered (the `syscall` instruction uses them); every
//! other register is preserved. The reference for each call (arguments,
//! errors, who may call it) is `docs/hypercalls.md`.

use core::fmt;

crate::numbered! {
/// Hypercall numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Hypercall: u64 {
    /// Does nothing; measures the round trip.
    Null = 0,
    /// `(ptr, len)`: print bytes on the hypervisor console, each line prefixed `[domid]`.
    ConsoleWrite = 1,
    /// Give up the CPU.
    Yield = 2,
    /// Block until an unmasked event port is pending.
    Block = 3,
    /// `(deadline_ns)`: one-shot timer for this vCPU, delivered on the timer VIRQ port; 0 cancels.
    SetTimer = 4,
    /// `(reason, ptr, len)`: stop this domain with a [`crate::domain::ShutdownReason`] and an optional message.
    Shutdown = 5,
    /// `(from_seq, ptr, len)`: copy the oldest kept kernel console line numbered `from_seq` or later,
    /// NUL-terminated, into the buffer; returns its number (control only). `Empty` when there is none yet.
    ConsoleRead = 6,
    /// Take COM1 over from the kernel: the caller (holding COM1's I/O ports)
    /// prints the kernel log from now on, starting at the line number returned;
    /// the kernel takes COM1 back when it dies.
    ConsoleTakeover = 7,
    /// `(addr, value)`: for the console domain (which took COM1 over):
    /// end the line it wrote on COM1 (CR LF, by the kernel's UART driver)
    /// and store the u64 `value` at `addr` in its memory (8-byte aligned,
    /// writable), in one step: both happen or, if it dies first, neither.
    /// How console-dom marks a domain's line done (the ring's `back_done`),
    /// so that after its restart the frontend sends again exactly the
    /// lines not printed whole (`PermissionDenied` for another caller).
    ConsoleLineDone = 8,

    /// `(dom, remote)`: a new port of `dom` (self, or any domain for the control domain) unbound, waiting for `remote`.
    EventAllocUnbound = 10,
    /// `(remote_dom, remote_port)`: bind a new local port to a remote unbound port; returns the local port.
    EventBindInterdomain = 11,
    /// `(virq)`: bind a new local port to a virtual IRQ ([`crate::shared::Virq`]).
    EventBindVirq = 12,
    /// `(port)`: set the peer's pending bit and wake it.
    EventSend = 13,
    /// `(port)`: close a port; an interdomain peer's end returns to unbound.
    EventClose = 14,
    /// `(port)`: unmask a port (masking is done by the domain in the shared page).
    EventUnmask = 15,
    /// `(irq)`: bind a new local port to a physical IRQ this domain was given; returns the port.
    EventBindPirq = 16,
    /// `(port)`: the IRQ bound to this port was handled; unmask its line.
    PirqAck = 17,

    /// `(grantee, va, readonly)`: grant a page of this domain to `grantee`; returns the grant ref.
    GrantCreate = 20,
    /// `(ref)`: end a grant; refused while the grantee still maps it.
    GrantEnd = 21,
    /// `(granter, ref, slot, need_write)`: map a granted page at `layout::GRANT_WINDOW + slot * 4096`
    /// (read-only if granted so; with `need_write` non-zero a read-only grant is refused instead).
    GrantMap = 22,
    /// `(slot)`: unmap a granted page.
    GrantUnmap = 23,
    /// `(granter, ref, offset, local_va, len, to_grant)`: copy between a granted page and local memory.
    GrantCopy = 24,

    /// `(ptr to CreateDomain)`: create a paused, empty domain (control only); returns its id.
    DomainCreate = 30,
    /// `(dom, elf_ptr, elf_len)`: load an ELF image into a created domain (control only).
    DomainLoadImage = 31,
    /// `(dom)`: let a domain run (control only).
    DomainUnpause = 32,
    /// `(dom)`: stop a domain's vCPUs (control only).
    DomainPause = 33,
    /// `(dom)`: destroy a domain and reclaim everything (control only).
    /// Returns a [`Destroyed`]: a domain running on another CPU at the call
    /// is `Dying` until that CPU leaves it (it is kicked at once) and keeps
    /// its devices until then; calling again answers `Dying` or `Gone`.
    DomainDestroy = 34,
    /// `(dom, ptr to DomainInfo)`: read a domain's state and crash record (control only, or self).
    DomainInfo = 35,
    /// `(dom, ptr, len)`: set the command line a domain finds in its start info (control only, before unpause).
    DomainSetCmdline = 36,
    /// Statistics of the kernel's resources (free frames, ports, grants), for leak checks (control only).
    KernelStats = 37,
    /// `(dom, first_port, count)`: give a created, never-run domain I/O ports (control only).
    DomainAddIoPorts = 38,
    /// `(dom, phys, pages)`: map device memory into a never-run domain's device window; returns its address there (control only).
    DomainAddMmio = 39,
    /// `(dom, irq)`: let a never-run domain bind a physical IRQ (control only).
    DomainAddIrq = 40,
    /// `(dom, rip, rsp, rdi)`: set where a never-run domain's vCPU starts (control only).
    DomainSetEntry = 41,
    /// Powers the machine off (ACPI S5) (control only). Returns only on failure.
    MachinePowerOff = 42,
    /// `(dom, bdf)`: give a never-run domain the PCI function `bdf` (bus << 8 | device << 3 |
    /// function): its memory BARs are mapped into its device window, its I/O BARs become its
    /// ports, its INTx line its IRQ, and only it may reach its configuration space (control only).
    DomainAddPci = 43,
    /// `(bdf, offset)`: read a dword of the configuration space of a PCI function this domain
    /// was given. BARs read as the firmware set them (or as their size mask while being sized).
    PciConfigRead = 44,
    /// `(bdf, offset, value)`: write a dword of that configuration space. Only the command
    /// register's I/O, memory, bus-master and INTx-disable bits, BAR sizing (all ones, then
    /// the original value) and the capability area (offset 0x40 and up) but its MSI and
    /// MSI-X capabilities may be written (MSI stays off: devices interrupt by INTx).
    PciConfigWrite = 45,
    /// `(bdf, bar)`: where memory BAR `bar` of a PCI function this domain was given is mapped.
    PciBar = 46,
    /// `(dom, pages)`: give a never-run domain `pages` physically contiguous pages for DMA,
    /// mapped at `layout::DMA_WINDOW` (control only).
    DomainAddDma = 47,
    /// `(va)`: the physical address of a byte of this domain's DMA window, or
    /// of a page it mapped writable in its grant window (for device programming).
    DmaPhys = 48,
    /// `(dom)`: crash a domain as if it had faulted (control only), so its
    /// `on_crash` policy applies; fault injection for `toolstack domain crash`.
    DomainCrash = 49,
    /// `(key)`: dump kernel state to the kernel log (control only): `h` lists
    /// the keys; `q` domains, `r` run queue, `e` event channels, `g` grants.
    /// `InvalidArgument` for another key.
    DebugKeys = 50,
    /// `(dom, gref, offset, ptr, len)`: copy `len` bytes at `offset` of the
    /// page `dom` granted as `gref` (to anyone) into the caller's buffer
    /// (control only; `offset + len` at most 4096). Reads, never writes: how
    /// the toolstack looks at rings (`toolstack ring list`) without
    /// disturbing them. Returns the bytes copied.
    GrantPeek = 51,
    /// `(dom, port)`: notifications sent from `dom`'s `port` since it was
    /// opened (low 32 bits) and from its interdomain peer's end (high 32
    /// bits); control only (`toolstack ring list`).
    PortSends = 52,
    /// `(cpu, from, ptr, len)`: copy CPU `cpu`'s trace bytes from position
    /// `from` on into the caller's buffer, after a `trace::TraceChunk`
    /// header (control only). `len` must hold the header. Returns the trace
    /// bytes copied; `Disabled` when booted with `tbuf_size=0`, `InvalidArgument`
    /// for a CPU without a buffer.
    TraceRead = 53,
    /// `(dom, vcpu, cpus)`: let vCPU `vcpu` of `dom` run only on the CPUs in
    /// the mask `cpus` (bit n: CPU n), at once: a vCPU on a CPU outside it
    /// moves (control only). `InvalidArgument` for a vCPU it lacks or a mask
    /// naming no CPU that runs.
    DomainPin = 54,
    /// `()`: the number of the CPU the caller runs on (0: the boot CPU).
    CurrentCpu = 55,
    /// `()`: the caller pauses itself for the control domain to save it
    /// (`DomainInfo::suspended` then says so). Returns 0 when it is unpaused
    /// and runs on as itself, 1 when it runs on as a restored copy: a new
    /// domain with the same memory and registers but no event ports, grants
    /// or grant-window mappings, which must connect its devices again. Not
    /// for the control domain (`PermissionDenied`); only on vCPU 0
    /// (`InvalidArgument` elsewhere): the domain's other vCPUs stop with it
    /// and go on, when restored, from where they were.
    Suspend = 56,
    /// `(dom, from_va, ptr)`: copy the first page of `dom`'s own memory
    /// (image, heap, stack) at or above `from_va` into the caller's
    /// 4096-byte buffer; returns the page's address, plus 1 if the domain
    /// may write the page, or `Empty` when there is none. `dom` must be paused and off every CPU (control only).
    DomainPageRead = 57,
    /// `(dom, va, ptr)`: copy 4096 bytes from the caller into the page of a
    /// never-run domain's own memory at `va` (image, heap or stack; not the
    /// start info, whatever its rights for the domain) (control only).
    DomainPageWrite = 58,
    /// `(dom, vcpu, ptr to VcpuContext)`: read the registers of a started
    /// vCPU of a paused domain that is off every CPU (control only).
    DomainGetContext = 59,
    /// `(dom, vcpu, ptr to VcpuContext)`: set every register a never-run
    /// domain's vCPU starts with (a vCPU other than 0 is started by it);
    /// `rflags` keeps only the arithmetic flags and the direction flag
    /// (control only).
    DomainSetContext = 60,
    /// `(vcpu, rip, rsp, arg)`: start the caller's vCPU `vcpu` (one of
    /// those it was created with, not running yet) at `rip` with stack
    /// `rsp` and `arg` in rdi, as Xen's `VCPUOP_initialise` and `up`.
    /// `InvalidArgument` for a vCPU it lacks or an address outside the user
    /// half, `DomainState` for one already up.
    VcpuUp = 61,
    /// `(dom, vcpu, ptr to VcpuInfo)`: where a vCPU runs and may run
    /// (control only, or self).
    VcpuInfo = 62,
    /// `(fault_rip, fixup_rip)`: a page fault of the caller at exactly
    /// `fault_rip` resumes at `fixup_rip` instead of crashing it, with the
    /// faulting address in rax (as an exception table entry); `(0, 0)`
    /// removes it. How a domain probes whether an address is mapped (the
    /// TLB shootdown test reads a page while another vCPU unmaps it).
    FaultFixup = 63,
}
}

/// Longest kernel log line, in bytes (what `ConsoleRead` returns).
pub const LOG_LINE_MAX: usize = 160;
/// A `ConsoleRead` buffer: the longest line and its terminating zero.
pub const LOG_LINE_BUF: usize = LOG_LINE_MAX + 1;
/// Most bytes one `ConsoleWrite` takes.
pub const CONSOLE_WRITE_MAX: u64 = 4096;

/// Number of hypercall slots (numbers at or above are invalid).
pub const HYPERCALL_LIMIT: u64 = 64;

/// What `DomainDestroy` did.
#[repr(u64)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destroyed {
    /// The domain is gone, with everything it held.
    Gone = 0,
    /// Another CPU still runs it; that CPU frees it as it leaves.
    Dying = 1,
}

crate::numbered! {
/// Why a hypercall failed. `rax` carries the code; 0 means success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error: u64 {
    /// No such hypercall.
    UnknownCall = 1,
    /// A pointer or length does not describe memory the caller may use that way.
    BadAddress = 2,
    /// An argument is out of range or malformed.
    InvalidArgument = 3,
    /// The domain id names a domain that has died (stale generation).
    DeadDomain = 4,
    /// No domain has that id.
    NoSuchDomain = 5,
    /// The caller lacks the right (control, I/O) for this call.
    PermissionDenied = 6,
    /// Not enough free memory or table space.
    OutOfResources = 7,
    /// The port number is not an open port of the caller.
    BadPort = 8,
    /// The port exists but is not in a state that allows this (e.g. not unbound for the caller).
    PortState = 9,
    /// The grant ref is not a live grant to the caller (or of the caller).
    BadGrant = 10,
    /// The grant is still mapped.
    GrantInUse = 11,
    /// Another live domain has that name.
    NameTaken = 12,
    /// The ELF image is not acceptable; see the console for the reason.
    BadImage = 13,
    /// The domain is not in a state that allows this (e.g. unpause of a crashed domain).
    DomainState = 14,
    /// The window slot is in use, or empty for an unmap.
    SlotState = 15,
    /// Nothing to read yet.
    Empty = 16,
    /// The device already belongs to another domain.
    DeviceTaken = 17,
    /// The facility is switched off (tracing with `tbuf_size=0`).
    Disabled = 18,
}
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Error::UnknownCall => "no such hypercall",
            Error::BadAddress => "bad address",
            Error::InvalidArgument => "invalid argument",
            Error::DeadDomain => "dead domain",
            Error::NoSuchDomain => "no such domain",
            Error::PermissionDenied => "permission denied",
            Error::OutOfResources => "out of resources",
            Error::BadPort => "bad event port",
            Error::PortState => "event port in the wrong state",
            Error::BadGrant => "bad grant reference",
            Error::GrantInUse => "grant still mapped",
            Error::NameTaken => "name taken",
            Error::BadImage => "bad ELF image",
            Error::DomainState => "domain in the wrong state",
            Error::SlotState => "window slot in the wrong state",
            Error::Empty => "nothing to read",
            Error::DeviceTaken => "device already given to another domain",
            Error::Disabled => "switched off",
        };
        f.write_str(s)
    }
}

/// The result of a hypercall.
pub type Result<T> = core::result::Result<T, Error>;

/// Decodes the `(rax, rdx)` pair a hypercall returns.
pub fn decode(rax: u64, rdx: u64) -> Result<u64> {
    if rax == 0 {
        Ok(rdx)
    } else {
        Err(Error::from_number(rax).unwrap_or(Error::UnknownCall))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for n in 0..HYPERCALL_LIMIT + 10 {
            if let Some(h) = Hypercall::from_number(n) {
                assert_eq!(h as u64, n);
            }
        }
        assert_eq!(Hypercall::from_number(u64::MAX), None);
    }

    #[test]
    fn error_codes_round_trip() {
        for code in 1..=18 {
            let e = Error::from_number(code).unwrap();
            assert_eq!(e as u64, code);
            assert_eq!(decode(code, 7), Err(e));
        }
        assert_eq!(decode(0, 7), Ok(7));
        assert_eq!(decode(999, 0), Err(Error::UnknownCall));
    }
}
