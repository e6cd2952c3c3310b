//! Writes its `text=` at the top left of the VGA text screen, through the
//! device memory it was given (`iomem=0xb8,1` on its module line, mapped at the start of its device window).
//!
//! With `pointer` it instead hands the kernel pointers into its device
//! window as if they were memory (`ConsoleWrite` from it, `DomainInfo`
//! into it): each must be refused `BadAddress`, never read or written
//! through the kernel's map of RAM (which has no device memory).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::io::DeviceMemory;
use domain_runtime::ipc_abi::layout::DEVICE_WINDOW;
use domain_runtime::println;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    if test_domains::flag("pointer") {
        use domain_runtime::ipc_abi::hypercall::{decode, Hypercall};
        let raw = |call: Hypercall, args| {
            let (rax, rdx) = domain_runtime::hypercall::raw(call as u64, args);
            decode(rax, rdx)
        };
        println!(
            "vga-writer: ConsoleWrite from device memory: {:?}",
            raw(Hypercall::ConsoleWrite, [DEVICE_WINDOW, 16, 0, 0, 0, 0])
        );
        println!(
            "vga-writer: DomainInfo into device memory: {:?}",
            raw(
                Hypercall::DomainInfo,
                [u32::MAX as u64, DEVICE_WINDOW, 0, 0, 0, 0]
            )
        );
        return;
    }
    let text = test_domains::option("text").unwrap_or("XENOLITH");
    let screen = DeviceMemory::new(DEVICE_WINDOW, 4096).expect("the device window");
    for (i, b) in text.bytes().enumerate() {
        screen.write_u16(2 * i as u64, 0x1f00 | b as u16);
    }
    println!(
        "vga-writer: wrote {:?}, read back {:#x}",
        text,
        screen.read_u16(0)
    );
}
