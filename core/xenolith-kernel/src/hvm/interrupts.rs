//! Interrupts into an HVM vCPU: its local APIC's timer fired at each entry
//! and at each HLT when due, and mirrored into the vCPU's kernel timer
//! (which wakes it from HLT); whether a HLT waits; and the vector its APIC
//! has ready injected when the guest can take it (past a HLT it would
//! return to), or an exit asked for as soon as it can (the interrupt
//! window).

use super::vcpu::HvmVcpu;
use crate::arch::svm::off;
use crate::domain::{Kernel, VcpuRef};

/// Intercept word 3, VINTR: exit when the guest could take a virtual interrupt.
const VINTR: u32 = 1 << 4;
/// INT_CTL: V_IRQ (an interrupt is waiting), its priority 15, ignoring V_TPR.
const V_IRQ: u32 = 1 << 8 | 0xf << 16 | 1 << 20;
const IF: u64 = 1 << 9;
/// EFER.LMA: the guest runs in long mode.
const EFER_LMA: u64 = 1 << 10;

/// Now, as the APIC's timer wants it: ns since boot, the TSC, its frequency.
pub fn clock() -> (u64, u64, u64) {
    let hz = crate::arch::time::page().tsc_hz;
    (crate::arch::time::now_ns(), crate::arch::cpu::rdtsc(), hz)
}

/// The vCPU's kernel timer follows its APIC timer's next expiry.
pub fn set_timer(k: &mut Kernel, at: VcpuRef, next_ns: Option<u64>) {
    if let Some(v) = k.vcpu_mut(at) {
        // Armed on the boot CPU at its next tick or deadline interrupt
        // (`fire_timers` counts it), not at once: at once, no bench figure
        // gained, and an idle Linux's CPU time as the ticks sample it
        // doubled (woken between ticks rather than just after one), over
        // the README test's 2% once under load (decisions.md).
        v.timer_deadline = next_ns.map_or(0, |t| t.max(1));
    }
}

fn interruptible(s: &HvmVcpu) -> bool {
    s.vmcb.read64(off::RFLAGS) & IF != 0 && s.vmcb.read64(off::INT_STATE) & 1 == 0
}

/// Whether the guest has an interrupt it can take now (HLT then goes on):
/// one its APIC has ready, or one `waiting` outside it (the device
/// model's, another vCPU's IPI).
fn ready(s: &HvmVcpu, waiting: bool) -> bool {
    let any = s.state.get().extra.lapic.pending().is_some() || waiting;
    s.vmcb.read64(off::RFLAGS) & IF != 0 && any
}

/// Fires its APIC timer if due (its vector into the request register) and
/// has the vCPU's kernel timer follow the next expiry.
fn poll_timer(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu) {
    let (now, tsc, hz) = clock();
    let next = s.state.get_mut().extra.lapic.poll_timer(now, tsc, hz);
    set_timer(k, at, next);
}

/// The guest executed HLT: it waits unless it has an interrupt it can
/// take. Its APIC timer is looked at first: when it came due while the
/// guest ran, the kernel timer that mirrors it has fired already (and
/// found the vCPU not blocked, so it woke nothing); blocking without
/// firing it would wait for ever.
pub fn halt(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu) {
    poll_timer(k, at, s);
    // What waits for it beyond its APIC: the device model's vectors and
    // its other vCPUs' IPIs.
    let waiting = k
        .vcpu(at)
        .is_some_and(|v| v.extint.iter().chain(v.ipis.iter()).any(|&w| w != 0));
    if !ready(s, waiting) {
        if let Some(v) = k.vcpu_mut(at) {
            v.blocked = true;
        }
    }
}

/// Before a run: fire the timer if due, follow its next expiry, deliver,
/// and let the guest end its interrupt without an exit if it may.
pub fn prepare(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu) {
    deliver_all(k, at, s);
    super::pv_eoi::before_run(s);
}

fn deliver_all(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu) {
    poll_timer(k, at, s);
    let apic = &mut s.state.get_mut().extra.lapic;
    // IPIs its other vCPUs sent meanwhile.
    if let Some(v) = k.vcpu_mut(at) {
        for (i, word) in v.ipis.iter_mut().enumerate() {
            let mut bits = core::mem::take(word);
            while bits != 0 {
                apic.raise((i * 64) as u8 + bits.trailing_zeros() as u8);
                bits &= bits - 1;
            }
        }
    }
    // What the device model's interrupt controller presents goes first
    // (it comes through LINT0, not the APIC's request register).
    let extint = k.vcpu(at).map_or([0; 4], |v| v.extint);
    let extint = if at.vcpu == 0 { extint } else { [0; 4] };
    let highest = (0..4)
        .rev()
        .find(|&i| extint[i] != 0)
        .map(|i| (i * 64 + 63 - extint[i].leading_zeros() as usize) as u8);
    if let Some(vector) = highest {
        if s.vmcb.read64(off::EVENT_INJ) & 1 << 31 == 0 && interruptible(s) {
            if let Some(v) = k.vcpu_mut(at) {
                v.extint[vector as usize / 64] &= !(1 << (vector % 64));
            }
            past_halt(k, at, s);
            s.vmcb.write64(off::EVENT_INJ, vector as u64 | 1 << 31);
            return window(s, false);
        }
        return window(s, true);
    }
    if deliver(s) {
        past_halt(k, at, s);
    }
}

/// An interrupt about to be delivered at a HLT would return to it, and the
/// guest would halt again with its interrupt spent. That happens under
/// QEMU's SVM, which loses STI's one-instruction shadow across an exit
/// (the test guest's `sti; hlt` took its timer interrupt at the HLT and
/// then slept for ever; Linux idles with the same pair). It is delivered
/// as though the HLT had run and the interrupt had woken it, which the
/// guest cannot tell apart: RIP moves past the HLT first.
fn past_halt(k: &Kernel, at: VcpuRef, s: &mut HvmVcpu) {
    const HLT: u8 = 0xf4;
    let long = s.vmcb.read64(off::EFER) & EFER_LMA != 0;
    if !long {
        return;
    }
    let rip = s.vmcb.read64(off::RIP);
    let mut bytes = [0u8; 15];
    if super::mmio::fetch(k, at, s, rip, &mut bytes) > 0 && bytes[0] == HLT {
        s.vmcb.write64(off::RIP, rip.wrapping_add(1));
    }
}

/// Asks for an exit as soon as the guest can take an interrupt, or not.
fn window(s: &mut HvmVcpu, wanted: bool) {
    let misc = s.vmcb.read32(off::INTERCEPT_MISC1);
    let ctl = s.vmcb.read32(off::INT_CTL);
    if wanted {
        s.vmcb.write32(off::INT_CTL, ctl | V_IRQ);
        s.vmcb.write32(off::INTERCEPT_MISC1, misc | VINTR);
    } else {
        s.vmcb.write32(off::INT_CTL, ctl & !V_IRQ);
        s.vmcb.write32(off::INTERCEPT_MISC1, misc & !VINTR);
    }
}

/// Injects the vector its APIC has ready if the guest can take it (true
/// then), or asks for the window.
fn deliver(s: &mut HvmVcpu) -> bool {
    // An event the last exit interrupted goes first; the window stays asked.
    if s.vmcb.read64(off::EVENT_INJ) & 1 << 31 != 0 {
        return false;
    }
    let can = interruptible(s);
    let apic = &mut s.state.get_mut().extra.lapic;
    match apic.pending() {
        Some(vector) if can => {
            apic.accept(vector);
            s.vmcb.write64(off::EVENT_INJ, vector as u64 | 1 << 31);
            window(s, false);
            true
        }
        Some(_) => {
            window(s, true);
            false
        }
        None => {
            window(s, false);
            false
        }
    }
}
