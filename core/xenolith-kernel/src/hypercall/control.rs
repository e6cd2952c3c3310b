//! The control domain's calls on other domains: create, load, run, stop,
//! destroy, describe, pin, save and restore them, and look at the machine
//! (kernel statistics, trace buffers, power).

use super::rights::{other, require_control, self_or_controlled};
use crate::arch::memory::with_frames;
use crate::domain::lifecycle::{self, Spec};
use crate::domain::{balloon, cpu_time, events, grants, saving, vcpus, Kernel, Life};
use crate::frame_pool::FrameAllocator;
use crate::usermem::{self, UserImage};
use ipc_abi::domain::{
    CrashRecord, CreateDomain, DomainInfo, DomainState, ShutdownReason, VcpuContext, CMDLINE_MAX,
};
use ipc_abi::hypercall::{args, Destroyed, Error};
use ipc_abi::trace::TraceChunk;

pub fn create(k: &mut Kernel, caller: usize, a: args::DomainCreate) -> Result<u64, Error> {
    require_control(k, caller)?;
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let p: CreateDomain = usermem::read_value(&d.space, a.params)?;
    let name_len = (p.name_len as usize).min(p.name.len());
    let name = core::str::from_utf8(&p.name[..name_len]).map_err(|_| Error::InvalidArgument)?;
    let spec = Spec {
        name,
        memory_kib: p.memory_kib,
        weight: p.weight,
        cap_percent: p.cap_percent,
        control: false,
        vcpus: p.vcpus.max(1),
        hvm: match p.flags {
            0 => false,
            ipc_abi::domain::CREATE_HVM => true,
            _ => return Err(Error::InvalidArgument),
        },
    };
    with_frames(|f| lifecycle::create(k, f, &spec).map(|id| id.0 as u64))
}

pub fn load_image(k: &mut Kernel, caller: usize, a: args::DomainLoadImage) -> Result<u64, Error> {
    let target = other(k, caller, a.dom)?;
    if a.len > usermem::MAX_COPY {
        return Err(Error::InvalidArgument);
    }
    // Check the whole image is readable first, so loading cannot fail half-way.
    check_readable(k, caller, a.elf, a.len)?;
    with_frames(|f| load_from(k, f, caller, target, a.elf, a.len))
}

pub fn unpause(k: &mut Kernel, caller: usize, a: args::DomainUnpause) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    lifecycle::unpause(k, t).map(|_| 0)
}

pub fn pause(k: &mut Kernel, caller: usize, a: args::DomainPause) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    lifecycle::pause(k, t).map(|_| 0)
}

pub fn destroy(k: &mut Kernel, caller: usize, a: args::DomainDestroy) -> Result<u64, Error> {
    require_control(k, caller)?;
    // Destroyed already, still leaving another CPU: say so (the caller
    // waits for `Gone` before reusing what it held).
    if let Some(t) = k.existing(a.dom) {
        if k.domain(t).is_some_and(|d| d.teardown) {
            return Ok(Destroyed::Dying as u64);
        }
    }
    let t = other(k, caller, a.dom)?;
    with_frames(|f| lifecycle::destroy(k, f, t).map(|d| d as u64))
}

pub fn crash(k: &mut Kernel, caller: usize, a: args::DomainCrash) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
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

pub fn info(k: &mut Kernel, caller: usize, a: args::DomainInfo) -> Result<u64, Error> {
    let t = self_or_controlled(k, caller, a.dom)?;
    let info = domain_info(k, t)?;
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_to(&d.space, a.info, zerocopy::IntoBytes::as_bytes(&info)).map(|_| 0)
}

pub fn set_cmdline(k: &mut Kernel, caller: usize, a: args::DomainSetCmdline) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    if a.len > CMDLINE_MAX as u64 {
        return Err(Error::InvalidArgument);
    }
    let mut buf = [0u8; CMDLINE_MAX];
    let line = &mut buf[..a.len as usize];
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_from(&d.space, a.ptr, line)?;
    lifecycle::set_cmdline(k, t, line).map(|_| 0)
}

pub fn set_entry(k: &mut Kernel, caller: usize, a: args::DomainSetEntry) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    lifecycle::set_entry(k, t, a.rip, a.rsp, a.rdi).map(|_| 0)
}

pub fn pin(k: &mut Kernel, caller: usize, a: args::DomainPin) -> Result<u64, Error> {
    require_control(k, caller)?;
    let t = k.resolve(caller, a.dom)?;
    vcpus::pin(k, t, a.vcpu, a.cpus).map(|()| 0)
}

pub fn memory_release(k: &mut Kernel, caller: usize, a: args::MemoryRelease) -> Result<u64, Error> {
    with_frames(|frames| balloon::release(k, frames, caller, a.va)).map(|()| 0)
}

pub fn memory_populate(
    k: &mut Kernel,
    caller: usize,
    a: args::MemoryPopulate,
) -> Result<u64, Error> {
    with_frames(|frames| balloon::populate(k, frames, caller, a.va)).map(|()| 0)
}

pub fn set_max_mem(k: &mut Kernel, caller: usize, a: args::DomainSetMaxMem) -> Result<u64, Error> {
    require_control(k, caller)?;
    let t = k.lookup(a.dom)?;
    balloon::set_max(k, t, a.kib).map(|()| 0)
}

pub fn rename(k: &mut Kernel, caller: usize, a: args::DomainRename) -> Result<u64, Error> {
    require_control(k, caller)?;
    let t = k.lookup(a.dom)?;
    if a.len == 0 || a.len > ipc_abi::domain::NAME_MAX as u64 {
        return Err(Error::InvalidArgument);
    }
    let mut buf = [0u8; ipc_abi::domain::NAME_MAX];
    let name = &mut buf[..a.len as usize];
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_from(&d.space, a.ptr, name)?;
    lifecycle::rename(k, t, name).map(|()| 0)
}

pub fn set_sched(k: &mut Kernel, caller: usize, a: args::DomainSetSched) -> Result<u64, Error> {
    require_control(k, caller)?;
    let t = k.lookup(a.dom)?;
    vcpus::set_sched(k, t, a.weight, a.cap).map(|()| 0)
}

pub fn vcpu_info(k: &mut Kernel, caller: usize, a: args::VcpuInfo) -> Result<u64, Error> {
    let t = self_or_controlled(k, caller, a.dom)?;
    let info = vcpus::info(k, t, a.vcpu)?;
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_to(&d.space, a.info, zerocopy::IntoBytes::as_bytes(&info)).map(|_| 0)
}

/// Out of line: its scan, inlined into the dispatcher, made the compiler
/// lay out the hypercall path dearer (the tracing test counts it).
#[inline(never)]
pub fn page_read(k: &mut Kernel, caller: usize, a: args::DomainPageRead) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    saving::page_read(k, caller, t, a.from_va, a.buf, a.skip_fresh)
}

pub fn page_write(k: &mut Kernel, caller: usize, a: args::DomainPageWrite) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    saving::page_write(k, caller, t, a.va, a.buf).map(|()| 0)
}

pub fn get_context(k: &mut Kernel, caller: usize, a: args::DomainGetContext) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    let c = saving::get_context(k, t, a.vcpu)?;
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_to(&d.space, a.context, zerocopy::IntoBytes::as_bytes(&c)).map(|()| 0)
}

pub fn set_context(k: &mut Kernel, caller: usize, a: args::DomainSetContext) -> Result<u64, Error> {
    let t = other(k, caller, a.dom)?;
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let c: VcpuContext = usermem::read_value(&d.space, a.context)?;
    saving::set_context(k, t, a.vcpu, &c).map(|()| 0)
}

pub fn kernel_stats(k: &mut Kernel, caller: usize, a: args::KernelStats) -> Result<u64, Error> {
    require_control(k, caller)?;
    let stats = ipc_abi::domain::KernelStats {
        free_frames: with_frames(|f| f.free_bytes()) / 4096,
        live_domains: k.live().count() as u64,
        open_ports: events::open_ports(k),
        live_grants: grants::live_grants(k),
        cpus: crate::arch::smp::online() as u64,
        hvm: crate::arch::svm::probe().abi() as u64,
        dma_isolation: k.dma_isolation as u64,
    };
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_to(&d.space, a.stats, zerocopy::IntoBytes::as_bytes(&stats)).map(|_| 0)
}

pub fn trace_read(k: &mut Kernel, caller: usize, a: args::TraceRead) -> Result<u64, Error> {
    require_control(k, caller)?;
    let header = core::mem::size_of::<TraceChunk>();
    let len = usize::try_from(a.len).map_err(|_| Error::InvalidArgument)?;
    if len < header {
        return Err(Error::InvalidArgument);
    }
    let cpu = usize::try_from(a.cpu).map_err(|_| Error::InvalidArgument)?;
    let mut buf = [0u8; 4096];
    let end = len.min(buf.len());
    let chunk = crate::trace::read(cpu, a.from, &mut buf[header..end])?;
    buf[..header].copy_from_slice(zerocopy::IntoBytes::as_bytes(&chunk));
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_to(&d.space, a.buf, &buf[..header + chunk.len as usize])?;
    Ok(u64::from(chunk.len))
}

pub fn power_off(k: &mut Kernel, caller: usize) -> Result<u64, Error> {
    require_control(k, caller)?;
    crate::kprintln!("poweroff: requested by domain {}", caller);
    crate::arch::reset::power_off().map_err(|why| {
        crate::kprintln!("poweroff: failed: {why}");
        Error::DomainState
    })?;
    Ok(0)
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
        cpu_ticks: cpu_time::in_ticks(cpu_time::reported_tsc(d, crate::arch::cpu::rdtsc())),
        name,
        name_len: d.name.len() as u32,
        weight: d.vcpus[0].sched.weight,
        crash: d.crash,
        cpu: d.vcpus[0].cpu as u32,
        running: (k.loaded_mask(t) != 0) as u32,
        affinity: d.vcpus[0].affinity & crate::arch::smp::online_mask(),
        suspended: d.suspended as u32,
        vcpus: d.nr_vcpus as u32,
        dma_faults: d.dma_faults,
        cap_percent: d.vcpus[0].sched.cap_percent.into(),
        _reserved: 0,
        max_kib: d.max_kib,
    })
}
