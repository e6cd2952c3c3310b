//! console-dom: the console driver domain.
//!
//! Given COM1's ports and IRQ by the toolstack at creation, it takes COM1
//! over from the kernel and from then on prints the kernel log — which holds
//! the kernel's own lines and every domain's `[domid]` lines — line by line,
//! so lines never interleave. Lines that scroll out of the kernel log before
//! it reads them are reported, never lost silently. If it dies, the kernel
//! writes COM1 itself again.
//!
//! Still to come (issue 4): per-domain console rings, per-domain history,
//! input with focus switching.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

mod clients;
mod relay;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    relay::run();
}
