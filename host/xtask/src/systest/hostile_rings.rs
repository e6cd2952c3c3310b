//! System tests of frontends that attack their backends through the ring
//! set-up itself (what `block.rs` and `net.rs` test is the traffic).

use super::harness::{check, expect_line, Ctx, Machine};
use super::harness::{tests, Test};

/// A frontend offers console-dom, drvdom-blk and drvdom-net rings granted
/// read-only (initialised, so a backend that mapped one would attach and
/// fault on its first write), eight times each — more than a driver's
/// restart limit — then good rings for devices it has connected already.
/// Every offer of those is refused, no backend crashes or restarts, and a
/// guest created afterwards gets its console and disk.
fn read_only_rings_are_refused_and_no_backend_falls(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    super::block::disk_image(&image)?;
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 on_crash=restart",
        ),
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart",
        ),
        ("drvdom-net", crate::iso::NET_DRIVER_LINE),
        (
            "ring-hostile",
            "ring-hostile disk=whole,xvda,r vif=mac=02:00:00:00:07:01",
        ),
    ];
    let tool = crate::build::domain(&c.domains, "disk-tool");
    let tar = crate::iso::bundle(&c.path("bundle.tar"), &[], &[("disk-tool", tool.as_path())])?;
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .bundle(tar)
        .qemu(|config| config.disk(&image).nic(&[]))
        .boot_managed(slot)?;
    for device in ["console", "block", "net"] {
        for i in 0..8 {
            expect_line(
                m,
                &format!("ring-hostile: read-only {device} ring {i}: Err(PermissionDenied)"),
            )?;
        }
    }
    // A frontend of another protocol version is refused by each backend,
    // which says why.
    for (device, backend, ours) in [
        (
            "console",
            "console-dom",
            ipc_abi::proto::console::CONSOLE_VERSION,
        ),
        ("block", "drvdom-blk", ipc_abi::proto::block::BLOCK_VERSION),
        ("net", "drvdom-net", ipc_abi::proto::net::NET_VERSION),
    ] {
        let next = ours + 1;
        expect_line(
            m,
            &format!(
                "{backend}: domain 4 speaks version {next} of the protocol, not {ours}: refused"
            ),
        )?;
        expect_line(
            m,
            &format!("ring-hostile: {device} ring of version {next}: Err(InvalidArgument)"),
        )?;
    }
    for (line, answer) in [
        ("block ring 0 again", "Ok(())"),
        ("block ring 1 again", "Err(PermissionDenied)"),
        ("net ring 0 again", "Ok(())"),
        ("net ring 1 again", "Err(PermissionDenied)"),
        ("console ring 0 again", "Ok(())"),
        ("console ring 1 again", "Err(PermissionDenied)"),
    ] {
        expect_line(m, &format!("ring-hostile: {line}: {answer}"))?;
    }
    // Each backend refused the read-only rings by failing to map them
    // writable (not by some other rule).
    for refusal in [
        "console-dom: cannot serve domain 4: cannot map the ring",
        "drvdom-blk: cannot serve domain 4: cannot map the ring",
        "drvdom-net: cannot serve domain 4 vif 0: cannot map its transmit ring",
    ] {
        expect_line(m, refusal)?;
    }
    expect_line(m, "ring-hostile: done")?;
    for driver in ["console-dom", "drvdom-blk", "drvdom-net"] {
        let restarts = super::harness::restarts_of(m, driver);
        check(restarts == 0, || {
            format!("{driver} restarted {restarts} times")
        })?;
    }
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("crashed") || l.contains("page fault")),
        || "a domain crashed".into(),
    )?;
    // The backends still serve: a guest created now gets its console and disk.
    let cfg = c.path("late.cfg");
    std::fs::write(
        &cfg,
        "name = \"late\"\nkernel = \"disk-tool\"\nmemory = 2\ncmdline = \"sum\"\ndisk = ['whole,xvda,r']\n",
    )
    .map_err(|e| e.to_string())?;
    let (code, out) =
        super::harness::toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 0, || format!("create late: {code} {out}"))?;
    expect_line(m, "disk-tool: sha256 of xvda (32768 sectors) ").map(drop)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![read_only_rings_are_refused_and_no_backend_falls,]
}
