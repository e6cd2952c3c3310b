//! A guessed backtrace: kernel code addresses found on the boot stack.
//!
//! Owns: reading the stack between an interrupted `rsp` and the stack's
//! top, and keeping the words that point into the kernel's text (return
//! addresses, and now and then a stale one, as Linux marks with `?`). The
//! kernel is built without frame pointers, so this is the honest way to
//! name where a stuck CPU was without a cost on every call.

extern "C" {
    static __text_start: u8;
    static __text_end: u8;
}

/// At most this many addresses are reported.
pub const DEPTH: usize = 24;

/// Kernel text addresses on the boot stack from `rsp` up, innermost first.
pub fn scan(rsp: u64) -> heapless::Vec<u64, DEPTH> {
    let text = (&raw const __text_start) as u64..(&raw const __text_end) as u64;
    let top = super::stacks::boot_stack_top();
    let bottom = super::stacks::guard_pages()[0] + 4096;
    let mut found = heapless::Vec::new();
    if !(bottom..top).contains(&rsp) {
        return found;
    }
    let mut at = rsp & !7;
    while at + 8 <= top && !found.is_full() {
        // SAFETY: `at` lies in the boot stack [bottom, top), which the
        // kernel page tables map readable for its whole life; the read is a
        // plain aligned u64 load of memory nothing else frees.
        let word = unsafe { core::ptr::read_volatile(at as *const u64) };
        if text.contains(&word) {
            let _ = found.push(word);
        }
        at += 8;
    }
    found
}
