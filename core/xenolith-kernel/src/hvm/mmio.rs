//! An HVM guest's access to device memory (the MMIO window,
//! `ipc_abi::hvm::MMIO_BASE`): nothing is mapped there, so the access is a
//! nested page fault; the kernel reads the instruction at the guest's RIP
//! through the guest's own page tables, decodes it (`mmio_decode`), moves
//! RIP past it and hands the access to the device model as a request in
//! device memory, as it hands over port I/O. A load's answer goes to the
//! instruction's register.
//!
//! Owns: fetching the instruction's bytes (long mode's four levels, or
//! paging off), and what an access nobody serves does (loads read all
//! ones, stores go nowhere).

use super::mmio_decode::{self, Move};
use super::vcpu::HvmVcpu;
use crate::arch::svm::off;
use crate::domain::{Kernel, VcpuRef};

/// EFER.LMA, CR0.PG, and the L bit of a code segment's attributes.
const EFER_LMA: u64 = 1 << 10;
const CR0_PG: u64 = 1 << 31;
const CS_L: u32 = 1 << 9;
/// Page table entry bits: present, large page.
const PRESENT: u64 = 1;
const LARGE: u64 = 1 << 7;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// The guest touched device memory at `gpa`: the access goes to the device
/// model (the vCPU waits for it), or is answered as nobody's. Err: what
/// could not be done (the guest is then crashed by the caller).
pub fn access(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu, gpa: u64) -> Result<(), &'static str> {
    let long =
        s.vmcb.read64(off::EFER) & EFER_LMA != 0 && (s.vmcb.read32(off::CS) >> 16) & CS_L != 0;
    let rip = s.vmcb.read64(off::RIP);
    let mut bytes = [0u8; 15];
    let fetched = fetch(k, at, s, rip, &mut bytes);
    let a = mmio_decode::decode(&bytes[..fetched], long)
        .ok_or("device memory reached by an instruction the kernel does not decode")?;
    s.vmcb.write64(off::RIP, rip.wrapping_add(u64::from(a.len)));
    let mask = if a.size == 8 {
        u64::MAX
    } else {
        (1u64 << (8 * a.size)) - 1
    };
    let (input, data, reg) = match a.what {
        Move::Load { reg } => (true, 0, reg),
        Move::Store { reg } => (false, super::registers::get(s, reg) & mask, reg),
        Move::StoreImmediate(v) => (false, v & mask, 0),
    };
    if super::device_model::post_memory(k, at, s, gpa, a.size, input, data, reg) {
        return Ok(());
    }
    // Nobody serves it: a load reads all ones.
    if input {
        super::registers::finish_load(s, reg, a.size, u64::MAX);
    }
    Ok(())
}

/// Copies up to 15 bytes of the instruction at guest-virtual `rip` into
/// `out`; returns how many could be read (fewer at an unmapped page).
pub(super) fn fetch(k: &Kernel, at: VcpuRef, s: &HvmVcpu, rip: u64, out: &mut [u8; 15]) -> usize {
    let Some(d) = k.domain(at.dom) else {
        return 0;
    };
    let mut done = 0;
    while done < out.len() {
        let va = rip.wrapping_add(done as u64);
        let Some(gpa) = translate(d, s, va) else {
            break;
        };
        let Some((frame, _, _)) = d.space.ram_frame(gpa & !0xfff) else {
            break;
        };
        let offset = (gpa & 0xfff) as usize;
        let n = (4096 - offset).min(out.len() - done);
        crate::domain::shared_pages::read_frame(frame, offset, &mut out[done..done + n]);
        done += n;
    }
    done
}

/// The guest-physical address of guest-virtual `va`, walking the guest's
/// four-level tables (paging off: the same address; other modes: none).
fn translate(d: &crate::domain::Domain, s: &HvmVcpu, va: u64) -> Option<u64> {
    if s.vmcb.read64(off::CR0) & CR0_PG == 0 {
        return Some(va & 0xffff_ffff);
    }
    if s.vmcb.read64(off::EFER) & EFER_LMA == 0 {
        return None;
    }
    let mut table = s.vmcb.read64(off::CR3) & ADDRESS;
    for level in (0..4u32).rev() {
        let index = (va >> (12 + 9 * level)) & 511;
        let gpa = table + index * 8;
        let (frame, _, _) = d.space.ram_frame(gpa & !0xfff)?;
        let mut e = [0u8; 8];
        crate::domain::shared_pages::read_frame(frame, (gpa & 0xfff) as usize, &mut e);
        let e = u64::from_le_bytes(e);
        if e & PRESENT == 0 {
            return None;
        }
        if level == 0 || (level <= 2 && e & LARGE != 0) {
            let page = 1u64 << (12 + 9 * level);
            return Some((e & ADDRESS & !(page - 1)) | (va & (page - 1)));
        }
        table = e & ADDRESS;
    }
    None
}
