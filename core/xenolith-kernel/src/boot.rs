//! The boot sequence, from the first Rust instruction to "ready".
//!
//! Owns: the order in which the kernel comes up, and the boot log a person
//! (and the system tests) read: banner, effective command line, memory,
//! paging, CPU tables, ACPI, timer, then `xenolith: ready`.

use crate::arch::{acpi, apic, cpu, gdt, idt, paging, reset, syscall};
use crate::arch::{memory, time};
use crate::cmdline::{self, Settings, TestHook};
use crate::frame_pool::FrameAllocator;
use crate::frames::{self, FreeRanges, PhysRange, RegionKind};
use crate::layout::{phys_to_virt, KERNEL_VMA, PHYS_OFFSET};
use crate::{console, dom0, kprintln, panic, trap};
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};

const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
const MIB: u64 = 1 << 20;

extern "C" {
    static __kernel_phys_start: u8;
    static __kernel_virt_end: u8;
}

/// Entered from `boot/entry.S` in long mode, on the boot stack, with the
/// boot tables active. `mbi_phys` is the multiboot2 information's address.
#[no_mangle]
extern "C" fn kernel_entry(magic: u32, mbi_phys: u32) -> ! {
    let entry_tsc = cpu::rdtsc();
    crate::arch::stacks::paint_boot_stack();
    console::init_early();
    if magic != MULTIBOOT2_MAGIC {
        panic!("not booted by a multiboot2 loader (magic {magic:#x})");
    }
    // SAFETY: the loader passed the boot information's physical address; it is
    // below 4 GiB, so the boot physmap maps it, and the final physmap keeps it
    // mapped (it lies in RAM). Nothing writes to it; the allocator reserves it.
    let info = unsafe {
        BootInformation::load(phys_to_virt(mbi_phys as u64) as *const BootInformationHeader)
    }
    .unwrap_or_else(|_| panic!("the multiboot2 information at {mbi_phys:#x} is malformed"));

    let line = info
        .command_line_tag()
        .and_then(|t| t.cmdline().ok())
        .unwrap_or("");
    let parsed = cmdline::parse(line);
    let settings = parsed.settings;
    panic::set_noreboot(settings.noreboot);
    let console_problem = console::configure(&settings);
    let loader = info
        .boot_loader_name_tag()
        .and_then(|t| t.name().ok())
        .unwrap_or("an unnamed loader");
    kprintln!(
        "Xenolith {} (multiboot2, loaded by {})",
        env!("CARGO_PKG_VERSION"),
        loader
    );
    kprintln!("cmdline: {}", settings);
    for w in &parsed.warnings {
        kprintln!("warning: {}", w);
    }
    if parsed.dropped_warnings > 0 {
        kprintln!(
            "warning: {} more command-line warnings not shown",
            parsed.dropped_warnings
        );
    }
    if let Some(problem) = console_problem {
        kprintln!("warning: {}", problem);
    }

    let mut frames = init_frames(&info);
    let physmap = physmap_ranges(&info);
    memory::set_ram(&physmap[1..]);
    let (space, summary) = paging::build_and_switch(&mut frames, &physmap)
        .unwrap_or_else(|e| panic!("cannot build the kernel page tables: {e}"));
    kprintln!(
        "paging: text {} pages RX, rodata {} pages R, data {} pages RW+NX, {} stack guard pages unmapped, physmap {} MiB",
        summary.text_pages,
        summary.rodata_pages,
        summary.data_pages,
        summary.guard_pages,
        space.physmap_bytes / MIB
    );
    memory::install(frames, space);

    gdt::init();
    idt::init();
    // The per-CPU block first: `this_cpu()` reads it from here on.
    syscall::init();
    let protections = cpu::protect_kernel();
    kprintln!(
        "cpu: {} GDT, TSS (IST for #DF, NMI, #MC), IDT loaded; SMEP {}, SMAP {}",
        vendor_str(&cpu::vendor()),
        on_off(protections.smep),
        on_off(protections.smap)
    );

    let (cpus, ioapic, dmar) = init_acpi(&info, &settings);
    let eligible = eligible_cpus(&cpus, &settings);
    kprintln!(
        "cpus: {} found, {} eligible{}{}",
        cpus.len().max(1),
        eligible,
        if settings.nosmp { ", nosmp" } else { "" },
        if settings.noht { ", noht" } else { "" }
    );

    apic::disable_pic();
    let mode = apic::init(true).unwrap_or_else(|e| panic!("cannot map the local APIC: {e}"));
    // Timer calibration and the tick wait are time, not work: keep them out
    // of the path length reported at "ready".
    let waiting_since = cpu::rdtsc();
    let (count, tsc_hz) = apic::start_timer(time::TICK_HZ);
    time::set_tsc(tsc_hz, entry_tsc);
    x86_64::instructions::interrupts::enable();
    time::wait_ticks(3);
    // From here the boot CPU's timer is one-shot: each tick, and each
    // vCPU deadline sooner than the next tick.
    crate::arch::deadline::start(count);
    let waited = cpu::rdtsc().wrapping_sub(waiting_since);
    kprintln!(
        "apic: {:?} id {}, PIC masked, timer periodic at {} Hz (initial count {}), {} ticks seen",
        mode,
        apic::id(),
        time::TICK_HZ,
        count,
        time::ticks()
    );

    match ioapic {
        Some((addr, overrides)) => match crate::arch::ioapic::init(addr, &overrides) {
            Ok(lines) => kprintln!(
                "ioapic: {} lines at {:#x}, all masked until a domain binds one",
                lines,
                addr
            ),
            Err(e) => kprintln!("warning: ioapic: cannot map it: {e}"),
        },
        None => kprintln!("ioapic: none known; physical IRQs cannot be given to domains"),
    }
    inventory_pci();
    crate::arch::image::seal();
    kprintln!("hvm: {}", enable_svm(0).abi().describe());
    {
        let mut k = crate::domain::lock();
        let isolation = crate::domain::dma::start(&mut k, dmar, settings.iommu);
        k.dma_isolation = isolation;
        k.iommu_force = settings.iommu == crate::cmdline::IommuMode::Force;
    }
    let dom0_kib = reserve_domain0(&settings);
    crate::trace::init(settings.tbuf_pages, eligible);
    if !settings.watchdog {
        kprintln!("watchdog: off");
    } else if crate::watchdog::start() {
        kprintln!(
            "watchdog: on, an NMI {} times a second; a CPU without a timer tick for {} s panics",
            crate::watchdog::NMI_HZ,
            crate::watchdog::STUCK_NMIS as u64 / crate::watchdog::NMI_HZ
        );
    } else {
        kprintln!("warning: watchdog: no I/O APIC to deliver its NMI; off");
    }
    kprintln!(
        "net: ifname={} is handed to the network driver domain",
        settings.ifname
    );

    let total = cpu::rdtsc().wrapping_sub(entry_tsc);
    kprintln!(
        "xenolith: ready (tsc {} since kernel entry, {} of it outside timer calibration and waits)",
        total,
        total.wrapping_sub(waited)
    );
    if let Some((bottom, top)) = crate::arch::smp::kernel_stack(0) {
        kprintln!(
            "boot: the boot stack's deepest use so far: {} KiB of {} KiB",
            crate::arch::stacks::deepest_use(bottom, top).div_ceil(1024),
            (top - bottom) / 1024
        );
    }

    if let Some(hook) = settings.ktest {
        run_test_hook(hook);
    }
    x86_64::instructions::interrupts::disable();
    if let Some(hook @ (TestHook::HangAp | TestHook::StackOverflowAp)) = settings.ktest {
        FIRST_AP_TEST.call_once(|| hook);
    }
    start_application_processors(&cpus, &settings, count);
    let mut modules: heapless::Vec<dom0::BootModule<'_>, 64> = heapless::Vec::new();
    for m in info.module_tags() {
        let _ = modules.push(dom0::BootModule {
            range: PhysRange::new(m.start_address() as u64, m.end_address() as u64),
            cmdline: m.cmdline().unwrap_or(""),
        });
    }
    if dom0::start(&modules, dom0_kib, &settings.ifname) {
        trap::start()
    }
    x86_64::instructions::interrupts::enable();
    cpu::halt_forever()
}

/// The kernel's configuration ports, for the boot walk.
struct ConfigPorts;

impl crate::pci_inventory::ConfigSpace for ConfigPorts {
    fn read32(&mut self, bdf: u16, offset: u8) -> u32 {
        crate::arch::pci::read32(bdf, offset)
    }
    fn write32(&mut self, bdf: u16, offset: u8, value: u32) {
        crate::arch::pci::write32(bdf, offset, value)
    }
}

/// Sizes every PCI function's BARs while this is the only CPU running
/// (`pci_inventory` says why it must be now).
fn inventory_pci() {
    let found = crate::pci_inventory::keep(crate::pci_inventory::walk(&mut ConfigPorts));
    kprintln!(
        "pci: {} functions, their BARs sized{}",
        found.functions.len(),
        if found.left_out > 0 {
            " (more than can be assigned: the rest left out)"
        } else {
            ""
        }
    );
}

fn vendor_str(v: &[u8; 12]) -> &str {
    core::str::from_utf8(v).unwrap_or("unknown-vendor")
}

fn map_regions<'a>(
    info: &'a BootInformation<'a>,
) -> impl Iterator<Item = (PhysRange, RegionKind)> + Clone + 'a {
    let areas = info
        .memory_map_tag()
        .map(|t| t.memory_areas())
        .unwrap_or(&[]);
    areas.iter().map(|a| {
        let kind = if a.typ() == MemoryAreaType::Available {
            RegionKind::Usable
        } else {
            RegionKind::Unusable
        };
        (PhysRange::new(a.start_address(), a.end_address()), kind)
    })
}

/// Builds the frame allocator, keeping the kernel, boot information, modules and low MiB.
fn init_frames(info: &BootInformation<'_>) -> FrameAllocator {
    let kernel = PhysRange::new(
        (&raw const __kernel_phys_start) as u64,
        (&raw const __kernel_virt_end) as u64 - KERNEL_VMA,
    );
    let mbi = PhysRange::new(
        info.start_address() as u64 - PHYS_OFFSET,
        info.end_address() as u64 - PHYS_OFFSET,
    );
    let mut reserved: heapless::Vec<PhysRange, 64> = heapless::Vec::new();
    let _ = reserved.push(PhysRange::new(0, MIB));
    let _ = reserved.push(kernel);
    let _ = reserved.push(mbi);
    for m in info.module_tags() {
        let r = PhysRange::new(m.start_address() as u64, m.end_address() as u64);
        if reserved.push(r).is_err() {
            panic!("more than 61 boot modules");
        }
        kprintln!(
            "module: {:#x}-{:#x} {}",
            r.start,
            r.end,
            m.cmdline().unwrap_or("(no command line)")
        );
    }
    let regions = map_regions(info);
    let usable = frames::usable_bytes(regions.clone()).unwrap_or(0);
    let top = regions
        .clone()
        .filter(|(_, k)| *k == RegionKind::Usable)
        .map(|(r, _)| r.end)
        .max()
        .unwrap_or(0);
    let mut ranges = FreeRanges::new(regions.clone(), &reserved)
        .unwrap_or_else(|e| panic!("cannot use the memory map: {e}"));
    // The run-time allocator's bitmap: a bit per frame, in frames of its own.
    let words = FrameAllocator::words_for(&ranges);
    let pages = (words as u64 * 8).div_ceil(frames::FRAME_SIZE);
    let run = ranges
        .allocate_contiguous(pages)
        .filter(|r| r.first().addr() + pages * frames::FRAME_SIZE <= 1 << 32)
        .unwrap_or_else(|| panic!("no {pages} contiguous frames below 4 GiB for the frame bitmap"));
    let at = phys_to_virt(run.first().addr()) as *mut u64;
    // SAFETY: the run was just taken from the free ranges (no one else gets
    // it), lies below 4 GiB (both physmaps map it), holds `words` u64s, page aligned.
    let bits = unsafe { core::slice::from_raw_parts_mut(at, words) };
    let allocator = FrameAllocator::new(&ranges, bits)
        .unwrap_or_else(|e| panic!("cannot use the memory map: {e}"));
    kprintln!(
        "memory: usable {} KiB in {} map entries, top of RAM {:#x}; kernel {:#x}-{:#x}, boot info {:#x}-{:#x}; {} KiB free",
        usable / 1024,
        regions.count(),
        top,
        kernel.start,
        kernel.end,
        mbi.start,
        mbi.end,
        allocator.free_bytes() / 1024
    );
    allocator
}

/// The physical ranges the physmap covers: RAM, ACPI memory and the first 2 MiB (BIOS, VGA).
fn physmap_ranges(info: &BootInformation<'_>) -> heapless::Vec<PhysRange, 128> {
    let mut v = heapless::Vec::new();
    let _ = v.push(PhysRange::new(0, 2 * MIB));
    let areas = info
        .memory_map_tag()
        .map(|t| t.memory_areas())
        .unwrap_or(&[]);
    for a in areas {
        let wanted = matches!(
            a.typ(),
            MemoryAreaType::Available
                | MemoryAreaType::AcpiAvailable
                | MemoryAreaType::ReservedHibernate
        );
        if wanted
            && v.push(PhysRange::new(a.start_address(), a.end_address()))
                .is_err()
        {
            kprintln!(
                "warning: memory map too long; RAM above {:#x} is not used",
                a.start_address()
            );
            break;
        }
    }
    v
}

/// What ACPI says about the I/O APIC: its address and the ISA overrides.
type IoApicInfo = Option<(u64, heapless::Vec<crate::arch::ioapic::Override, 16>)>;

/// What ACPI says about DMA remapping (the DMAR table, read or refused).
type DmarInfo = Option<Result<crate::dma_remap::Dmar, crate::dma_remap::DmarError>>;

/// Reads ACPI unless told not to; returns the APIC ids of the CPUs found,
/// the I/O APIC and the DMA remapping units.
fn init_acpi(
    info: &BootInformation<'_>,
    settings: &Settings,
) -> (heapless::Vec<u32, 256>, IoApicInfo, DmarInfo) {
    if settings.noacpi {
        kprintln!(
            "acpi: disabled by {}",
            if settings.ignorebiostables {
                "ignorebiostables"
            } else {
                "noacpi"
            }
        );
        return (heapless::Vec::new(), None, None);
    }
    let rsdp = info
        .rsdp_v2_tag()
        .map(|t| t as *const _ as *const u8 as u64)
        .or_else(|| {
            info.rsdp_v1_tag()
                .map(|t| t as *const _ as *const u8 as u64)
        })
        .map(|tag_va| tag_va - PHYS_OFFSET + 8);
    let Some(rsdp) = rsdp else {
        kprintln!("acpi: the loader passed no RSDP; continuing without ACPI");
        return (heapless::Vec::new(), None, None);
    };
    match acpi::read(rsdp) {
        Ok(p) => {
            kprintln!(
                "acpi: MADT {} cpus, {} I/O APICs; FADT reset {}; S5 {}",
                p.cpu_apic_ids.len(),
                p.io_apics,
                if p.reset.is_some() {
                    "register"
                } else {
                    "none"
                },
                if p.s5.is_some() && p.pm1a_control.is_some() {
                    "available"
                } else {
                    "none"
                }
            );
            reset::set_controls(&p);
            let ioapic = p.io_apic_address.map(|a| (a, p.overrides.clone()));
            (p.cpu_apic_ids, ioapic, p.dmar)
        }
        Err(e) => {
            kprintln!("warning: acpi: cannot read the tables ({e}); continuing without ACPI");
            (heapless::Vec::new(), None, None)
        }
    }
}

/// CPUs the hypervisor may use: one with `nosmp`, first threads only with `noht`.
fn eligible_cpus(apic_ids: &[u32], settings: &Settings) -> usize {
    if settings.nosmp || apic_ids.is_empty() {
        return 1;
    }
    if settings.noht {
        let smt_mask = (1u32 << cpu::smt_id_bits()) - 1;
        return apic_ids
            .iter()
            .filter(|&&id| id & smt_mask == 0)
            .count()
            .max(1);
    }
    apic_ids.len()
}

/// Test only: what the first AP does once it is up (`ktest=hang_ap`: spin
/// with interrupts off for the watchdog to catch; `ktest=stackoverflow_ap`:
/// overflow its kernel stack into the guard page).
static FIRST_AP_TEST: spin::Once<TestHook> = spin::Once::new();

/// Switches SVM on for CPU `cpu` with two fresh frames (its host save
/// area and host VMCB), if the CPU has it; says what it has.
fn enable_svm(cpu: usize) -> crate::arch::svm::Support {
    use crate::arch::svm;
    let support = svm::probe();
    if !matches!(support, svm::Support::Ready { .. }) {
        return support;
    }
    let pages = memory::with_frames(|f| f.allocate().zip(f.allocate()));
    let Some((hsave, host_vmcb)) = pages else {
        kprintln!("warning: hvm: no frames for CPU {cpu}'s host state");
        return support;
    };
    crate::arch::addrspace::zero_frame(hsave);
    crate::arch::addrspace::zero_frame(host_vmcb);
    svm::enable(cpu, hsave, host_vmcb, &crate::hvm::msr::PASSED_THROUGH)
}

/// What each AP runs once its CPU is set up: the idle loop, which takes
/// vCPUs as the scheduler gives them (or the first AP's test).
fn ap_runs(cpu: usize) -> ! {
    if crate::arch::svm::ready() {
        let support = enable_svm(cpu);
        if !matches!(support, crate::arch::svm::Support::Ready { .. }) {
            kprintln!("warning: cpu {}: {}", cpu, support.abi().describe());
        }
    }
    match (cpu, FIRST_AP_TEST.get()) {
        (1, Some(TestHook::HangAp)) => {
            kprintln!("ktest: CPU 1 spinning with interrupts off");
            loop {
                core::hint::spin_loop();
            }
        }
        (1, Some(TestHook::StackOverflowAp)) => {
            kprintln!("ktest: CPU 1 overflows its kernel stack");
            let depth = recurse(0);
            kprintln!("ktest: recursion returned {depth}?!");
        }
        _ => {}
    }
    trap::idle()
}

/// Starts the eligible APs; they take their timer and wait in the idle loop.
fn start_application_processors(apic_ids: &[u32], settings: &Settings, timer_count: u32) {
    let me = apic::id();
    let eligible = eligible_ids(apic_ids, settings);
    let others: heapless::Vec<u32, 256> = eligible.iter().copied().filter(|&id| id != me).collect();
    if others.is_empty() {
        kprintln!("smp: 1 CPU running");
        return;
    }
    let started = crate::arch::smp::start_aps(&others, timer_count, ap_runs);
    kprintln!(
        "smp: {} CPUs running (the boot CPU and {} of {} application processors)",
        crate::arch::smp::online(),
        started,
        others.len()
    );
}

/// APIC ids of the CPUs the hypervisor may use (see `eligible_cpus`).
fn eligible_ids(apic_ids: &[u32], settings: &Settings) -> heapless::Vec<u32, 256> {
    if settings.nosmp || apic_ids.is_empty() {
        return heapless::Vec::new();
    }
    let smt_mask = if settings.noht {
        (1u32 << cpu::smt_id_bits()) - 1
    } else {
        0
    };
    apic_ids
        .iter()
        .copied()
        .filter(|&id| id & smt_mask == 0)
        .collect()
}

/// Checks `dom0_mem` against free memory; clamps it with a warning if it does not fit.
fn reserve_domain0(settings: &Settings) -> u64 {
    let free_kib = memory::free_bytes() / 1024;
    // Keep an eighth of free memory (at least 4 MiB) for the kernel itself.
    let headroom = (free_kib / 8).max(4096);
    let limit = free_kib.saturating_sub(headroom);
    if settings.dom0_mem_kib > limit {
        kprintln!(
            "warning: dom0_mem={}K exceeds available memory; domain 0 gets {}K",
            settings.dom0_mem_kib,
            limit
        );
        kprintln!("dom0: {}K set aside", limit);
        limit
    } else {
        kprintln!("dom0: {}K set aside", settings.dom0_mem_kib);
        settings.dom0_mem_kib
    }
}

fn run_test_hook(hook: TestHook) {
    kprintln!("ktest: {:?}", hook);
    match hook {
        TestHook::Panic => panic!("ktest=panic requested"),
        TestHook::PageFault => {
            let bad = 0x7fff_dead_0000u64 as *const u64;
            // SAFETY: deliberately unsound: this address is unmapped and the
            // read must fault. Only reachable with ktest=pagefault.
            let v = unsafe { core::ptr::read_volatile(bad) };
            kprintln!("ktest: read {v} from an unmapped address?!");
        }
        TestHook::ReadUserPage | TestHook::RunUserPage => {
            let Some(va) = map_a_user_page() else {
                kprintln!("ktest: no frame for the ring-3 page");
                return;
            };
            if hook == TestHook::ReadUserPage {
                // SAFETY: deliberately unsound: a ring-3 page, which SMAP
                // keeps the kernel from reading; the read must fault.
                let v = unsafe { core::ptr::read_volatile(va as *const u64) };
                kprintln!("ktest: read {v} from a ring-3 page?!");
            } else {
                // SAFETY: deliberately unsound: a ring-3 page (holding
                // `ret`), which SMEP keeps the kernel from running; the
                // call must fault.
                let f: extern "C" fn() = unsafe { core::mem::transmute(va as usize) };
                f();
                kprintln!("ktest: ran a ring-3 page?!");
            }
        }
        TestHook::StackOverflow => {
            let depth = recurse(0);
            kprintln!("ktest: recursion returned {depth}?!");
        }
        TestHook::Hang => {
            kprintln!("ktest: spinning with interrupts off");
            x86_64::instructions::interrupts::disable();
            loop {
                core::hint::spin_loop();
            }
        }
        // The first AP does it as it comes up (`arch::smp`).
        TestHook::HangAp | TestHook::StackOverflowAp => {}
        TestHook::PowerOff => {
            kprintln!("poweroff: ACPI S5");
            if let Err(why) = reset::power_off() {
                kprintln!("poweroff: failed: {why}");
            }
        }
    }
}

/// Loads a fresh address space with one ring-3 page (readable, writable,
/// executable, holding `ret`s) at a fixed address, for `ktest=smap` and
/// `ktest=smep`; the address, or `None` without a frame.
fn map_a_user_page() -> Option<u64> {
    use crate::arch::addrspace::{Access, AddressSpace, Kind};
    const VA: u64 = 0x7fff_5a50_0000;
    let kernel = memory::kernel_root();
    let space = memory::with_frames(|f| {
        let mut space = AddressSpace::new(f, kernel).ok()?;
        let frame = f.allocate()?;
        memory::write_frame(frame, 0, &[0xc3; 16]);
        let access = Access {
            write: true,
            execute: true,
        };
        space.map(f, VA, frame.addr(), access, Kind::Owned).ok()?;
        Some(space)
    })?;
    // The test ends in a panic: the space is never freed.
    space.activate();
    Some(VA)
}

/// Recurses until the stack runs into its guard page (the opaque stop
/// condition keeps the compiler from proving it infinite).
#[inline(never)]
/// Recurses until the stack overflows into its guard page (`ktest`).
fn recurse(n: u64) -> u64 {
    let buf = core::hint::black_box([n; 64]);
    if core::hint::black_box(buf[3]) == u64::MAX {
        return 0;
    }
    core::hint::black_box(recurse(buf[3] + 1)) + buf[7]
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off (the CPU has none)"
    }
}
