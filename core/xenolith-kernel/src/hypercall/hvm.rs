//! HVM hypercalls: naming a guest's device model, and the device model
//! serving it (its request page, its answers, its interrupts, grants of
//! its guest's memory).

use super::rights::require_control;
use crate::domain::{grants, Kernel};
use crate::hvm::device_model;
use ipc_abi::hypercall::{args, Error};

pub fn set_device_model(
    k: &mut Kernel,
    caller: usize,
    a: args::HvmSetDeviceModel,
) -> Result<u64, Error> {
    require_control(k, caller)?;
    let guest = k.lookup(a.guest)?;
    device_model::allow(k, guest, a.dm).map(|()| 0)
}

pub fn serve(k: &mut Kernel, caller: usize, a: args::HvmServe) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::serve(k, caller, guest, a.va).map(|()| 0)
}

pub fn io_done(k: &mut Kernel, caller: usize, a: args::HvmIoDone) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::done(k, caller, guest, a.vcpu).map(|()| 0)
}

pub fn interrupt(k: &mut Kernel, caller: usize, a: args::HvmInterrupt) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::interrupt(k, caller, guest, a.vector).map(|()| 0)
}

pub fn msi(k: &mut Kernel, caller: usize, a: args::HvmMsi) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::message(k, caller, guest, a.address, a.data).map(|()| 0)
}

pub fn doorbell(k: &mut Kernel, caller: usize, a: args::HvmDoorbell) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::set_doorbell(k, caller, guest, a.port, a.bit).map(|()| 0)
}

pub fn shutdown(k: &mut Kernel, caller: usize, a: args::HvmShutdown) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::shutdown(k, caller, guest, a.reason).map(|()| 0)
}

pub fn grant(k: &mut Kernel, caller: usize, a: args::HvmGrant) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::check_served(k, caller, guest)?;
    // Its RAM only: not the kernel-shared pages above it.
    let ram = k.domain(guest).map_or(0, |d| d.memory_kib * 1024);
    if a.gpa >= ram {
        return Err(Error::BadAddress);
    }
    // A page it has not touched yet is given now, to be granted.
    crate::arch::memory::with_frames(|f| crate::domain::guest_ram::populate(k, f, guest, a.gpa))?;
    grants::create(k, guest, a.grantee, a.gpa, a.readonly).map(u64::from)
}

pub fn grant_end(k: &mut Kernel, caller: usize, a: args::HvmGrantEnd) -> Result<u64, Error> {
    let guest = k.lookup(a.guest)?;
    device_model::check_served(k, caller, guest)?;
    grants::end(k, guest, a.gref).map(|_| 0)
}
