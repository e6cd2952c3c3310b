//! Hypercall dispatch: decode the registers, check the caller's rights, call
//! the operation, encode the result.
//!
//! Owns: the mapping from `ipc_abi::hypercall::Hypercall` numbers to kernel
//! operations and the privilege rule for each. Every pointer goes through
//! `usermem`; every id through `Kernel::lookup`; nothing here trusts a value.

use crate::arch::idt::TrapFrame;
use crate::domain::lifecycle::{self, Spec};
use crate::domain::{console, devices, events, grants, pci, saving, vcpus, Kernel, Life, VcpuRef};
use crate::frames::FrameAllocator;
use crate::memory::with_frames;
use crate::trace::Gate;
use crate::usermem::{self, UserImage};
use ipc_abi::domain::{
    CrashRecord, CreateDomain, DomainId, DomainInfo, DomainState, ShutdownReason, VcpuContext,
    CMDLINE_MAX, MESSAGE_MAX,
};
use ipc_abi::hypercall::{Destroyed, Error, Hypercall};
use ipc_abi::shared::Virq;
use ipc_abi::trace::TraceChunk;

/// Largest console write accepted in one call.
const CONSOLE_MAX: u64 = ipc_abi::hypercall::CONSOLE_WRITE_MAX;

/// The six argument registers.
struct Args([u64; 6]);

impl Args {
    fn of(f: &TrapFrame) -> Args {
        Args([f.rdi, f.rsi, f.rdx, f.r10, f.r8, f.r9])
    }
    fn dom(&self, i: usize) -> DomainId {
        DomainId(self.0[i] as u32)
    }
}

/// Handles the hypercall in `frame` for vCPU `me`; writes the result into `frame`.
pub fn dispatch<G: Gate>(k: &mut Kernel, me: VcpuRef, frame: &mut TrapFrame) {
    let a = Args::of(frame);
    let result = match Hypercall::from_number(frame.rax) {
        None => Err(Error::UnknownCall),
        Some(call) => {
            trace_event!(<G> "dom{=u32} hypercall {}", k.id_of(me.dom), call);
            handle::<G>(k, me, call, &a)
        }
    };
    match result {
        Ok(v) => {
            frame.rax = 0;
            frame.rdx = v;
        }
        Err(e) => {
            frame.rax = e as u64;
            frame.rdx = 0;
        }
    }
}

fn require_control(k: &Kernel, caller: usize) -> Result<(), Error> {
    match k.domain(caller) {
        Some(d) if d.control => Ok(()),
        _ => Err(Error::PermissionDenied),
    }
}

/// Resolves a target domain for a control operation: never the caller itself.
fn other(k: &Kernel, caller: usize, id: DomainId) -> Result<usize, Error> {
    require_control(k, caller)?;
    let i = k.lookup(id)?;
    if i == caller {
        return Err(Error::InvalidArgument);
    }
    Ok(i)
}

fn handle<G: Gate>(k: &mut Kernel, me: VcpuRef, call: Hypercall, a: &Args) -> Result<u64, Error> {
    use Hypercall::*;
    let caller = me.dom;
    match call {
        Null => Ok(0),
        ConsoleWrite => {
            let (ptr, len) = (a.0[0], a.0[1]);
            if len > CONSOLE_MAX {
                return Err(Error::InvalidArgument);
            }
            let mut buf = [0u8; CONSOLE_MAX as usize];
            let now = k.now_ticks;
            let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_from(&d.space, ptr, &mut buf[..len as usize])?;
            console::write(d.id.index(), &mut d.console, now, &mut buf[..len as usize]);
            Ok(len)
        }
        Yield => {
            let others = k
                .all_vcpus()
                .filter(|&(at, v)| at != me && v.up)
                .map(|(_, v)| v.sched.pass)
                .max();
            if let (Some(max), Some(v)) = (others, k.vcpu_mut(me)) {
                v.sched.yield_behind(max);
            }
            k.cpu_mut().need_resched = true;
            Ok(0)
        }
        Block => {
            let event_page = k.domain(caller).ok_or(Error::NoSuchDomain)?.event_page;
            let v = k.vcpu_mut(me).ok_or(Error::NoSuchDomain)?;
            if core::mem::take(&mut v.timer_fired) {
                return Ok(0);
            }
            if !crate::domain::shared_pages::any_deliverable(event_page) {
                v.blocked = true;
                k.cpu_mut().need_resched = true;
            }
            Ok(0)
        }
        SetTimer => {
            let v = k.vcpu_mut(me).ok_or(Error::NoSuchDomain)?;
            v.timer_deadline = a.0[0];
            v.timer_fired = false;
            Ok(0)
        }
        Shutdown => {
            let reason = ShutdownReason::from_number(a.0[0]).ok_or(Error::InvalidArgument)?;
            let mut crash = CrashRecord::EMPTY;
            crash.vector = u64::MAX;
            let len = a.0[2].min(MESSAGE_MAX as u64) as usize;
            if let Some(d) = k.domain(caller) {
                if len > 0
                    && usermem::copy_from(&d.space, a.0[1], &mut crash.message[..len]).is_ok()
                {
                    crash.message_len = len as u32;
                }
                crash.rip = k.vcpu(me).map_or(0, |v| v.frame.rip);
            }
            let life = lifecycle::shutdown_life(reason);
            lifecycle::stop(k, caller, life, (life == Life::Crashed).then_some(crash));
            Ok(0)
        }
        ConsoleTakeover => devices::take_console(k, caller),
        ConsoleLineDone => devices::console_line_done(k, caller, a.0[0], a.0[1]).map(|()| 0),
        ConsoleRead => {
            if !k.may_read_log(caller) {
                return Err(Error::PermissionDenied);
            }
            let mut line = [0u8; crate::klog::LINE_MAX + 1];
            let (seq, n) = {
                let mut text = [0u8; crate::klog::LINE_MAX];
                let (seq, n) = crate::klog::read(a.0[0], &mut text).ok_or(Error::Empty)?;
                line[..n].copy_from_slice(&text[..n]);
                (seq, n)
            };
            let len = (a.0[2] as usize).min(n + 1);
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            if len < n + 1 {
                return Err(Error::InvalidArgument);
            }
            usermem::copy_to(&d.space, a.0[1], &line[..len])?;
            if k.console_owner == Some(caller) {
                k.console_unread = k.console_unread.max(seq + 1);
            }
            Ok(seq)
        }
        EventAllocUnbound => {
            let owner = k.resolve(caller, a.dom(0))?;
            if owner != caller {
                require_control(k, caller)?;
            }
            let remote = k.resolve(caller, a.dom(1))?;
            events::alloc_unbound(k, owner, remote).map(u64::from)
        }
        EventBindInterdomain => {
            events::bind_interdomain(k, caller, a.dom(0), a.0[1]).map(u64::from)
        }
        EventBindVirq => {
            let v = Virq::from_number(a.0[0]).ok_or(Error::InvalidArgument)?;
            events::bind_virq(k, caller, v).map(u64::from)
        }
        EventSend => events::send::<G>(k, caller, a.0[0]).map(|_| 0),
        EventClose => events::close(k, caller, a.0[0]).map(|_| 0),
        EventUnmask => events::unmask(k, caller, a.0[0]).map(|_| 0),
        EventBindPirq => devices::bind_pirq(k, caller, a.0[0]).map(u64::from),
        PirqAck => devices::ack(k, caller, a.0[0]).map(|_| 0),
        GrantCreate => grants::create(k, caller, a.dom(0), a.0[1], a.0[2] != 0).map(u64::from),
        GrantEnd => grants::end(k, caller, a.0[0]).map(|_| 0),
        GrantMap => {
            with_frames(|f| grants::map(k, f, caller, a.dom(0), a.0[1], a.0[2], a.0[3] != 0))
        }
        GrantUnmap => with_frames(|f| grants::unmap(k, f, caller, a.0[0]).map(|_| 0)),
        GrantCopy => grants::copy(
            k,
            caller,
            a.dom(0),
            a.0[1],
            a.0[2],
            a.0[3],
            a.0[4],
            a.0[5] != 0,
        )
        .map(|_| 0),
        DomainCreate => {
            require_control(k, caller)?;
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            let p: CreateDomain = usermem::read_value(&d.space, a.0[0])?;
            let name_len = (p.name_len as usize).min(p.name.len());
            let name =
                core::str::from_utf8(&p.name[..name_len]).map_err(|_| Error::InvalidArgument)?;
            let spec = Spec {
                name,
                memory_kib: p.memory_kib,
                weight: p.weight,
                cap_percent: p.cap_percent,
                control: false,
                vcpus: p.vcpus.max(1),
            };
            with_frames(|f| lifecycle::create(k, f, &spec).map(|id| id.0 as u64))
        }
        DomainLoadImage => {
            let target = other(k, caller, a.dom(0))?;
            let (va, len) = (a.0[1], a.0[2]);
            if len > usermem::MAX_COPY {
                return Err(Error::InvalidArgument);
            }
            // Check the whole image is readable first, so loading cannot fail half-way.
            check_readable(k, caller, va, len)?;
            with_frames(|f| load_from(k, f, caller, target, va, len))
        }
        DomainUnpause => {
            let t = other(k, caller, a.dom(0))?;
            lifecycle::unpause(k, t).map(|_| 0)
        }
        DomainPause => {
            let t = other(k, caller, a.dom(0))?;
            lifecycle::pause(k, t).map(|_| 0)
        }
        PortSends => {
            require_control(k, caller)?;
            let dom = k.resolve(caller, a.dom(0))?;
            events::sends(k, dom, a.0[1])
        }
        GrantPeek => {
            require_control(k, caller)?;
            let owner = k.resolve(caller, a.dom(0))?;
            let (gref, offset, ptr, len) = (a.0[1], a.0[2], a.0[3], a.0[4]);
            if offset.checked_add(len).is_none_or(|end| end > 4096) {
                return Err(Error::InvalidArgument);
            }
            let grant = k
                .domain(owner)
                .and_then(|d| d.grants.get(usize::try_from(gref).ok()?).copied().flatten())
                .ok_or(Error::BadGrant)?;
            let mut buf = [0u8; 4096];
            let n = len as usize;
            crate::domain::shared_pages::read_frame(grant.frame, offset as usize, &mut buf[..n]);
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_to(&d.space, ptr, &buf[..n])?;
            Ok(len)
        }
        TraceRead => {
            require_control(k, caller)?;
            let (cpu, from, ptr, len) = (a.0[0], a.0[1], a.0[2], a.0[3]);
            let header = core::mem::size_of::<TraceChunk>();
            let len = usize::try_from(len).map_err(|_| Error::InvalidArgument)?;
            if len < header {
                return Err(Error::InvalidArgument);
            }
            let cpu = usize::try_from(cpu).map_err(|_| Error::InvalidArgument)?;
            let mut buf = [0u8; 4096];
            let end = len.min(buf.len());
            let chunk = crate::trace::read(cpu, from, &mut buf[header..end])?;
            buf[..header].copy_from_slice(zerocopy::IntoBytes::as_bytes(&chunk));
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_to(&d.space, ptr, &buf[..header + chunk.len as usize])?;
            Ok(u64::from(chunk.len))
        }
        DomainPin => {
            require_control(k, caller)?;
            let t = k.resolve(caller, a.dom(0))?;
            vcpus::pin(k, t, a.0[1], a.0[2]).map(|()| 0)
        }
        VcpuUp => vcpus::up(k, caller, a.0[0], a.0[1], a.0[2], a.0[3]).map(|()| 0),
        VcpuInfo => {
            let t = k.resolve(caller, a.dom(0))?;
            if t != caller {
                require_control(k, caller)?;
            }
            let info = vcpus::info(k, t, a.0[1])?;
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_to(&d.space, a.0[2], zerocopy::IntoBytes::as_bytes(&info)).map(|_| 0)
        }
        FaultFixup => vcpus::set_fault_fixup(k, caller, a.0[0], a.0[1]).map(|()| 0),
        CurrentCpu => Ok(crate::domain::this_cpu() as u64),
        // On vCPU 0 only: a restore makes that vCPU's `Suspend` return 1.
        Suspend if me.vcpu != 0 => Err(Error::InvalidArgument),
        Suspend => saving::suspend(k, caller),
        DomainPageRead => {
            let t = other(k, caller, a.dom(0))?;
            saving::page_read(k, caller, t, a.0[1], a.0[2])
        }
        DomainPageWrite => {
            let t = other(k, caller, a.dom(0))?;
            saving::page_write(k, caller, t, a.0[1], a.0[2]).map(|()| 0)
        }
        DomainGetContext => {
            let t = other(k, caller, a.dom(0))?;
            let c = saving::get_context(k, t, a.0[1])?;
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_to(&d.space, a.0[2], zerocopy::IntoBytes::as_bytes(&c)).map(|()| 0)
        }
        DomainSetContext => {
            let t = other(k, caller, a.dom(0))?;
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            let c: VcpuContext = usermem::read_value(&d.space, a.0[2])?;
            saving::set_context(k, t, a.0[1], &c).map(|()| 0)
        }
        DebugKeys => {
            require_control(k, caller)?;
            let key = u8::try_from(a.0[0]).map_err(|_| Error::InvalidArgument)?;
            crate::domain::debugkeys::dump(k, key).map(|()| 0)
        }
        DomainCrash => {
            let t = other(k, caller, a.dom(0))?;
            let d = k.domain(t).ok_or(Error::NoSuchDomain)?;
            if matches!(d.life, Life::Crashed | Life::Shutdown(_)) {
                return Err(Error::DomainState);
            }
            let mut crash = CrashRecord::EMPTY;
            crash.vector = u64::MAX;
            crash.rip = d.vcpus[0].frame.rip;
            let text = b"crashed by the control domain";
            crash.message[..text.len()].copy_from_slice(text);
            crash.message_len = text.len() as u32;
            lifecycle::stop(k, t, Life::Crashed, Some(crash));
            Ok(0)
        }
        DomainDestroy => {
            require_control(k, caller)?;
            // Destroyed already, still leaving another CPU: say so (the
            // caller waits for `Gone` before reusing what it held).
            if let Some(t) = k.existing(a.dom(0)) {
                if k.domain(t).is_some_and(|d| d.teardown) {
                    return Ok(Destroyed::Dying as u64);
                }
            }
            let t = other(k, caller, a.dom(0))?;
            with_frames(|f| lifecycle::destroy(k, f, t).map(|d| d as u64))
        }
        DomainInfo => {
            let t = k.resolve(caller, a.dom(0))?;
            if t != caller {
                require_control(k, caller)?;
            }
            let info = domain_info(k, t)?;
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_to(&d.space, a.0[1], zerocopy::IntoBytes::as_bytes(&info)).map(|_| 0)
        }
        DomainSetCmdline => {
            let t = other(k, caller, a.dom(0))?;
            let len = a.0[2];
            if len > CMDLINE_MAX as u64 {
                return Err(Error::InvalidArgument);
            }
            let mut buf = [0u8; CMDLINE_MAX];
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_from(&d.space, a.0[1], &mut buf[..len as usize])?;
            lifecycle::set_cmdline(k, t, &buf[..len as usize]).map(|_| 0)
        }
        DomainAddIoPorts => {
            let t = other(k, caller, a.dom(0))?;
            devices::add_io_ports(k, t, a.0[1], a.0[2]).map(|_| 0)
        }
        DomainAddMmio => {
            let t = other(k, caller, a.dom(0))?;
            with_frames(|f| devices::add_mmio(k, f, t, a.0[1], a.0[2]))
        }
        DomainAddIrq => {
            let t = other(k, caller, a.dom(0))?;
            devices::add_irq(k, t, a.0[1]).map(|_| 0)
        }
        DomainSetEntry => {
            let t = other(k, caller, a.dom(0))?;
            lifecycle::set_entry(k, t, a.0[1], a.0[2], a.0[3]).map(|_| 0)
        }
        DomainAddPci => {
            let t = other(k, caller, a.dom(0))?;
            with_frames(|f| pci::assign(k, f, t, a.0[1])).map(|_| 0)
        }
        PciConfigRead => pci::config_read(k, caller, a.0[0], a.0[1]),
        PciConfigWrite => pci::config_write(k, caller, a.0[0], a.0[1], a.0[2]).map(|_| 0),
        PciBar => pci::bar_va(k, caller, a.0[0], a.0[1]),
        DomainAddDma => {
            let t = other(k, caller, a.dom(0))?;
            with_frames(|f| pci::add_dma(k, f, t, a.0[1])).map(|_| 0)
        }
        DmaPhys => pci::dma_phys(k, caller, a.0[0]),
        MachinePowerOff => {
            require_control(k, caller)?;
            crate::kprintln!("poweroff: requested by domain {}", caller);
            crate::arch::reset::power_off().map_err(|why| {
                crate::kprintln!("poweroff: failed: {why}");
                Error::DomainState
            })?;
            Ok(0)
        }
        KernelStats => {
            require_control(k, caller)?;
            let stats = ipc_abi::domain::KernelStats {
                free_frames: with_frames(|f| f.free_bytes()) / 4096,
                live_domains: k.live().count() as u64,
                open_ports: events::open_ports(k),
                live_grants: grants::live_grants(k),
                cpus: crate::arch::smp::online() as u64,
            };
            let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
            usermem::copy_to(&d.space, a.0[0], zerocopy::IntoBytes::as_bytes(&stats)).map(|_| 0)
        }
    }
}

fn check_readable(k: &Kernel, caller: usize, va: u64, len: u64) -> Result<(), Error> {
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let mut probe = [0u8; 1];
    let mut at = va;
    let end = va.checked_add(len).ok_or(Error::BadAddress)?;
    while at < end {
        usermem::copy_from(&d.space, at, &mut probe)?;
        at = (at & !0xfff) + 0x1000;
    }
    Ok(())
}

/// Loads an image that lives in `src`'s memory into `target`.
fn load_from(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    src: usize,
    target: usize,
    va: u64,
    len: u64,
) -> Result<u64, Error> {
    let (s, t) = k.pair_mut(src, target).ok_or(Error::InvalidArgument)?;
    let image = UserImage {
        space: &s.space,
        va,
        len,
    };
    lifecycle::load_into(t, frames, &image)
}

fn domain_info(k: &Kernel, t: usize) -> Result<DomainInfo, Error> {
    let d = k.domain(t).ok_or(Error::NoSuchDomain)?;
    let (state, reason) = match d.life {
        Life::Paused => (DomainState::Paused, 0),
        Life::Running => (DomainState::Running, 0),
        Life::Shutdown(r) => (DomainState::Shutdown, r as u64),
        Life::Crashed => (DomainState::Crashed, ShutdownReason::Crash as u64),
    };
    let mut name = [0u8; ipc_abi::domain::NAME_MAX];
    name[..d.name.len()].copy_from_slice(d.name.as_bytes());
    Ok(DomainInfo {
        id: d.id,
        state: state as u32,
        shutdown_reason: reason,
        memory_kib: d.memory_kib,
        cpu_ticks: d.existing_vcpus().map(|v| v.ticks).sum(),
        name,
        name_len: d.name.len() as u32,
        weight: d.vcpus[0].sched.weight,
        crash: d.crash,
        cpu: d.vcpus[0].cpu as u32,
        running: (k.loaded_mask(t) != 0) as u32,
        affinity: d.vcpus[0].affinity & crate::arch::smp::online_mask(),
        suspended: d.suspended as u32,
        vcpus: d.nr_vcpus as u32,
    })
}
