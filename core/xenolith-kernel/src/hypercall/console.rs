//! Console hypercalls: a domain's writes, the control domain's reads of the
//! kernel log, console-dom's line ends, and debug keys.

use super::rights::require_control;
use crate::domain::{console, devices, Kernel};
use crate::usermem;
use ipc_abi::hypercall::{args, Error, CONSOLE_WRITE_MAX};

pub fn write(k: &mut Kernel, caller: usize, a: args::ConsoleWrite) -> Result<u64, Error> {
    if a.len > CONSOLE_WRITE_MAX {
        return Err(Error::InvalidArgument);
    }
    let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
    let bytes = &mut buf[..a.len as usize];
    let now = k.now_ticks;
    let d = k.domain_mut(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_from(&d.space, a.ptr, bytes)?;
    // The control domain's lines are the record of what the toolstack did:
    // never dropped (as Xen's dom0 console writes are not rate-limited).
    let limited = !d.control;
    console::write(d.id.index(), &mut d.console, now, bytes, limited);
    Ok(a.len)
}

pub fn read(k: &mut Kernel, caller: usize, a: args::ConsoleRead) -> Result<u64, Error> {
    if !k.may_read_log(caller) {
        return Err(Error::PermissionDenied);
    }
    let mut line = [0u8; crate::klog::LINE_MAX + 1];
    let (seq, n) = {
        let mut text = [0u8; crate::klog::LINE_MAX];
        let (seq, n) = crate::klog::read(a.from_seq, &mut text).ok_or(Error::Empty)?;
        line[..n].copy_from_slice(&text[..n]);
        (seq, n)
    };
    let len = (a.len as usize).min(n + 1);
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    if len < n + 1 {
        return Err(Error::InvalidArgument);
    }
    usermem::copy_to(&d.space, a.buf, &line[..len])?;
    if k.console_owner == Some(caller) {
        k.console_unread = k.console_unread.max(seq + 1);
    }
    Ok(seq)
}

pub fn line_done(k: &mut Kernel, caller: usize, a: args::ConsoleLineDone) -> Result<u64, Error> {
    devices::console_line_done(k, caller, a.mark, a.value).map(|()| 0)
}

pub fn debug_keys(k: &mut Kernel, caller: usize, a: args::DebugKeys) -> Result<u64, Error> {
    require_control(k, caller)?;
    let key = u8::try_from(a.key).map_err(|_| Error::InvalidArgument)?;
    crate::domain::debugkeys::dump(k, key).map(|()| 0)
}
