//! Where the kernel stacks are and which pages guard them.
//!
//! Owns: the addresses of the stacks laid out in `boot/entry.S` (boot stack
//! and the IST stacks for #DF, NMI and #MC), each with a guard page below it
//! that the kernel page tables leave unmapped.

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
