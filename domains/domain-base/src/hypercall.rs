//! Typed hypercall wrappers over `syscall` (the ABI is `ipc_abi::hypercall`).

use ipc_abi::domain::{
    CreateDomain, DomainId, DomainInfo, KernelStats, ShutdownReason, VcpuContext, VcpuInfo,
};
use ipc_abi::hypercall::{
    args, decode, Args, CopyEnd, Destroyed, GrantCopyOp, Result, GRANT_COPY_BATCH,
};
use ipc_abi::shared::Virq;
use zerocopy::FromZeros;

/// Makes a raw hypercall: number and six arguments; returns `(rax, rdx)`.
pub fn raw(number: u64, args: [u64; 6]) -> (u64, u64) {
    let rax: u64;
    let rdx: u64;
    // SAFETY: `syscall` enters the kernel, which reads only the registers
    // named here, preserves all others except rcx and r11 (declared
    // clobbered), and touches this domain's memory only as the call says.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => rax,
            in("rdi") args[0],
            in("rsi") args[1],
            inlateout("rdx") args[2] => rdx,
            in("r10") args[3],
            in("r8") args[4],
            in("r9") args[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (rax, rdx)
}

/// Makes the hypercall `a` belongs to, with `a` in the argument registers.
fn call<A: Args>(a: A) -> Result<u64> {
    let (rax, rdx) = raw(A::CALL as u64, a.to_registers());
    decode(rax, rdx)
}

pub fn null() -> Result<u64> {
    call(args::Null {})
}

pub fn console_write(bytes: &[u8]) -> Result<u64> {
    call(args::ConsoleWrite {
        ptr: bytes.as_ptr() as u64,
        len: bytes.len() as u64,
    })
}

/// Reads the oldest kept kernel console line numbered `from` or later into
/// `buf`; returns its number and text (control domain only).
pub fn console_read(
    from: u64,
    buf: &mut [u8; ipc_abi::hypercall::LOG_LINE_BUF],
) -> Result<(u64, &str)> {
    let seq = call(args::ConsoleRead {
        from_seq: from,
        buf: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
    })?;
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Ok((
        seq,
        core::str::from_utf8(&buf[..n]).unwrap_or("(not UTF-8)"),
    ))
}

/// For the console domain: ends the line it wrote on COM1 (CR LF, by the
/// kernel) and stores `value` in `mark`, in one step (see
/// `Hypercall::ConsoleLineDone`).
pub fn console_line_done(mark: &core::sync::atomic::AtomicU64, value: u64) -> Result<()> {
    call(args::ConsoleLineDone {
        mark: mark.as_ptr() as u64,
        value,
    })
    .map(drop)
}

pub fn yield_cpu() {
    let _ = call(args::Yield {});
}

/// Blocks until an unmasked event port is pending (returns at once if one is).
pub fn block() {
    let _ = call(args::Block {});
}

/// Arms this vCPU's one-shot timer for `deadline_ns` since boot (0 cancels).
pub fn set_timer(deadline_ns: u64) -> Result<u64> {
    call(args::SetTimer { deadline_ns })
}

/// Stops this domain.
pub fn shutdown(reason: ShutdownReason, message: &[u8]) -> ! {
    let _ = call(args::Shutdown {
        reason: reason as u64,
        message: message.as_ptr() as u64,
        len: message.len() as u64,
    });
    // The kernel never returns to a stopped domain; if it did, spin politely.
    loop {
        yield_cpu();
    }
}

pub fn event_alloc_unbound(owner: DomainId, remote: DomainId) -> Result<u16> {
    call(args::EventAllocUnbound { owner, remote }).map(|p| p as u16)
}

pub fn event_bind_interdomain(remote: DomainId, remote_port: u16) -> Result<u16> {
    call(args::EventBindInterdomain {
        remote,
        remote_port: remote_port as u64,
    })
    .map(|p| p as u16)
}

pub fn event_bind_virq(virq: Virq) -> Result<u16> {
    call(args::EventBindVirq { virq: virq as u64 }).map(|p| p as u16)
}

pub fn event_send(port: u16) -> Result<u64> {
    call(args::EventSend { port: port as u64 })
}

/// Signals `port`'s peer and blocks, in one call (`EventSendBlock`):
/// callers go through [`crate::events::send_and_wait`], which parks the
/// ports not waited for first.
pub fn event_send_block(port: u16) -> Result<u64> {
    call(args::EventSendBlock { port: port as u64 })
}

pub fn event_close(port: u16) -> Result<u64> {
    call(args::EventClose { port: port as u64 })
}

pub fn event_unmask(port: u16) -> Result<u64> {
    call(args::EventUnmask { port: port as u64 })
}

pub fn grant_create(grantee: DomainId, page_va: u64, readonly: bool) -> Result<u32> {
    call(args::GrantCreate {
        grantee,
        va: page_va,
        readonly,
    })
    .map(|r| r as u32)
}

pub fn grant_end(gref: u32) -> Result<u64> {
    call(args::GrantEnd { gref: gref as u64 })
}

/// Maps a grant into window slot `slot`; returns the address it is mapped at.
pub fn grant_map(granter: DomainId, gref: u32, slot: u64) -> Result<u64> {
    call(args::GrantMap {
        granter,
        gref: gref as u64,
        slot,
        need_write: false,
    })
}

/// Maps a granted page that must be writable (a read-only grant is refused, `PermissionDenied`).
pub fn grant_map_writable(granter: DomainId, gref: u32, slot: u64) -> Result<u64> {
    call(args::GrantMap {
        granter,
        gref: gref as u64,
        slot,
        need_write: true,
    })
}

pub fn grant_unmap(slot: u64) -> Result<u64> {
    call(args::GrantUnmap { slot })
}

pub fn grant_copy_from(granter: DomainId, gref: u32, offset: u64, into: &mut [u8]) -> Result<u64> {
    call(args::GrantCopy {
        granter,
        gref: gref as u64,
        offset,
        local_va: into.as_mut_ptr() as u64,
        len: into.len() as u64,
        to_grant: false,
    })
}

pub fn grant_copy_to(granter: DomainId, gref: u32, offset: u64, from: &[u8]) -> Result<u64> {
    call(args::GrantCopy {
        granter,
        gref: gref as u64,
        offset,
        local_va: from.as_ptr() as u64,
        len: from.len() as u64,
        to_grant: true,
    })
}

/// Copies through grants gathered first and made in one `GrantCopyBatch`
/// (at most `GRANT_COPY_BATCH`): the local buffers stay borrowed until
/// [`CopyBatch::run`], so the kernel writes only into memory the batch
/// holds the only reference to. A copy past the bound makes `run` refuse
/// them all (none is dropped unseen).
#[derive(Default)]
pub struct CopyBatch<'a> {
    ops: heapless::Vec<GrantCopyOp, GRANT_COPY_BATCH>,
    overflowed: bool,
    buffers: core::marker::PhantomData<&'a mut [u8]>,
}

impl<'a> CopyBatch<'a> {
    /// Adds a copy of `into.len()` bytes at `offset` of `granter`'s page
    /// `gref` into `into`.
    pub fn from_grant(&mut self, granter: DomainId, gref: u32, offset: u64, into: &'a mut [u8]) {
        let from = CopyEnd::granted(granter.0, gref, offset);
        let to = CopyEnd::local(into.as_mut_ptr() as u64);
        self.add(from, to, into.len())
    }

    /// Adds a copy of `from` to `offset` of `granter`'s page `gref`.
    pub fn to_grant(&mut self, granter: DomainId, gref: u32, offset: u64, from: &'a [u8]) {
        let to = CopyEnd::granted(granter.0, gref, offset);
        self.add(CopyEnd::local(from.as_ptr() as u64), to, from.len())
    }

    /// Adds a copy of `len` bytes from one granted page to another
    /// (`(granter, gref, offset)` each), page to page.
    pub fn between_grants(
        &mut self,
        from: (DomainId, u32, u64),
        to: (DomainId, u32, u64),
        len: usize,
    ) {
        let from = CopyEnd::granted(from.0 .0, from.1, from.2);
        self.add(from, CopyEnd::granted(to.0 .0, to.1, to.2), len)
    }

    fn add(&mut self, from: CopyEnd, to: CopyEnd, len: usize) {
        // A length past a page is the kernel's to refuse; one that does
        // not fit the field is made one it refuses.
        let op = GrantCopyOp {
            from,
            to,
            len: u32::try_from(len).unwrap_or(u32::MAX),
            _reserved: 0,
        };
        self.overflowed |= self.ops.push(op).is_err();
    }

    /// Makes every copy, in order, in one hypercall (none if empty; a
    /// plain `GrantCopy` for one, with no array for the kernel to read);
    /// the first that fails ends it with its error; `InvalidArgument`,
    /// and nothing copied, if more were added than a batch takes.
    pub fn run(self) -> Result<()> {
        if self.overflowed {
            return Err(ipc_abi::hypercall::Error::InvalidArgument);
        }
        if let [op] = self.ops[..] {
            // One copy with a local end: a plain `GrantCopy`.
            let plain = match (op.from.granter, op.to.granter) {
                (CopyEnd::LOCAL, CopyEnd::LOCAL) => None,
                (CopyEnd::LOCAL, _) => Some((op.to, op.from.at, true)),
                (_, CopyEnd::LOCAL) => Some((op.from, op.to.at, false)),
                _ => None,
            };
            if let Some((grant, local_va, to_grant)) = plain {
                return call(args::GrantCopy {
                    granter: DomainId(grant.granter),
                    gref: u64::from(grant.gref),
                    offset: grant.at,
                    local_va,
                    len: u64::from(op.len),
                    to_grant,
                })
                .map(|_| ());
            }
        }
        if self.ops.is_empty() {
            return Ok(());
        }
        call(args::GrantCopyBatch {
            ops: self.ops.as_ptr() as u64,
            count: self.ops.len() as u64,
        })
        .map(|_| ())
    }
}

/// Creates a paused, empty domain (control domain only).
pub fn domain_create(
    name: &str,
    memory_kib: u64,
    weight: u32,
    cap_percent: u32,
    vcpus: u32,
) -> Result<DomainId> {
    create(name, memory_kib, weight, cap_percent, vcpus, 0)
}

/// Creates a paused HVM guest with `memory_kib` of RAM from guest-physical
/// 0 (control domain only; `Disabled` on a CPU without SVM and nested paging).
pub fn domain_create_hvm(
    name: &str,
    memory_kib: u64,
    weight: u32,
    cap_percent: u32,
    vcpus: u32,
) -> Result<DomainId> {
    create(
        name,
        memory_kib,
        weight,
        cap_percent,
        vcpus,
        ipc_abi::domain::CREATE_HVM,
    )
}

fn create(
    name: &str,
    memory_kib: u64,
    weight: u32,
    cap_percent: u32,
    vcpus: u32,
    flags: u32,
) -> Result<DomainId> {
    let mut p = CreateDomain::new_zeroed();
    p.flags = flags;
    let n = name.len().min(p.name.len());
    p.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    p.name_len = n as u32;
    p.memory_kib = memory_kib;
    p.weight = weight;
    p.cap_percent = cap_percent;
    p.vcpus = vcpus;
    call(args::DomainCreate {
        params: &p as *const CreateDomain as u64,
    })
    .map(|id| DomainId(id as u32))
}

pub fn domain_load_image(dom: DomainId, elf: &[u8]) -> Result<u64> {
    call(args::DomainLoadImage {
        dom,
        elf: elf.as_ptr() as u64,
        len: elf.len() as u64,
    })
}

pub fn domain_set_cmdline(dom: DomainId, cmdline: &str) -> Result<u64> {
    call(args::DomainSetCmdline {
        dom,
        ptr: cmdline.as_ptr() as u64,
        len: cmdline.len() as u64,
    })
}

pub fn domain_unpause(dom: DomainId) -> Result<()> {
    call(args::DomainUnpause { dom }).map(drop)
}

pub fn domain_pause(dom: DomainId) -> Result<()> {
    call(args::DomainPause { dom }).map(drop)
}

/// One `DomainDestroy` call: `Dying` while another CPU still runs the domain.
pub fn domain_destroy_begin(dom: DomainId) -> Result<Destroyed> {
    let done = call(args::DomainDestroy { dom })?;
    Ok(if done == Destroyed::Dying as u64 {
        Destroyed::Dying
    } else {
        Destroyed::Gone
    })
}

/// Destroys a domain and returns once it is gone, so that its devices,
/// console and IRQs can be given to a successor at once. A domain running
/// on another CPU at the call is freed by that CPU as it leaves (the kernel
/// kicks it); this waits for that, up to a second (then `DomainState`).
pub fn domain_destroy(dom: DomainId) -> Result<()> {
    match domain_destroy_begin(dom)? {
        Destroyed::Gone => Ok(()),
        Destroyed::Dying => domain_wait_gone(dom),
    }
}

/// After a `Dying` answer: waits until the domain is gone (up to a second,
/// then `DomainState`).
pub fn domain_wait_gone(dom: DomainId) -> Result<()> {
    use ipc_abi::hypercall::Error;
    let deadline = crate::time::now_ns().saturating_add(1_000_000_000);
    loop {
        // Asked again: `Dying` still, or the id names no domain any more.
        match domain_destroy_begin(dom) {
            Ok(Destroyed::Dying) => {}
            Ok(Destroyed::Gone) | Err(Error::DeadDomain | Error::NoSuchDomain) => return Ok(()),
            Err(e) => return Err(e),
        }
        if crate::time::now_ns() > deadline {
            return Err(Error::DomainState);
        }
        yield_cpu();
    }
}

pub fn domain_info(dom: DomainId) -> Result<DomainInfo> {
    let mut info = DomainInfo::new_zeroed();
    call(args::DomainInfo {
        dom,
        info: &mut info as *mut DomainInfo as u64,
    })?;
    Ok(info)
}

pub fn kernel_stats() -> Result<KernelStats> {
    let mut s = KernelStats::default();
    call(args::KernelStats {
        stats: &mut s as *mut KernelStats as u64,
    })?;
    Ok(s)
}

/// Binds a port to a physical IRQ this domain was given.
pub fn event_bind_pirq(irq: u8) -> Result<u16> {
    call(args::EventBindPirq { irq: irq as u64 }).map(|p| p as u16)
}

/// Binds a new port to MSI-X entry `entry` of this domain's PCI function `bdf`.
pub fn event_bind_msix(bdf: u16, entry: u16) -> Result<u16> {
    call(args::EventBindMsix {
        bdf: bdf as u64,
        entry: entry as u64,
    })
    .map(|p| p as u16)
}

/// Binds a new port to the MSI capability of this domain's PCI function `bdf`.
pub fn event_bind_msi(bdf: u16) -> Result<u16> {
    call(args::EventBindMsi { bdf: bdf as u64 }).map(|p| p as u16)
}

/// The IRQ on `port` was handled: unmask its line.
pub fn pirq_ack(port: u16) -> Result<u64> {
    call(args::PirqAck { port: port as u64 })
}

/// Gives a never-run domain I/O ports (control domain only).
pub fn domain_add_io_ports(dom: DomainId, first: u16, count: u16) -> Result<u64> {
    call(args::DomainAddIoPorts {
        dom,
        first_port: first as u64,
        count: count as u64,
    })
}

/// Maps device memory into a never-run domain; returns its address there (control domain only).
pub fn domain_add_mmio(dom: DomainId, phys: u64, pages: u64) -> Result<u64> {
    call(args::DomainAddMmio { dom, phys, pages })
}

/// Lets a never-run domain bind a physical IRQ (control domain only).
pub fn domain_add_irq(dom: DomainId, irq: u8) -> Result<u64> {
    call(args::DomainAddIrq {
        dom,
        irq: irq as u64,
    })
}

/// Gives a never-run domain PCI function `bdf` (`bus << 8 | device << 3 | function`).
pub fn domain_add_pci(dom: DomainId, bdf: u16) -> Result<u64> {
    call(args::DomainAddPci {
        dom,
        bdf: bdf as u64,
    })
}

/// Reads a dword of the configuration space of a PCI function this domain holds.
pub fn pci_config_read(bdf: u16, offset: u8) -> Result<u32> {
    call(args::PciConfigRead {
        bdf: bdf as u64,
        offset: offset as u64,
    })
    .map(|v| v as u32)
}

/// Writes a dword of the configuration space of a PCI function this domain holds.
pub fn pci_config_write(bdf: u16, offset: u8, value: u32) -> Result<u64> {
    call(args::PciConfigWrite {
        bdf: bdf as u64,
        offset: offset as u64,
        value: value as u64,
    })
}

/// Where memory BAR `bar` of a PCI function this domain holds is mapped.
pub fn pci_bar(bdf: u16, bar: u8) -> Result<u64> {
    call(args::PciBar {
        bdf: bdf as u64,
        bar: bar as u64,
    })
}

/// Gives a never-run domain `pages` contiguous DMA pages at `layout::DMA_WINDOW`.
pub fn domain_add_dma(dom: DomainId, pages: u64) -> Result<u64> {
    call(args::DomainAddDma { dom, pages })
}

/// The physical address of `va` in this domain's DMA window.
pub fn dma_phys(va: u64) -> Result<u64> {
    call(args::DmaPhys { va })
}

/// Crashes a domain as if it had faulted (control domain only).
pub fn domain_crash(dom: DomainId) -> Result<()> {
    call(args::DomainCrash { dom }).map(drop)
}

/// Copies `buf.len()` bytes at `offset` of the page `dom` granted as
/// `gref` into `buf` (control domain only; reads, never writes).
pub fn grant_peek(dom: DomainId, gref: u32, offset: u64, buf: &mut [u8]) -> Result<u64> {
    call(args::GrantPeek {
        dom,
        gref: gref as u64,
        offset,
        buf: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
    })
}

/// Notifications sent from `dom`'s `port` and from its interdomain peer's
/// end (control domain only).
pub fn port_sends(dom: DomainId, port: u16) -> Result<(u32, u32)> {
    call(args::PortSends {
        dom,
        port: port as u64,
    })
    .map(|v| (v as u32, (v >> 32) as u32))
}

/// Reads CPU `cpu`'s kernel trace bytes from position `from` into `buf`
/// (control domain only): the chunk header and the bytes it describes.
pub fn trace_read(
    cpu: u32,
    from: u64,
    buf: &mut [u8],
) -> Result<(crate::ipc_abi::trace::TraceChunk, &[u8])> {
    use crate::ipc_abi::hypercall::Error;
    use crate::ipc_abi::trace::TraceChunk;
    use zerocopy::FromBytes;
    let n = call(args::TraceRead {
        cpu: cpu as u64,
        from,
        buf: buf.as_mut_ptr() as u64,
        len: buf.len() as u64,
    })? as usize;
    let (chunk, rest) = TraceChunk::read_from_prefix(buf).map_err(|_| Error::InvalidArgument)?;
    Ok((chunk, rest.get(..n).ok_or(Error::InvalidArgument)?))
}

/// Lets `dom`'s vCPU `vcpu` run only on the CPUs in `cpus` (bit n: CPU n);
/// control domain only.
pub fn domain_pin(dom: DomainId, vcpu: u32, cpus: u64) -> Result<u64> {
    call(args::DomainPin {
        dom,
        vcpu: vcpu as u64,
        cpus,
    })
}

/// Gives the frame of this domain's heap page at `va` back to the machine.
pub fn memory_release(va: u64) -> Result<u64> {
    call(args::MemoryRelease { va })
}

/// Takes a fresh zeroed frame at this domain's heap page `va` again.
pub fn memory_populate(va: u64) -> Result<u64> {
    call(args::MemoryPopulate { va })
}

/// The most memory `dom` may hold, in KiB; control domain only.
pub fn domain_set_max_mem(dom: DomainId, kib: u64) -> Result<u64> {
    call(args::DomainSetMaxMem { dom, kib })
}

/// Gives `dom` the name `name`; control domain only.
pub fn domain_rename(dom: DomainId, name: &str) -> Result<u64> {
    call(args::DomainRename {
        dom,
        ptr: name.as_ptr() as u64,
        len: name.len() as u64,
    })
}

/// Sets the scheduler weight and cap (percent of one CPU, 0: none) of
/// every vCPU of `dom`; control domain only.
pub fn domain_set_sched(dom: DomainId, weight: u32, cap: u32) -> Result<u64> {
    call(args::DomainSetSched {
        dom,
        weight: weight.into(),
        cap: cap.into(),
    })
}

/// Stops the calling vCPU (not vCPU 0) until `vcpu_up` starts it again;
/// returns only on refusal (`vcpu::stop` is the friendly form).
pub fn vcpu_down() -> Result<u64> {
    call(args::VcpuDown {})
}

/// Starts this domain's vCPU `vcpu` at `rip` with stack `rsp` and `arg`
/// in rdi (`vcpu::start` is the friendly form).
pub fn vcpu_up(vcpu: u32, rip: u64, rsp: u64, arg: u64) -> Result<u64> {
    call(args::VcpuUp {
        vcpu: vcpu as u64,
        rip,
        rsp,
        arg,
    })
}

/// Where vCPU `vcpu` of `dom` runs and may run.
pub fn vcpu_info(dom: DomainId, vcpu: u32) -> Result<VcpuInfo> {
    let mut info = VcpuInfo::new_zeroed();
    call(args::VcpuInfo {
        dom,
        vcpu: vcpu as u64,
        info: &mut info as *mut VcpuInfo as u64,
    })?;
    Ok(info)
}

/// A page fault at `at` resumes at `to` (the runtime's probe uses it).
pub fn fault_fixup(at: u64, to: u64) -> Result<u64> {
    call(args::FaultFixup {
        fault_rip: at,
        fixup_rip: to,
    })
}

/// The number of the CPU this vCPU runs on now.
pub fn current_cpu() -> u64 {
    call(args::CurrentCpu {}).unwrap_or(0)
}

/// Dumps kernel state named by a debug key to the kernel log (control domain only).
pub fn debug_keys(key: u8) -> Result<u64> {
    call(args::DebugKeys { key: key as u64 })
}

/// Sets where a never-run domain's vCPU starts (control domain only).
pub fn domain_set_entry(dom: DomainId, rip: u64, rsp: u64, arg: u64) -> Result<u64> {
    call(args::DomainSetEntry {
        dom,
        rip,
        rsp,
        rdi: arg,
    })
}

/// Takes COM1 over from the kernel (the caller must hold COM1's ports).
pub fn console_takeover() -> Result<u64> {
    call(args::ConsoleTakeover {})
}

/// Powers the machine off (control domain only); returns only on failure.
pub fn machine_power_off() -> Result<u64> {
    call(args::MachinePowerOff {})
}

/// Suspends this domain for the control domain to save: 0 once it runs on
/// as itself, 1 when it runs on as a restored copy (see `domain_runtime::suspend`).
pub fn suspend() -> Result<u64> {
    call(args::Suspend {})
}

/// Copies the first page of paused domain `dom`'s own memory at or above
/// `from` into `page`; returns its address, plus 1 if the domain may write
/// it (`Empty`: no more). With `skip_fresh`, pages a fresh domain would
/// hold the same are passed over, and an answer with
/// `PAGE_READ_GO_ON` set copied nothing and says where to go on from
/// (`ipc_abi::hypercall`). Control domain only.
pub fn domain_page_read(
    dom: DomainId,
    from: u64,
    page: &mut [u8; 4096],
    skip_fresh: bool,
) -> Result<u64> {
    call(args::DomainPageRead {
        dom,
        from_va: from,
        buf: page.as_mut_ptr() as u64,
        skip_fresh,
    })
}

/// Fills the page at `va` of never-run domain `dom` (control domain only).
pub fn domain_page_write(dom: DomainId, va: u64, page: &[u8; 4096]) -> Result<u64> {
    call(args::DomainPageWrite {
        dom,
        va,
        buf: page.as_ptr() as u64,
    })
}

/// The registers of paused domain `dom`'s vCPU `vcpu` (control domain only).
pub fn domain_get_context(dom: DomainId, vcpu: u32) -> Result<VcpuContext> {
    let mut c = VcpuContext::new_zeroed();
    call(args::DomainGetContext {
        dom,
        vcpu: vcpu as u64,
        context: &mut c as *mut VcpuContext as u64,
    })?;
    Ok(c)
}

/// Sets the registers never-run domain `dom`'s vCPU `vcpu` starts with (control domain only).
pub fn domain_set_context(dom: DomainId, vcpu: u32, c: &VcpuContext) -> Result<u64> {
    call(args::DomainSetContext {
        dom,
        vcpu: vcpu as u64,
        context: c as *const VcpuContext as u64,
    })
}

/// Lets domain `dm` be never-run HVM guest `guest`'s device model (control domain only).
pub fn hvm_set_device_model(guest: DomainId, dm: DomainId) -> Result<u64> {
    call(args::HvmSetDeviceModel { guest, dm })
}

/// Serves `guest`'s port I/O through the page at `page` (the caller must
/// be its device model; the page must be its own, writable, page-aligned).
pub fn hvm_serve(guest: DomainId, page: u64) -> Result<u64> {
    call(args::HvmServe { guest, va: page })
}

/// The request of `guest`'s vCPU `vcpu` is answered in its slot.
pub fn hvm_io_done(guest: DomainId, vcpu: u32) -> Result<u64> {
    call(args::HvmIoDone {
        guest,
        vcpu: vcpu as u64,
    })
}

/// Presents `vector` to `guest`'s vCPU 0 (the device model's interrupt controller).
pub fn hvm_msi(guest: DomainId, address: u64, data: u32) -> Result<u64> {
    call(args::HvmMsi {
        guest,
        address,
        data: u64::from(data),
    })
}

pub fn hvm_doorbell(guest: DomainId, port: u16, bit: u8) -> Result<u64> {
    call(args::HvmDoorbell {
        guest,
        port: u64::from(port),
        bit: u64::from(bit),
    })
}

pub fn hvm_interrupt(guest: DomainId, vector: u8) -> Result<u64> {
    call(args::HvmInterrupt {
        guest,
        vector: vector as u64,
    })
}

/// `guest` powered off, reset or panicked (its device model saw it).
pub fn hvm_shutdown(guest: DomainId, reason: ShutdownReason) -> Result<u64> {
    call(args::HvmShutdown {
        guest,
        reason: reason as u64,
    })
}

/// Grants the page of `guest`'s memory at guest-physical `gpa` to
/// `grantee` (the caller is `guest`'s device model); the grant reference.
pub fn hvm_grant(guest: DomainId, gpa: u64, grantee: DomainId, readonly: bool) -> Result<u32> {
    call(args::HvmGrant {
        guest,
        gpa,
        grantee,
        readonly,
    })
    .map(|g| g as u32)
}

/// Ends a grant made with [`hvm_grant`].
pub fn hvm_grant_end(guest: DomainId, gref: u32) -> Result<u64> {
    call(args::HvmGrantEnd {
        guest,
        gref: u64::from(gref),
    })
}
