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
                     ramdisk = \"initrd.img\"\ncmdline = \"console=ttyS0\"\n{}{extra}",
                    if extra.contains("memory") {
                        ""
                    } else {
                        "memory = 256\n"
                    }
                ),
            )
        })
        .collect();
    bundle_of(
        c,
        &configs,
        &[
            ("vmlinuz", linux.kernel.as_path()),
            ("initrd.img", linux.initrd.as_path()),
            ("device-model", device_model.as_path()),
        ],
    )
}

/// Boots console-dom and one Linux guest, `linux` (its configuration
/// with `extra` lines), domain 0 serving the management protocol.
fn boot_linux<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    extra: &str,
) -> Result<(&'m mut Machine, std::path::PathBuf), String> {
    let tar = linux_bundle(c, &[("linux", extra)])?;
    c.machine()
        .guests(&[CONSOLE_DOM])
        .bundle(tar)
        .qemu(|q| q.memory("1G"))
        .boot_managed(slot)
}

fn linux_boots_to_a_shell_whose_console_works_both_ways(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let release = crate::linux_guest::guest()?.release;
    let (m, sock) = boot_linux(c, slot, "")?;
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
    // `domain list` shows its type; `host info` that HVM guests can run
    // (the commands as a user runs them: the socket takes one client).
    drop(client);
    let (_, list) = toolstack(&sock, &["domain", "list"])?;
    check(
        list.lines()
            .any(|l| l.contains(" linux ") && l.trim_end().ends_with("hvm")),
        || format!("domain list: {list}"),
    )?;
    let (_, host) = toolstack(&sock, &["host", "info"])?;
    check(
        host.contains("hvm:       AMD SVM with nested paging"),
        || format!("host info: {host}"),
    )?;
    // `domain shutdown`: the power button, which Linux answers by powering
    // off (ACPI soft off), within 30 s.
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "linux", "--wait"])?;
    check(code == 0, || format!("domain shutdown linux: {code} {out}"))?;
    expect_line(m, "[2] xenolith-linux: power button: powering off")?;
    expect_line(m, "domain 2 (linux) shut down: PowerOff")?;
    Ok(())
}

fn linux_reboots_per_on_reboot_and_a_panic_is_a_crash_with_its_record(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = boot_linux(c, slot, "on_crash = \"preserve\"\n")?;
    let long = std::time::Duration::from_secs(240);
    m.wait_for("xenolith-linux: 6*7 is 42", long)?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let err = |e: toolstack::Error| e.to_string();
    let first = client.resolve("linux").map_err(err)?;
    client.console_write(first, b"reboot -f\n").map_err(err)?;
    expect_line(m, "(linux) shut down: Reboot")?;
    // on_reboot = restart (the default): a new instance boots.
    m.wait_for_nth("xenolith-linux: 6*7 is 42", 2, long)?;
    let rebooted = client.resolve("linux").map_err(err)?;
    check(rebooted != first, || {
        format!("still domain {first} after the reboot")
    })?;
    // `domain reboot` from the host: its device model resets it, and
    // on_reboot boots it again.
    drop(client);
    let (code, out) = toolstack(&sock, &["domain", "reboot", "linux"])?;
    check(code == 0, || format!("domain reboot linux: {code} {out}"))?;
    m.wait_for_nth("xenolith-linux: 6*7 is 42", 3, long)?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let second = client.resolve("linux").map_err(err)?;
    check(second != rebooted, || {
        format!("still domain {rebooted} after domain reboot")
    })?;
    client
        .console_write(second, b"echo c > /proc/sysrq-trigger\n")
        .map_err(err)?;
    expect_line(
        m,
        "(linux) crashed: hvm: the guest reported a panic (pvpanic)",
    )?;
    // `domain info` has the record: the reason, and where Linux was (a
    // kernel address).
    let info = client.info(second).map_err(err)?;
    check(
        info.state == "crashed"
            && info.crash_message.contains("pvpanic")
            && info.crash_rip >= 0xffff_8000_0000_0000,
        || format!("after the panic: {info:?}"),
    )
}

fn two_linux_guests_run_at_once_one_with_two_vcpus(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let tar = linux_bundle(
        c,
        &[
            ("one", "memory = 128\n"),
            ("two", "memory = 128\nvcpus = 2\n"),
        ],
    )?;
    let m = boot(
        &c.machine()
            .guests(&[
                CONSOLE_DOM,
                ("counter", "counter count=100000 pace_us=20000"),
            ])
            .bundle(tar)
            .qemu(|q| q.memory("1G").smp(2))
            .config()?,
        slot,
    )?;
    let long = std::time::Duration::from_secs(300);
    // Domains: console-dom 1, counter 2, one 3 (its device model 4), two 5.
    m.wait_for("[3] xenolith-linux: /init running on", long)?;
    m.wait_for("[5] xenolith-linux: /init running on", long)?;
    let two = m.wait_for("[5] xenolith-linux: /init running", long)?;
    check(two.ends_with(", 2 CPU(s)"), || {
        format!("the two-vCPU guest: {two}")
    })?;
    let one = m.wait_for("[3] xenolith-linux: /init running", long)?;
    check(one.ends_with(", 1 CPU(s)"), || {
        format!("the one-vCPU guest: {one}")
    })?;
    // The Rust guest counted on meanwhile.
    expect_line(m, "[2] counter: 20")?;
    Ok(())
}

pub(super) fn tests() -> Vec<Test> {
    tests![
        linux_boots_to_a_shell_whose_console_works_both_ways,
        linux_reboots_per_on_reboot_and_a_panic_is_a_crash_with_its_record,
        two_linux_guests_run_at_once_one_with_two_vcpus,
    ]
}
