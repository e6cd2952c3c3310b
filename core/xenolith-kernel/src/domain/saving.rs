//! What the kernel does for save and restore: a domain suspends itself; the
//! control domain reads a suspended domain's memory and registers, and
//! writes them into a new, never-run domain.
//!
//! Owns: the `Suspend` state change, which of a domain's pages count as its
//! memory (image, heap, stack: never the shared pages, device windows or
//! foreign mappings), and the checks on restored registers (user segments
//! and a sane `rflags` whatever the file said). The save file itself is the
//! toolstack's business (`ipc_abi::save`).

use super::{lifecycle, Kernel, Life};
use crate::domain::shared_pages::{frame_is_zero, read_frame, write_frame};
use crate::usermem;
use ipc_abi::domain::VcpuContext;
use ipc_abi::hypercall::{Error, PAGE_READ_GO_ON, PAGE_READ_SCAN, PAGE_READ_WRITABLE};
use ipc_abi::layout::{HEAP_BASE, IMAGE_BASE, IMAGE_LIMIT, PAGE_SIZE, STACK_SIZE, STACK_TOP};
use ipc_abi::save::fresh_page;

/// The regions of a domain's own memory, in rising order: image, heap,
/// stack; for an HVM guest, its RAM from guest-physical 0.
fn regions(d: &super::Domain) -> [(u64, u64); 3] {
    if d.is_hvm() {
        let ram = (0, d.memory_kib * 1024);
        return [ram, ram, ram];
    }
    [
        (IMAGE_BASE, IMAGE_LIMIT),
        (HEAP_BASE, HEAP_BASE + d.heap_pages * PAGE_SIZE),
        (STACK_TOP - STACK_SIZE, STACK_TOP),
    ]
}

/// Whether `va` lies in one of those regions.
fn in_regions(d: &super::Domain, va: u64) -> bool {
    regions(d).iter().any(|&(lo, hi)| (lo..hi).contains(&va))
}

/// `Suspend`: the caller stops, marked suspended, and the control domain is
/// told. Its `Suspend` returns 0 when it is unpaused.
pub fn suspend(k: &mut Kernel, caller: usize) -> Result<u64, Error> {
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    if d.control {
        return Err(Error::PermissionDenied);
    }
    if d.life != Life::Running {
        return Err(Error::DomainState);
    }
    d.life = Life::Paused;
    super::cpu_time::freeze(d, crate::arch::cpu::rdtsc());
    d.suspended = true;
    trace_event!("dom{=u32} state suspended", d.id.0);
    // Its other vCPUs stop too, wherever they run.
    k.resched(caller);
    lifecycle::notify_control(k, caller);
    Ok(0)
}

/// A domain that is paused and whose registers are saved (on no CPU).
fn still(k: &Kernel, t: usize) -> Result<&super::Domain, Error> {
    let d = k.domain(t).ok_or(Error::NoSuchDomain)?;
    if d.life != Life::Paused || k.loaded_mask(t) != 0 || d.stale_heap {
        return Err(Error::DomainState);
    }
    Ok(d)
}

/// `DomainPageRead`: copies the first page of `t`'s memory at or above
/// `from` into `caller`'s buffer at `ptr`; returns its address, plus
/// `PAGE_READ_WRITABLE` if the domain may write the page. With
/// `skip_fresh`, passes over pages a fresh domain would hold the same
/// (`save::fresh_page`), at most `PAGE_READ_SCAN` of them: then it copies
/// nothing and returns where to go on from, plus `PAGE_READ_GO_ON`.
pub fn page_read(
    k: &Kernel,
    caller: usize,
    t: usize,
    from: u64,
    ptr: u64,
    skip_fresh: bool,
) -> Result<u64, Error> {
    let d = still(k, t)?;
    let mut at = from;
    for _ in 0..PAGE_READ_SCAN {
        let found = regions(d)
            .iter()
            .filter(|&&(_, hi)| at < hi)
            .find_map(|&(lo, hi)| d.space.next_owned(at.max(lo), hi));
        let (va, frame) = found.ok_or(Error::Empty)?;
        let writable = d.space.translate(va).is_some_and(|(_, w, _)| w);
        if skip_fresh && fresh_page(va, writable, frame_is_zero(frame)) {
            at = va + PAGE_SIZE;
            continue;
        }
        let mut page = [0u8; PAGE_SIZE as usize];
        read_frame(frame, 0, &mut page);
        let c = k.domain(caller).ok_or(Error::NoSuchDomain)?;
        usermem::copy_to(&c.space, ptr, &page)?;
        return Ok(va | if writable { PAGE_READ_WRITABLE } else { 0 });
    }
    Ok(at | PAGE_READ_GO_ON)
}

/// `DomainPageWrite`: fills the page at `va` of never-run domain `t`'s own
/// memory with 4096 bytes from `caller`'s `ptr`.
pub fn page_write(k: &mut Kernel, caller: usize, t: usize, va: u64, ptr: u64) -> Result<(), Error> {
    let d = k.domain(t).ok_or(Error::NoSuchDomain)?;
    // Not before its image is loaded: its heap is not cleared yet, and a
    // page written now would be settled to zeroes by the load.
    if d.started || d.stale_heap {
        return Err(Error::DomainState);
    }
    if !va.is_multiple_of(PAGE_SIZE) || !in_regions(d, va) {
        return Err(Error::InvalidArgument);
    }
    // An HVM guest's RAM is populated as it is first written.
    if super::guest_ram::is_ram(k, t, va) {
        crate::arch::memory::with_frames(|f| super::guest_ram::populate(k, f, t, va))?;
    }
    let d = k.domain(t).ok_or(Error::NoSuchDomain)?;
    let frame = match d.space.ram_frame(va) {
        Some((frame, _, crate::arch::addrspace::Kind::Owned)) => frame,
        _ => return Err(Error::InvalidArgument),
    };
    let mut page = [0u8; PAGE_SIZE as usize];
    let c = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_from(&c.space, ptr, &mut page)?;
    write_frame(frame, 0, &page);
    Ok(())
}

/// `DomainGetContext`: the registers of a started vCPU of paused domain `t`.
pub fn get_context(k: &Kernel, t: usize, vcpu: u64) -> Result<VcpuContext, Error> {
    let d = still(k, t)?;
    let v = usize::try_from(vcpu)
        .ok()
        .and_then(|v| d.existing_vcpus().nth(v))
        .filter(|v| v.up)
        .ok_or(Error::InvalidArgument)?;
    if let Some(h) = &v.hvm {
        return Ok(h.context());
    }
    let f = &v.frame;
    Ok(VcpuContext {
        rax: f.rax,
        rbx: f.rbx,
        rcx: f.rcx,
        rdx: f.rdx,
        rsi: f.rsi,
        rdi: f.rdi,
        rbp: f.rbp,
        rsp: f.rsp,
        r8: f.r8,
        r9: f.r9,
        r10: f.r10,
        r11: f.r11,
        r12: f.r12,
        r13: f.r13,
        r14: f.r14,
        r15: f.r15,
        rip: f.rip,
        rflags: f.rflags,
    })
}

/// `DomainSetContext`: every register a vCPU of never-run domain `t`
/// starts with; a vCPU other than 0 is started by it (it runs once the
/// domain is unpaused, on the least loaded CPU it may use). Segments stay
/// the user ones; `rflags` keeps only the arithmetic and direction flags
/// (interrupts on, no I/O privilege, no trap flag).
pub fn set_context(k: &mut Kernel, t: usize, vcpu: u64, c: &VcpuContext) -> Result<(), Error> {
    if k.domain(t).is_some_and(|d| d.is_hvm()) {
        return set_hvm_start(k, t, vcpu, c);
    }
    if c.rip >= ipc_abi::layout::USER_LIMIT || c.rsp > ipc_abi::layout::USER_LIMIT {
        return Err(Error::InvalidArgument);
    }
    let loads = k.loads();
    let online = crate::arch::smp::online_mask();
    let d = k.domain_mut(t).ok_or(Error::NoSuchDomain)?;
    if d.started {
        return Err(Error::DomainState);
    }
    let v = usize::try_from(vcpu)
        .ok()
        .and_then(|v| d.existing_vcpus_mut().nth(v))
        .ok_or(Error::InvalidArgument)?;
    let mut f = crate::arch::syscall::initial_frame(c.rip, c.rsp, c.rdi);
    f.rax = c.rax;
    f.rbx = c.rbx;
    f.rcx = c.rcx;
    f.rdx = c.rdx;
    f.rsi = c.rsi;
    f.rbp = c.rbp;
    f.r8 = c.r8;
    f.r9 = c.r9;
    f.r10 = c.r10;
    f.r11 = c.r11;
    f.r12 = c.r12;
    f.r13 = c.r13;
    f.r14 = c.r14;
    f.r15 = c.r15;
    f.rflags |= crate::checks::user_rflags(c.rflags);
    v.frame = f;
    if !v.up {
        v.up = true;
        v.cpu = crate::sched::least_loaded(&loads, v.affinity & online);
    }
    Ok(())
}

/// `DomainSetContext` for an HVM guest: where its vCPU starts, in the
/// 32-bit boot state (`ipc_abi::hvm`). Setting vCPU 0 makes the guest
/// ready to be unpaused (its builder has written its memory by then).
fn set_hvm_start(k: &mut Kernel, t: usize, vcpu: u64, c: &VcpuContext) -> Result<(), Error> {
    let d = k.domain_mut(t).ok_or(Error::NoSuchDomain)?;
    if d.started {
        return Err(Error::DomainState);
    }
    // Only vCPU 0 for now: the others are started by the guest (INIT and
    // SIPI) once the local APIC is emulated.
    if vcpu != 0 {
        return Err(Error::InvalidArgument);
    }
    let state = d.vcpus[0].hvm.as_mut().ok_or(Error::DomainState)?;
    state.set_start(c)?;
    d.image_loaded = true;
    Ok(())
}
