//! A guessed backtrace: kernel code addresses found on a CPU's kernel stack.
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

/// Kernel text addresses on CPU `cpu`'s kernel stack from `rsp` up,
/// innermost first (none if `rsp` is not on that stack).
pub fn scan(cpu: usize, rsp: u64) -> heapless::Vec<u64, DEPTH> {
    let text = (&raw const __text_start) as u64..(&raw const __text_end) as u64;
    let mut found = heapless::Vec::new();
    let Some((bottom, top)) = super::smp::kernel_stack(cpu) else {
        return found;
    };
    if !(bottom..top).contains(&rsp) {
        return found;
    }
    let mut at = rsp & !7;
    while at + 8 <= top && !found.is_full() {
        // SAFETY: `at` lies in a kernel stack [bottom, top) (the boot stack,
        // or an AP's frames in the physmap), mapped readable for the
        // kernel's whole life; an aligned u64 load of memory never freed.
        let word = unsafe { core::ptr::read_volatile(at as *const u64) };
        if text.contains(&word) {
            let _ = found.push(word);
        }
        at += 8;
    }
    found
}
