//! System tests of a Linux guest's disks: virtio-blk functions of its
//! device model, served by drvdom-blk like a Rust guest's disks, through
//! its restarts.

use super::harness::*;
use super::linux::linux_bundle;
use std::time::Duration;

/// drvdom-blk serving a 32 MiB writable disk and a 4 MiB one the guest
/// gets read-only, on a 40 MiB image.
const DRVDOM_BLK: &str =
    "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=data=0+65536 vdisk=ro=65536+8192";
/// Where the read-only disk starts in the image.
const RO_AT: usize = 65536 * 512;
const LONG: Duration = Duration::from_secs(240);

/// The image: zeros where the writable disk is; the read-only one an
/// ext2 filesystem the host made with one file, `hello`.
fn image(c: &Ctx) -> Result<std::path::PathBuf, String> {
    let fs_dir = c.path("ro-files");
    std::fs::create_dir_all(&fs_dir).map_err(|e| e.to_string())?;
    std::fs::write(fs_dir.join("hello"), "read-only hello\n").map_err(|e| e.to_string())?;
    let ro = c.path("ro.img");
    let _ = std::fs::remove_file(&ro);
    let mke2fs = crate::host_tools::find("mke2fs").ok_or("no mke2fs")?;
    let out = std::process::Command::new(mke2fs)
        .args(["-q", "-t", "ext2", "-d"])
        .arg(&fs_dir)
        .arg(&ro)
        .arg("4M")
        .output()
        .map_err(|e| e.to_string())?;
    check(out.status.success(), || {
        format!("mke2fs: {}", String::from_utf8_lossy(&out.stderr))
    })?;
    let mut bytes = vec![0u8; RO_AT];
    bytes.extend(std::fs::read(&ro).map_err(|e| e.to_string())?);
    bytes.resize(RO_AT + (4 << 20), 0);
    let path = c.path("linux-disk.img");
    std::fs::write(&path, &bytes).map_err(|e| e.to_string())?;
    Ok(path)
}

/// Types `command` at Linux's console (domain `id`) and returns the line
/// it printed that starts with `marker`.
fn ask(
    m: &Machine,
    client: &mut toolstack::Client,
    id: u32,
    command: &str,
    marker: &str,
) -> Result<String, String> {
    client
        .console_write(id, format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let line = m.wait_for(&format!("[{}] {marker}", slot_of(id)), LONG)?;
    Ok(line)
}

/// The console's `[domid]` prefix: the slot part of a domain id.
fn slot_of(id: u32) -> u32 {
    id & 0xffff
}

/// `seq 1 N` as the guest writes it.
fn numbers(n: u32) -> Vec<u8> {
    (1..=n)
        .map(|i| format!("{i}\n"))
        .collect::<String>()
        .into_bytes()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Linux makes an ext4 filesystem on its disk through drvdom-blk, writes
/// a file, reboots (on_reboot), finds it again; the host finds its bytes
/// in the image. The read-only disk mounts read-only, refuses a raw
/// write, and is unchanged.
fn linux_keeps_an_ext4_filesystem_on_its_disk_through_a_reboot_and_a_read_only_disk_stays_so(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let disk = image(c)?;
    let before = std::fs::read(&disk).map_err(|e| e.to_string())?;
    let tar = linux_bundle(c, &[("linux", "disk = [\"data,xvda,w\", \"ro,xvdb,r\"]\n")])?;
    let (m, sock) = c
        .machine()
        .guests(&[CONSOLE_DOM, ("drvdom-blk", DRVDOM_BLK)])
        .bundle(tar)
        .qemu(|q| q.memory("1G").disk(&disk))
        .boot_managed(slot)?;
    m.wait_for("xenolith-linux: 6*7 is 42", LONG)?;
    let err = |e: toolstack::Error| e.to_string();
    let mut client = toolstack::Client::connect(&sock).map_err(err)?;
    let linux = client.resolve("linux").map_err(err)?;
    let size = ask(
        m,
        &mut client,
        linux,
        "echo disks $(cat /sys/block/vda/size) $(cat /sys/block/vdb/size) ro $(cat /sys/block/vdb/ro)",
        "disks ",
    )?;
    check(size.ends_with("disks 65536 8192 ro 1"), || {
        format!("Linux sees its disks as: {size}")
    })?;
    // Each disk's queue interrupts by MSI-X (the device model's table, in
    // device memory the kernel hands over access by access), not by a
    // line of the 8259s.
    let msix = ask(
        m,
        &mut client,
        linux,
        "echo msix $(grep -c 'PCI-MSI.*virtio[0-9]-req' /proc/interrupts) intx $(grep -c 'XT-PIC.*virtio' /proc/interrupts)",
        "msix ",
    )?;
    check(msix.ends_with("msix 2 intx 0"), || {
        format!("Linux's disk interrupts: {msix}")
    })?;
    // And kicks each disk's queue through a doorbell (no round trip).
    for device in 1..=2 {
        expect_line(
            m,
            &format!("device-model: PCI device {device} is kicked through a doorbell at port 0x"),
        )?;
    }
    let count = 300_000;
    let want = sha256_hex(&numbers(count));
    let made = ask(
        m,
        &mut client,
        linux,
        &format!(
            "mkfs.ext4 -q -b 4096 /dev/vda && mount -t ext4 /dev/vda /mnt && seq 1 {count} > /mnt/numbers \
             && umount /mnt && mount -t ext4 /dev/vda /mnt && echo written $(sha256sum /mnt/numbers)"
        ),
        "written ",
    )?;
    check(made.contains(&want), || {
        format!("the file as Linux read it back: {made}; the host's sha256 {want}")
    })?;
    // Its device model's rings are listed and decoded like any other
    // (console-dom 1, drvdom-blk 2, Linux 3, its device model 4). The
    // socket takes one client at a time.
    drop(client);
    let (code, list) = toolstack(&sock, &["ring", "list"])?;
    check(
        code == 0
            && list
                .lines()
                .filter(|l| l.split_whitespace().take(3).eq(["4", "2", "block"]))
                .count()
                == 2,
        || format!("ring list: {code} {list}"),
    )?;
    let (code, dump) = toolstack(&sock, &["ring", "dump", "4:block:0"])?;
    check(code == 0 && dump.contains("frontend: "), || {
        format!("ring dump 4:block:0: {code} {dump}")
    })?;
    let mut client = toolstack::Client::connect(&sock).map_err(err)?;
    let ro = ask(
        m,
        &mut client,
        linux,
        "mount -o ro /dev/vdb /tmp && cat /tmp/hello && dd if=/dev/zero of=/dev/vdb bs=4096 count=1 \
         oflag=direct 2>/dev/null; echo raw write status $?",
        "raw write status ",
    )?;
    check(!ro.ends_with("status 0"), || {
        format!("a raw write to the read-only disk: {ro}")
    })?;
    expect_line(m, &format!("[{}] read-only hello", slot_of(linux)))?;
    // A reboot (on_reboot = restart): the new instance finds the file.
    client
        .console_write(linux, b"umount /mnt; umount /tmp; reboot -f\n")
        .map_err(err)?;
    expect_line(m, "(linux) shut down: Reboot")?;
    m.wait_for_nth("xenolith-linux: 6*7 is 42", 2, LONG)?;
    let again = client.resolve("linux").map_err(err)?;
    check(again != linux, || "still the same domain".into())?;
    let found = ask(
        m,
        &mut client,
        again,
        "mount -t ext4 /dev/vda /mnt && echo found $(sha256sum /mnt/numbers) && umount /mnt && echo unmounted",
        "found ",
    )?;
    check(found.contains(&want), || {
        format!("after the reboot: {found}; the host's sha256 {want}")
    })?;
    expect_line(m, &format!("[{}] unmounted", slot_of(again)))?;
    drop(client);
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "linux", "--wait"])?;
    check(code == 0, || format!("domain shutdown: {code} {out}"))?;
    // The host finds every 4 KiB block of the file in the image, and the
    // read-only disk as it was.
    let after = std::fs::read(&disk).map_err(|e| e.to_string())?;
    let blocks: std::collections::HashSet<&[u8]> = after[..RO_AT].chunks(4096).collect();
    let file = numbers(count);
    let missing = file
        .chunks(4096)
        .filter(|b| b.len() == 4096 && !blocks.contains(b))
        .count();
    check(missing == 0, || {
        format!("{missing} blocks of the file are not in the image")
    })?;
    check(after[RO_AT..] == before[RO_AT..], || {
        "the read-only disk changed".into()
    })?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("I/O error") || l.contains("blk_update_request")),
        || "Linux logged an I/O error".into(),
    )
}

/// One Linux guest with a writable disk (`data`, the whole image) from a
/// drvdom-blk whose module line ends with `extra`.
fn boot_with_disk<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    image_mib: u64,
    extra: &str,
) -> Result<(&'m mut Machine, std::path::PathBuf, u32), String> {
    let disk = c.path("linux-disk.img");
    let f = std::fs::File::create(&disk).map_err(|e| e.to_string())?;
    f.set_len(image_mib << 20).map_err(|e| e.to_string())?;
    let tar = linux_bundle(c, &[("linux", "memory = 384\ndisk = [\"data,xvda,w\"]\n")])?;
    let blk =
        format!("drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=data=all on_crash=restart {extra}");
    let (m, sock) = c
        .machine()
        .guests(&[CONSOLE_DOM, ("drvdom-blk", &blk)])
        .bundle(tar)
        .qemu(move |q| q.memory("1G").disk(&disk))
        .boot_managed(slot)?;
    m.wait_for("xenolith-linux: 6*7 is 42", LONG)?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let linux = client.resolve("linux").map_err(|e| e.to_string())?;
    // Its shell reads what is typed from now on (input that comes while
    // `/init` still loads modules may be lost as the shell starts).
    ask(m, &mut client, linux, "echo shell ready", "shell ready")?;
    Ok((m, sock, linux))
}

/// Each round: 64 MiB of random bytes written with O_DIRECT and read
/// back, then written buffered, synced, dropped from the cache and read
/// back; every sum printed.
const ROUNDS: &str =
    "dd if=/dev/urandom of=/src bs=1M count=64 2>/dev/null; echo src $(sha256sum < /src); \
for r in 1 2 3; do \
dd if=/src of=/dev/vda bs=64k oflag=direct 2>/dev/null || echo write failed; \
echo direct $(dd if=/dev/vda bs=64k count=1024 iflag=direct 2>/dev/null | sha256sum); \
dd if=/src of=/dev/vda bs=1M seek=64 conv=fsync 2>/dev/null || echo write failed; \
echo 3 > /proc/sys/vm/drop_caches; \
echo buffered $(dd if=/dev/vda bs=1M skip=64 count=64 2>/dev/null | sha256sum); \
done; echo io-done";

/// While Linux writes and reads back 64 MiB three times (O_DIRECT and
/// buffered), drvdom-blk is crashed at random moments, at least five
/// times: every sum is the source's, and Linux logs no I/O error.
fn linux_reads_and_writes_through_five_drvdom_blk_crashes_and_sees_no_error(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock, linux) = boot_with_disk(c, slot, 132, "")?;
    let at = slot_of(linux);
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    client
        .console_write(linux, format!("{ROUNDS}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    drop(client);
    let src = m.wait_for(&format!("[{at}] src "), LONG)?;
    let src = src.rsplit("src ").next().unwrap_or("").trim().to_string();
    // Crashes at random moments while the rounds run.
    let mut x = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    let mut crashes = 0;
    let done = format!("[{at}] io-done");
    // (The rounds go on after the fifth crash; their end is waited for below.)
    let finished = |m: &Machine| m.lines().iter().any(|l| l.starts_with(&done));
    while !finished(m) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Five crashes at least 2.5 s apart: never six in ten seconds,
        // the restart limit.
        std::thread::sleep(Duration::from_millis(2500 + x % 1500));
        if finished(m) || crashes == 5 {
            break;
        }
        let (code, out) = toolstack(&sock, &["domain", "crash", "drvdom-blk"])?;
        check(code == 0, || format!("domain crash: {code} {out}"))?;
        crashes += 1;
        m.wait_for_nth("toolstack: restarting drvdom-blk", crashes, LONG)?;
    }
    check(crashes >= 5, || {
        format!("only {crashes} crashes before the rounds ended")
    })?;
    m.wait_for(&done, LONG)?;
    let sums: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| {
            l.starts_with(&format!("[{at}] direct ")) || l.starts_with(&format!("[{at}] buffered "))
        })
        .collect();
    check(
        !src.is_empty() && sums.len() == 6 && sums.iter().all(|l| l.contains(&src)),
        || format!("source {src}, sums read back: {sums:?}"),
    )?;
    let reconnects = m
        .lines()
        .iter()
        .filter(|l| l.contains("block: disk 0 reconnected to domain"))
        .count();
    check(reconnects >= 1, || {
        "the device model never reconnected".into()
    })?;
    check(
        !m.lines().iter().any(|l| {
            l.contains("I/O error")
                || l.trim_end() == format!("[{at}] write failed")
                || l.contains("blk_update_request")
        }),
        || "Linux saw an I/O error".into(),
    )
}

/// A drvdom-blk crashed past its restart limit is given up on: Linux's
/// reads of that disk fail with an I/O error, Linux stays up, and `domain
/// shutdown` still powers it off.
fn linux_gets_io_errors_from_a_given_up_drvdom_blk_and_still_shuts_down(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock, linux) = boot_with_disk(c, slot, 16, "restart_limit=1")?;
    let at = slot_of(linux);
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    ask(
        m,
        &mut client,
        linux,
        "dd if=/dev/vda of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null; echo before $?",
        "before 0",
    )?;
    drop(client);
    for n in 1..=2 {
        let (code, out) = toolstack(&sock, &["domain", "crash", "drvdom-blk"])?;
        check(code == 0, || format!("domain crash: {code} {out}"))?;
        if n == 1 {
            m.wait_for_nth("toolstack: restarting drvdom-blk", 1, LONG)?;
        }
    }
    expect_line(m, "toolstack: giving up on drvdom-blk")?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let after = ask(
        m,
        &mut client,
        linux,
        "dd if=/dev/vda of=/dev/null bs=4k count=1 skip=7 iflag=direct 2>/dev/null; echo after $?",
        "after ",
    )?;
    check(!after.ends_with("after 0"), || {
        format!("a read with the driver gone: {after}")
    })?;
    ask(m, &mut client, linux, "echo still $((6*7))", "still 42")?;
    drop(client);
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "linux", "--wait"])?;
    check(code == 0, || format!("domain shutdown: {code} {out}"))?;
    expect_line(m, &format!("domain {at} (linux) shut down: PowerOff"))?;
    Ok(())
}

/// A hostile program in Linux takes the virtio-blk function over and
/// hands the device model requests whose header, data, status byte or
/// descriptor table lie outside the guest (beyond its RAM, at the
/// kernel-shared pages): each is refused (counted on the kernel log), the
/// device model serves on, and Linux's own driver gets the disk back.
fn a_hostile_linux_driver_cannot_make_the_device_model_reach_outside_its_guest(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock, linux) = boot_with_disk(c, slot, 16, "")?;
    let at = slot_of(linux);
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    ask(
        m,
        &mut client,
        linux,
        &format!(
            "echo 0000:00:01.0 > /sys/bus/pci/drivers/virtio-pci/unbind; virtio-hostile {:#x}",
            ipc_abi::hvm::SHARED_GPA
        ),
        "virtio-hostile: done",
    )?;
    let result = |what: &str| -> Result<String, String> {
        let line = expect_line(m, &format!("[{at}] virtio-hostile: {what}: "))?;
        Ok(line.split(": ").last().unwrap_or("").to_string())
    };
    for (what, want) in [
        ("a good read", "returned, 513 bytes, status 0"),
        ("header outside the guest", "returned, 0 bytes, status 0xee"),
        ("data outside the guest", "returned, 1 bytes, status 0x1"),
        (
            "data at the kernel-shared pages",
            "returned, 1 bytes, status 0x1",
        ),
        ("status outside the guest", "returned, 0 bytes, status 0xee"),
        ("a good read again", "returned, 513 bytes, status 0"),
        ("descriptor table outside the guest", "no answer"),
    ] {
        let got = result(what)?;
        check(got == want, || format!("{what}: {got} (expected {want})"))?;
    }
    // DEVICE_NEEDS_RESET with the driver's bits.
    expect_line(m, &format!("[{at}] virtio-hostile: device status 0x4f"))?;
    expect_line(
        m,
        "device-model: refused 4 requests of PCI device 1 naming memory outside the guest",
    )?;
    expect_line(
        m,
        "device-model: the guest broke the queues of PCI device 1 (Outside)",
    )?;
    // Linux's driver takes the function back and reads the disk.
    ask(
        m,
        &mut client,
        linux,
        "echo 0000:00:01.0 > /sys/bus/pci/drivers/virtio-pci/bind; sleep 1; \
         dd if=/dev/vda of=/dev/null bs=4k count=16 iflag=direct 2>/dev/null; echo reread $?",
        "reread 0",
    )?;
    drop(client);
    let (code, list) = toolstack(&sock, &["domain", "list"])?;
    check(code == 0 && list.contains("linux-dm"), || {
        format!("the device model is gone: {list}")
    })
}

pub(super) fn tests() -> Vec<Test> {
    tests![
        linux_keeps_an_ext4_filesystem_on_its_disk_through_a_reboot_and_a_read_only_disk_stays_so,
        linux_reads_and_writes_through_five_drvdom_blk_crashes_and_sees_no_error,
        linux_gets_io_errors_from_a_given_up_drvdom_blk_and_still_shuts_down,
        a_hostile_linux_driver_cannot_make_the_device_model_reach_outside_its_guest,
    ]
}
