//! The link between an HVM guest and its device-model domain: port I/O
//! the kernel does not handle goes to the device model through a page of
//! the device model's own memory (`ipc_abi::hvm::IoRequest` slots), and
//! the interrupts its emulated interrupt controller presents come back.
//!
//! Owns: who may be a guest's device model (domain 0 says, before the
//! guest runs), posting a request and holding the vCPU until the answer,
//! checking the answer, the interrupts it raises, and what happens when
//! it dies (its guest crashes: nothing else can answer its I/O).

use super::vcpu::{HvmVcpu, Waiting};
use crate::arch::svm::off;
use crate::domain::shared_pages::{read_frame, write_frame};
use crate::domain::{lifecycle, Kernel, Life, VcpuRef};
use crate::frames::Frame;
use ipc_abi::domain::DomainId;
use ipc_abi::hvm::{IoRequest, ANSWERED, IDLE, IO_SLOTS, POSTED, SPACE_MEMORY, SPACE_PORT};
use ipc_abi::hypercall::Error;
use ipc_abi::shared::Virq;
use zerocopy::{FromBytes, IntoBytes};

fn slot_offset(vcpu: usize) -> usize {
    vcpu * core::mem::size_of::<IoRequest>()
}

/// Hands a port access of vCPU `at` to its guest's device model, if it
/// has one: the vCPU then waits (`io_wait`) until the answer. A device
/// model allowed but not serving yet (it is starting) gets the request
/// once it serves. Returns whether it was handed over.
pub fn post(
    k: &mut Kernel,
    at: VcpuRef,
    s: &mut HvmVcpu,
    port: u16,
    size: u8,
    input: bool,
) -> bool {
    let data = s.vmcb.read64(off::RAX) & mask(size);
    hand_over(k, at, s, |seq| Waiting {
        seq,
        size,
        input,
        port,
        data,
        memory: None,
    })
}

/// Hands an access of vCPU `at` to device memory at `address` (in the
/// MMIO window) to its guest's device model, as [`post`] does a port's: a
/// store of `data`, or a load whose answer goes to register `reg`.
#[allow(clippy::too_many_arguments)]
pub fn post_memory(
    k: &mut Kernel,
    at: VcpuRef,
    s: &mut HvmVcpu,
    address: u64,
    size: u8,
    input: bool,
    data: u64,
    reg: u8,
) -> bool {
    hand_over(k, at, s, |seq| Waiting {
        seq,
        size,
        input,
        port: 0,
        data,
        memory: Some((address, reg)),
    })
}

/// The request `make` builds (given its number) goes to the device model,
/// if the guest has one, and the vCPU waits for its answer; the device
/// model gets it now if it serves already.
fn hand_over(
    k: &mut Kernel,
    at: VcpuRef,
    s: &mut HvmVcpu,
    make: impl FnOnce(u64) -> Waiting,
) -> bool {
    let Some(link) = k.domain(at.dom).map(|d| d.device_model) else {
        return false;
    };
    if link.allowed.is_none() || at.vcpu >= IO_SLOTS {
        return false;
    }
    let x = &mut s.state.get_mut().extra;
    x.io_seq += 1;
    let waiting = make(x.io_seq);
    x.waiting = Some(waiting);
    if let Some(v) = k.vcpu_mut(at) {
        v.io_wait = true;
    }
    if let Some((dm, _, page)) = link.serving {
        send(k, at.vcpu, dm, page, waiting);
    }
    true
}

/// Writes a request into its slot and tells the device model.
fn send(k: &mut Kernel, vcpu: usize, dm: usize, page: Frame, w: Waiting) {
    let request = IoRequest {
        state: IDLE,
        size: w.size as u32,
        input: w.input as u32,
        port: w.port as u32,
        data: w.data,
        seq: w.seq,
        space: if w.memory.is_some() {
            SPACE_MEMORY
        } else {
            SPACE_PORT
        },
        _reserved: 0,
        address: w.memory.map_or(0, |(a, _)| a),
    };
    let at_offset = slot_offset(vcpu);
    write_frame(page, at_offset, request.as_bytes());
    // The fields before the state, as the device model reads them after it.
    core::sync::atomic::fence(core::sync::atomic::Ordering::Release);
    write_frame(page, at_offset, &POSTED.to_le_bytes());
    trace_event!(
        "vcpu {=usize} port {=u16:#x} {=str} to device model dom{=u32}",
        vcpu,
        w.port,
        if w.input { "in" } else { "out" },
        k.id_of(dm)
    );
    crate::domain::events::raise_virq(k, dm, Virq::DeviceModel);
}

fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}

/// `HvmSetDeviceModel` (control only, checked by the caller).
pub fn allow(k: &mut Kernel, guest: usize, dm: DomainId) -> Result<(), Error> {
    k.lookup(dm)?;
    let g = k.domain_mut(guest).ok_or(Error::NoSuchDomain)?;
    if !g.is_hvm() || g.started {
        return Err(Error::DomainState);
    }
    g.device_model.allowed = Some(dm);
    Ok(())
}

/// `HvmServe`: `caller` serves `guest` through its page at `va`.
pub fn serve(k: &mut Kernel, caller: usize, guest: usize, va: u64) -> Result<(), Error> {
    let c = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    let caller_id = c.id;
    if !va.is_multiple_of(4096) || c.is_hvm() {
        return Err(Error::InvalidArgument);
    }
    let frame = match c.space.ram_frame(va) {
        Some((frame, true, crate::arch::addrspace::Kind::Owned)) => frame,
        _ => return Err(Error::BadAddress),
    };
    let g = k.domain_mut(guest).ok_or(Error::NoSuchDomain)?;
    if g.device_model.allowed != Some(caller_id) {
        return Err(Error::PermissionDenied);
    }
    if g.device_model.serving.is_some() {
        return Err(Error::DomainState);
    }
    write_frame(frame, 0, &[0u8; 4096]);
    g.device_model.serving = Some((caller, caller_id, frame));
    // Requests made while it was starting go to it now.
    let held: heapless::Vec<(usize, Waiting), IO_SLOTS> = g
        .existing_vcpus()
        .enumerate()
        .take(IO_SLOTS)
        .filter(|(_, v)| v.io_wait)
        .filter_map(|(n, v)| Some((n, v.hvm.as_ref()?.state.get().extra.waiting?)))
        .collect();
    for (vcpu, w) in held {
        send(k, vcpu, caller, frame, w);
    }
    Ok(())
}

/// `PermissionDenied` unless `caller` serves `guest` (for `HvmGrant`).
pub fn check_served(k: &Kernel, caller: usize, guest: usize) -> Result<(), Error> {
    served(k, caller, guest).map(drop)
}

/// The guest `caller` serves, checked.
fn served(k: &Kernel, caller: usize, guest: usize) -> Result<Frame, Error> {
    let g = k.domain(guest).ok_or(Error::NoSuchDomain)?;
    match g.device_model.serving {
        Some((dm, _, page)) if dm == caller => Ok(page),
        _ => Err(Error::PermissionDenied),
    }
}

/// `HvmIoDone`: takes the answer for vCPU `vcpu` of `guest` and lets it go on.
pub fn done(k: &mut Kernel, caller: usize, guest: usize, vcpu: u64) -> Result<(), Error> {
    let page = served(k, caller, guest)?;
    let vcpu = usize::try_from(vcpu)
        .ok()
        .filter(|&v| v < IO_SLOTS)
        .ok_or(Error::InvalidArgument)?;
    let at = VcpuRef { dom: guest, vcpu };
    let mut bytes = [0u8; core::mem::size_of::<IoRequest>()];
    read_frame(page, slot_offset(vcpu), &mut bytes);
    let answer = IoRequest::read_from_bytes(&bytes).map_err(|_| Error::InvalidArgument)?;
    let v = k.vcpu_mut(at).ok_or(Error::InvalidArgument)?;
    // While it waits, its state is in the domain (it is on no CPU).
    let s = v
        .hvm
        .as_mut()
        .filter(|_| v.io_wait)
        .ok_or(Error::InvalidArgument)?;
    let x = &mut s.state.get_mut().extra;
    let w = x
        .waiting
        .filter(|w| w.seq == answer.seq && answer.state == ANSWERED);
    let w = w.ok_or(Error::InvalidArgument)?;
    x.waiting = None;
    if let (true, Some((_, reg))) = (w.input, w.memory) {
        super::registers::finish_load(s, reg, w.size, answer.data);
    } else if w.input {
        let rax = s.vmcb.read64(off::RAX);
        let m = mask(w.size);
        let value = if w.size == 4 {
            answer.data & m
        } else {
            (rax & !m) | (answer.data & m)
        };
        s.vmcb.write64(off::RAX, value);
    }
    v.io_wait = false;
    write_frame(page, slot_offset(vcpu), &IDLE.to_le_bytes());
    wake(k, at);
    Ok(())
}

/// `HvmInterrupt`: `vector` is presented to the guest's vCPU 0.
pub fn interrupt(k: &mut Kernel, caller: usize, guest: usize, vector: u64) -> Result<(), Error> {
    served(k, caller, guest)?;
    let vector = u8::try_from(vector)
        .ok()
        .filter(|&v| v >= 16)
        .ok_or(Error::InvalidArgument)?;
    let at = VcpuRef {
        dom: guest,
        vcpu: 0,
    };
    let v = k.vcpu_mut(at).ok_or(Error::InvalidArgument)?;
    v.extint[vector as usize / 64] |= 1 << (vector % 64);
    if v.blocked {
        v.blocked = false;
        wake(k, at);
    } else {
        // Running elsewhere: an exit to take it now.
        k.resched_vcpu(at);
    }
    Ok(())
}

/// `HvmDoorbell`: an output to `port` of `guest` rings doorbell `bit` of
/// its device model (`port` 0: doorbell `bit` taken away).
pub fn set_doorbell(
    k: &mut Kernel,
    caller: usize,
    guest: usize,
    port: u64,
    bit: u64,
) -> Result<(), Error> {
    served(k, caller, guest)?;
    let port = u16::try_from(port).map_err(|_| Error::InvalidArgument)?;
    let bit = usize::try_from(bit)
        .ok()
        .filter(|&b| b < ipc_abi::hvm::DOORBELLS)
        .ok_or(Error::InvalidArgument)?;
    let g = k.domain_mut(guest).ok_or(Error::NoSuchDomain)?;
    g.device_model.doorbells[bit] = port;
    Ok(())
}

/// An output of vCPU `at` to `port`: if its device model made the port a
/// doorbell, it is rung (the vCPU goes on at once) and true is returned.
pub fn ring(k: &mut Kernel, at: VcpuRef, port: u16) -> bool {
    let Some(link) = k.domain(at.dom).map(|d| d.device_model) else {
        return false;
    };
    let Some((dm, _, page)) = link.serving else {
        return false;
    };
    let Some(bit) = link.doorbells.iter().position(|&p| p == port && p != 0) else {
        return false;
    };
    crate::domain::shared_pages::ring_doorbell(page, bit);
    crate::domain::events::raise_virq(k, dm, Virq::DeviceModel);
    true
}

/// `HvmMsi`: an MSI message of the device model's emulated device: its
/// vector into the local APIC of the vCPU the address names, as an IPI's.
pub fn message(
    k: &mut Kernel,
    caller: usize,
    guest: usize,
    address: u64,
    data: u64,
) -> Result<(), Error> {
    served(k, caller, guest)?;
    let (dest, vector) = super::lapic::msi(address, data).ok_or(Error::InvalidArgument)?;
    let from = VcpuRef {
        dom: guest,
        vcpu: 0,
    };
    super::ipi::send(k, from, dest, vector, super::lapic::IpiKind::Fixed);
    Ok(())
}

/// Lets a vCPU that waited run again.
fn wake(k: &mut Kernel, at: VcpuRef) {
    let running = k.domain(at.dom).is_some_and(|d| d.life == Life::Running);
    let min = lifecycle::wake_base(k, at);
    if let Some(v) = k.vcpu_mut(at) {
        if running {
            v.sched.wake(min);
            k.resched_vcpu(at);
        }
    }
}

/// `HvmShutdown`: the guest powered off, reset or panicked, as its device
/// model saw it. A panic is a crash with a record naming where vCPU 0 was.
pub fn shutdown(k: &mut Kernel, caller: usize, guest: usize, reason: u64) -> Result<(), Error> {
    served(k, caller, guest)?;
    let reason =
        ipc_abi::domain::ShutdownReason::from_number(reason).ok_or(Error::InvalidArgument)?;
    let life = lifecycle::shutdown_life(reason);
    let crash = (life == Life::Crashed).then(|| {
        let mut c = ipc_abi::domain::CrashRecord::EMPTY;
        c.vector = u64::MAX;
        let at = VcpuRef {
            dom: guest,
            vcpu: 0,
        };
        c.rip = k
            .vcpu(at)
            .and_then(|v| v.hvm.as_ref())
            .map_or(0, |h| h.vmcb.read64(off::RIP));
        let text = b"hvm: the guest reported a panic (pvpanic)";
        c.message[..text.len()].copy_from_slice(text);
        c.message_len = text.len() as u32;
        c
    });
    lifecycle::stop(k, guest, life, crash);
    Ok(())
}
