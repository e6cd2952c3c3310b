//! Running an HVM vCPU: `VMRUN`, the exit, what the kernel does about it,
//! and round again until the scheduler wants the CPU back.
//!
//! Owns: the run loop (its CPU holds the vCPU's state while it runs, and
//! puts it back in the domain when it leaves), the exits the kernel
//! handles itself (CPUID, MSRs, HLT, the debug port, refused instructions)
//! and the ones that end the guest (a triple fault, an access outside its
//! memory, a state VMRUN refuses), each with a crash record.

use super::exit::{self, Exit};
use super::vcpu::HvmVcpu;
use super::{cpuid, msr};
use crate::arch::svm::{self, off};
use crate::domain::{lifecycle, Kernel, Life, VcpuRef};
use core::sync::atomic::{AtomicU64, Ordering};
use ipc_abi::domain::CrashRecord;
use ipc_abi::hvm::{DEBUG_PORT, FLOATING};

/// Exceptions the kernel gives a guest.
const UD: u8 = 6;
const GP: u8 = 13;

/// Per CPU: the VMCB it last ran, so that switching to another guest's
/// vCPU flushes the guest TLB entries of the one ASID all guests share.
static LAST_VMCB: [AtomicU64; crate::domain::MAX_CPUS] =
    [const { AtomicU64::new(0) }; crate::domain::MAX_CPUS];

/// Takes HVM vCPU `at`'s state out of its domain, to run it on this CPU
/// (`None`: not an HVM vCPU, or its domain is gone).
pub fn take(k: &mut Kernel, at: VcpuRef) -> Option<HvmVcpu> {
    k.vcpu_mut(at).and_then(|v| v.hvm.take())
}

/// Puts the state back as the vCPU leaves this CPU.
pub fn put_back(k: &mut Kernel, at: VcpuRef, state: HvmVcpu) {
    match k.vcpu_mut(at) {
        Some(v) => v.hvm = Some(state),
        // Nothing is destroyed under a CPU that has it loaded (`destroy`).
        None => unreachable!("an HVM vCPU's domain went while it was loaded"),
    }
}

/// Runs the guest until its next exit (interrupts off, the kernel lock not held).
pub fn run(state: &mut HvmVcpu) {
    let cpu = crate::domain::this_cpu();
    let vmcb = state.vmcb.phys();
    let flush = LAST_VMCB[cpu].swap(vmcb, Ordering::Relaxed) != vmcb;
    state.vmcb.write32(off::TLB_CONTROL, flush as u32);
    svm::run(cpu, &mut state.vmcb, &mut state.state);
}

/// The guest's next instruction after the one that exited.
fn skip(s: &mut HvmVcpu, e: Exit) {
    let rip = s.vmcb.read64(off::RIP);
    let next = if svm::has_next_rip() {
        s.vmcb.read64(off::NEXT_RIP)
    } else {
        rip + exit::instruction_length(e)
    };
    s.vmcb.write64(off::RIP, next);
}

/// Gives the guest exception `vector` (with error code 0 for #GP) at the
/// instruction that exited, which does not complete.
fn inject(s: &mut HvmVcpu, vector: u8) {
    let with_code = vector == GP;
    let word = vector as u64 | 3 << 8 | (with_code as u64) << 11 | 1 << 31;
    s.vmcb.write64(off::EVENT_INJ, word);
}

/// Does what the exit asks: completes the instruction, gives the guest a
/// fault, blocks the vCPU or crashes the guest.
pub fn handle_exit(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu) {
    let code = s.vmcb.read64(off::EXIT_CODE);
    let e = exit::decode(
        code,
        s.vmcb.read64(off::EXIT_INFO1),
        s.vmcb.read64(off::EXIT_INFO2),
    );
    // An event the exit interrupted on its way in is delivered again.
    let pending = s.vmcb.read64(off::EXIT_INT_INFO);
    s.vmcb.write64(
        off::EVENT_INJ,
        if pending & 1 << 31 != 0 { pending } else { 0 },
    );
    match e {
        // Taken by the kernel's handlers as the run ended (`svm::run`).
        Exit::HostInterrupt | Exit::InterruptWindow => {}
        Exit::Cpuid => {
            let nr_vcpus = k.domain(at.dom).map_or(1, |d| d.nr_vcpus) as u32;
            let who = cpuid::Asker {
                vcpu: at.vcpu as u32,
                vcpus: nr_vcpus,
                kvm_features: 0,
            };
            let leaf = s.vmcb.read64(off::RAX) as u32;
            let [a, b, c, d] = cpuid::answer(leaf, s.state.get().regs.rcx as u32, who, |l, sl| {
                let r = core::arch::x86_64::__cpuid_count(l, sl);
                [r.eax, r.ebx, r.ecx, r.edx]
            });
            s.vmcb.write64(off::RAX, a as u64);
            s.state.get_mut().regs.rbx = b as u64;
            s.state.get_mut().regs.rcx = c as u64;
            s.state.get_mut().regs.rdx = d as u64;
            skip(s, e);
        }
        Exit::Msr { write } => {
            let number = s.state.get_mut().regs.rcx as u32;
            let state = msr::State {
                vcpu: at.vcpu as u32,
                efer: s.vmcb.read64(off::EFER),
                tsc: crate::arch::cpu::rdtsc().wrapping_add(s.vmcb.read64(off::TSC_OFFSET)),
                pat: s.vmcb.read64(off::G_PAT),
            };
            let ok = if write {
                let value =
                    s.state.get_mut().regs.rdx << 32 | (s.vmcb.read64(off::RAX) & 0xffff_ffff);
                match msr::write(number, value, state) {
                    msr::Write::Efer(v) => s.vmcb.write64(off::EFER, v),
                    msr::Write::Pat(v) => s.vmcb.write64(off::G_PAT, v),
                    msr::Write::Ignored => {}
                    msr::Write::Fault => return inject(s, GP),
                }
                true
            } else if let Some(v) = msr::read(number, state) {
                s.vmcb.write64(off::RAX, v & 0xffff_ffff);
                s.state.get_mut().regs.rdx = v >> 32;
                true
            } else {
                false
            };
            if ok {
                skip(s, e);
            } else {
                inject(s, GP);
            }
        }
        Exit::Hlt => {
            skip(s, e);
            // Nothing raises an interrupt for it yet: it waits until the
            // domain is destroyed (idle, using no CPU).
            if let Some(v) = k.vcpu_mut(at) {
                v.blocked = true;
            }
        }
        Exit::Io {
            port,
            size,
            input,
            string,
            next_rip,
        } => {
            if string {
                return crash(k, at, s, 0, "string port I/O is not supported yet");
            }
            if input {
                let rax = s.vmcb.read64(off::RAX);
                let value = match size {
                    1 => (rax & !0xff) | (FLOATING as u64 & 0xff),
                    2 => (rax & !0xffff) | (FLOATING as u64 & 0xffff),
                    _ => FLOATING as u64,
                };
                s.vmcb.write64(off::RAX, value);
            } else if port == DEBUG_PORT {
                debug_byte(k, at, s, s.vmcb.read64(off::RAX) as u8);
            }
            s.vmcb.write64(off::RIP, next_rip);
        }
        Exit::Refused => inject(s, UD),
        Exit::Shutdown => crash(k, at, s, 0, "triple fault"),
        Exit::NestedPageFault { gpa, .. } => crash(
            k,
            at,
            s,
            gpa,
            "access to a guest-physical address outside its memory",
        ),
        Exit::InvalidState => crash(k, at, s, 0, "VMRUN refused the vCPU's state"),
        Exit::Unexpected(_) => crash(k, at, s, code, "an exit the kernel does not handle"),
    }
}

/// One byte to the debug port: lines go to the debug console.
fn debug_byte(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu, byte: u8) {
    let g = s.state.get_mut();
    let len = (g.line_len as usize).min(g.line.len());
    if byte != b'\n' && len < g.line.len() {
        g.line[len] = byte;
        g.line_len = len as u64 + 1;
        return;
    }
    let mut line = [0u8; 121];
    line[..len].copy_from_slice(&g.line[..len]);
    line[len] = b'\n';
    g.line_len = 0;
    if byte != b'\n' {
        // Full: this byte starts the next line.
        g.line[0] = byte;
        g.line_len = 1;
    }
    let now = k.now_ticks;
    if let Some(d) = k.domain_mut(at.dom) {
        crate::domain::console::write(d.id.index(), &mut d.console, now, &mut line[..=len]);
    }
}

/// Ends the guest with a crash record: `what` happened at its RIP, about `address`.
fn crash(k: &mut Kernel, at: VcpuRef, s: &HvmVcpu, address: u64, what: &str) {
    let mut c = CrashRecord::EMPTY;
    c.vector = u64::MAX;
    c.rip = s.vmcb.read64(off::RIP);
    c.address = address;
    let mut text: heapless::String<{ ipc_abi::domain::MESSAGE_MAX }> = heapless::String::new();
    let _ = core::fmt::write(
        &mut text,
        format_args!(
            "hvm: {what} (vCPU {}, rip {:#x}, address {:#x})",
            at.vcpu, c.rip, address
        ),
    );
    c.message[..text.len()].copy_from_slice(text.as_bytes());
    c.message_len = text.len() as u32;
    lifecycle::stop(k, at.dom, Life::Crashed, Some(c));
}
