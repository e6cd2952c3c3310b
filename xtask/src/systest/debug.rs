//! System tests of the debugging views: `toolstack host debug-keys` and
//! `toolstack ring list`.

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

/// Boots domain 0 (managed over COM2) and `guests` with a blank 16 MiB disk.
fn boot_with_blank_disk<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    guests: &[(&str, &str)],
) -> Result<(&'m mut Machine, std::path::PathBuf), String> {
    let image = c.path("disk.img");
    std::fs::write(&image, vec![0u8; 16 << 20]).map_err(|e| e.to_string())?;
    super::boot_managed_with(c, slot, guests, None, |config| config.disk(&image))
}

/// The block ring of domain `frontend`, as `ring list --json` shows it.
pub fn block_ring(sock: &std::path::Path, frontend: u32) -> Result<serde_json::Value, String> {
    let (code, out) = toolstack(sock, &["ring", "list", "--json"])?;
    check(code == 0, || format!("ring list: {code} {out}"))?;
    let rings: Vec<serde_json::Value> =
        serde_json::from_str(out.trim()).map_err(|e| format!("ring list --json: {e}: {out}"))?;
    let keys = [
        "frontend",
        "backend",
        "device",
        "index",
        "state",
        "epoch",
        "slots",
        "req_prod",
        "req_event",
        "rsp_prod",
        "rsp_event",
        "in_flight",
        "notify_to_backend",
        "notify_to_frontend",
        "stalled_ms",
        "verdict",
    ];
    for r in &rings {
        check(keys.iter().all(|k| r.get(k).is_some()), || {
            format!("a ring lacks a documented key: {r}")
        })?;
    }
    rings
        .into_iter()
        .find(|r| r["device"] == "block" && r["frontend"] == frontend)
        .ok_or_else(|| format!("no block ring of domain {frontend} in {out}"))
}

/// While a guest reads its disk through drvdom-blk, `ring list` shows its
/// block ring connected and healthy, with indices that advance from one
/// look to the next (the JSON has the documented keys), `ring watch` shows
/// requests flowing, and the guest reads exactly the disk's bytes all the
/// while (looking disturbs nothing).
pub fn ring_list_shows_a_busy_block_ring(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk mem=2048 pci=00:04.0 dma=512 vdisk=whole:all",
        ),
        (
            "disk-tool",
            "reader mem=4096 sum repeat=1000 disk=whole:xvda:r",
        ),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(m, "[2] disk-tool: sha256 of xvda")?;
    let first = block_ring(&sock, 2)?;
    let second = block_ring(&sock, 2)?;
    let number = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or(0);
    check(
        second["backend"] == 1
            && second["index"] == 0
            && second["state"] == "connected"
            && second["verdict"] == "healthy"
            && number(&second, "in_flight") <= number(&second, "slots")
            && number(&second, "notify_to_backend") > 0,
        || format!("the block ring: {second}"),
    )?;
    check(
        number(&second, "req_prod") > number(&first, "req_prod"),
        || format!("the indices did not advance: {first} then {second}"),
    )?;
    let (code, out) = toolstack(
        &sock,
        &[
            "ring",
            "watch",
            "2:block",
            "--delay",
            "0.3",
            "--iterations",
            "3",
        ],
    )?;
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with("2:block:0")).collect();
    let flowing = lines.iter().any(|l| {
        l.split("requests/s")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .is_some_and(|rate| rate > 0.0)
    });
    check(code == 0 && lines.len() == 3 && flowing, || {
        format!("ring watch: {code} {out}")
    })?;
    // Every sum the guest made while the ring was looked at is the disk's.
    use sha2::Digest;
    let want: String = sha2::Sha256::digest(vec![0u8; 16 << 20])
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    m.wait_for_nth("[2] disk-tool: sha256 of xvda", 3, super::BOOT)?;
    let sums: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("[2] disk-tool: sha256 of xvda"))
        .collect();
    check(sums.iter().all(|l| l.ends_with(&want)), || {
        format!("the guest read other bytes while the ring was looked at: {sums:?}")
    })
}

/// A drvdom-blk that stops answering (`hang_after`, no heartbeat to get it
/// restarted) leaves its guest's requests waiting: `ring list` flags the
/// ring stuck once they have waited over a second, with requests in flight.
pub fn ring_list_flags_a_stalled_backend(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk mem=2048 pci=00:04.0 dma=512 vdisk=whole:all hang_after=50",
        ),
        ("disk-tool", "reader mem=4096 sum disk=whole:xvda:r"),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(m, "drvdom-blk: hang_after=50: hanging as asked")?;
    // Looks a few hundred ms apart until the stall is over the threshold.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let ring = block_ring(&sock, 2)?;
        if ring["verdict"] == "stuck" {
            return check(
                ring["in_flight"].as_u64().unwrap_or(0) > 0
                    && ring["stalled_ms"].as_u64().unwrap_or(0) > 1000,
                || format!("the stuck ring: {ring}"),
            );
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the stalled ring was never flagged stuck: {ring}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

/// A guest parks one read (sector 12345, id 0x777) with a drvdom-blk that
/// hangs on taking it: `ring dump` shows that very request, decoded, and
/// in hex with `--raw`; a malformed ring name is bad input (exit 2).
pub fn ring_dump_decodes_a_parked_request(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk mem=2048 pci=00:04.0 dma=512 vdisk=whole:all hang_after=1",
        ),
        ("blk-hostile", "parker park=12345 disk=whole:xvda:r"),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(
        m,
        "[2] blk-hostile: parked a read of sector 12345 (id 0x777)",
    )?;
    expect_line(m, "drvdom-blk: hang_after=1: hanging as asked")?;
    let (code, out) = toolstack(&sock, &["ring", "dump", "parker:block:0"])?;
    check(
        code == 0 && out.contains(": read sector 12345, 1 segments, id 0x777"),
        || format!("ring dump: {code} {out}"),
    )?;
    let (code, raw) = toolstack(&sock, &["ring", "dump", "2:block", "--raw"])?;
    check(
        code == 0 && raw.contains(": 77 07 00 00 00 00 00 00 39 30 00 00"),
        || format!("ring dump --raw: {code} {raw}"),
    )?;
    let (code, out) = toolstack(&sock, &["ring", "dump", "parker"])?;
    check(code == 2 && out.contains("FRONTEND:DEVICE"), || {
        format!("a bad ring name: {code} {out}")
    })
}
