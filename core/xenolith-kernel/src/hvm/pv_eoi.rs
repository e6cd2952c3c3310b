//! KVM's paravirtual end of interrupt, which Linux uses when the CPUID
//! leaves offer it: the guest names a word of its memory with an MSR; when
//! the interrupt it is about to handle is the only one in service and
//! nothing else is requested, the kernel sets bit 0 of that word (its
//! first byte, as KVM writes it) before
//! the run, and the guest's EOI then clears the bit instead of writing the
//! EOI register (an exit each interrupt, a third of a Linux guest's exits
//! doing I/O). At the next exit the kernel looks: a cleared bit is the EOI.
//!
//! Owns: the MSR and the feature bit, checking the word's address (in the
//! guest's RAM, aligned), and setting and reading the bit around each run.

use super::vcpu::{HvmVcpu, PvEoi};
use crate::arch::memory::{read_frame, write_frame};
use crate::domain::{guest_ram, Kernel, VcpuRef};

/// MSR_KVM_PV_EOI_EN: the word's guest-physical address, bit 0 enabling it.
pub const MSR: u32 = 0x4b56_4d04;
/// CPUID 0x4000_0101 EAX: KVM_FEATURE_PV_EOI.
pub const FEATURE: u32 = 1 << 6;

/// The guest reads the MSR back.
pub fn read(s: &HvmVcpu) -> u64 {
    s.state.get().extra.pv_eoi.msr
}

/// The guest writes the MSR: bit 0 on with a 4-byte aligned address in its
/// RAM, or off. `false` (a #GP) for anything else.
pub fn write(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu, value: u64) -> bool {
    // (This exit's `after_exit` has run: the bit is not set now.)
    let word = if value & 1 == 0 {
        if value != 0 {
            return false;
        }
        None
    } else {
        let gpa = value & !1;
        if gpa & 3 != 0 || !guest_ram::is_ram(k, at.dom, gpa) {
            return false;
        }
        let given = crate::arch::memory::with_frames(|f| guest_ram::populate(k, f, at.dom, gpa));
        let frame = k
            .domain(at.dom)
            .and_then(|d| d.space.ram_frame(gpa & !0xfff))
            .filter(|_| given.is_ok());
        match frame {
            Some((frame, true, crate::arch::addrspace::Kind::Owned)) => {
                Some((frame, (gpa & 0xfff) as usize))
            }
            _ => return false,
        }
    };
    s.state.get_mut().extra.pv_eoi = PvEoi {
        msr: value,
        word,
        set: false,
    };
    true
}

/// Just before a run: sets the bit if the guest may end its interrupt
/// without an exit (one vector in service, none requested).
pub fn before_run(s: &mut HvmVcpu) {
    let x = &mut s.state.get_mut().extra;
    let Some((frame, offset)) = x.pv_eoi.word else {
        return;
    };
    if !x.pv_eoi.set && x.lapic.may_end_without_exit() {
        write_frame(frame, offset, &[1]);
        x.pv_eoi.set = true;
    }
}

/// Just after an exit: if the bit was set and the guest cleared it, that
/// was its EOI; else the bit is cleared for now (the next run sets it
/// again if it still may).
pub fn after_exit(s: &mut HvmVcpu) {
    let x = &mut s.state.get_mut().extra;
    let Some((frame, offset)) = x.pv_eoi.word.filter(|_| x.pv_eoi.set) else {
        return;
    };
    x.pv_eoi.set = false;
    let mut byte = [0u8];
    read_frame(frame, offset, &mut byte);
    if byte[0] & 1 == 0 {
        x.lapic.end_interrupt();
    } else {
        write_frame(frame, offset, &[byte[0] & !1]);
    }
}
