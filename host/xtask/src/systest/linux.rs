//! System tests of Linux as an HVM guest: Debian's cloud kernel, as Debian
//! ships it, with the initramfs xtask builds (`linux_guest.rs`).

use super::harness::*;

/// A bundle with the Linux guest (`vmlinuz`, `initrd.img`), the device
/// model, and one `auto/` configuration per `(name, extra config lines)`.
pub(super) fn linux_bundle(c: &Ctx, guests: &[(&str, &str)]) -> Result<std::path::PathBuf, String> {
    let linux = crate::linux_guest::guest()?;
    let device_model = build::domain(&c.domains, "device-model");
    let configs: Vec<(String, String)> = guests
        .iter()
        .enumerate()
        .map(|(i, (name, extra))| {
            (
                format!("auto/{i:02}-{name}.cfg"),
                format!(
                    "name = \"{name}\"\ntype = \"hvm\"\nkernel = \"vmlinuz\"\n\
                     ramdisk = \"initrd.img\"\ncmdline = \"console=ttyS0\"\nmemory = 256\n{extra}"
                ),
            )
        })
        .collect();
    let auto: Vec<(&str, &str)> = configs
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    crate::iso::bundle(
        &c.path("bundle.tar"),
        &auto,
        &[
            ("vmlinuz", linux.kernel.as_path()),
            ("initrd.img", linux.initrd.as_path()),
            ("device-model", device_model.as_path()),
        ],
    )
}

fn linux_boots_to_a_shell_whose_console_works_both_ways(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let release = crate::linux_guest::guest()?.release;
    let tar = linux_bundle(c, &[("linux", "")])?;
    let (m, sock) = c
        .machine()
        .guests(&[CONSOLE_DOM])
        .bundle(tar)
        .qemu(|q| q.memory("1G"))
        .boot_managed(slot)?;
    // console-dom is domain 1; the guest 2 (its device model, 3, serves
    // its console, which shows as the guest's).
    m.wait_for(
        &format!("[2] xenolith-linux: /init running on {release}, 1 CPU(s)"),
        std::time::Duration::from_secs(240),
    )?;
    expect_line(m, "[2] xenolith-linux: 6*7 is 42")?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let linux = client.resolve("linux").map_err(|e| e.to_string())?;
    client
        .console_write(linux, b"echo typed $((6*7)) $(uname -r)\n")
        .map_err(|e| e.to_string())?;
    expect_line(m, &format!("[2] typed 42 {release}"))?;
    Ok(())
}

pub(super) fn tests() -> Vec<Test> {
    tests![linux_boots_to_a_shell_whose_console_works_both_ways]
}
