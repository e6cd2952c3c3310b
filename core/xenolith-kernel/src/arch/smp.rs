//! Application processors: bringing them up, and what they run first.
//!
//! Owns: the start-up trampoline (`boot/ap_start.S`, copied to
//! [`AP_TRAMPOLINE`]), the INIT-SIPI-SIPI sequence for each AP the MADT
//! lists and the command line allows, each AP's stacks, and `ap_main`, which
//! gives the AP its own GDT, TSS, per-CPU block and timer before it joins
//! the scheduler's idle loop. APs come up one at a time (one trampoline).

use super::cpu::MAX_CPUS;
use super::memory::{read_frame, write_frame};
use super::{apic, gdt, idt, syscall};
use crate::frames::Frame;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use zerocopy::IntoBytes;

core::arch::global_asm!(include_str!("../../boot/ap_start.S"));

/// Where the trampoline runs (a page of the low MiB, which the frame
/// allocator never hands out; the SIPI vector is its page number).
pub const AP_TRAMPOLINE: u64 = 0x8000;
/// Pages of an AP's kernel stack (as the boot stack: debug key `k` shows
/// how much of it the deepest paths take).
const KERNEL_STACK_PAGES: u64 = 32;
/// Pages of each of its three IST stacks (#DF, NMI, #MC).
const IST_PAGES: u64 = 4;

extern "C" {
    static ap_trampoline_start: u8;
    static ap_trampoline_end: u8;
}

/// Where the four boot words (CR3, stack, entry, CPU) sit in the trampoline.
const BOOT_WORDS: usize = 48;

/// CPUs running (the boot CPU counts).
static ONLINE: AtomicUsize = AtomicUsize::new(1);
/// Each CPU's APIC id, by CPU number.
static APIC_IDS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Each AP's kernel stack top (0: none).
static STACK_TOPS: [core::sync::atomic::AtomicU64; MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; MAX_CPUS];

/// Asks CPU `cpu` to reschedule now (an IPI); nothing for this CPU or an
/// offline one.
pub fn kick(cpu: usize) {
    send_vector(cpu, super::idt::VECTOR_RESCHED);
}

/// An interrupt with `vector` to CPU `cpu`; nothing for this CPU or an
/// offline one.
pub fn send_vector(cpu: usize, vector: u8) {
    if cpu == syscall::cpu_index() || cpu >= online() {
        return;
    }
    apic::send_fixed(APIC_IDS[cpu].load(Ordering::Relaxed), vector);
}

/// The local APIC id of CPU `cpu` (the boot CPU's is known from the
/// first `start_aps`; 0 before, as on every PC's boot CPU we met).
pub fn apic_id(cpu: usize) -> u32 {
    APIC_IDS.get(cpu).map_or(0, |a| a.load(Ordering::Relaxed))
}

/// An NMI to CPU `cpu` (the watchdog asks a stuck CPU to report).
pub fn nmi_to(cpu: usize) {
    if cpu < online() {
        apic::send_nmi(APIC_IDS[cpu].load(Ordering::Relaxed));
    }
}

/// Where CPU `cpu`'s kernel stack lies (bottom, top); the boot CPU's is the
/// boot stack.
pub fn kernel_stack(cpu: usize) -> Option<(u64, u64)> {
    if cpu == 0 {
        let top = super::stacks::boot_stack_top();
        return Some((super::stacks::guard_pages()[0] + 4096, top));
    }
    let top = STACK_TOPS.get(cpu)?.load(Ordering::Relaxed);
    (top != 0).then(|| (top - KERNEL_STACK_PAGES * 4096, top))
}

/// What each AP runs once its CPU is set up (the kernel's idle loop): the
/// layer above says, so this one names nothing of it.
static THEN: spin::Once<fn(usize) -> !> = spin::Once::new();

/// The CPUs running now, as a bit mask.
pub fn online_mask() -> u64 {
    (1u64 << online()) - 1
}
/// The APIC timer's initial count, as calibrated on the boot CPU.
static TIMER_COUNT: AtomicU32 = AtomicU32::new(0);

/// CPUs running now.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Starts the APs with APIC ids `ids` (the boot CPU's left out) as CPUs 1,
/// 2, ..., each going on with `then(cpu)` once set up; returns how many
/// came up. `timer_count` is the boot CPU's.
pub fn start_aps(ids: &[u32], timer_count: u32, then: fn(usize) -> !) -> usize {
    THEN.call_once(|| then);
    TIMER_COUNT.store(timer_count, Ordering::Relaxed);
    APIC_IDS[0].store(apic::id(), Ordering::Relaxed);
    let Some(cr3) = boot_page_tables() else {
        return 0;
    };
    copy_trampoline();
    let mut started = 0;
    for &id in ids.iter().take(MAX_CPUS - 1) {
        let cpu = started + 1;
        let Some(stacks) = Stacks::allocate() else {
            break;
        };
        gdt::set_stacks(cpu, stacks.ist_tops(), stacks.kernel_top());
        syscall::set_kernel_stack(cpu, stacks.kernel_top());
        set_boot_words(
            cr3,
            stacks.kernel_top(),
            ap_main as *const () as u64,
            cpu as u64,
        );
        APIC_IDS[cpu].store(id, Ordering::Relaxed);
        STACK_TOPS[cpu].store(stacks.kernel_top(), Ordering::Relaxed);
        let before = online();
        apic::send_init(id);
        delay_us(10_000);
        for _ in 0..2 {
            apic::send_startup(id, (AP_TRAMPOLINE >> 12) as u8);
            if wait_online(before, 200) {
                break;
            }
        }
        if !wait_online(before, 100_000) {
            super::log::print(format_args!(
                "warning: smp: the CPU with APIC id {id} did not start\n"
            ));
            continue;
        }
        started += 1;
    }
    started
}

/// Waits up to `us` microseconds for a CPU to come online after `before`.
fn wait_online(before: usize, us: u64) -> bool {
    let end = super::time::now_ns() + us * 1000;
    while super::time::now_ns() < end {
        if online() > before {
            return true;
        }
        core::hint::spin_loop();
    }
    online() > before
}

fn delay_us(us: u64) {
    let end = super::time::now_ns() + us * 1000;
    while super::time::now_ns() < end {
        core::hint::spin_loop();
    }
}

/// An AP's stacks, each mapped in the kernel's device window above an
/// unmapped guard page, so an overflow faults (a double fault, on its IST
/// stack) instead of writing over the frames below (the physmap maps all
/// RAM, so a stack reached only through it has no guard).
struct Stacks {
    kernel_top: u64,
    ist_tops: [u64; 3],
}

impl Stacks {
    fn allocate() -> Option<Stacks> {
        let kernel_top = super::memory::map_stack(KERNEL_STACK_PAGES)?;
        super::stacks::paint(kernel_top - KERNEL_STACK_PAGES * 4096, kernel_top);
        let mut ist_tops = [0; 3];
        for top in ist_tops.iter_mut() {
            *top = super::memory::map_stack(IST_PAGES)?;
        }
        Some(Stacks {
            kernel_top,
            ist_tops,
        })
    }

    fn kernel_top(&self) -> u64 {
        self.kernel_top
    }

    fn ist_tops(&self) -> [u64; 3] {
        self.ist_tops
    }
}

/// A copy of the kernel's top-level page table that also maps the low
/// 2 MiB at their own address, so the trampoline survives turning paging
/// on; below 4 GiB, as a 32-bit `mov cr3` needs. Returns its address.
fn boot_page_tables() -> Option<u64> {
    let [pml4, pdpt, pd] = super::memory::with_frames(|f| {
        Some([
            f.allocate_below(1 << 32)?,
            f.allocate_below(1 << 32)?,
            f.allocate_below(1 << 32)?,
        ])
    })?;
    // SAFETY: the kernel's root page table, a frame the allocator gave at
    // boot and kept for ever.
    let root = unsafe { Frame::of_ram(super::memory::kernel_root()) };
    let mut entries = [0u64; 512];
    read_frame(root, 0, entries.as_mut_bytes());
    entries[0] = pdpt.addr() | 0x3;
    write_frame(pml4, 0, entries.as_bytes());
    let mut table = [0u64; 512];
    table[0] = pd.addr() | 0x3;
    write_frame(pdpt, 0, table.as_bytes());
    table[0] = 0x83; // 0..2 MiB, present, writable, 2 MiB page
    write_frame(pd, 0, table.as_bytes());
    Some(pml4.addr())
}

fn trampoline_bytes() -> &'static [u8] {
    let start = (&raw const ap_trampoline_start) as usize;
    let end = (&raw const ap_trampoline_end) as usize;
    // SAFETY: both symbols bound the trampoline in the kernel's rodata,
    // which is mapped readable and never written.
    unsafe { core::slice::from_raw_parts(start as *const u8, end - start) }
}

/// The page the APs start in: low RAM the allocator never hands out (it
/// keeps the first MiB), the kernel's for this alone.
fn trampoline_page() -> Frame {
    // SAFETY: 0x8000 is RAM below 1 MiB, which the frame allocator leaves
    // out (`frames.rs`), so only this code writes it; the physmap maps it.
    unsafe { Frame::of_ram(AP_TRAMPOLINE) }
}

fn copy_trampoline() {
    write_frame(trampoline_page(), 0, trampoline_bytes());
}

/// Fills the trampoline copy's four words: CR3, stack, entry, CPU number.
fn set_boot_words(cr3: u64, stack: u64, entry: u64, cpu: u64) {
    let words = [cr3, stack, entry, cpu];
    write_frame(trampoline_page(), BOOT_WORDS, words.as_bytes());
}

/// Where an AP lands in the higher half, on its own kernel stack.
extern "C" fn ap_main(cpu: u64) -> ! {
    let cpu = cpu as usize;
    super::memory::activate_kernel_space();
    gdt::init_cpu(cpu);
    idt::init();
    syscall::init_cpu(cpu);
    super::cpu::protect_kernel();
    apic::init_ap();
    apic::start_timer_count(TIMER_COUNT.load(Ordering::Relaxed));
    ONLINE.fetch_add(1, Ordering::Release);
    match THEN.get() {
        Some(then) => then(cpu),
        None => super::cpu::stop(),
    }
}
