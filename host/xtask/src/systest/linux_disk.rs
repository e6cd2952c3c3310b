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

pub(super) fn tests() -> Vec<Test> {
    tests![
        linux_keeps_an_ext4_filesystem_on_its_disk_through_a_reboot_and_a_read_only_disk_stays_so,
    ]
}
