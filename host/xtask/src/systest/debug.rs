//! System tests of the debugging views: `toolstack host debug-keys` and
//! `toolstack ring list`.

use super::harness::{check, expect_line, toolstack, Ctx, Machine};
use super::harness::{tests, Test};

/// Each debug key dumps its part of the kernel's state to the kernel log
/// (seen on COM1 and through `host dmesg`); an unknown key is refused by
/// name.
fn debug_keys_dump_kernel_state_and_refuse_unknown_keys(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("sleeper", "sleeper sleeps=100000"),
    ];
    let (m, sock) = c.machine().guests(&guests).boot_managed(slot)?;
    expect_line(m, "toolstack: domain 1 serves device 1:0 of domain 2")?;
    let (code, out) = toolstack(&sock, &["host", "debug-keys", "hqregd"])?;
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
    // No domain here has DMA memory or a PCI function: the heading alone.
    expect_line(m, "debug-keys 'd': DMA isolation ")?;
    let (code, dmesg) = toolstack(&sock, &["host", "dmesg"])?;
    check(
        code == 0 && dmesg.contains("debug-keys 'r': run queue"),
        || format!("dmesg: {code} {dmesg}"),
    )?;
    let (code, out) = toolstack(&sock, &["host", "debug-keys", "qz"])?;
    check(
        code == 1 && out.contains("unknown debug key 'z' (h lists them)"),
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
    c.machine()
        .guests(guests)
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)
}

/// The block ring of domain `frontend`, as `ring list --json` shows it.
pub fn block_ring(sock: &std::path::Path, frontend: u32) -> Result<serde_json::Value, String> {
    ring_of(sock, frontend, "block")
}

/// Domain `frontend`'s first ring of kind `device`, as `ring list --json`
/// shows it (every ring listed must have the documented keys).
fn ring_of(
    sock: &std::path::Path,
    frontend: u32,
    device: &str,
) -> Result<serde_json::Value, String> {
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
        "pages",
        "slots",
        "req_prod",
        "req_event",
        "rsp_prod",
        "rsp_event",
        "req_prod_pvt",
        "rsp_cons",
        "req_cons",
        "rsp_prod_pvt",
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
        .find(|r| r["device"] == device && r["frontend"] == frontend)
        .ok_or_else(|| format!("no {device} ring of domain {frontend} in {out}"))
}

/// While a guest reads its disk through drvdom-blk, `ring list` shows its
/// block ring connected and healthy, with indices that advance from one
/// look to the next (the JSON has the documented keys), `ring watch` shows
/// requests flowing, and the guest reads exactly the disk's bytes all the
/// while (looking disturbs nothing).
fn ring_list_shows_a_busy_block_ring_advancing(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all",
        ),
        (
            "disk-tool",
            "reader memory=4M sum repeat=1000 disk=whole,xvda,r",
        ),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(m, "[2] disk-tool: sha256 of xvda")?;
    let number = |r: &serde_json::Value, k: &str| r[k].as_u64().unwrap_or(0);
    let first = block_ring(&sock, 2)?;
    // The reader also hashes and prints between requests: look again (for
    // up to 5 s) until it has sent more.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let second = loop {
        let now = block_ring(&sock, 2)?;
        if number(&now, "req_prod") > number(&first, "req_prod")
            || std::time::Instant::now() > deadline
        {
            break now;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
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
    m.wait_for_nth("[2] disk-tool: sha256 of xvda", 3, super::harness::BOOT)?;
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
fn ring_list_flags_a_ring_whose_backend_stopped_answering(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all hang_after=50",
        ),
        ("disk-tool", "reader memory=4M sum disk=whole,xvda,r"),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(m, "drvdom-blk: hang_after=50: hanging as asked")?;
    // Domain 0 looks at every ring four times a second by itself and
    // counts the stall from the first look that saw no progress (beside a
    // loaded suite that look came late: 989 ms two seconds after the
    // hang), so `ring list` is asked until it says so, for at most 30 s;
    // a ring that moves on, or is never flagged, fails.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let ring = block_ring(&sock, 2)?;
        if ring["verdict"] == "stuck" {
            return check(
                ring["in_flight"].as_u64().unwrap_or(0) > 0
                    && ring["stalled_ms"].as_u64().unwrap_or(0) >= 1000,
                || format!("the ring flagged stuck: {ring}"),
            );
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the stalled ring, 30 s after the hang: {ring}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// A guest parks one read (sector 12345, id 0x777) with a drvdom-blk that
/// hangs on taking it: `ring dump` shows that very request, decoded, and
/// in hex with `--raw`; a malformed ring name is bad input (exit 2).
fn ring_dump_decodes_a_request_a_guest_parked(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all hang_after=1",
        ),
        ("blk-hostile", "parker park=12345 disk=whole,xvda,r"),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(
        m,
        "[2] blk-hostile: parked a read of sector 12345 (id 0x777)",
    )?;
    expect_line(m, "drvdom-blk: hang_after=1: hanging as asked")?;
    let (code, out) = toolstack(&sock, &["ring", "dump", "parker:block:0"])?;
    check(
        code == 0 && out.contains("slot 0 (taken): read sector 12345, 1 segments, id 0x777"),
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

/// A response the frontend has not taken is shown as such, decoded, and
/// the sides' private indices say where each side is.
fn ring_dump_shows_a_response_the_frontend_left_unread(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all",
        ),
        ("blk-hostile", "idler unread=77 disk=whole,xvda,r"),
    ];
    let (m, sock) = boot_with_blank_disk(c, slot, &guests)?;
    expect_line(
        m,
        "[2] blk-hostile: the answer to a read of sector 77 (id 0x778) came; left unread",
    )?;
    let (code, out) = toolstack(&sock, &["ring", "dump", "idler:block"])?;
    check(
        code == 0
            && out.contains("slot 0 (unread): response id 0x778, ok")
            && out.contains("frontend: 1 requests written, 0 responses taken; backend: 1 requests taken, 1 responses written"),
        || format!("ring dump: {code} {out}"),
    )?;
    let ring = block_ring(&sock, 2)?;
    let field = |k: &str| ring.get(k).and_then(|v| v.as_u64());
    let private = ["req_prod_pvt", "rsp_cons", "req_cons", "rsp_prod_pvt"].map(field);
    check(
        private == [Some(1), Some(0), Some(1), Some(1)] && field("in_flight") == Some(0),
        || format!("ring list --json: {ring}"),
    )
}

/// Two guests move 256 MiB over TCP through drvdom-net while the test looks
/// at their rings over and over (`ring list`, `ring dump` of both
/// directions, `ring watch`): the receiver gets exactly the bytes the
/// sender sent (count and CRC-32), the looks saw the rings moving, and
/// the dumps decode checksum offload (segments sent with their TCP
/// checksum blank, receive buffers that take them so).
fn looking_at_network_rings_while_guests_talk_changes_no_byte(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("drvdom-net", crate::iso::NET_DRIVER_LINE),
        ("net-tool", "sink memory=4M vif=mac=02:00:00:00:05:01 ip=10.0.2.51/24 sink=5000"),
        (
            "net-tool",
            // Long enough for several looks (each about half a second)
            // at guest-to-guest TCP's rate (50-65 MiB/s on a quiet machine).
            "source memory=4M vif=mac=02:00:00:00:05:02 ip=10.0.2.52/24 source=10.0.2.51:5000 bytes=268435456",
        ),
    ];
    let (m, sock) = c
        .machine()
        .cmdline("ifname=dummy")
        .guests(&guests)
        .qemu(|config| config)
        .boot_managed(slot)?;
    expect_line(m, "[2] net-tool: listening on port 5000")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    let (mut looks, mut moved, mut last, mut offload) = (0, 0, None, false);
    // The guests exit when done, and their rings go with them: a look that
    // fails once the transfer has ended is the end of looking.
    let ended = |m: &Machine| {
        m.lines()
            .iter()
            .any(|l| l.contains("[3] net-tool: sent ") || l.contains("[2] net-tool: received "))
    };
    while !ended(m) {
        check(std::time::Instant::now() < deadline, || {
            "the transfer did not end".into()
        })?;
        match look_at_net_rings(&sock) {
            Ok((now, blank)) => {
                offload |= blank;
                if last.is_some_and(|l| l != now) {
                    moved += 1;
                }
                last = Some(now);
                looks += 1;
            }
            Err(_) if ended(m) => break,
            Err(e) => return Err(e),
        }
    }
    let sent = expect_line(m, "[3] net-tool: sent ")?;
    let got = expect_line(m, "[2] net-tool: received ")?;
    let tail = |l: &str| l.split("bytes").nth(1).map(str::to_owned);
    check(
        sent.starts_with("[3] net-tool: sent 268435456 bytes") && tail(&sent) == tail(&got),
        || format!("sent {sent:?}, received {got:?}"),
    )?;
    check(looks >= 3 && moved >= 2, || {
        format!("{looks} looks during the transfer, {moved} saw the rings move")
    })?;
    check(offload, || {
        "no dump showed a blank TCP checksum sent and a buffer that takes it".into()
    })
}

/// One look at the transfer's rings in every way `toolstack ring` offers;
/// returns where the receiver's responses and the sender's requests were,
/// and whether the dumps showed checksum offload at both ends.
type Look = ((Option<u64>, Option<u64>), bool);
fn look_at_net_rings(sock: &std::path::Path) -> Result<Look, String> {
    let rx = ring_of(sock, 2, "net-rx")?;
    let tx = ring_of(sock, 3, "net-tx")?;
    let mut dumps = String::new();
    for args in [
        &["ring", "dump", "2:net-rx"][..],
        &["ring", "dump", "3:net-tx"],
        &["ring", "watch", "3:net-tx", "-d", "0.2", "-i", "2"],
    ] {
        let (code, out) = toolstack(sock, args)?;
        check(code == 0, || format!("{args:?}: {code} {out}"))?;
        dumps.push_str(&out);
    }
    let offload =
        dumps.contains(", TCP checksum blank") && dumps.contains(", takes blank TCP checksums");
    Ok(((rx["rsp_prod"].as_u64(), tx["req_prod"].as_u64()), offload))
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        debug_keys_dump_kernel_state_and_refuse_unknown_keys,
        ring_list_shows_a_busy_block_ring_advancing,
        ring_list_flags_a_ring_whose_backend_stopped_answering,
        ring_dump_decodes_a_request_a_guest_parked,
        ring_dump_shows_a_response_the_frontend_left_unread,
        looking_at_network_rings_while_guests_talk_changes_no_byte,
    ]
}
