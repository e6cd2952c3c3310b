//! Inter-processor interrupts between an HVM guest's vCPUs, as its local
//! APICs' ICR writes ask: fixed vectors into the target's APIC, and the
//! INIT and start-up IPIs that bring a secondary vCPU up in real mode at
//! the start-up vector's page (how Linux starts its other CPUs).
//!
//! Owns: finding the target vCPUs (a vCPU's APIC id is its number), the
//! mailbox a fixed IPI waits in until its target next runs (`Vcpu::ipis`:
//! the target's APIC may be on another CPU), and a vCPU's start.

use super::lapic::IpiKind;
use crate::arch::svm::{off, Segment};
use crate::domain::{lifecycle, Kernel, Life, VcpuRef};

/// Sends what `from`'s ICR write asked to `dest` (`u32::MAX`: all but `from`).
pub fn send(k: &mut Kernel, from: VcpuRef, dest: u32, vector: u8, kind: IpiKind) {
    let nr = k.domain(from.dom).map_or(0, |d| d.nr_vcpus);
    for vcpu in 0..nr {
        let wanted = if dest == u32::MAX {
            vcpu != from.vcpu
        } else {
            vcpu as u32 == dest
        };
        if wanted {
            deliver(
                k,
                VcpuRef {
                    dom: from.dom,
                    vcpu,
                },
                vector,
                kind,
            );
        }
    }
}

fn deliver(k: &mut Kernel, at: VcpuRef, vector: u8, kind: IpiKind) {
    match kind {
        IpiKind::Fixed if vector >= 16 => {
            if let Some(v) = k.vcpu_mut(at) {
                v.ipis[vector as usize / 64] |= 1 << (vector % 64);
            }
            wake(k, at);
        }
        IpiKind::Init => {
            if let Some(v) = k.vcpu_mut(at).filter(|v| !v.up) {
                v.init_received = true;
            }
        }
        IpiKind::Startup => start(k, at, vector),
        // NMIs between vCPUs (Linux's backtraces) are not delivered yet.
        _ => {}
    }
}

/// A start-up IPI: a vCPU that got INIT and is not up starts in real mode
/// at `vector << 12`.
fn start(k: &mut Kernel, at: VcpuRef, vector: u8) {
    let loads = k.loads();
    let online = crate::arch::smp::online_mask();
    let Some(v) = k.vcpu_mut(at) else { return };
    if v.up || !v.init_received {
        return;
    }
    let Some(h) = v.hvm.as_mut() else { return };
    let vmcb = &mut h.vmcb;
    let page = (vector as u64) << 12;
    vmcb.set_segment(
        off::CS,
        Segment {
            selector: (vector as u16) << 8,
            attrib: 0x9b,
            limit: 0xffff,
            base: page,
        },
    );
    let data = Segment {
        selector: 0,
        attrib: 0x93,
        limit: 0xffff,
        base: 0,
    };
    for seg in [off::DS, off::ES, off::SS, off::FS, off::GS] {
        vmcb.set_segment(seg, data);
    }
    // Real mode: protection and paging off.
    vmcb.write64(off::CR0, 0x10);
    vmcb.write64(off::RIP, 0);
    vmcb.write64(off::RSP, 0);
    vmcb.write64(off::RFLAGS, 0x2);
    v.init_received = false;
    v.up = true;
    v.cpu = crate::sched::least_loaded(&loads, v.affinity & online);
    wake(k, at);
}

/// Lets `at` run soon: woken if it waits in HLT, its CPU kicked if it runs.
fn wake(k: &mut Kernel, at: VcpuRef) {
    let running = k.domain(at.dom).is_some_and(|d| d.life == Life::Running);
    let min = lifecycle::wake_base(k, at);
    if let Some(v) = k.vcpu_mut(at) {
        v.blocked = false;
        if running && v.up {
            v.sched.wake(min);
        }
    }
    k.resched_vcpu(at);
}
