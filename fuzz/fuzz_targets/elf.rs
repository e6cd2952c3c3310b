//! A domain's ELF image (any bytes a control domain loads): a load plan
//! within the budget or an error, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../core/xenolith-kernel/src/elf.rs"]
mod elf;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let budget = data.first().map_or(0, |&b| u64::from(b) * 16);
    if let Ok(plan) = elf::plan(data, budget) {
        core::hint::black_box(plan.pages);
    }
});
