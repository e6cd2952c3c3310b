//! Grant-table hypercalls: granting pages, mapping and copying them, and
//! the control domain's read-only peek (`toolstack ring list`).

use super::rights::require_control;
use crate::arch::memory::with_frames;
use crate::domain::{grants, Kernel};
use crate::usermem;
use ipc_abi::domain::DomainId;
use ipc_abi::hypercall::{args, CopyEnd, Error, GrantCopyOp, GRANT_COPY_BATCH};
use zerocopy::IntoBytes;

pub fn create(k: &mut Kernel, caller: usize, a: args::GrantCreate) -> Result<u64, Error> {
    grants::create(k, caller, a.grantee, a.va, a.readonly).map(u64::from)
}

pub fn end(k: &mut Kernel, caller: usize, a: args::GrantEnd) -> Result<u64, Error> {
    grants::end(k, caller, a.gref).map(|_| 0)
}

pub fn map(k: &mut Kernel, caller: usize, a: args::GrantMap) -> Result<u64, Error> {
    with_frames(|f| grants::map(k, f, caller, a.granter, a.gref, a.slot, a.need_write))
}

pub fn unmap(k: &mut Kernel, caller: usize, a: args::GrantUnmap) -> Result<u64, Error> {
    with_frames(|f| grants::unmap(k, f, caller, a.slot).map(|_| 0))
}

pub fn copy(k: &mut Kernel, caller: usize, a: args::GrantCopy) -> Result<u64, Error> {
    grants::copy(
        k, caller, a.granter, a.gref, a.offset, a.local_va, a.len, a.to_grant,
    )
    .map(|_| 0)
}

pub fn copy_batch(k: &mut Kernel, caller: usize, a: args::GrantCopyBatch) -> Result<u64, Error> {
    let count = usize::try_from(a.count).map_err(|_| Error::InvalidArgument)?;
    if !(1..=GRANT_COPY_BATCH).contains(&count) {
        return Err(Error::InvalidArgument);
    }
    let mut ops = [GrantCopyOp::default(); GRANT_COPY_BATCH];
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_from(&d.space, a.ops, ops[..count].as_mut_bytes())?;
    for op in &ops[..count] {
        copy_one(k, caller, op)?;
    }
    Ok(0)
}

/// One copy of a batch: between a granted page and the caller's memory,
/// or between two granted pages.
fn copy_one(k: &mut Kernel, caller: usize, op: &GrantCopyOp) -> Result<(), Error> {
    let len = u64::from(op.len);
    let grant = |end: &CopyEnd| (DomainId(end.granter), u64::from(end.gref), end.at);
    match (op.from.granter, op.to.granter) {
        (CopyEnd::LOCAL, CopyEnd::LOCAL) => Err(Error::InvalidArgument),
        (CopyEnd::LOCAL, _) => {
            let (granter, gref, offset) = grant(&op.to);
            grants::copy(k, caller, granter, gref, offset, op.from.at, len, true)
        }
        (_, CopyEnd::LOCAL) => {
            let (granter, gref, offset) = grant(&op.from);
            grants::copy(k, caller, granter, gref, offset, op.to.at, len, false)
        }
        _ => grants::copy_between_grants(k, caller, grant(&op.from), grant(&op.to), len),
    }
}

pub fn peek(k: &mut Kernel, caller: usize, a: args::GrantPeek) -> Result<u64, Error> {
    require_control(k, caller)?;
    let owner = k.resolve(caller, a.dom)?;
    if a.offset.checked_add(a.len).is_none_or(|end| end > 4096) {
        return Err(Error::InvalidArgument);
    }
    let grant = k
        .domain(owner)
        .and_then(|d| {
            d.grants
                .get(usize::try_from(a.gref).ok()?)
                .copied()
                .flatten()
        })
        .ok_or(Error::BadGrant)?;
    let mut buf = [0u8; 4096];
    let n = a.len as usize;
    crate::domain::shared_pages::read_frame(grant.frame, a.offset as usize, &mut buf[..n]);
    let d = k.domain(caller).ok_or(Error::NoSuchDomain)?;
    usermem::copy_to(&d.space, a.buf, &buf[..n])?;
    Ok(a.len)
}
