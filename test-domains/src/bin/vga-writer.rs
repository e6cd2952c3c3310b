//! Writes its `text=` at the top left of the VGA text screen, through the
//! device memory it was given (`mmio=0xb8000+1`, mapped at `mmio_va`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::io::DeviceMemory;
use domain_runtime::ipc_abi::layout::DEVICE_WINDOW;
use domain_runtime::println;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
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
