//! Domain lifecycle: create, load an image, unpause, pause, shut down,
//! crash, destroy.
//!
//! Owns: building a domain's memory (all of its budget allocated and zeroed at
//! creation: shared pages, stack, heap), loading a checked ELF image into it
//! (image pages are taken from the heap's top, so the budget never grows), and
//! tearing everything down again. A failed step changes nothing.

use super::{console, events, grants, Domain, Kernel, Life, Vcpu, VcpuRef, MAX_GRANTS, MAX_VCPUS};
use crate::arch::addrspace::{Access, AddressSpace, Kind, MapError};
use crate::arch::syscall::initial_frame;
use crate::domain::ports::Ports;
use crate::domain::shared_pages::{settle_frame, with_start_info};
use crate::elf::{self, ImageSource};
use crate::frame_pool::FrameAllocator;
use crate::frames::Frame;
use crate::sched::{self, Entity, ALL_CPUS};
use ipc_abi::domain::{CrashRecord, DomainId, ShutdownReason, CMDLINE_MAX, NAME_MAX};
use ipc_abi::hypercall::{Destroyed, Error};
use ipc_abi::layout::*;
use ipc_abi::shared::{Virq, START_INFO_MAGIC};

/// Largest memory budget a domain may ask for (16 GiB).
pub const MAX_DOMAIN_KIB: u64 = 16 << 20;
const STACK_PAGES: u64 = STACK_SIZE / PAGE_SIZE;
/// Pages of the budget that are not heap: start info, event page, stack.
const FIXED_PAGES: u64 = 2 + STACK_PAGES;

/// What a new domain is to be.
pub struct Spec<'a> {
    pub name: &'a str,
    pub memory_kib: u64,
    pub weight: u32,
    pub cap_percent: u32,
    pub control: bool,
    /// vCPUs (1..=MAX_VCPUS; vCPU 0 runs from the entry point).
    pub vcpus: u32,
    /// An HVM guest: its memory is guest-physical RAM from address 0 under
    /// a nested page table, and its vCPUs run under SVM.
    pub hvm: bool,
}

fn map_err(e: MapError) -> Error {
    match e {
        MapError::OutOfFrames => Error::OutOfResources,
        _ => Error::InvalidArgument,
    }
}

fn rw() -> Access {
    Access {
        write: true,
        execute: false,
    }
}

fn ro() -> Access {
    Access {
        write: false,
        execute: false,
    }
}

/// Maps `count` fresh zeroed frames of the domain at `va`.
fn map_fresh(
    space: &mut AddressSpace,
    frames: &mut FrameAllocator,
    va: u64,
    count: u64,
    access: Access,
    fill: Fill,
) -> Result<Frame, Error> {
    let mut first = None;
    for i in 0..count {
        let f = frames.allocate().ok_or(Error::OutOfResources)?;
        if fill == Fill::Zeroed {
            crate::arch::addrspace::zero_frame(f);
        }
        if let Err(e) = space.map(frames, va + i * PAGE_SIZE, f.addr(), access, Kind::Owned) {
            let _ = frames.free(f);
            return Err(map_err(e));
        }
        first.get_or_insert(f);
    }
    first.ok_or(Error::InvalidArgument)
}

/// What `map_fresh` leaves in the frames it maps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fill {
    Zeroed,
    /// Whatever their previous owner left: only for a heap `load_into`
    /// settles before anyone sees it (`Domain::stale_heap`).
    Stale,
}

/// Whether `name` may name a domain: printable ASCII, 1 to `NAME_MAX` bytes.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name.len() <= NAME_MAX && name.iter().all(|b| b.is_ascii_graphic())
}

/// Gives domain `index` the name `name`, unless it is not a valid name or
/// another live domain has it.
pub fn rename(k: &mut Kernel, index: usize, name: &[u8]) -> Result<(), Error> {
    let name = core::str::from_utf8(name)
        .ok()
        .filter(|n| valid_name(n.as_bytes()))
        .ok_or(Error::InvalidArgument)?;
    let d = k.domain(index).ok_or(Error::NoSuchDomain)?;
    if d.name.as_str() == name {
        return Ok(());
    }
    if k.name_taken(name) {
        return Err(Error::NameTaken);
    }
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    kprintln!("domain {} ({}) is now named {}", d.id, d.name, name);
    d.name.clear();
    // Cannot fail: `valid_name` bounds the length by the string's capacity.
    let _ = d.name.push_str(name);
    Ok(())
}

/// Creates a paused, empty domain. Nothing is left behind if it fails.
pub fn create(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    spec: &Spec<'_>,
) -> Result<DomainId, Error> {
    let name_ok = valid_name(spec.name.as_bytes());
    let vcpus_ok = (1..=MAX_VCPUS as u32).contains(&spec.vcpus);
    if !name_ok || !vcpus_ok || spec.weight > 65535 || spec.cap_percent > 100 {
        return Err(Error::InvalidArgument);
    }
    if !(MIN_DOMAIN_KIB..=MAX_DOMAIN_KIB).contains(&spec.memory_kib) {
        return Err(Error::InvalidArgument);
    }
    if k.name_taken(spec.name) {
        return Err(Error::NameTaken);
    }
    let pages = spec.memory_kib / 4;
    // Page tables need frames too: about one per 512 pages, plus the upper levels.
    if frames.free_bytes() / PAGE_SIZE < pages + pages / 500 + 16 {
        return Err(Error::OutOfResources);
    }
    if spec.hvm && !crate::arch::svm::ready() {
        return Err(Error::Disabled);
    }
    let (index, id) = k.reserve_slot().ok_or(Error::OutOfResources)?;
    let time_frame = k.time_frame.ok_or(Error::DomainState)?;
    let space = if spec.hvm {
        AddressSpace::nested(frames)
    } else {
        AddressSpace::new(frames, k.kernel_pml4)
    };
    let mut space = space.map_err(map_err)?;
    // An HVM guest's RAM is reserved now and populated as it is touched.
    let ram_reserved = if spec.hvm {
        super::guest_ram::frames_for(pages)
    } else {
        0
    };
    if !frames.reserve(ram_reserved) {
        space.destroy(frames, k.kernel_pml4);
        return Err(Error::OutOfResources);
    }
    // Two frames per HVM vCPU: its VMCB and its state page.
    let mut vmcbs: heapless::Vec<Frame, { 2 * MAX_VCPUS }> = heapless::Vec::new();
    let built = if spec.hvm {
        build_hvm(&mut space, frames, time_frame, spec.vcpus, &mut vmcbs)
    } else {
        build_ring3(&mut space, frames, time_frame, pages)
    };
    // Frames for the kernel's own record of it (`storage`), last.
    let built = built.and_then(|pages| {
        super::storage::Reserved::take(frames)
            .map(|place| (pages, place))
            .ok_or(Error::OutOfResources)
    });
    let ((start_info, event_page), place) = match built {
        Ok(v) => v,
        Err(e) => {
            for f in vmcbs {
                let _ = frames.free(f);
            }
            space.destroy(frames, k.kernel_pml4);
            super::guest_ram::release(frames, ram_reserved);
            return Err(e);
        }
    };
    let heap_pages = if spec.hvm {
        0
    } else {
        pages.saturating_sub(FIXED_PAGES)
    };
    let npt = space.root();
    let mut vmcbs = vmcbs.into_iter();
    with_start_info(start_info, |si| {
        si.magic = START_INFO_MAGIC;
        si.domain_id = id.0;
        si.control = spec.control as u32;
        si.memory_kib = spec.memory_kib;
        si.heap_base = if spec.hvm { 0 } else { HEAP_BASE };
        si.heap_size = heap_pages * PAGE_SIZE;
    });
    let mut name = heapless::String::new();
    let _ = name.push_str(spec.name);
    let start_pass = virtual_time(k);
    let loads = k.loads();
    let online = crate::arch::smp::online_mask();
    let affinity = default_affinity(spec.hvm, online);
    let weight = if spec.weight == 0 {
        sched::DEFAULT_WEIGHT
    } else {
        spec.weight
    };
    k.install(
        index,
        id,
        place,
        #[inline(always)]
        || Domain {
            id,
            name,
            life: Life::Paused,
            control: spec.control,
            space,
            memory_kib: spec.memory_kib,
            heap_pages,
            image_loaded: false,
            stale_heap: heap_pages > 0,
            vcpus: core::array::from_fn(|v| Vcpu {
                up: v == 0,
                frame: initial_frame(0, STACK_TOP, START_INFO),
                blocked: false,
                sched: Entity::new(
                    weight,
                    spec.cap_percent,
                    start_pass,
                    crate::arch::time::tsc_per_tick(),
                ),
                timer_deadline: 0,
                timer_fired: false,
                cpu: crate::sched::least_loaded(&loads, affinity & online),
                affinity,
                loaded_on: None,
                hvm: (v < spec.vcpus as usize)
                    .then(|| vmcbs.next().zip(vmcbs.next()))
                    .flatten()
                    .map(|(f, st)| crate::hvm::vcpu::HvmVcpu::new(f, st, npt, v as u32)),
                io_wait: false,
                extint: [0; 4],
                ipis: [0; 4],
                init_received: false,
                exits: Default::default(),
            }),
            nr_vcpus: spec.vcpus as usize,
            fault_fixup: None,
            ports: Ports::new(),
            grants: [None; MAX_GRANTS],
            window: [None; GRANT_SLOTS as usize],
            crash: CrashRecord::EMPTY,
            console: console::RateLimit::new(),
            io_ports: heapless::Vec::new(),
            irqs: 0,
            pci: heapless::Vec::new(),
            dma: None,
            device_next: DEVICE_WINDOW,
            started: false,
            start_info,
            event_page,
            teardown: false,
            suspended: false,
            device_model: Default::default(),
            dma_space: None,
            dma_faults: 0,
            max_kib: spec.memory_kib,
            ram_reserved,
            cpu_time: super::CpuTime::Counting { left_out: 0 },
        },
    );
    trace_event!("dom{=u32} created", id.0);
    Ok(id)
}

/// A ring-3 domain's memory: the shared pages, its stack, and the heap
/// (where its image will be loaded from).
fn build_ring3(
    space: &mut AddressSpace,
    frames: &mut FrameAllocator,
    time_frame: Frame,
    pages: u64,
) -> Result<(Frame, Frame), Error> {
    let start_info = map_fresh(space, frames, START_INFO, 1, ro(), Fill::Zeroed)?;
    let event_page = map_fresh(space, frames, EVENT_PAGE, 1, rw(), Fill::Zeroed)?;
    space
        .map(frames, TIME_PAGE, time_frame.addr(), ro(), Kind::Borrowed)
        .map_err(map_err)?;
    map_fresh(
        space,
        frames,
        STACK_TOP - STACK_SIZE,
        STACK_PAGES,
        rw(),
        Fill::Zeroed,
    )?;
    let heap = pages.saturating_sub(FIXED_PAGES);
    if heap > 0 {
        map_fresh(space, frames, HEAP_BASE, heap, rw(), Fill::Stale)?;
    }
    Ok((start_info, event_page))
}

/// An HVM guest's memory but its RAM (reserved by `create`, populated as
/// touched: `guest_ram`): the shared pages at `hvm::SHARED_GPA`, and two
/// frames per vCPU (into `vmcbs`).
fn build_hvm(
    space: &mut AddressSpace,
    frames: &mut FrameAllocator,
    time_frame: Frame,
    vcpus: u32,
    vmcbs: &mut heapless::Vec<Frame, { 2 * MAX_VCPUS }>,
) -> Result<(Frame, Frame), Error> {
    use ipc_abi::hvm::SHARED_GPA;
    let start_info = map_fresh(space, frames, SHARED_GPA, 1, ro(), Fill::Zeroed)?;
    let event_page = map_fresh(space, frames, SHARED_GPA + PAGE_SIZE, 1, rw(), Fill::Zeroed)?;
    space
        .map(
            frames,
            SHARED_GPA + 2 * PAGE_SIZE,
            time_frame.addr(),
            ro(),
            Kind::Borrowed,
        )
        .map_err(map_err)?;
    for _ in 0..2 * vcpus {
        let f = frames.allocate().ok_or(Error::OutOfResources)?;
        let _ = vmcbs.push(f);
    }
    Ok((start_info, event_page))
}

/// Where a new domain's vCPUs may run until pinned (`cpus =`, `domain
/// pin`): anywhere, but an HVM guest's stay off the boot CPU when another
/// is online. The boot CPU keeps time, takes the devices' interrupts and
/// fires every vCPU's timer; and under QEMU's TCG (7.2 and 10) a guest on
/// it triple-faulted about once in twelve boots: another CPU thread's
/// FXRSTOR clears IGNNE in the first CPU's flags by a read-modify-write
/// (`cpu_clear_ignne`) that races with that CPU's VMRUN setting nested
/// paging there, and the guest's next walk reads its tables without it
/// (docs/reliability.md). With one CPU there is no other thread.
fn default_affinity(hvm: bool, online: u64) -> u64 {
    if hvm && online & !1 != 0 {
        ALL_CPUS & !1
    } else {
        ALL_CPUS
    }
}

/// What a vCPU is measured against as it wakes: the scheduler's virtual
/// time (see [`virtual_time`]), and the lowest pass of the runnable vCPUs
/// of its CPU (it is not one: it is waking).
pub fn wake_base(k: &Kernel, at: VcpuRef) -> sched::WakeBase {
    wake_base_on(k, k.vcpu(at).map_or(0, |v| v.cpu))
}

/// [`wake_base`] for a vCPU in CPU `cpu`'s run queue (for a caller that
/// has read it already).
#[inline(always)]
pub fn wake_base_on(k: &Kernel, cpu: usize) -> sched::WakeBase {
    // One pass: the lowest pass of runnable vCPUs (everywhere, and on this
    // CPU) and of all started ones (the virtual time when none is
    // runnable). `u64::MAX` stands for none while the loop runs (a pass
    // never reaches it: `sched::Entity::charge_until`), which keeps the
    // loop to plain compares: it runs at every wake-up, over every domain.
    let (mut runnable, mut live, mut here) = (u64::MAX, u64::MAX, u64::MAX);
    for (_, d) in k.live_domains() {
        let running = d.life == Life::Running;
        for v in d.existing_vcpus() {
            if !v.up {
                continue;
            }
            let pass = v.sched.pass;
            live = live.min(pass);
            if running && !v.blocked {
                runnable = runnable.min(pass);
                if v.cpu == cpu {
                    here = here.min(pass);
                }
            }
        }
    }
    let floor = if runnable != u64::MAX {
        runnable
    } else if live != u64::MAX {
        live
    } else {
        0
    };
    sched::WakeBase {
        floor,
        competition: (here != u64::MAX).then_some(here),
    }
}

/// The scheduler's virtual time: the lowest pass among runnable vCPUs
/// (those that compete now), or among all started ones when none is. A
/// newcomer starts there and a sleeper is brought up to it, so neither
/// gets credit for time it did not compete: measured against sleepers
/// too, a domain created or woken while busy ones ran could run alone
/// until it caught up with them (a restored domain spinning at its start
/// kept domain 0 off the CPU for seconds).
pub fn virtual_time(k: &Kernel) -> u64 {
    let started = || {
        k.live_domains()
            .flat_map(|(_, d)| d.existing_vcpus().filter(|v| v.up).map(move |v| (d, v)))
    };
    started()
        .filter(|(d, v)| d.life == Life::Running && !v.blocked)
        .map(|(_, v)| v.sched.pass)
        .min()
        .or_else(|| started().map(|(_, v)| v.sched.pass).min())
        .unwrap_or(0)
}

/// Loads a checked ELF image into a paused domain that has none yet.
pub fn load_into(
    d: &mut Domain,
    frames: &mut FrameAllocator,
    image: &(impl ImageSource + ?Sized),
) -> Result<u64, Error> {
    if d.image_loaded || d.life != Life::Paused {
        return Err(Error::DomainState);
    }
    let plan = elf::plan(image, d.heap_pages).map_err(|e| {
        kprintln!("domain {}: image refused: {}", d.id, e);
        Error::BadImage
    })?;
    debug_assert!(plan.pages <= d.heap_pages);
    // The caller has checked the source is readable throughout, so the reads
    // below do not fail half-way; the error path is defensive.
    let mut heap_top = d.heap_pages;
    let mut page_buf = [0u8; PAGE_SIZE as usize];
    for seg in plan.segments.iter() {
        let (first, end) = seg.pages();
        let mut va = first;
        while va < end {
            heap_top -= 1;
            let heap_va = HEAP_BASE + heap_top * PAGE_SIZE;
            let frame = d
                .space
                .unmap_owned(frames, heap_va)
                .ok_or(Error::OutOfResources)?;
            // The page's bytes: the file's where it has some, zeroes around.
            let page_start = va.max(seg.vaddr);
            let page_end = (va + PAGE_SIZE).min(seg.vaddr + seg.filesz).max(page_start);
            let (at, n) = ((page_start - va) as usize, (page_end - page_start) as usize);
            page_buf[..at].fill(0);
            page_buf[at + n..].fill(0);
            if n > 0 {
                let file_at = seg.file_offset + (page_start - seg.vaddr);
                if !image.read(file_at, &mut page_buf[at..at + n]) {
                    // Put the frame back where it was; the domain stays as it was, less the pages moved.
                    let _ = d
                        .space
                        .map(frames, heap_va, frame.addr(), rw(), Kind::Owned);
                    return Err(Error::BadAddress);
                }
            }
            settle_frame(frame, Some(&page_buf));
            let access = Access {
                write: seg.writable,
                execute: seg.executable,
            };
            d.space
                .map(frames, va, frame.addr(), access, Kind::Owned)
                .map_err(map_err)?;
            va += PAGE_SIZE;
        }
    }
    // The rest of the heap: zeroes (mostly already, so mostly only read).
    let heap_end = HEAP_BASE + heap_top * PAGE_SIZE;
    d.space
        .for_each_owned(HEAP_BASE, heap_end, |frame| settle_frame(frame, None));
    d.stale_heap = false;
    d.heap_pages = heap_top;
    d.image_loaded = true;
    d.vcpus[0].frame = initial_frame(plan.entry, STACK_TOP, START_INFO);
    with_start_info(d.start_info, |si| si.heap_size = heap_top * PAGE_SIZE);
    Ok(plan.entry)
}

/// Sets the command line the domain finds in its start info.
pub fn set_cmdline(k: &mut Kernel, index: usize, cmdline: &[u8]) -> Result<(), Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if cmdline.len() > CMDLINE_MAX {
        return Err(Error::InvalidArgument);
    }
    with_start_info(d.start_info, |si| {
        si.cmdline[..cmdline.len()].copy_from_slice(cmdline);
        si.cmdline_len = cmdline.len() as u64;
    });
    Ok(())
}

/// Sets where a never-run domain's vCPU starts. Both addresses must be in the
/// user half; whether they make sense is the domain's problem (a bad one
/// crashes it, nothing else).
pub fn set_entry(k: &mut Kernel, index: usize, rip: u64, rsp: u64, arg: u64) -> Result<(), Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if d.started {
        return Err(Error::DomainState);
    }
    if rip >= USER_LIMIT || rsp > USER_LIMIT {
        return Err(Error::InvalidArgument);
    }
    d.vcpus[0].frame = initial_frame(rip, rsp, arg);
    Ok(())
}

/// Lets a loaded, paused domain run.
pub fn unpause(k: &mut Kernel, index: usize) -> Result<(), Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if d.life != Life::Paused || !d.image_loaded {
        return Err(Error::DomainState);
    }
    d.life = Life::Running;
    super::cpu_time::thaw(d, crate::arch::cpu::rdtsc());
    d.started = true;
    d.suspended = false;
    trace_event!("dom{=u32} state running", d.id.0);
    for vcpu in 0..d.nr_vcpus {
        let at = VcpuRef { dom: index, vcpu };
        if !k.vcpu(at).is_some_and(|v| v.up) {
            continue;
        }
        let min = wake_base(k, at);
        if let Some(v) = k.vcpu_mut(at) {
            v.sched.wake(min);
        }
    }
    k.resched(index);
    Ok(())
}

/// Stops a running domain's vCPUs until unpaused.
pub fn pause(k: &mut Kernel, index: usize) -> Result<(), Error> {
    let d = k.domain_mut(index).ok_or(Error::NoSuchDomain)?;
    if d.life != Life::Running {
        return Err(Error::DomainState);
    }
    d.life = Life::Paused;
    super::cpu_time::freeze(d, crate::arch::cpu::rdtsc());
    trace_event!("dom{=u32} state paused", d.id.0);
    k.resched(index);
    Ok(())
}

/// Stops a domain for good with a reason; the control domain is told.
pub fn stop(k: &mut Kernel, index: usize, life: Life, crash: Option<CrashRecord>) {
    let Some(d) = k.domain_mut(index) else { return };
    if matches!(d.life, Life::Crashed | Life::Shutdown(_)) {
        return;
    }
    d.life = life;
    super::cpu_time::freeze(d, crate::arch::cpu::rdtsc());
    trace_event!("dom{=u32} state {}", d.id.0, life);
    if let Some(mut c) = crash {
        c.at_ns = crate::arch::time::now_ns();
        c.at_busy_tsc = crate::arch::time::busy_tsc();
        d.crash = c;
    }
    let id = d.id;
    match life {
        Life::Crashed => {
            let c = &d.crash;
            if c.vector == u64::MAX {
                kprintln!("domain {} ({}) crashed: {}", id, d.name, c.message());
            } else {
                kprintln!(
                    "domain {} ({}) crashed: {} (vector {}) error={:#x} rip={:#x} addr={:#x}",
                    id,
                    d.name,
                    crate::arch::idt::exception_name(c.vector),
                    c.vector,
                    c.error_code,
                    c.rip,
                    c.address
                );
            }
        }
        Life::Shutdown(r) => kprintln!("domain {} ({}) shut down: {:?}", id, d.name, r),
        _ => {}
    }
    k.resched(index);
    super::devices::release_console(k, index);
    stop_served_guests(k, index);
    notify_control(k, index);
}

/// Domain `index` stopped or is going: the HVM guests it was the device
/// model of crash (nothing else can answer their I/O; their policy then
/// applies) and forget its page.
fn stop_served_guests(k: &mut Kernel, index: usize) {
    let Some(id) = k.domain(index).map(|d| d.id) else {
        return;
    };
    // The guests it serves, or was to serve (it died starting).
    let served: heapless::Vec<usize, { super::MAX_DOMAINS }> = k
        .live_domains()
        .filter(|(_, d)| {
            let link = d.device_model;
            link.serving.is_some_and(|(dm, _, _)| dm == index) || link.allowed == Some(id)
        })
        .filter(|(g, _)| *g != index)
        .map(|(g, _)| g)
        .collect();
    for g in served {
        if let Some(d) = k.domain_mut(g) {
            d.device_model = Default::default();
        }
        let mut c = CrashRecord::EMPTY;
        c.vector = u64::MAX;
        let text = b"hvm: its device model stopped";
        c.message[..text.len()].copy_from_slice(text);
        c.message_len = text.len() as u32;
        stop(k, g, Life::Crashed, Some(c));
    }
}

/// Tells the control domain (unless it is the subject) that a domain changed state.
pub fn notify_control(k: &mut Kernel, subject: usize) {
    if let Some(c) = k.control_domain() {
        if c != subject {
            events::raise_virq(k, c, Virq::DomainState);
        }
    }
}

/// Destroys a domain: ports closed, foreign pages unmapped, grants ended
/// (a frame others still map stays theirs until the last unmap), memory
/// freed. Its id goes stale.
pub fn destroy(
    k: &mut Kernel,
    frames: &mut FrameAllocator,
    index: usize,
) -> Result<Destroyed, Error> {
    if k.domain(index).is_none() {
        return Err(Error::NoSuchDomain);
    }
    // A vCPU of it is loaded on another CPU, which may be running it now:
    // the last such CPU frees it as it leaves (`trap::finish`); until then
    // it is dying and no lookup finds it.
    if k.loaded_mask(index) & !(1 << super::this_cpu()) != 0 {
        if let Some(d) = k.domain_mut(index) {
            d.teardown = true;
        }
        k.resched(index);
        return Ok(Destroyed::Dying);
    }
    stop_served_guests(k, index);
    if let Some((dm, _, page)) = k.domain(index).and_then(|d| d.device_model.serving) {
        // Its device model has nothing left to serve: it is told so.
        crate::domain::shared_pages::write_frame(
            page,
            ipc_abi::hvm::GUEST_GONE_OFFSET,
            &1u32.to_le_bytes(),
        );
        events::raise_virq(k, dm, Virq::DeviceModel);
    }
    events::close_all(k, index);
    // Its devices stop DMA before its memory goes back to the allocator.
    super::pci::release_all(k, frames, index);
    super::devices::release_all(k, index);
    super::devices::release_console(k, index);
    grants::release_all(k, frames, index);
    if k.cpu().current == Some(index) {
        k.set_current(None);
        k.cpu_mut().need_resched = true;
    }
    let (id, space, hvm, ram_reserved) = k
        .remove(index, frames, |d| {
            let hvm: [_; MAX_VCPUS] = core::array::from_fn(|v| d.vcpus[v].hvm.take());
            (d.id, d.space.take(), hvm, d.ram_reserved)
        })
        .ok_or(Error::NoSuchDomain)?;
    super::guest_ram::release(frames, ram_reserved);
    trace_event!("dom{=u32} destroyed", id.0);
    #[cfg(not(feature = "trace"))]
    let _ = id;
    for state in hvm.into_iter().flatten() {
        for f in state.into_frames() {
            let _ = frames.free(f);
        }
    }
    space.destroy(frames, k.kernel_pml4);
    notify_control(k, index);
    Ok(Destroyed::Gone)
}

/// The reason code for `Shutdown`.
pub fn shutdown_life(reason: ShutdownReason) -> Life {
    match reason {
        ShutdownReason::Crash => Life::Crashed,
        r => Life::Shutdown(r),
    }
}
