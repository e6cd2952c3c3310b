//! Deliberate faults, for the isolation tests: each must crash only the
//! domain that commits it, with the reason the kernel records.
//!
//! This is the one module of the test domains allowed `unsafe`: doing what a
//! domain must not do is its whole point.

#![allow(unsafe_code)]

/// The faults a crasher can commit, by command-line name.
pub const KINDS: &[&str] = &[
    "read_kernel",
    "read_kernel_image",
    "read_other",
    "write_code",
    "exec_data",
    "cli",
    "hlt",
    "mov_cr3",
    "wrmsr",
    "port_io",
    "ud2",
    "panic",
    "panic_quoted",
];

static DATA: [u8; 16] = [0xc3; 16];

/// Commits the named fault. Returns only if the fault did not happen (a bug).
pub fn commit(kind: &str) {
    // SAFETY: none of these is sound; each is meant to fault in ring 3 and
    // end this domain. The kernel must contain it.
    unsafe {
        match kind {
            "read_kernel" => {
                core::ptr::read_volatile(0xffff_8000_0010_0000 as *const u64);
            }
            "read_kernel_image" => {
                core::ptr::read_volatile(0xffff_ffff_8020_1000 as *const u64);
            }
            "read_other" => {
                // Another domain's page can only appear here if granted; none is.
                core::ptr::read_volatile(ipc_abi_window() as *const u64);
            }
            "write_code" => {
                core::ptr::write_volatile(commit as *const () as *mut u8, 0x90);
            }
            "exec_data" => {
                let f: extern "C" fn() = core::mem::transmute(DATA.as_ptr());
                f();
            }
            "cli" => core::arch::asm!("cli"),
            "hlt" => core::arch::asm!("hlt"),
            "mov_cr3" => core::arch::asm!("mov cr3, {}", in(reg) 0u64),
            "wrmsr" => core::arch::asm!("wrmsr", in("ecx") 0x10u32, in("eax") 0u32, in("edx") 0u32),
            "port_io" => core::arch::asm!("in al, dx", in("dx") 0x60u16, out("al") _),
            "ud2" => core::arch::asm!("ud2"),
            "panic" => panic!("deliberate panic for the test"),
            // What a JSON printer must escape: quotes, a backslash, a tab,
            // a newline, an escape sequence and DEL.
            "panic_quoted" => panic!("said \"no\" \\ then\tleft\nfor \u{1b}[31mred\u{7f}"),
            _ => {}
        }
    }
}

fn ipc_abi_window() -> u64 {
    domain_runtime::ipc_abi::layout::GRANT_WINDOW
}
