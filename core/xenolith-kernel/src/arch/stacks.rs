//! Where the kernel stacks are and which pages guard them.
//!
//! Owns: the addresses of the stacks laid out in `boot/entry.S` (boot stack
//! and the IST stacks for #DF, NMI and #MC), each with a guard page below it
//! that the kernel page tables leave unmapped; and measuring how deep a
//! kernel stack has ever been used (it is painted with a pattern when it is
//! new, and the deepest word no longer holding it is the high-water mark:
//! debug key `k`).

extern "C" {
    static stack_guard_boot: u8;
    static stack_guard_df: u8;
    static stack_guard_nmi: u8;
    static stack_guard_mc: u8;
    static ist_df_top: u8;
    static ist_nmi_top: u8;
    static ist_mc_top: u8;
    #[link_name = "boot_stack_top"]
    static BOOT_STACK_TOP: u8;
}

/// Top of the boot stack, which becomes the CPU's kernel stack after boot.
pub fn boot_stack_top() -> u64 {
    (&raw const BOOT_STACK_TOP) as u64
}

/// The guard pages under every kernel stack (virtual addresses).
pub fn guard_pages() -> [u64; 4] {
    [
        (&raw const stack_guard_boot) as u64,
        (&raw const stack_guard_df) as u64,
        (&raw const stack_guard_nmi) as u64,
        (&raw const stack_guard_mc) as u64,
    ]
}

/// Tops of the interrupt stacks: IST1 for #DF, IST2 for NMI, IST3 for #MC.
pub fn ist_tops() -> [u64; 3] {
    [
        (&raw const ist_df_top) as u64,
        (&raw const ist_nmi_top) as u64,
        (&raw const ist_mc_top) as u64,
    ]
}

/// What a kernel stack's unused words hold (the high-water mark finds the
/// lowest word that does not).
const PAINT: u64 = 0x5354_4143_4b5f_4646;

/// Paints `[bottom, top)` of a kernel stack nothing runs on yet (an AP's).
pub fn paint(bottom: u64, top: u64) {
    let mut at = bottom;
    while at + 8 <= top {
        // SAFETY: `[bottom, top)` is a kernel stack mapped read-write that
        // no code uses yet (the caller's contract), so no live data is there.
        unsafe { core::ptr::write_volatile(at as *mut u64, PAINT) };
        at += 8;
    }
}

/// Paints the boot stack below the caller's frame (4 KiB of margin left
/// for the frames of this call and what it calls).
#[inline(never)]
pub fn paint_boot_stack() {
    let here: u64;
    // SAFETY: reads the stack pointer; no memory is touched.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) here, options(nomem, nostack)) };
    let bottom = guard_pages()[0] + 4096;
    paint(bottom, here.saturating_sub(4096).max(bottom));
}

/// Bytes of `[bottom, top)` ever used: from `top` down to the lowest word
/// that no longer holds the paint.
pub fn deepest_use(bottom: u64, top: u64) -> u64 {
    let mut at = bottom;
    // SAFETY: `[bottom, top)` is a mapped kernel stack; reading a word of it,
    // live or not, is a plain load of initialised memory.
    while at + 8 <= top && unsafe { core::ptr::read_volatile(at as *const u64) } == PAINT {
        at += 8;
    }
    top - at
}
