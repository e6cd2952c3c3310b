//! Who may make a call: the rules every family of hypercalls shares.

use crate::domain::Kernel;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::Error;

/// Refuses a caller that is not the control domain.
pub fn require_control(k: &Kernel, caller: usize) -> Result<(), Error> {
    match k.domain(caller) {
        Some(d) if d.control => Ok(()),
        _ => Err(Error::PermissionDenied),
    }
}

/// Resolves a target domain for a control operation: never the caller itself.
pub fn other(k: &Kernel, caller: usize, id: DomainId) -> Result<usize, Error> {
    require_control(k, caller)?;
    let i = k.lookup(id)?;
    if i == caller {
        return Err(Error::InvalidArgument);
    }
    Ok(i)
}

/// Resolves `id` for a call the control domain may make on anyone and any
/// domain on itself.
pub fn self_or_controlled(k: &Kernel, caller: usize, id: DomainId) -> Result<usize, Error> {
    let t = k.resolve(caller, id)?;
    if t != caller {
        require_control(k, caller)?;
    }
    Ok(t)
}
