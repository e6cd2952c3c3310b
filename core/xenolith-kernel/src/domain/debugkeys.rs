//! Debug keys (as Xen's `xl debug-keys`): the control domain asks for a
//! dump of kernel state, which goes to the kernel log (and so to COM1 and
//! `toolstack host dmesg`).
//!
//! Owns: the keys and what each prints. `h` lists the keys; `q` the domain
//! table (memory, untouched RAM and the CPU time charged); `r` the run
//! queue; `e` every bound event port; `g` every grant and every mapped
//! grant-window slot; `i` the kernel image's integrity; `d` what each
//! domain's devices may reach by DMA.
//! Read-only: dumping changes nothing.

use super::ports::PortState;
use super::{Kernel, Life};
use ipc_abi::hypercall::Error;

/// The keys and what they dump.
const KEYS: [(u8, &str); 9] = [
    (b'h', "this list"),
    (b'q', "the domain table"),
    (b'r', "the run queue"),
    (b'e', "event channel bindings"),
    (b'g', "grants and mapped grant-window slots"),
    (
        b'i',
        "whether the kernel's code and read-only data are as at boot",
    ),
    (
        b'd',
        "DMA: each domain's PCI functions, DMA memory (where, and a checksum of it) and faults",
    ),
    (
        b'k',
        "kernel stacks: the deepest each CPU's has been used since boot, of its size",
    ),
    (
        b'x',
        "HVM exits: each HVM vCPU's exits since it was created, by kind; one not on a CPU: its APIC, interrupt state and last exits",
    ),
];

/// Dumps what `key` names to the kernel log; `InvalidArgument` for an unknown key.
pub fn dump(k: &Kernel, key: u8) -> Result<(), Error> {
    match key {
        b'h' => {
            for (key, what) in KEYS {
                kprintln!("debug-keys: '{}': {}", key as char, what);
            }
        }
        b'q' => domains(k),
        b'r' => run_queue(k),
        b'e' => ports(k),
        b'g' => grants(k),
        b'i' => integrity(),
        b'd' => dma(k),
        b'k' => stacks(),
        b'x' => exits(k),
        _ => return Err(Error::InvalidArgument),
    }
    Ok(())
}

fn exits(k: &Kernel) {
    for (at, v) in k.all_vcpus().filter(|(_, v)| v.exits != Default::default()) {
        let mut line: heapless::String<320> = heapless::String::new();
        for (name, n) in v.exits.iter().filter(|&(_, n)| n > 0) {
            let sep = if line.is_empty() { "" } else { ", " };
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{sep}{name} {n}"));
        }
        kprintln!(
            "debug-keys 'x': domain {} vCPU {} exits: {}",
            k.id_of(at.dom),
            at.vcpu,
            line
        );
        // Its interrupt state, when no CPU holds it (a stalled guest's).
        if let Some(h) = v.hvm.as_ref() {
            hvm_state(k.id_of(at.dom), at.vcpu, v, h);
        }
    }
}

/// Why an HVM vCPU may not be taking interrupts: its APIC, the VMCB's
/// interrupt fields, what waits outside its APIC, and its last exits.
fn hvm_state(id: u32, vcpu: usize, v: &super::Vcpu, h: &crate::hvm::vcpu::HvmVcpu) {
    use crate::arch::svm::off;
    let extra = &h.state.get().extra;
    kprintln!(
        "debug-keys 'x': domain {id} vCPU {vcpu} {}; rip {:#x} rflags {:#x} int-state {:#x} event-inj {:#x} int-ctl {:#x} misc1 {:#x} cr0 {:#x} cr4 {:#x}; ipis {:x?} extint {:x?}; io waiting {}",
        extra.lapic.summary(),
        h.vmcb.read64(off::RIP),
        h.vmcb.read64(off::RFLAGS),
        h.vmcb.read64(off::INT_STATE),
        h.vmcb.read64(off::EVENT_INJ),
        h.vmcb.read32(off::INT_CTL),
        h.vmcb.read32(off::INTERCEPT_MISC1),
        h.vmcb.read64(off::CR0),
        h.vmcb.read64(off::CR4),
        v.ipis,
        v.extint,
        extra.waiting.is_some(),
    );
    for e in extra.recent_exits() {
        kprintln!("debug-keys 'x': domain {id} vCPU {vcpu} earlier exit {e}");
    }
}

fn stacks() {
    for cpu in 0..crate::arch::smp::online() {
        if let Some((bottom, top)) = crate::arch::smp::kernel_stack(cpu) {
            let used = crate::arch::stacks::deepest_use(bottom, top);
            kprintln!(
                "debug-keys 'k': CPU {cpu} kernel stack: deepest use {} KiB of {} KiB",
                used.div_ceil(1024),
                (top - bottom) / 1024
            );
        }
    }
}

fn integrity() {
    let (start, end) = crate::arch::image::range();
    let (now, boot) = crate::arch::image::verify();
    if now == boot {
        kprintln!(
            "debug-keys 'i': kernel image {start:#x}-{end:#x}: as at boot (checksum {now:#018x})"
        );
    } else {
        kprintln!(
            "debug-keys 'i': kernel image {start:#x}-{end:#x}: CHANGED since boot (checksum {now:#018x}, was {boot:#018x})"
        );
    }
}

/// Every domain with PCI functions or DMA memory: its functions, where its
/// DMA memory lies (physical addresses, and the device addresses its
/// devices use for it) with a checksum of its bytes (to see a page
/// changed behind its owner), and its DMA faults.
fn dma(k: &Kernel) {
    use ipc_abi::layout::{DMA_WINDOW, PAGE_SIZE};
    kprintln!(
        "debug-keys 'd': DMA isolation {}",
        k.dma_isolation.describe()
    );
    for d in k.live().filter_map(|i| k.domain(i)) {
        if d.pci.is_empty() && d.dma.is_none() {
            continue;
        }
        let mut functions: heapless::String<64> = heapless::String::new();
        for a in d.pci.iter() {
            let (b, dv, f) = (a.bdf >> 8, (a.bdf >> 3) & 0x1f, a.bdf & 7);
            let _ = core::fmt::write(&mut functions, format_args!(" {b:02x}:{dv:02x}.{f}"));
        }
        kprintln!(
            "  domain {} {}: PCI functions{}; {} DMA faults",
            d.id,
            d.name,
            if functions.is_empty() {
                " none"
            } else {
                &functions
            },
            d.dma_faults
        );
        let Some((first, pages)) = d.dma else {
            continue;
        };
        let mut sum = crate::arch::image::FNV_START;
        let mut page = [0u8; PAGE_SIZE as usize];
        for i in 0..pages {
            if let Some((frame, _, _)) = d.space.ram_frame(DMA_WINDOW + i * PAGE_SIZE) {
                crate::arch::memory::read_frame(frame, 0, &mut page);
                sum = crate::arch::image::fnv1a(sum, &page);
            }
        }
        let device = if d.dma_space.is_some() {
            crate::dma_remap::DMA_IOVA
        } else {
            first
        };
        kprintln!(
            "  domain {} {}: DMA memory {:#x}-{:#x} ({} pages) at device address {:#x}, checksum {:#018x}",
            d.id,
            d.name,
            first,
            first + pages * PAGE_SIZE,
            pages,
            device,
            sum
        );
    }
}

fn life(l: Life) -> &'static str {
    match l {
        Life::Paused => "paused",
        Life::Running => "running",
        Life::Shutdown(_) => "shutdown",
        Life::Crashed => "crashed",
    }
}

fn domains(k: &Kernel) {
    kprintln!("debug-keys 'q': domain table");
    for d in k.live().filter_map(|i| k.domain(i)) {
        let used_tsc = super::cpu_time::reported_tsc(d, crate::arch::cpu::rdtsc());
        let ports = (1..ipc_abi::shared::PORTS as u64)
            .filter(|&p| d.ports.get(p).is_ok())
            .count();
        kprintln!(
            "  domain {} {}: {}, {} KiB ({} KiB of RAM not touched yet), {} us charged, {} ports, {} grants, {} window slots mapped, control {}",
            d.id,
            d.name,
            life(d.life),
            d.memory_kib,
            d.ram_reserved * 4,
            charged_us(used_tsc),
            ports,
            d.grants.iter().flatten().count(),
            d.window.iter().flatten().count(),
            d.control
        );
    }
}

/// TSC ticks as microseconds.
fn charged_us(tsc: u64) -> u64 {
    let hz = crate::arch::time::page().tsc_hz.max(1);
    (u128::from(tsc) * 1_000_000 / u128::from(hz)) as u64
}

fn run_queue(k: &Kernel) {
    kprintln!(
        "debug-keys 'r': run queue of CPU {} (running: {:?})",
        super::this_cpu(),
        k.current().map(|c| (c.dom, c.vcpu))
    );
    for (at, v) in k.all_vcpus().filter(|(_, v)| v.up) {
        let Some(d) = k.domain(at.dom) else { continue };
        let s = &v.sched;
        kprintln!(
            "  domain {} {} vcpu {}: {}{}{}, cpu {}, weight {}, cap {}%, pass {}, timer {}",
            d.id,
            d.name,
            at.vcpu,
            life(d.life),
            if v.blocked { " blocked" } else { "" },
            if v.io_wait {
                " waiting for its device model"
            } else {
                ""
            },
            v.cpu,
            s.weight,
            s.cap_percent,
            s.pass,
            Deadline(v.timer_deadline)
        );
    }
}

/// A one-shot timer's deadline (0: none armed), for printing.
struct Deadline(u64);

impl core::fmt::Display for Deadline {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            0 => f.write_str("none"),
            ns => write!(f, "at {} ns", ns),
        }
    }
}

fn ports(k: &Kernel) {
    kprintln!("debug-keys 'e': event channel bindings");
    for d in k.live().filter_map(|i| k.domain(i)) {
        for p in 1..ipc_abi::shared::PORTS as u64 {
            let Ok(state) = d.ports.get(p) else { continue };
            match state {
                PortState::Unbound { remote } => {
                    kprintln!("  {}:{} unbound, for domain {}", d.id, p, remote)
                }
                PortState::Interdomain { remote, port } => {
                    kprintln!("  {}:{} <-> {}:{}", d.id, p, remote, port)
                }
                PortState::Virq(v) => kprintln!("  {}:{} virq {:?}", d.id, p, v),
                PortState::Pirq(irq) => kprintln!("  {}:{} irq {}", d.id, p, irq),
                PortState::Free => {}
            }
        }
    }
}

fn grants(k: &Kernel) {
    kprintln!("debug-keys 'g': grants and mapped grant-window slots");
    for d in k.live().filter_map(|i| k.domain(i)) {
        for (gref, g) in d.grants.iter().enumerate() {
            if let Some(g) = g {
                kprintln!(
                    "  {} grant {} to {}: frame {:#x}{}, mapped {} times",
                    d.id,
                    gref,
                    g.grantee,
                    g.frame.addr(),
                    if g.readonly { " read-only" } else { "" },
                    g.maps
                );
            }
        }
        for (slot, m) in d.window.iter().enumerate() {
            if let Some(m) = m {
                kprintln!(
                    "  {} window slot {}: grant {} of {}",
                    d.id,
                    slot,
                    m.gref,
                    m.granter
                );
            }
        }
    }
}
