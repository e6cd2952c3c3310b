//! What the kernel does about each exit of an HVM vCPU.
//!
//! Owns: the exits the kernel handles itself (CPUID, MSRs and the local
//! APIC's, HLT, the debug port, refused instructions) and the ones that
//! end the guest (a triple fault, an access outside its memory, a state
//! VMRUN refuses), each with a crash record.

use super::exit::{self, Exit};
use super::interrupts;
use super::lapic::{self, Effect};
use super::vcpu::HvmVcpu;
use super::{cpuid, msr, pvclock};
use crate::arch::memory::with_frames;
use crate::arch::svm::{self, off};
use crate::domain::{guest_ram, lifecycle, Kernel, Life, VcpuRef};
use ipc_abi::domain::CrashRecord;
use ipc_abi::hvm::{DEBUG_PORT, FLOATING};

/// Exceptions the kernel gives a guest.
const UD: u8 = 6;
const GP: u8 = 13;

/// The guest's next instruction after the one that exited.
fn skip(s: &mut HvmVcpu, e: Exit) {
    let rip = s.vmcb.read64(off::RIP);
    let next = if svm::has_next_rip() {
        s.vmcb.read64(off::NEXT_RIP)
    } else {
        rip + exit::instruction_length(e)
    };
    s.vmcb.write64(off::RIP, next);
    // The instruction ran: an STI's shadow over it is over too.
    let state = s.vmcb.read64(off::INT_STATE);
    s.vmcb.write64(off::INT_STATE, state & !1);
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
    trace_event!(
        "dom{=u32} vcpu {=usize} exit {=str} rip {=u64:#x}",
        k.id_of(at.dom),
        at.vcpu,
        e.name(),
        s.vmcb.read64(off::RIP)
    );
    if let Some(v) = k.vcpu_mut(at) {
        v.exits.note(&e, s.state.get().guest.regs.rcx as u32);
    }
    // An interrupt it ended without an exit ends now.
    super::pv_eoi::after_exit(s);
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
                kvm_features: super::pvclock::FEATURES | super::pv_eoi::FEATURE,
            };
            let leaf = s.vmcb.read64(off::RAX) as u32;
            let [a, b, c, d] =
                cpuid::answer(leaf, s.state.get().guest.regs.rcx as u32, who, |l, sl| {
                    let r = core::arch::x86_64::__cpuid_count(l, sl);
                    [r.eax, r.ebx, r.ecx, r.edx]
                });
            s.vmcb.write64(off::RAX, a as u64);
            s.state.get_mut().guest.regs.rbx = b as u64;
            s.state.get_mut().guest.regs.rcx = c as u64;
            s.state.get_mut().guest.regs.rdx = d as u64;
            skip(s, e);
        }
        Exit::Msr { write } => {
            let number = s.state.get().guest.regs.rcx as u32;
            let value =
                s.state.get().guest.regs.rdx << 32 | (s.vmcb.read64(off::RAX) & 0xffff_ffff);
            let done = if is_lapic(number) {
                lapic_msr(k, at, s, number, write.then_some(value))
            } else if number == pvclock::SYSTEM_TIME || number == pvclock::WALL_CLOCK {
                clock_msr(k, at, s, number, write.then_some(value))
            } else if number == super::pv_eoi::MSR {
                match write {
                    false => Some(Some(super::pv_eoi::read(s))),
                    true => super::pv_eoi::write(k, at, s, value).then_some(None),
                }
            } else {
                policy_msr(at, s, number, write.then_some(value))
            };
            match done {
                Some(read) => {
                    if let Some(v) = read {
                        s.vmcb.write64(off::RAX, v & 0xffff_ffff);
                        s.state.get_mut().guest.regs.rdx = v >> 32;
                    }
                    skip(s, e);
                }
                None => inject(s, GP),
            }
        }
        Exit::Hlt => {
            skip(s, e);
            // It waits for an interrupt it can take: its timer's wakes it
            // (the kernel timer `interrupts::set_timer` keeps); with
            // interrupts off, nothing does, and it uses no CPU.
            interrupts::halt(k, at, s);
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
            s.vmcb.write64(off::RIP, next_rip);
            if port == DEBUG_PORT && !input {
                let byte = s.vmcb.read64(off::RAX) as u8;
                return debug_byte(k, at, s, byte);
            }
            if !input && super::device_model::ring(k, at, port) {
                return;
            }
            if super::device_model::post(k, at, s, port, size, input) {
                return;
            }
            // Nobody serves it: inputs read all ones, outputs go nowhere.
            if input {
                let rax = s.vmcb.read64(off::RAX);
                let value = match size {
                    1 => (rax & !0xff) | (FLOATING as u64 & 0xff),
                    2 => (rax & !0xffff) | (FLOATING as u64 & 0xffff),
                    _ => FLOATING as u64,
                };
                s.vmcb.write64(off::RAX, value);
            }
        }
        Exit::Refused => inject(s, UD),
        Exit::CacheFlush => skip(s, e),
        Exit::Shutdown => {
            triple_fault_state(s);
            triple_fault_walk(k, at, s);
            crash(k, at, s, 0, "triple fault")
        }
        Exit::NestedPageFault { gpa, .. }
            if (ipc_abi::hvm::MMIO_BASE..ipc_abi::hvm::MMIO_BASE + ipc_abi::hvm::MMIO_SIZE)
                .contains(&gpa) =>
        {
            if let Err(what) = super::mmio::access(k, at, s, gpa) {
                crash(k, at, s, gpa, what)
            }
        }
        // Its RAM's first touch: the page is given (and the access retried).
        Exit::NestedPageFault { gpa, .. } if guest_ram::is_ram(k, at.dom, gpa) => {
            let given = with_frames(|f| guest_ram::populate_around(k, f, at.dom, gpa));
            if given.is_err() {
                crash(k, at, s, gpa, "no frame for its RAM")
            }
        }
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

fn is_lapic(msr: u32) -> bool {
    (lapic::MSR_BASE..=lapic::MSR_LAST).contains(&msr) || msr == lapic::TSC_DEADLINE
}

/// An access to a local APIC register: `Some(value read)` or `Some(None)`
/// for a write done; `None` for #GP.
fn lapic_msr(
    k: &mut Kernel,
    at: VcpuRef,
    s: &mut HvmVcpu,
    number: u32,
    write: Option<u64>,
) -> Option<Option<u64>> {
    let (now, tsc, hz) = interrupts::clock();
    let apic = &mut s.state.get_mut().extra.lapic;
    let Some(value) = write else {
        return apic.read(number, now).map(Some);
    };
    match apic.write(number, value, now, tsc, hz).ok()? {
        Effect::None => {}
        Effect::Timer(next) => interrupts::set_timer(k, at, next),
        Effect::Ipi { dest, vector, kind } => super::ipi::send(k, at, dest, vector, kind),
    }
    Some(None)
}

/// kvm-clock's MSRs: the guest names where its time record (bit 0: on)
/// and the wall clock go in its memory; the kernel writes them there.
fn clock_msr(
    k: &mut Kernel,
    at: VcpuRef,
    s: &mut HvmVcpu,
    number: u32,
    write: Option<u64>,
) -> Option<Option<u64>> {
    let x = &mut s.state.get_mut().extra;
    let Some(value) = write else {
        return Some(Some(if number == pvclock::SYSTEM_TIME {
            x.system_time_msr
        } else {
            0
        }));
    };
    let (now, tsc, hz) = interrupts::clock();
    let (gpa, bytes): (u64, &[u8]) = if number == pvclock::SYSTEM_TIME {
        x.system_time_msr = value;
        if value & 1 == 0 {
            return Some(None);
        }
        (value & !1, &pvclock::time_record(2, tsc, now, hz))
    } else {
        (value, &pvclock::wall_clock(2, 0, 0))
    };
    guest_write(k, at, gpa, bytes).then_some(None)
}

/// Writes `bytes` at guest-physical `gpa` of `at`'s domain, within one
/// page of its RAM; false (nothing written) otherwise.
fn guest_write(k: &mut Kernel, at: VcpuRef, gpa: u64, bytes: &[u8]) -> bool {
    let offset = (gpa & 0xfff) as usize;
    if offset + bytes.len() > 4096 || !guest_ram::is_ram(k, at.dom, gpa) {
        return false;
    }
    // A page it has not touched yet is given now.
    if with_frames(|f| guest_ram::populate(k, f, at.dom, gpa)).is_err() {
        return false;
    }
    let Some(d) = k.domain(at.dom) else {
        return false;
    };
    match d.space.ram_frame(gpa & !0xfff) {
        Some((frame, true, crate::arch::addrspace::Kind::Owned)) => {
            crate::domain::shared_pages::write_frame(frame, offset, bytes);
            true
        }
        _ => false,
    }
}

/// An access to another MSR, by `msr.rs`'s policy: as `lapic_msr`.
fn policy_msr(
    at: VcpuRef,
    s: &mut HvmVcpu,
    number: u32,
    write: Option<u64>,
) -> Option<Option<u64>> {
    let state = msr::State {
        vcpu: at.vcpu as u32,
        efer: s.vmcb.read64(off::EFER),
        tsc: crate::arch::cpu::rdtsc().wrapping_add(s.vmcb.read64(off::TSC_OFFSET)),
        pat: s.vmcb.read64(off::G_PAT),
    };
    let Some(value) = write else {
        return msr::read(number, state).map(Some);
    };
    match msr::write(number, value, state) {
        msr::Write::Efer(v) => s.vmcb.write64(off::EFER, v),
        msr::Write::Pat(v) => s.vmcb.write64(off::G_PAT, v),
        msr::Write::Ignored => {}
        msr::Write::Fault => return None,
    }
    Some(None)
}

/// One byte to the debug port: lines go to the debug console.
fn debug_byte(k: &mut Kernel, at: VcpuRef, s: &mut HvmVcpu, byte: u8) {
    let x = &mut s.state.get_mut().extra;
    let len = x.line_len.min(x.line.len());
    if byte != b'\n' && len < x.line.len() {
        x.line[len] = byte;
        x.line_len = len + 1;
        return;
    }
    let mut out = [0u8; 121];
    out[..len].copy_from_slice(&x.line[..len]);
    out[len] = b'\n';
    x.line_len = 0;
    if byte != b'\n' {
        // Full: this byte starts the next line.
        x.line[0] = byte;
        x.line_len = 1;
    }
    let now = k.now_ticks;
    if let Some(d) = k.domain_mut(at.dom) {
        crate::domain::console::write(d.id.index(), &mut d.console, now, &mut out[..=len], true);
    }
}

/// Ends the guest with a crash record: `what` happened at its RIP, about `address`.
/// What the guest's CPU looked like at a triple fault, on the kernel log
/// (its control registers, descriptor tables, stack, and the event it was
/// taking when the exit came): for finding what the guest tripped on.
fn triple_fault_state(s: &HvmVcpu) {
    let v = |o| s.vmcb.read64(o);
    kprintln!(
        "hvm: triple fault: cr0 {:#x} cr2 {:#x} cr3 {:#x} cr4 {:#x} efer {:#x} rflags {:#x} rsp {:#x}",
        v(off::CR0),
        v(off::CR2),
        v(off::CR3),
        v(off::CR4),
        v(off::EFER),
        v(off::RFLAGS),
        v(off::RSP),
    );
    kprintln!(
        "hvm: triple fault: idtr {:#x}+{:#x} gdtr {:#x}+{:#x} cs {:#x} cpl {}",
        v(off::IDTR + 8),
        s.vmcb.read32(off::IDTR + 4),
        v(off::GDTR + 8),
        s.vmcb.read32(off::GDTR + 4),
        s.vmcb.read32(off::CS) & 0xffff,
        (s.vmcb.read32(off::CPL & !3) >> ((off::CPL & 3) * 8)) & 0xff,
    );
    kprintln!(
        "hvm: triple fault: int_state {:#x} exit_int_info {:#x} event_inj {:#x} int_ctl {:#x} nested cr3 {:#x} (kept {:#x})",
        v(off::INT_STATE),
        v(off::EXIT_INT_INFO),
        v(off::EVENT_INJ),
        s.vmcb.read32(off::INT_CTL),
        v(off::N_CR3),
        s.npt,
    );
    let extra = &s.state.get().extra;
    for e in extra.recent_exits() {
        kprintln!("hvm: triple fault: earlier exit {e}");
    }
}

/// At a triple fault: the guest's own page walk of its RIP and of its
/// IDT's base, entry by entry (guest-physical address, the host frame
/// behind it, the entry), and any other domain that owns that host frame
/// too: for telling a page the guest wrote from one replaced behind it.
fn triple_fault_walk(k: &Kernel, at: VcpuRef, s: &HvmVcpu) {
    let Some(d) = k.domain(at.dom) else {
        return;
    };
    let cr3 = s.vmcb.read64(off::CR3) & 0x000f_ffff_ffff_f000;
    for va in [s.vmcb.read64(off::RIP), s.vmcb.read64(off::IDTR + 8)] {
        let mut table = cr3;
        for level in (0..4).rev() {
            let index = (va >> (12 + 9 * level)) & 511;
            let gpa = table + index * 8;
            let Some((frame, _, _)) = d.space.ram_frame(gpa & !0xfff) else {
                kprintln!("hvm: walk {va:#x}: level {level} table {table:#x} not in RAM");
                break;
            };
            let mut e = [0u8; 8];
            crate::domain::shared_pages::read_frame(frame, (gpa & 0xfff) as usize, &mut e);
            let e = u64::from_le_bytes(e);
            let others: heapless::Vec<u32, 4> = k
                .live_domains()
                .filter(|&(i, _)| i != at.dom)
                .filter(|(_, o)| owns(o, frame))
                .map(|(_, o)| o.id.0)
                .take(4)
                .collect();
            kprintln!(
                "hvm: walk {va:#x}: level {level} table {table:#x} (host {:#x}, also owned by {:?}) entry {index} = {e:#x}",
                frame.addr(),
                others
            );
            if e & 1 == 0 || e & 0x80 != 0 {
                break;
            }
            table = e & 0x000f_ffff_ffff_f000;
        }
    }
}

/// Whether domain `d` maps `frame` as its own memory (a slow walk).
fn owns(d: &crate::domain::Domain, frame: crate::frames::Frame) -> bool {
    let mut from = 0;
    while let Some((va, f)) = d.space.next_owned(from, u64::MAX) {
        if f == frame {
            return true;
        }
        from = va + 4096;
    }
    false
}

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
