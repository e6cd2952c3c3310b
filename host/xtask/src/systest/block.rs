//! System tests of the block driver domain: drvdom-blk brings up the virtio
//! disk through the kernel's mediated PCI access and reads what the host
//! wrote; nobody else reaches the device.

use super::harness::{check, expect_line, Ctx, Machine};
use super::harness::{tests, Test, CONSOLE_DOM};
use crate::iso::BLOCK_DRIVER_LINE;

/// A 16 MiB image whose first sector starts with a marker, the rest pseudo-random.
pub(super) fn disk_image(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0u8; 16 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in bytes.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    bytes[..16].copy_from_slice(b"XENOLITH-DISK-01");
    std::fs::write(path, &bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

fn drvdom_blk_drives_the_virtio_disk_and_nobody_else_reaches_it(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    let bytes = disk_image(&image)?;
    let guests = [
        ("drvdom-blk", BLOCK_DRIVER_LINE),
        // The same function twice, and a bridge: both refused.
        ("drvdom-blk", "blk-twice pci=00:04.0 dma=64"),
        ("drvdom-blk", "blk-bridge pci=00:00.0"),
        ("pci-prober", "pci-prober pci=00:05.0"),
    ];
    let config = c.machine().guests(&guests).config()?.disk(&image).nic(&[]);
    let m = super::harness::boot(&config, slot)?;
    // Sized once at boot, before the other CPUs start.
    expect_line(m, " functions, their BARs sized")?;
    expect_line(m, "toolstack: domain 1 gets PCI function 00:04.0")?;
    expect_line(
        m,
        "[1] drvdom-blk: virtio-blk at 00:04.0: 32768 sectors of 512 bytes (16 MiB)",
    )?;
    let first = expect_line(m, "[1] drvdom-blk: sector 0 begins ")?;
    let want = format!("{:02x?}", &bytes[..16]);
    check(first.ends_with(&want), || {
        format!("sector 0 read as {first:?}, the host wrote {want}")
    })?;
    expect_line(
        m,
        "cannot give blk-twice its hardware: device already given to another domain",
    )?;
    expect_line(m, "cannot give blk-bridge its hardware: permission denied")?;
    for what in [
        "config read of 00:04.0",
        "command write to 00:04.0",
        "BAR 4 of 00:04.0",
        "config read of the host bridge",
        "DMA address",
        "MSI-X enable",
    ] {
        expect_line(m, &format!("pci-prober: {what} refused: permission denied"))?;
    }
    // Its decoding stays on (the memory map never changes once domains
    // run); bus mastering goes off.
    let command = expect_line(
        m,
        "pci-prober: its own command register after writing 0: 0x",
    )?;
    let command = command
        .rsplit("0x")
        .next()
        .and_then(|v| u32::from_str_radix(v.trim(), 16).ok())
        .ok_or_else(|| format!("no value in {command:?}"))?;
    check(command & 0x2 != 0 && command & 0x4 == 0, || {
        format!("after writing 0 the NIC's command register is {command:#x}: memory decoding must stay on, bus mastering go off")
    })?;
    expect_line(m, "pci-prober: its own function has MSI-X at 0x")?;
    expect_line(m, "pci-prober: done")?;
    check(!m.lines().iter().any(|l| l.contains("succeeded")), || {
        "the prober reached something it was not given".into()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) const SERVING: &str = "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all vdisk=left=0+4096 vdisk=right=4096+4096";

/// A guest reads the whole 16 MiB disk through drvdom-blk; its SHA-256 is
/// the host's. The same disk given read-only refuses writes, and nothing
/// past its end is reachable. On QEMU's `pc` machine, without an IOMMU
/// (the suite's other machines have one): a PC without VT-d still serves.
fn a_guest_reads_the_whole_disk_and_its_sha256_is_the_hosts(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use sha2::Digest;
    let image = c.path("disk.img");
    let bytes = disk_image(&image)?;
    let want = hex(&sha2::Sha256::digest(&bytes));
    let guests = [
        ("drvdom-blk", SERVING),
        ("disk-tool", "summer sum disk=whole,xvda,r"),
        ("disk-tool", "prober forbidden disk=left,xvda,r"),
        ("disk-tool", "nodisk sum disk=missing,xvda,w"),
    ];
    let config = c.machine().guests(&guests).config()?.disk(&image);
    let m = super::harness::boot(&config.without_iommu(), slot)?;
    expect_line(m, "[1] drvdom-blk: serving whole (sectors 0..32768)")?;
    expect_line(m, "[2] disk-tool: xvda has 32768 sectors of 512 bytes")?;
    let sum = expect_line(m, "[2] disk-tool: sha256 of xvda (32768 sectors) ")?;
    check(sum.ends_with(&want), || {
        format!("the guest read {sum:?}; the host's image hashes to {want}")
    })?;
    expect_line(
        m,
        "[3] disk-tool: xvda has 4096 sectors of 512 bytes, features Features(FLUSH | READ_ONLY)",
    )?;
    expect_line(m, "[3] disk-tool: read past the end: Err(Bounds)")?;
    expect_line(m, "[3] disk-tool: write at 0: Err(Unsupported)")?;
    // A disk the configuration names but no backend serves: no disk at all.
    expect_line(m, "[4] disk-tool: no disk: ")?;
    Ok(())
}

/// Two guests write neighbouring slices at once, flush, and the host finds
/// exactly those patterns in exactly those slices, nothing else changed.
fn two_guests_write_neighbouring_slices_and_the_host_finds_exactly_that(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    let mut expected = disk_image(&image)?;
    let guests = [
        ("drvdom-blk", SERVING),
        ("disk-tool", "w-left write=4032+64 fill=17 disk=left,xvda,w"),
        ("disk-tool", "w-right write=0+64 fill=34 disk=right,xvda,w"),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    expect_line(
        m,
        "[2] disk-tool: wrote 64 sectors of 0x11 at 4032: Ok(()), read back the same",
    )?;
    expect_line(
        m,
        "[3] disk-tool: wrote 64 sectors of 0x22 at 0: Ok(()), read back the same",
    )?;
    expect_line(m, "[2] disk-tool: done")?;
    expect_line(m, "[3] disk-tool: done")?;
    // left ends at sector 4096 and right starts there: the writes touch.
    expected[4032 * 512..4096 * 512].fill(0x11);
    expected[4096 * 512..4160 * 512].fill(0x22);
    let on_disk = std::fs::read(&image).map_err(|e| e.to_string())?;
    let first_difference = on_disk.iter().zip(&expected).position(|(a, b)| a != b);
    check(
        on_disk.len() == expected.len() && first_difference.is_none(),
        || {
            format!(
            "the image differs from what the guests wrote at byte {first_difference:?} (sector {:?})",
            first_difference.map(|b| b / 512)
        )
        },
    )
}

/// A guest discards a megabyte of its disk: the discard reaches the image
/// file as a hole (zeros, fewer blocks allocated), the rest is unchanged.
fn a_discard_reaches_the_image_file_as_a_hole(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let image = c.path("disk.img");
    let mut expected = disk_image(&image)?;
    let allocated = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.blocks() * 512);
    let before = allocated(&image).map_err(|e| e.to_string())?;
    let guests = [
        ("drvdom-blk", SERVING),
        ("disk-tool", "d-right discard=1024+2048 disk=right,xvda,w"),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    expect_line(m, "[1] drvdom-blk: flush sent, discard supported")?;
    let info = expect_line(m, "[2] disk-tool: xvda has 4096 sectors of 512 bytes")?;
    check(info.contains("DISCARD"), || {
        format!("discard not offered: {info}")
    })?;
    expect_line(m, "[2] disk-tool: discarded 2048 sectors at 1024: Ok(())")?;
    expect_line(m, "[2] disk-tool: done")?;
    // right starts at device sector 4096.
    expected[(4096 + 1024) * 512..(4096 + 3072) * 512].fill(0);
    let on_disk = std::fs::read(&image).map_err(|e| e.to_string())?;
    let first_difference = on_disk.iter().zip(&expected).position(|(a, b)| a != b);
    check(first_difference.is_none(), || {
        format!("the image differs from a hole at sectors 5120..7168 at byte {first_difference:?}")
    })?;
    let after = allocated(&image).map_err(|e| e.to_string())?;
    check(after + (1 << 20) <= before, || {
        format!("the image still has {after} bytes allocated (before: {before})")
    })
}

/// A guest that keeps its ring full of reads cannot starve another on the
/// same backend: while it floods, the other reads its whole disk (1,024
/// ring requests, four in flight). Round-robin gives the flooder 8 requests
/// a round to the other's 4, so about 2,048 meanwhile if the reader always
/// had its four waiting; it also needs the CPU between its requests, so
/// the flooder may get more (about 4,300 on this machine): at most 6,000
/// is asked. A backend serving the fuller ring first would let all 30,000
/// go first. Both guests time their progress by the clock all domains
/// share, since console lines of two domains need not come out in the
/// order they were written.
fn a_guest_flooding_its_ring_cannot_starve_another(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    disk_image(&image)?;
    let guests = [
        ("drvdom-blk", SERVING),
        ("blk-hostile", "flooder flood_reads=30000 disk=left,xvda,r"),
        (
            "disk-tool",
            "reader read_all disk=whole,xvda,r start_paused",
        ),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)?;
    // The reader starts once the flood runs, so the flood covers its whole read.
    expect_line(m, "[2] blk-hostile: flooding 30000 reads")?;
    let (code, out) = super::harness::toolstack(&sock, &["domain", "unpause", "reader"])?;
    check(code == 0, || format!("unpause: {code} {out}"))?;
    expect_line(
        m,
        "[2] blk-hostile: flood done: 30000 reads answered, 0 failed",
    )?;
    let read = expect_line(m, "[3] disk-tool: read all 32768 sectors")?;
    // Both print times by the clock all domains share (console lines of two
    // domains need not come out in the order they were written).
    let (Some(start), Some(end)) = (
        super::harness::number_after(&read, " from "),
        super::harness::number_after(&read, " to "),
    ) else {
        return Err(format!("no times in {read:?}"));
    };
    let marks: Vec<u64> = m
        .lines()
        .iter()
        .filter(|l| l.contains("[2] blk-hostile:") && l.contains(" reads answered at "))
        .filter_map(|l| super::harness::number_after(l, " reads answered at "))
        .collect();
    // The flood began before the reader was let go; it must still run after.
    let after = marks.iter().filter(|&&t| t > end).count();
    check(after > 0, || {
        format!("the flood did not cover the whole read ({start}..{end} us; marks {marks:?})")
    })?;
    let flood_progress = marks
        .iter()
        .filter(|&&t| (start..=end).contains(&t))
        .count();
    check(flood_progress <= 6, || {
        format!("the flooder got {flood_progress} thousand reads while the other read its disk ({start}..{end} us)")
    })
}

/// A hostile frontend tries every bad request, floods its ring, then breaks
/// it; each gets an error, the backend drops only that ring, a guest reading
/// meanwhile gets the right data, and a guest created afterwards is served.
pub fn a_hostile_frontend_harms_nobody(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    use sha2::Digest;
    let image = c.path("disk.img");
    let bytes = disk_image(&image)?;
    let want = hex(&sha2::Sha256::digest(&bytes));
    let tool = crate::build::domain(&c.domains, "disk-tool");
    let tar = crate::iso::bundle(&c.path("bundle.tar"), &[], &[("disk-tool", tool.as_path())])?;
    let guests = [
        ("drvdom-blk", SERVING),
        ("blk-hostile", "blk-hostile disk=left,xvda,r"),
        ("disk-tool", "summer sum disk=whole,xvda,r"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .bundle(tar)
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)?;
    for (what, status) in [
        ("a read past the end", 5),
        ("a read into a grant it does not own", 1),
        ("six segments", 1),
        ("an unknown operation", 1),
        ("a write to its read-only disk", 5),
        ("a discard of its read-only disk", 5),
        ("a read into a page granted read-only", 1),
    ] {
        expect_line(m, &format!("[2] blk-hostile: {what}: status {status}"))?;
    }
    expect_line(m, "[2] blk-hostile: flood of 2000 requests: 2000 answered")?;
    expect_line(m, "drvdom-blk: domain 2 broke its block ring; disconnected")?;
    // `ring list` flags the ring whose request index went past its size.
    let ring = super::debug::block_ring(&sock, 2)?;
    check(ring["verdict"] == "broken indices", || {
        format!("the hostile ring: {ring}")
    })?;
    let sum = expect_line(m, "[3] disk-tool: sha256 of xvda (32768 sectors) ")?;
    check(sum.ends_with(&want), || {
        format!("the reader got {sum:?}, want {want}")
    })?;
    // The backend is still up: a guest created now is served.
    let cfg = c.path("late.cfg");
    std::fs::write(
        &cfg,
        "name = \"late\"\nkernel = \"disk-tool\"\nmemory = 2\ncmdline = \"sum\"\ndisk = ['whole,xvda,r']\n",
    )
    .map_err(|e| e.to_string())?;
    let (code, out) =
        super::harness::toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 0, || format!("create late: {code} {out}"))?;
    let (_, late) = m.wait_for_nth(
        "disk-tool: sha256 of xvda (32768 sectors) ",
        2,
        super::harness::BOOT,
    )?;
    let sums = m
        .lines()
        .iter()
        .filter(|l| l.contains("sha256 of xvda") && l.ends_with(&want))
        .count();
    check(sums == 2, || format!("{sums} right sums; last: {late}"))
}

/// The example key-value guest keeps its data on its disk: it survives the
/// guest being destroyed and created again, and the machine powering off.
/// Its drvdom-blk polls the device (`poll`: as for a device without an
/// interrupt), so that way of waiting is served and tested too.
fn the_kv_store_guest_keeps_its_data_across_restart_and_reboot(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("kv.img");
    crate::qemu::ensure_disk(&image, 4 << 20)?;
    std::fs::write(&image, vec![0u8; 4 << 20]).map_err(|e| e.to_string())?;
    let kv = crate::build::domain(&c.domains, "kv-store");
    let tar = crate::iso::bundle(&c.path("bundle.tar"), &[], &[("kv-store", kv.as_path())])?;
    let driver = "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=kv=0+8192 poll";
    let guests = [
        ("drvdom-blk", driver),
        (
            "kv-store",
            "kv put=colour:blue put=shape:round disk=kv,xvda,w",
        ),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .bundle(tar.clone())
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)?;
    expect_line(m, "drvdom-blk: completions by polling")?;
    expect_line(m, "[2] kv: ready, 0 keys in 0 records")?;
    expect_line(m, "[2] kv: put colour")?;
    expect_line(m, "[2] kv: put shape")?;
    // The guest goes and comes back: its data is on the disk.
    let (code, out) = super::harness::toolstack(&sock, &["domain", "destroy", "kv"])?;
    check(code == 0, || format!("destroy: {code} {out}"))?;
    let cfg = c.path("kv.cfg");
    std::fs::write(
        &cfg,
        "name = \"kv\"\nkernel = \"kv-store\"\nmemory = 2\ncmdline = \"get=colour put=colour:green\"\ndisk = ['kv,xvda,w']\n",
    )
    .map_err(|e| e.to_string())?;
    let (code, out) =
        super::harness::toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 0, || format!("create: {code} {out}"))?;
    expect_line(m, "kv: ready, 2 keys in 2 records")?;
    expect_line(m, "kv: colour = blue")?;
    m.wait_for_nth("kv: put colour", 2, super::harness::BOOT)?;
    // The machine powers off and boots again on the same disk.
    let (code, out) = super::harness::toolstack(&sock, &["host", "shutdown"])?;
    check(code == 0, || format!("host shutdown: {code} {out}"))?;
    m.wait_exit(super::harness::BOOT)?;
    let guests = [
        ("drvdom-blk", driver),
        (
            "kv-store",
            "kv get=colour get=shape get=size disk=kv,xvda,w",
        ),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    expect_line(m, "[2] kv: ready, 2 keys in 3 records")?;
    expect_line(m, "[2] kv: colour = green")?;
    expect_line(m, "[2] kv: shape = round")?;
    expect_line(m, "[2] kv: size is not set")?;
    Ok(())
}

/// The kv-store guest takes its commands at its console too.
fn the_kv_store_guest_takes_commands_at_its_console(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("kv.img");
    std::fs::write(&image, vec![0u8; 4 << 20]).map_err(|e| e.to_string())?;
    let guests = [
        CONSOLE_DOM,
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=kv=0+8192",
        ),
        ("kv-store", "kv disk=kv,xvda,w"),
    ];
    let config = c
        .machine()
        .guests(&guests)
        .config()?
        .disk(&image)
        .com1_input();
    let m = super::harness::boot(&config, slot)?;
    expect_line(m, "[3] kv: ready, 0 keys in 0 records")?;
    // Domain 0's shell has the focus; drvdom-blk is next, then kv.
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 2")?;
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 3")?;
    m.com1_send(b"put colour blue\r")?;
    expect_line(m, "[3] kv: put colour")?;
    m.com1_send(b"get colour\r")?;
    expect_line(m, "[3] kv: colour = blue")?;
    m.com1_send(b"list\r")?;
    expect_line(m, "[3] kv: 1 keys")?;
    Ok(())
}

/// drvdom-blk crashes every 400 requests while a guest writes 8 MiB and
/// reads its whole disk back: the toolstack restarts it each time, the
/// guest's disk reconnects and replays what was in flight, and the guest
/// sees no error and the right data; the host finds the write in the image.
fn a_guest_carries_on_while_drvdom_blk_crashes_and_is_restarted(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use sha2::Digest;
    let image = c.path("disk.img");
    let mut expected = disk_image(&image)?;
    expected[..16384 * 512].fill(0x5a);
    let want = hex(&sha2::Sha256::digest(&expected));
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart crash_after=400",
        ),
        ("disk-tool", "writer memory=24M write=0+16384 fill=90 sum disk=whole,xvda,w"),
    ];
    let trace = c.path("qemu-trace.log");
    let config = c
        .machine()
        .guests(&guests)
        .config()?
        .disk(&image)
        .trace(&["pci_cfg_write", "virtio_set_status"], &trace);
    let m = super::harness::boot(&config, slot)?;
    let wrote = m.wait_for(
        "[2] disk-tool: wrote 16384 sectors",
        super::harness::BOOT * 3,
    )?;
    check(wrote.ends_with("Ok(()), read back the same"), || {
        format!("the writer saw: {wrote:?}")
    })?;
    let sum = m.wait_for(
        "[2] disk-tool: sha256 of xvda (32768 sectors) ",
        super::harness::BOOT * 3,
    )?;
    check(sum.ends_with(&want), || {
        format!("the guest read {sum:?}, want {want}")
    })?;
    let restarts = super::harness::restarts_of(m, "drvdom-blk");
    check(restarts >= 3, || {
        format!("drvdom-blk was restarted {restarts} times")
    })?;
    expect_line(m, "[2] disk-tool: done")?;
    // Finding 7, in QEMU's own trace of the device: each time bus mastering
    // goes back on (each driver instance coming up), the device was reset
    // since it went off (the kernel stops a dead driver's function), so no
    // queue of a dead instance can run into pages freed with it.
    let log = std::fs::read_to_string(&trace).map_err(|e| format!("{}: {e}", trace.display()))?;
    let turned_on = bus_master_after_reset(&log)?;
    check(turned_on > restarts, || {
        format!("bus mastering went on {turned_on} times for {restarts} restarts")
    })?;
    let on_disk = std::fs::read(&image).map_err(|e| e.to_string())?;
    check(on_disk == expected, || {
        "the image is not what the guest wrote".into()
    })
}

/// A drvdom-blk that crashes as soon as it serves anything is restarted
/// with backoff, then given up on: the guest's disk fails with a clean
/// "dead domain" error instead of hanging, and the rest of the machine works on.
fn a_crash_looping_drvdom_blk_is_given_up_on_and_its_guest_told(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    disk_image(&image)?;
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart crash_after=1 restart_limit=3",
        ),
        ("disk-tool", "reader memory=4M sum disk=whole,xvda,r"),
        ("hello", "hello memory=512K still-here"),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    expect_line(
        m,
        "toolstack: giving up on drvdom-blk (domain 1) after 4 crashes in 10 s",
    )?;
    // Its first request (the disk's size) never gets an answer: the disk
    // reports its backend dead instead of waiting for ever.
    expect_line(m, "[2] disk-tool: no disk: dead domain")?;
    expect_line(m, "still-here")?;
    expect_line(m, "toolstack: told domain 2 that its disk backend is gone")?;
    let restarts = super::harness::restarts_of(m, "drvdom-blk");
    check(restarts == 3, || {
        format!("{restarts} restarts before giving up")
    })
}

/// `toolstack domain crash drvdom-blk` while a guest reads its disk over
/// and over: drvdom-blk is restarted, the guest reconnects, and every sum
/// it reads is the host's.
fn toolstack_domain_crash_restarts_a_driver_and_its_guest_carries_on(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use sha2::Digest;
    let image = c.path("disk.img");
    let bytes = disk_image(&image)?;
    let want = hex(&sha2::Sha256::digest(&bytes));
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart",
        ),
        (
            "disk-tool",
            "summer memory=4M sum repeat=6 disk=whole,xvda,r",
        ),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)?;
    expect_line(m, "[2] disk-tool: sha256 of xvda")?;
    let (code, out) = super::harness::toolstack(&sock, &["domain", "crash", "drvdom-blk"])?;
    check(code == 0, || format!("domain crash: {code} {out}"))?;
    expect_line(m, "drvdom-blk) crashed: \"crashed by the control domain\"")?;
    expect_line(m, "toolstack: restarting drvdom-blk")?;
    expect_line(m, "[2] block: disk 0 reconnected to domain ")?;
    let (code, info) = super::harness::toolstack(&sock, &["domain", "info", "drvdom-blk"])?;
    check(
        code == 0
            && info.contains("restarts: 1 (last crash: at ")
            && info.contains(" s: crashed by the control domain)"),
        || format!("domain info: {code} {info}"),
    )?;
    let (code, list) = super::harness::toolstack(&sock, &["domain", "list", "--json"])?;
    let records: Vec<serde_json::Value> = serde_json::from_str(list.trim()).unwrap_or_default();
    check(
        code == 0
            && records.iter().any(|d| {
                d["name"] == "drvdom-blk" && d["state"] == "running" && d["restarts"] == 1
            }),
        || format!("domain list: {code} {list}"),
    )?;
    // The guest's disk as `block-list` shows it: served by the restarted
    // driver domain, connected again; it has no network interface.
    let driver = records
        .iter()
        .find(|d| d["name"] == "drvdom-blk")
        .and_then(|d| d["id"].as_u64());
    let (code, out) =
        super::harness::toolstack(&sock, &["domain", "block-list", "summer", "--json"])?;
    let disks: Vec<serde_json::Value> = serde_json::from_str(out.trim()).unwrap_or_default();
    check(
        code == 0
            && disks.len() == 1
            && disks[0]["name"] == "xvda"
            && disks[0]["target"] == "whole"
            && disks[0]["mode"] == "r"
            && disks[0]["backend"].as_u64() == driver
            && disks[0]["connected"] == true,
        || format!("block-list: {code} {out} (drvdom-blk is {driver:?})"),
    )?;
    let (code, out) = super::harness::toolstack(&sock, &["domain", "network-list", "summer"])?;
    check(
        code == 0 && out.lines().count() == 1 && out.starts_with("INDEX MAC"),
        || format!("network-list: {code} {out:?}"),
    )?;
    expect_line(m, "[2] disk-tool: done")?;
    let sums: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("[2] disk-tool: sha256 of xvda"))
        .collect();
    check(
        sums.len() == 6 && sums.iter().all(|l| l.ends_with(&want)),
        || format!("the sums: {sums:?}"),
    )
}

/// drvdom-blk stops answering (it hangs after 300 requests, heartbeats
/// included) while a guest reads its disk: the toolstack notices the
/// missed heartbeat, crashes and restarts it, and the guest's sum is right.
fn a_hung_drvdom_blk_is_found_by_its_heartbeat_and_restarted(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use sha2::Digest;
    let image = c.path("disk.img");
    let bytes = disk_image(&image)?;
    let want = hex(&sha2::Sha256::digest(&bytes));
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart heartbeat=500 hang_after=300",
        ),
        ("disk-tool", "summer memory=4M sum disk=whole,xvda,r"),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    expect_line(m, "[1] drvdom-blk: hang_after=300: hanging as asked")?;
    expect_line(
        m,
        "toolstack: drvdom-blk (domain 1) missed its heartbeat (500 ms); crashing it",
    )?;
    expect_line(
        m,
        "toolstack: restarting drvdom-blk (domain 1) after its crash",
    )?;
    let sum = m.wait_for(
        "[2] disk-tool: sha256 of xvda (32768 sectors) ",
        super::harness::BOOT * 3,
    )?;
    check(sum.ends_with(&want), || {
        format!("the guest read {sum:?}, want {want}")
    })
}

/// A guest writes 64 MiB of checksummed records and reads them back while
/// drvdom-blk crashes at a random request in every 600, 20 times or more:
/// the guest sees no error, and the host finds every record whole and in
/// its place in the image. Every other call copies through the disk's
/// slots, the rest use a buffer of the disk's (`Disk::buffer`), so both
/// are sent again after the restarts.
fn sixty_four_mib_of_records_survive_twenty_random_drvdom_blk_crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    const RECORDS: usize = 16384;
    let image = c.path("disk.img");
    std::fs::write(&image, vec![0u8; RECORDS * 4096]).map_err(|e| e.to_string())?;
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=whole=all on_crash=restart restart_limit=1000 crash_every=600",
        ),
        ("disk-tool", "records memory=4M records=16384 disk=whole,xvda,w"),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    let done = m.wait_for("[2] disk-tool: 16384 records", super::harness::BOOT * 5)?;
    check(
        done.contains(
            "written and read back right on 1 disks, every other call in the disk's own buffer",
        ),
        || done.clone(),
    )?;
    let restarts = super::harness::restarts_of(m, "drvdom-blk");
    check(restarts >= 20, || {
        format!("drvdom-blk crashed only {restarts} times")
    })?;
    expect_line(m, "[2] disk-tool: done")?;
    let on_disk = std::fs::read(&image).map_err(|e| e.to_string())?;
    records_in_place(&on_disk, 0, RECORDS)
}

/// Checks that `image` holds records `0..count` whole and in place from byte `from`.
fn records_in_place(image: &[u8], from: usize, count: usize) -> Result<(), String> {
    for (i, rec) in image[from..from + count * 4096].chunks(4096).enumerate() {
        let crc = u32::from_le_bytes([rec[4092], rec[4093], rec[4094], rec[4095]]);
        let whole = &rec[..8] == b"XNRECORD"
            && rec[8..16] == (i as u64).to_le_bytes()
            && crc32fast::hash(&rec[..4092]) == crc;
        check(whole, || {
            format!("record {i} from byte {from} in the image is not whole")
        })?;
    }
    Ok(())
}

/// A guest with two disks from one drvdom-blk writes the same 16 MiB of
/// records to each, in turn, while drvdom-blk crashes at random: both
/// disks follow every restart (each is told on its own), and the host finds
/// every record on both.
fn a_guest_with_two_disks_from_one_drvdom_blk_keeps_both_through_crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    const RECORDS: usize = 4096;
    let image = c.path("disk.img");
    std::fs::write(&image, vec![0u8; 2 * RECORDS * 4096]).map_err(|e| e.to_string())?;
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=a=0+32768 vdisk=b=32768+32768 on_crash=restart restart_limit=1000 crash_every=300",
        ),
        (
            "disk-tool",
            "records memory=4M records=4096 disks=2 disk=a,xvda,w disk=b,xvdb,w",
        ),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.disk(&image), slot)?;
    let done = m.wait_for("[2] disk-tool: 4096 records", super::harness::BOOT * 5)?;
    check(
        done.contains(
            "written and read back right on 2 disks, every other call in the disk's own buffer",
        ),
        || done.clone(),
    )?;
    let restarts = super::harness::restarts_of(m, "drvdom-blk");
    check(restarts >= 5, || {
        format!("drvdom-blk crashed only {restarts} times")
    })?;
    expect_line(m, "[2] disk-tool: done")?;
    let on_disk = std::fs::read(&image).map_err(|e| e.to_string())?;
    records_in_place(&on_disk, 0, RECORDS)?;
    records_in_place(&on_disk, RECORDS * 4096, RECORDS)
}

/// Walks QEMU's trace of the disk's command register writes and virtio
/// resets: every time bus mastering goes from off to on, a reset (status 0)
/// came since it went off. Returns how many times it went on.
fn bus_master_after_reset(log: &str) -> Result<usize, String> {
    let mut master = None;
    let mut reset_since_off = false;
    let mut turned_on = 0;
    for line in log.lines() {
        if line.starts_with("virtio_set_status ") && line.ends_with(" val 0") {
            reset_since_off = true;
        }
        let Some(value) = line.strip_prefix("pci_cfg_write virtio-blk-pci 00:04.0 @0x4 <- 0x")
        else {
            continue;
        };
        let on =
            u32::from_str_radix(value.trim(), 16).map_err(|e| format!("{line}: {e}"))? & 0x4 != 0;
        match (master, on) {
            (Some(false), true) if !reset_since_off => {
                return Err(format!(
                    "bus mastering on with no reset since it went off: {line}"
                ))
            }
            (Some(false), true) => turned_on += 1,
            (_, false) if master != Some(false) => reset_since_off = false,
            _ => {}
        }
        master = Some(on);
    }
    Ok(turned_on)
}

fn a_hostile_block_frontend_gets_errors_and_harms_nobody(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    a_hostile_frontend_harms_nobody(c, slot)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        drvdom_blk_drives_the_virtio_disk_and_nobody_else_reaches_it,
        a_guest_reads_the_whole_disk_and_its_sha256_is_the_hosts,
        two_guests_write_neighbouring_slices_and_the_host_finds_exactly_that,
        a_discard_reaches_the_image_file_as_a_hole,
        a_guest_flooding_its_ring_cannot_starve_another,
        a_hostile_block_frontend_gets_errors_and_harms_nobody,
        a_guest_carries_on_while_drvdom_blk_crashes_and_is_restarted,
        a_crash_looping_drvdom_blk_is_given_up_on_and_its_guest_told,
        toolstack_domain_crash_restarts_a_driver_and_its_guest_carries_on,
        a_hung_drvdom_blk_is_found_by_its_heartbeat_and_restarted,
        sixty_four_mib_of_records_survive_twenty_random_drvdom_blk_crashes,
        a_guest_with_two_disks_from_one_drvdom_blk_keeps_both_through_crashes,
        the_kv_store_guest_keeps_its_data_across_restart_and_reboot,
        the_kv_store_guest_takes_commands_at_its_console,
    ]
}
