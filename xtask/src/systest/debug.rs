//! System tests of the debugging views: `toolstack host debug-keys`.

use super::{boot_managed, check, expect_line, toolstack, Ctx, Machine};

/// Each debug key dumps its part of the kernel's state to the kernel log
/// (seen on COM1 and through `host dmesg`); an unknown key is refused by
/// name.
pub fn debug_keys_dump_kernel_state(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        ("console-dom", "console-dom mem=4096 ioports=0x3f8+8 irq=4"),
        ("sleeper", "sleeper sleeps=100000"),
    ];
    let (m, sock) = boot_managed(c, slot, &guests, None)?;
    expect_line(m, "toolstack: domain 1 serves device 1:0 of domain 2")?;
    let (code, out) = toolstack(&sock, &["host", "debug-keys", "hqreg"])?;
    check(code == 0, || format!("debug-keys: {code} {out}"))?;
    expect_line(m, "debug-keys: 'g': grants and mapped grant-window slots")?;
    expect_line(m, "debug-keys 'q': domain table")?;
    expect_line(m, "console-dom: running, 4096 KiB")?;
    expect_line(m, "debug-keys 'r': run queue of CPU 0")?;
    expect_line(m, "debug-keys 'e': event channel bindings")?;
    // The sleeper's console ring: an interdomain port pair, and its page
    // that console-dom maps in its grant window.
    expect_line(m, " <-> ")?;
    expect_line(m, "debug-keys 'g': grants and mapped grant-window slots")?;
    expect_line(m, " window slot 0: grant ")?;
    let (code, dmesg) = toolstack(&sock, &["host", "dmesg"])?;
    check(
        code == 0 && dmesg.contains("debug-keys 'r': run queue"),
        || format!("dmesg: {code} {dmesg}"),
    )?;
    let (code, out) = toolstack(&sock, &["host", "debug-keys", "qx"])?;
    check(
        code == 1 && out.contains("unknown debug key 'x' (h lists them)"),
        || format!("unknown key: {code} {out}"),
    )
}
