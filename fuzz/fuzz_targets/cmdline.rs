//! The hypervisor command line (from GRUB's `multiboot2` line, which
//! whoever edits `grub.cfg` writes): any text parses to settings and
//! warnings, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../core/xenolith-kernel/src/cmdline.rs"]
mod cmdline;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = core::str::from_utf8(data) {
        let parsed = cmdline::parse(text);
        core::hint::black_box(&parsed.warnings);
    }
});
