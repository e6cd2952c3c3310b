//! An HVM vCPU's general registers by their number in an instruction's
//! encoding, and a load's value put in one as `mov` puts it.
//!
//! Owns: nothing but that mapping (RAX and RSP are in the VMCB, the rest
//! in the vCPU's state page).

use super::vcpu::HvmVcpu;
use crate::arch::svm::off;

/// General register `n` (0 RAX … 15 R15, the instruction encoding's order).
pub fn get(s: &HvmVcpu, n: u8) -> u64 {
    let r = &s.state.get().guest.regs;
    match n {
        0 => s.vmcb.read64(off::RAX),
        1 => r.rcx,
        2 => r.rdx,
        3 => r.rbx,
        4 => s.vmcb.read64(off::RSP),
        5 => r.rbp,
        6 => r.rsi,
        7 => r.rdi,
        8 => r.r8,
        9 => r.r9,
        10 => r.r10,
        11 => r.r11,
        12 => r.r12,
        13 => r.r13,
        14 => r.r14,
        _ => r.r15,
    }
}

fn set(s: &mut HvmVcpu, n: u8, value: u64) {
    let r = &mut s.state.get_mut().guest.regs;
    let slot = match n {
        0 => return s.vmcb.write64(off::RAX, value),
        4 => return s.vmcb.write64(off::RSP, value),
        1 => &mut r.rcx,
        2 => &mut r.rdx,
        3 => &mut r.rbx,
        5 => &mut r.rbp,
        6 => &mut r.rsi,
        7 => &mut r.rdi,
        8 => &mut r.r8,
        9 => &mut r.r9,
        10 => &mut r.r10,
        11 => &mut r.r11,
        12 => &mut r.r12,
        13 => &mut r.r13,
        14 => &mut r.r14,
        _ => &mut r.r15,
    };
    *slot = value;
}

/// A load of `size` bytes answered `value`: into register `reg` as `mov`
/// puts it (a 32-bit load clears the upper half; 8 and 16 bits keep it).
pub fn finish_load(s: &mut HvmVcpu, reg: u8, size: u8, value: u64) {
    let old = get(s, reg);
    let new = match size {
        1 => (old & !0xff) | (value & 0xff),
        2 => (old & !0xffff) | (value & 0xffff),
        4 => value & 0xffff_ffff,
        _ => value,
    };
    set(s, reg, new);
}
