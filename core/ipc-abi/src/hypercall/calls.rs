//! Every hypercall: its number, what it does, and its arguments as a
//! struct with named fields, which the kernel decodes and the runtime
//! encodes with the same code (as Hubris's `sys/abi` does for its calls).
//!
//! Owns: [`Hypercall`] (the numbers) and [`args`] (one struct per call,
//! each field one argument register in order: `rdi`, `rsi`, `rdx`, `r10`,
//! `r8`, `r9`; [`Args::CALL`] ties each to its number, so the kernel's
//! dispatch hands each call its own arguments and no other). Adding a hypercall
//! is one entry here, one arm in the kernel's dispatch and a wrapper in
//! `domain-runtime` (docs/hypercalls.md).

use crate::domain::DomainId;

/// A value that travels in one argument register.
pub trait Register: Copy {
    fn to_register(self) -> u64;
    /// Total: every register value decodes (the kernel then checks it).
    fn from_register(r: u64) -> Self;
}

impl Register for u64 {
    fn to_register(self) -> u64 {
        self
    }
    fn from_register(r: u64) -> Self {
        r
    }
}

/// Any non-zero register is true.
impl Register for bool {
    fn to_register(self) -> u64 {
        u64::from(self)
    }
    fn from_register(r: u64) -> Self {
        r != 0
    }
}

/// A domain id is the register's low 32 bits.
impl Register for DomainId {
    fn to_register(self) -> u64 {
        u64::from(self.0)
    }
    fn from_register(r: u64) -> Self {
        DomainId(r as u32)
    }
}

/// The arguments of one hypercall.
pub trait Args: Sized {
    /// The call they belong to.
    const CALL: Hypercall;
    /// The six argument registers (unused ones zero).
    fn to_registers(&self) -> [u64; 6];
    /// From the six argument registers (unused ones ignored).
    fn from_registers(r: &[u64; 6]) -> Self;
}

/// Declares [`Hypercall`] and one [`Args`] struct per call in [`args`].
macro_rules! hypercalls {
    (
        $(
            $(#[$doc:meta])*
            $name:ident = $number:literal { $($field:ident: $ty:ty),* $(,)? }
        )*
    ) => {
        crate::numbered! {
        /// Hypercall numbers.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum Hypercall: u64 {
            $( $(#[$doc])* $name = $number, )*
        }
        }

        /// The arguments of each call, in register order.
        pub mod args {
            use super::*;
            $(
                $(#[$doc])*
                #[derive(Clone, Copy, Debug, PartialEq, Eq)]
                pub struct $name {
                    $(pub $field: $ty,)*
                }

                impl Args for $name {
                    const CALL: Hypercall = Hypercall::$name;
                    #[allow(unused_mut, unused_assignments, unused_variables)]
                    fn to_registers(&self) -> [u64; 6] {
                        let mut r = [0u64; 6];
                        let mut i = 0;
                        $( r[i] = Register::to_register(self.$field); i += 1; )*
                        r
                    }
                    #[allow(unused_mut, unused_assignments, unused_variables)]
                    fn from_registers(r: &[u64; 6]) -> Self {
                        let mut i = 0;
                        $( let $field = Register::from_register(r[i]); i += 1; )*
                        $name { $($field,)* }
                    }
                }

                // Six argument registers, no more (the list has one
                // empty entry so that a call without arguments has a type).
                const _: () = assert!(["" $(, stringify!($field))*].len() <= 7);
            )*
        }
    };
}

hypercalls! {
    /// Does nothing; measures the round trip.
    Null = 0 {  }
    /// `(ptr, len)`: print bytes on the hypervisor console, each line prefixed `[domid]`.
    ConsoleWrite = 1 { ptr: u64, len: u64 }
    /// Give up the CPU.
    Yield = 2 {  }
    /// Block until an unmasked event port is pending.
    Block = 3 {  }
    /// `(deadline_ns)`: one-shot timer for this vCPU, delivered on the timer VIRQ port; 0 cancels.
    SetTimer = 4 { deadline_ns: u64 }
    /// `(reason, ptr, len)`: stop this domain with a [`crate::domain::ShutdownReason`] and an optional message.
    Shutdown = 5 { reason: u64, message: u64, len: u64 }
    /// `(from_seq, ptr, len)`: copy the oldest kept kernel console line numbered `from_seq` or later,
    /// NUL-terminated, into the buffer; returns its number (control only). `Empty` when there is none yet.
    ConsoleRead = 6 { from_seq: u64, buf: u64, len: u64 }
    /// Take COM1 over from the kernel: the caller (holding COM1's I/O ports)
    /// prints the kernel log from now on, starting at the line number returned;
    /// the kernel takes COM1 back when it dies.
    ConsoleTakeover = 7 {  }
    /// `(addr, value)`: for the console domain (which took COM1 over):
    /// end the line it wrote on COM1 (CR LF, by the kernel's UART driver)
    /// and store the u64 `value` at `addr` in its memory (8-byte aligned,
    /// writable), in one step: both happen or, if it dies first, neither.
    /// How console-dom marks a domain's line done (the ring's `back_done`),
    /// so that after its restart the frontend sends again exactly the
    /// lines not printed whole (`PermissionDenied` for another caller).
    ConsoleLineDone = 8 { mark: u64, value: u64 }

    /// `(dom, remote)`: a new port of `dom` (self, or any domain for the control domain) unbound, waiting for `remote`.
    EventAllocUnbound = 10 { owner: DomainId, remote: DomainId }
    /// `(remote_dom, remote_port)`: bind a new local port to a remote unbound port; returns the local port.
    EventBindInterdomain = 11 { remote: DomainId, remote_port: u64 }
    /// `(virq)`: bind a new local port to a virtual IRQ ([`crate::shared::Virq`]).
    EventBindVirq = 12 { virq: u64 }
    /// `(port)`: set the peer's pending bit and wake it.
    EventSend = 13 { port: u64 }
    /// `(port)`: close a port; an interdomain peer's end returns to unbound.
    EventClose = 14 { port: u64 }
    /// `(port)`: unmask a port (masking is done by the domain in the shared page).
    EventUnmask = 15 { port: u64 }
    /// `(irq)`: bind a new local port to a physical IRQ this domain was given; returns the port.
    EventBindPirq = 16 { irq: u64 }
    /// `(port)`: the IRQ bound to this port was handled; unmask its line.
    PirqAck = 17 { port: u64 }
    /// `(port)`: `EventSend` then `Block`, in one call (a frontend that
    /// notifies and waits for the answer, a backend that answers and waits
    /// for more): the peer is signalled, then this vCPU waits as `Block`
    /// does (at once back if an event is pending). A failed send returns
    /// its error and does not block.
    EventSendBlock = 18 { port: u64 }

    /// `(grantee, va, readonly)`: grant a page of this domain to `grantee`; returns the grant ref.
    GrantCreate = 20 { grantee: DomainId, va: u64, readonly: bool }
    /// `(ref)`: end a grant; refused while the grantee still maps it.
    GrantEnd = 21 { gref: u64 }
    /// `(granter, ref, slot, need_write)`: map a granted page at `layout::GRANT_WINDOW + slot * 4096`
    /// (read-only if granted so; with `need_write` non-zero a read-only grant is refused instead).
    GrantMap = 22 { granter: DomainId, gref: u64, slot: u64, need_write: bool }
    /// `(slot)`: unmap a granted page.
    GrantUnmap = 23 { slot: u64 }
    /// `(granter, ref, offset, local_va, len, to_grant)`: copy between a granted page and local memory.
    GrantCopy = 24 { granter: DomainId, gref: u64, offset: u64, local_va: u64, len: u64, to_grant: bool }
    /// `(ops, count)`: the copies of `count` (1 to [`super::GRANT_COPY_BATCH`])
    /// [`super::GrantCopyOp`]s at `ops`, in order, in one call (as Xen's
    /// `GNTTABOP_copy` takes an array), each between a granted page and
    /// the caller's memory as `GrantCopy` does it, or between two granted
    /// pages; stops at the first that fails, with its error (those before
    /// it were done).
    GrantCopyBatch = 25 { ops: u64, count: u64 }

    /// `(ptr to CreateDomain)`: create a paused, empty domain (control only); returns its id.
    DomainCreate = 30 { params: u64 }
    /// `(dom, elf_ptr, elf_len)`: load an ELF image into a created domain (control only).
    DomainLoadImage = 31 { dom: DomainId, elf: u64, len: u64 }
    /// `(dom)`: let a domain run (control only).
    DomainUnpause = 32 { dom: DomainId }
    /// `(dom)`: stop a domain's vCPUs (control only).
    DomainPause = 33 { dom: DomainId }
    /// `(dom)`: destroy a domain and reclaim everything (control only).
    /// Returns a [`Destroyed`]: a domain running on another CPU at the call
    /// is `Dying` until that CPU leaves it (it is kicked at once) and keeps
    /// its devices until then; calling again answers `Dying` or `Gone`.
    DomainDestroy = 34 { dom: DomainId }
    /// `(dom, ptr to DomainInfo)`: read a domain's state and crash record (control only, or self).
    DomainInfo = 35 { dom: DomainId, info: u64 }
    /// `(dom, ptr, len)`: set the command line a domain finds in its start info (control only, before unpause).
    DomainSetCmdline = 36 { dom: DomainId, ptr: u64, len: u64 }
    /// Statistics of the kernel's resources (free frames, ports, grants), for leak checks (control only).
    KernelStats = 37 { stats: u64 }
    /// `(dom, first_port, count)`: give a created, never-run domain I/O ports (control only).
    DomainAddIoPorts = 38 { dom: DomainId, first_port: u64, count: u64 }
    /// `(dom, phys, pages)`: map device memory into a never-run domain's device window; returns its address there (control only).
    DomainAddMmio = 39 { dom: DomainId, phys: u64, pages: u64 }
    /// `(dom, irq)`: let a never-run domain bind a physical IRQ (control only).
    DomainAddIrq = 40 { dom: DomainId, irq: u64 }
    /// `(dom, rip, rsp, rdi)`: set where a never-run domain's vCPU starts (control only).
    DomainSetEntry = 41 { dom: DomainId, rip: u64, rsp: u64, rdi: u64 }
    /// Powers the machine off (ACPI S5) (control only). Returns only on failure.
    MachinePowerOff = 42 {  }
    /// `(dom, bdf)`: give a never-run domain the PCI function `bdf` (bus << 8 | device << 3 |
    /// function): its memory BARs are mapped into its device window, its I/O BARs become its
    /// ports, its INTx line its IRQ, and only it may reach its configuration space (control only).
    DomainAddPci = 43 { dom: DomainId, bdf: u64 }
    /// `(bdf, offset)`: read a dword of the configuration space of a PCI function this domain
    /// was given. BARs read as the firmware set them (or as their size mask while being sized).
    PciConfigRead = 44 { bdf: u64, offset: u64 }
    /// `(bdf, offset, value)`: write a dword of that configuration space. Only the command
    /// register's I/O, memory, bus-master and INTx-disable bits, BAR sizing (all ones, then
    /// the original value) and the capability area (offset 0x40 and up) but its MSI and
    /// MSI-X capabilities may be written (MSI stays off: devices interrupt by INTx).
    PciConfigWrite = 45 { bdf: u64, offset: u64, value: u64 }
    /// `(bdf, bar)`: where memory BAR `bar` of a PCI function this domain was given is mapped.
    PciBar = 46 { bdf: u64, bar: u64 }
    /// `(dom, pages)`: give a never-run domain `pages` physically contiguous pages for DMA,
    /// mapped at `layout::DMA_WINDOW` (control only).
    DomainAddDma = 47 { dom: DomainId, pages: u64 }
    /// `(va)`: the physical address of a byte of this domain's DMA window, or
    /// of a page it mapped writable in its grant window (for device programming).
    DmaPhys = 48 { va: u64 }
    /// `(dom)`: crash a domain as if it had faulted (control only), so its
    /// `on_crash` policy applies; fault injection for `toolstack domain crash`.
    DomainCrash = 49 { dom: DomainId }
    /// `(key)`: dump kernel state to the kernel log (control only): `h` lists
    /// the keys; `q` domains, `r` run queue, `e` event channels, `g` grants.
    /// `InvalidArgument` for another key.
    DebugKeys = 50 { key: u64 }
    /// `(dom, gref, offset, ptr, len)`: copy `len` bytes at `offset` of the
    /// page `dom` granted as `gref` (to anyone) into the caller's buffer
    /// (control only; `offset + len` at most 4096). Reads, never writes: how
    /// the toolstack looks at rings (`toolstack ring list`) without
    /// disturbing them. Returns the bytes copied.
    GrantPeek = 51 { dom: DomainId, gref: u64, offset: u64, buf: u64, len: u64 }
    /// `(dom, port)`: notifications sent from `dom`'s `port` since it was
    /// opened (low 32 bits) and from its interdomain peer's end (high 32
    /// bits); control only (`toolstack ring list`).
    PortSends = 52 { dom: DomainId, port: u64 }
    /// `(cpu, from, ptr, len)`: copy CPU `cpu`'s trace bytes from position
    /// `from` on into the caller's buffer, after a `trace::TraceChunk`
    /// header (control only). `len` must hold the header. Returns the trace
    /// bytes copied; `Disabled` when booted with `tbuf_size=0`, `InvalidArgument`
    /// for a CPU without a buffer.
    TraceRead = 53 { cpu: u64, from: u64, buf: u64, len: u64 }
    /// `(dom, vcpu, cpus)`: let vCPU `vcpu` of `dom` run only on the CPUs in
    /// the mask `cpus` (bit n: CPU n), at once: a vCPU on a CPU outside it
    /// moves (control only). `InvalidArgument` for a vCPU it lacks or a mask
    /// naming no CPU that runs.
    DomainPin = 54 { dom: DomainId, vcpu: u64, cpus: u64 }
    /// `()`: the number of the CPU the caller runs on (0: the boot CPU).
    CurrentCpu = 55 {  }
    /// `()`: the caller pauses itself for the control domain to save it
    /// (`DomainInfo::suspended` then says so). Returns 0 when it is unpaused
    /// and runs on as itself, 1 when it runs on as a restored copy: a new
    /// domain with the same memory and registers but no event ports, grants
    /// or grant-window mappings, which must connect its devices again. Not
    /// for the control domain (`PermissionDenied`); only on vCPU 0
    /// (`InvalidArgument` elsewhere): the domain's other vCPUs stop with it
    /// and go on, when restored, from where they were.
    Suspend = 56 {  }
    /// `(dom, from_va, ptr, skip_fresh)`: copy the first page of `dom`'s
    /// own memory (image, heap, stack) at or above `from_va` into the
    /// caller's 4096-byte buffer; returns the page's address, plus 1 if the
    /// domain may write the page, or `Empty` when there is none. With
    /// `skip_fresh`, pages a freshly created domain would hold the same are
    /// passed over (`save::fresh_page`: what a save file leaves out);
    /// having passed over `PAGE_READ_SCAN` pages without finding one it
    /// copies nothing and returns where to go on from, plus 2. `dom`
    /// must be paused and off every CPU (control only).
    DomainPageRead = 57 { dom: DomainId, from_va: u64, buf: u64, skip_fresh: bool }
    /// `(dom, va, ptr)`: copy 4096 bytes from the caller into the page of a
    /// never-run domain's own memory at `va` (image, heap or stack; not the
    /// start info, whatever its rights for the domain) (control only).
    DomainPageWrite = 58 { dom: DomainId, va: u64, buf: u64 }
    /// `(dom, vcpu, ptr to VcpuContext)`: read the registers of a started
    /// vCPU of a paused domain that is off every CPU (control only).
    DomainGetContext = 59 { dom: DomainId, vcpu: u64, context: u64 }
    /// `(dom, vcpu, ptr to VcpuContext)`: set every register a never-run
    /// domain's vCPU starts with (a vCPU other than 0 is started by it);
    /// `rflags` keeps only the arithmetic flags and the direction flag
    /// (control only).
    DomainSetContext = 60 { dom: DomainId, vcpu: u64, context: u64 }
    /// `(vcpu, rip, rsp, arg)`: start the caller's vCPU `vcpu` (one of
    /// those it was created with, not running yet) at `rip` with stack
    /// `rsp` and `arg` in rdi, as Xen's `VCPUOP_initialise` and `up`.
    /// `InvalidArgument` for a vCPU it lacks or an address outside the user
    /// half, `DomainState` for one already up.
    VcpuUp = 61 { vcpu: u64, rip: u64, rsp: u64, arg: u64 }
    /// `(dom, vcpu, ptr to VcpuInfo)`: where a vCPU runs and may run
    /// (control only, or self).
    VcpuInfo = 62 { dom: DomainId, vcpu: u64, info: u64 }
    /// `(fault_rip, fixup_rip)`: a page fault of the caller at exactly
    /// `fault_rip` resumes at `fixup_rip` instead of crashing it, with the
    /// faulting address in rax (as an exception table entry); `(0, 0)`
    /// removes it. How a domain probes whether an address is mapped (the
    /// TLB shootdown test reads a page while another vCPU unmaps it).
    FaultFixup = 63 { fault_rip: u64, fixup_rip: u64 }
    /// `(guest, dm)`: domain `dm` may be the device model of never-run HVM
    /// guest `guest`: serve its port I/O and raise its interrupts (control only).
    HvmSetDeviceModel = 64 { guest: DomainId, dm: DomainId }
    /// `(guest, va)`: the caller, `guest`'s device model, serves its port I/O
    /// through the page of its own memory at `va` (`hvm::IoRequest` slots,
    /// zeroed now); `Virq::DeviceModel` tells it of requests.
    HvmServe = 65 { guest: DomainId, va: u64 }
    /// `(guest, vcpu)`: the device model answered `guest`'s vCPU `vcpu`'s
    /// request in its slot; the vCPU goes on. `InvalidArgument` when no
    /// request of that vCPU is posted or the answer names another.
    HvmIoDone = 66 { guest: DomainId, vcpu: u64 }
    /// `(guest, vector)`: the device model's interrupt controller presents
    /// `vector` (16..=255) to `guest`'s vCPU 0, taken when it can.
    HvmInterrupt = 67 { guest: DomainId, vector: u64 }
    /// `(guest, reason)`: the device model saw `guest` power off, reset or
    /// report a panic (a [`crate::domain::ShutdownReason`]): it stops so,
    /// and the control domain applies its policy.
    HvmShutdown = 68 { guest: DomainId, reason: u64 }
    /// `(guest, gpa, grantee, readonly)`: the caller, `guest`'s device
    /// model, grants the page of `guest`'s memory at guest-physical `gpa`
    /// to `grantee` as if `guest` had granted it (the grant is in `guest`'s
    /// table; its frame outlives the guest while a window maps it); the
    /// grant reference. How a device model reaches its guest's queues and
    /// buffers (itself the grantee), or hands them to a driver domain.
    HvmGrant = 69 { guest: DomainId, gpa: u64, grantee: DomainId, readonly: bool }
    /// `(guest, gref)`: the device model ends a grant it made for `guest`
    /// (`GrantInUse` while a window maps it).
    HvmGrantEnd = 70 { guest: DomainId, gref: u64 }
    /// `(bdf, entry)`: bind a new local port to MSI-X table entry `entry`
    /// of the caller's PCI function `bdf`; the kernel programs the entry
    /// (the driver chooses no address or data bit: the table's pages are
    /// never mapped for it), turns MSI-X on and INTx off; returns the port.
    /// Edge-triggered: `PirqAck` on it does nothing.
    EventBindMsix = 71 { bdf: u64, entry: u64 }
    /// `(bdf)`: bind a new local port to the MSI (not MSI-X) capability of
    /// the caller's PCI function `bdf`, one message; the kernel writes its
    /// address and data (the capability is never writable by the driver),
    /// turns MSI on and INTx off; returns the port. Edge-triggered.
    EventBindMsi = 72 { bdf: u64 }
    /// `(guest, address, data)`: the caller, `guest`'s device model, sends
    /// the MSI message its emulated device was programmed with: the data's
    /// vector (fixed or lowest-priority delivery) to the vCPU whose APIC
    /// id the address names (physical destination).
    HvmMsi = 73 { guest: DomainId, address: u64, data: u64 }
    /// `(guest, port, bit)`: the caller, `guest`'s device model, makes an
    /// output to `port` a doorbell: the kernel sets bit `bit` (below
    /// `hvm::DOORBELLS`) of its request page's `doorbells`, raises
    /// `Virq::DeviceModel` and lets the vCPU go on at once, without waiting
    /// for an answer (what the guest wrote is not passed on). `port` 0
    /// takes doorbell `bit` away.
    HvmDoorbell = 74 { guest: DomainId, port: u64, bit: u64 }
    /// `(dom, ptr, len)`: give `dom` a new name (control only): printable
    /// ASCII, 1 to `NAME_MAX` bytes (`InvalidArgument`), no other live
    /// domain's (`NameTaken`). Nothing else about it changes.
    DomainRename = 75 { dom: DomainId, ptr: u64, len: u64 }
    /// `(dom, weight, cap)`: the scheduler's weight (1 to 65535) and cap
    /// (percent of one CPU, 0: none, up to 100) of every vCPU of `dom`,
    /// from now on (control only; `InvalidArgument` outside those).
    DomainSetSched = 76 { dom: DomainId, weight: u64, cap: u64 }
    /// `(va)`: the caller gives back the frame of its heap page at `va`
    /// (a balloon inflating): it is unmapped and freed, and the caller's
    /// memory shrinks by 4 KiB. `InvalidArgument` for an address outside
    /// its heap, unaligned, or not mapped; `GrantInUse` while the page is
    /// granted (another domain may map it); `PermissionDenied` for an HVM
    /// guest.
    MemoryRelease = 77 { va: u64 }
    /// `(va)`: the caller takes a fresh zeroed frame at the heap address
    /// `va` it gave back before (a balloon deflating), within its maximum
    /// (`DomainSetMaxMem`): `InvalidArgument` outside its heap or where a
    /// page is mapped, `OutOfResources` at its maximum or when the machine
    /// has no free frame.
    MemoryPopulate = 78 { va: u64 }
    /// `(dom, kib)`: the most memory `dom` may hold (`MemoryPopulate`
    /// stops there), at least `MIN_DOMAIN_KIB` (control only; it may be
    /// below what it holds now: it can then only shrink).
    DomainSetMaxMem = 79 { dom: DomainId, kib: u64 }
    /// The calling vCPU stops (not vCPU 0: `InvalidArgument`): it is down,
    /// runs no more and is not scheduled, until the domain's `VcpuUp`
    /// starts it again, afresh (`domain vcpu-set`). Does not return.
    VcpuDown = 80 {  }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_travel_in_register_order_and_round_trip() {
        let a = args::GrantCopy {
            granter: DomainId(7),
            gref: 3,
            offset: 100,
            local_va: 0x40_0000,
            len: 12,
            to_grant: true,
        };
        let r = a.to_registers();
        assert_eq!(r, [7, 3, 100, 0x40_0000, 12, 1]);
        assert_eq!(args::GrantCopy::from_registers(&r), a);
        assert_eq!(args::GrantCopy::CALL, Hypercall::GrantCopy);
    }

    #[test]
    fn decoding_is_total() {
        // A domain id is the low 32 bits; a bool any non-zero value.
        let r = [u64::MAX, 2, 0, 0, 0, 0];
        let a = args::GrantCreate::from_registers(&r);
        assert_eq!(a.grantee, DomainId(u32::MAX));
        assert!(!a.readonly && a.va == 2);
        let r = [0, 0, 0, 5, 0, 0];
        assert!(args::GrantMap::from_registers(&r).need_write);
    }
}
