//! The Linux guest: Debian's cloud kernel exactly as Debian ships it, and an
//! initramfs built here (busybox from `busybox-static`, the virtio and ACPI
//! button modules, the host's `mke2fs` as `mkfs.ext4` with its libraries,
//! the C tools of `guest-tools/` built with `gcc -static`, a small
//! `/init`). Nothing binary is committed.
//!
//! Owns: fetching the pinned kernel package (`host/xtask/linux.pin`; if
//! Debian no longer offers that version, the current
//! `linux-image-cloud-amd64`'s, said so) and busybox with `apt-get
//! download`, unpacking them with `dpkg-deb`, building the initramfs (a
//! newc cpio archive, uncompressed: every kernel reads that), and caching
//! both under `target/linux/`.

use crate::build;
use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a Linux guest boots from.
pub struct Guest {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The kernel release (`uname -r`).
    pub release: String,
}

/// Modules the initramfs carries (input events and the ACPI power button,
/// pvpanic, virtio), in the order they load (each after the
/// modules whose symbols it uses: Debian's package has no `modules.dep`).
const MODULES: &[&str] = &[
    "kernel/drivers/input/evdev.ko",
    "kernel/drivers/acpi/button.ko",
    "kernel/drivers/misc/pvpanic/pvpanic.ko",
    "kernel/drivers/misc/pvpanic/pvpanic-mmio.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
    "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/net/core/failover.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/drivers/net/virtio_net.ko",
];

/// `/init`: a shell on the console, after saying which kernel runs (and a
/// watcher that powers off when the ACPI power button is pressed).
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
echo "xenolith-linux: /init running on $(uname -r), $(nproc) CPU(s)"
echo "xenolith-linux: 6*7 is $((6*7))"
for m in /lib/modules/*.ko; do insmod "$m" 2>/dev/null; done
# The ACPI power button (domain 0's `domain shutdown`) powers off cleanly.
for e in /sys/class/input/event*; do
  if grep -q "Power Button" "$e/device/name" 2>/dev/null; then
    (head -c 24 "/dev/input/${e##*/}" >/dev/null
     printf '\nxenolith-linux: power button: powering off\n'; sync; poweroff -f) &
  fi
done
# `xenolith_data=1` on the command line: /dev/vda is mounted on /data (an
# ext4 filesystem is made on it first if it is blank).
if [ -n "$xenolith_data" ]; then
  for i in 1 2 3 4 5; do [ -b /dev/vda ] && break; sleep 1; done
fi
if [ -n "$xenolith_data" ] && [ -b /dev/vda ]; then
  mkdir -p /data
  if ! mount -t ext4 /dev/vda /data 2>/dev/null \
     && [ "$(head -c 65536 /dev/vda | tr -d '\0' | wc -c)" = 0 ]; then
    mkfs.ext4 -q -b 4096 /dev/vda && mount -t ext4 /dev/vda /data \
      && echo "xenolith-linux: made an ext4 filesystem on the blank /dev/vda"
  fi
  grep -q " /data " /proc/mounts && echo "xenolith-linux: /dev/vda is mounted on /data"
fi
# `xenolith_ip=A.B.C.D/N` on the command line: eth0 gets that address (the
# gateway is QEMU's, 10.0.2.2) and busybox httpd serves a page on port 80.
if [ -n "$xenolith_ip" ] && [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up && ip addr add "$xenolith_ip" dev eth0 \
    && ip route add default via 10.0.2.2 \
    && echo "xenolith-linux: eth0 is $xenolith_ip"
  mkdir -p /www
  { echo "Linux $(uname -r) in a Xenolith HVM domain, $(nproc) CPU(s)"
    df -h /data 2>/dev/null | tail -n 1; } > /www/index.html
  httpd -p 80 -h /www && echo "xenolith-linux: httpd serves port 80"
fi
# `xenolith_iobench=MIB` on the command line (`cargo xtask bench linux`):
# the disk's figures over MIB MiB, then servers for the host's network
# figures (MIB MiB from the guest).
if [ -n "$xenolith_iobench" ] && [ -b /dev/vda ]; then
  ms() { awk '{printf "%d", $1 * 1000}' /proc/uptime; }
  mib=$xenolith_iobench
  t0=$(ms); dd if=/dev/zero of=/dev/vda bs=64k count=$((mib * 16)) oflag=direct conv=fsync 2>/dev/null
  echo "xenolith-linux: iobench seq write $mib MiB $(( $(ms) - t0 )) ms"
  t0=$(ms); dd if=/dev/vda of=/dev/null bs=64k count=$((mib * 16)) iflag=direct 2>/dev/null
  echo "xenolith-linux: iobench seq read $mib MiB $(( $(ms) - t0 )) ms"
  xenolith-io randread /dev/vda $(( mib >= 64 ? 10 : 2 ))
  # Each server says "iobench listening on port N" once it listens.
  xenolith-io sink 5001 & xenolith-io source 5002 $((mib * 1048576)) & xenolith-io echo 5003 &
  # eth0's counters every 10 s, for a bench whose transfer stops (it has
  # no other way to ask Linux: no console input without console-dom).
  while sleep 10; do
    grep eth0 /proc/net/dev | sed 's/^ */xenolith-linux: counters /'
  done &
fi
# `xenolith_netbench=BYTES` on the command line (`cargo xtask bench net`):
# the same servers alone, BYTES from the source.
if [ -n "$xenolith_netbench" ] && [ -n "$xenolith_ip" ]; then
  xenolith-io sink 5001 & xenolith-io source 5002 "$xenolith_netbench" & xenolith-io echo 5003 &
fi
# `xenolith_bench` on the command line: a CPU-bound job, timed inside Linux.
if grep -q xenolith_bench /proc/cmdline; then
  mount -t tmpfs tmp /tmp
  dd if=/dev/zero of=/tmp/z bs=1M count=64 2>/dev/null
  t0=$(awk '{printf "%d", $1 * 1000}' /proc/uptime)
  sha256sum /tmp/z >/dev/null
  t1=$(awk '{printf "%d", $1 * 1000}' /proc/uptime)
  echo "xenolith-linux: sha256 of 64 MiB took $((t1 - t0)) ms"
fi
exec setsid cttyhack sh
"#;

fn dir() -> PathBuf {
    build::target_dir().join("linux")
}

fn run(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads `spec` (a package, or `package=version`) into `into`; the `.deb`'s path.
fn download(spec: &str, into: &Path) -> Result<PathBuf, String> {
    fs::create_dir_all(into).map_err(|e| e.to_string())?;
    let before: Vec<_> = debs(into);
    run(Command::new("apt-get")
        .arg("download")
        .arg(spec)
        .current_dir(into))?;
    let name = spec.split('=').next().unwrap_or(spec);
    debs(into)
        .into_iter()
        .find(|p| {
            let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
            f.starts_with(&format!("{name}_")) && (!before.contains(p) || spec.contains('='))
        })
        .ok_or_else(|| format!("apt-get download {spec} left no .deb"))
}

fn debs(d: &Path) -> Vec<PathBuf> {
    fs::read_dir(d)
        .map(|r| {
            r.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default()
}

/// The pinned kernel package, or the current one if Debian dropped it.
fn kernel_deb(into: &Path) -> Result<PathBuf, String> {
    let pin_file = build::root().join("host/xtask/linux.pin");
    let pin = fs::read_to_string(&pin_file).map_err(|e| format!("{}: {e}", pin_file.display()))?;
    let pinned = pin
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or("linux.pin names no package")?
        .to_string();
    if let Some(deb) = debs(into).into_iter().find(|p| {
        let (name, version) = pinned.split_once('=').unwrap_or((&pinned, ""));
        let f = p.file_name().and_then(|f| f.to_str()).unwrap_or("");
        f.starts_with(&format!("{name}_{}", version.replace(':', "%3a")))
    }) {
        return Ok(deb);
    }
    match download(&pinned, into) {
        Ok(deb) => Ok(deb),
        Err(e) => {
            let deps = run(Command::new("apt-cache").args(["depends", "linux-image-cloud-amd64"]))?;
            let current = deps
                .lines()
                .find_map(|l| l.trim().strip_prefix("Depends: "))
                .ok_or("apt-cache names no current cloud kernel")?
                .trim()
                .to_string();
            println!(
                "xtask: the pinned kernel {pinned} is no longer offered ({e}); using {current}"
            );
            download(&current, into)
        }
    }
}

/// Unpacks a `.deb` into `into` (once).
fn unpack(deb: &Path, into: &Path) -> Result<(), String> {
    if into.exists() {
        return Ok(());
    }
    let tmp = into.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    run(Command::new("dpkg-deb").arg("-x").arg(deb).arg(&tmp))?;
    fs::rename(&tmp, into).map_err(|e| e.to_string())
}

/// One fetch and build at a time: the system tests run two at once, and
/// both would unpack into the same place.
static FETCHING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The kernel and initramfs, fetched and built if they are not cached.
pub fn guest() -> Result<Guest, String> {
    let _one = FETCHING.lock().unwrap_or_else(|e| e.into_inner());
    let d = dir();
    let deb_dir = d.join("debs");
    let kernel_pkg = kernel_deb(&deb_dir)?;
    let stem = kernel_pkg
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("kernel")
        .to_string();
    let k = d.join(&stem);
    unpack(&kernel_pkg, &k)?;
    let boot = k.join("boot");
    let vmlinuz = fs::read_dir(&boot)
        .map_err(|e| format!("{}: {e}", boot.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("vmlinuz-"))
        })
        .ok_or("the kernel package has no vmlinuz")?;
    let release = vmlinuz
        .file_name()
        .and_then(|f| f.to_str())
        .and_then(|f| f.strip_prefix("vmlinuz-"))
        .unwrap_or("")
        .to_string();
    // Named by what goes in, so a changed `/init`, module list or host
    // program builds anew.
    let programs = host_programs()?;
    let names: Vec<&str> = programs.iter().map(|(n, _)| n.as_str()).collect();
    let recipe = crc32fast::hash(
        format!("{INIT}{MODULES:?}{names:?}{VIRTIO_HOSTILE}{XENOLITH_IO}").as_bytes(),
    );
    let initrd = d.join(format!("initramfs-{release}-{recipe:08x}.cpio"));
    if !initrd.exists() {
        let bb_deb = match debs(&deb_dir).into_iter().find(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("busybox-static_"))
        }) {
            Some(p) => p,
            None => download("busybox-static", &deb_dir)?,
        };
        let bb = d.join("busybox");
        unpack(&bb_deb, &bb)?;
        let modules = k.join("lib/modules").join(&release);
        let cpio = initramfs(&bb.join("bin/busybox"), &modules, programs)?;
        // Whole or not at all: another xtask may read it.
        let part = initrd.with_extension(format!("part{}", std::process::id()));
        fs::write(&part, cpio).map_err(|e| e.to_string())?;
        fs::rename(&part, &initrd).map_err(|e| e.to_string())?;
    }
    Ok(Guest {
        kernel: vmlinuz,
        initrd,
        release,
    })
}

/// The source of `virtio-hostile`, the hostile virtio driver the tests
/// run inside Linux (built here with `gcc -static`).
const VIRTIO_HOSTILE: &str = include_str!("../guest-tools/virtio-hostile.c");

/// The source of `xenolith-io`, the I/O side of `bench linux`.
const XENOLITH_IO: &str = include_str!("../guest-tools/xenolith-io.c");

/// A guest tool `name` from C `source`, compiled (static) into `target/linux/`.
fn guest_tool(name: &str, source: &str) -> Result<Vec<u8>, String> {
    let src = dir().join(format!("{name}.c"));
    let out = dir().join(name);
    fs::create_dir_all(dir()).map_err(|e| e.to_string())?;
    fs::write(&src, source).map_err(|e| e.to_string())?;
    run(Command::new("gcc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&src))?;
    fs::read(&out).map_err(|e| format!("{}: {e}", out.display()))
}

/// The host's `mke2fs` (busybox's makes only ext2), as `sbin/mkfs.ext4`,
/// with the shared libraries `ldd` says it loads, at their paths, and
/// the guest tools (`guest-tools/*.c`): (path in the initramfs, bytes).
fn host_programs() -> Result<Vec<(String, Vec<u8>)>, String> {
    let mke2fs = crate::host_tools::find("mke2fs").ok_or("mke2fs is missing (e2fsprogs)")?;
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut out = vec![
        ("sbin/mkfs.ext4".to_string(), read(&mke2fs)?),
        (
            "bin/virtio-hostile".to_string(),
            guest_tool("virtio-hostile", VIRTIO_HOSTILE)?,
        ),
        (
            "bin/xenolith-io".to_string(),
            guest_tool("xenolith-io", XENOLITH_IO)?,
        ),
    ];
    let ldd = run(Command::new("ldd").arg(&mke2fs))?;
    for line in ldd.lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)", or the
        // loader alone: "/lib64/ld-linux-x86-64.so.2 (0x...)".
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            out.push((p.trim_start_matches('/').to_string(), read(Path::new(p))?));
        }
    }
    Ok(out)
}

/// The initramfs: directories, busybox, the modules, the host programs,
/// `/init`, `/dev/console`.
fn initramfs(
    busybox: &Path,
    modules: &Path,
    programs: Vec<(String, Vec<u8>)>,
) -> Result<Vec<u8>, String> {
    let read = |p: &Path| fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let dir = |name: &str| (cpio::NewcBuilder::new(name).mode(0o040755), Vec::new());
    let file = |name: &str, mode: u32, bytes: Vec<u8>| {
        (cpio::NewcBuilder::new(name).mode(0o100000 | mode), bytes)
    };
    let mut entries = vec![
        dir("bin"),
        dir("dev"),
        dir("proc"),
        dir("sys"),
        dir("tmp"),
        dir("lib"),
        dir("lib/modules"),
        dir("lib64"),
        dir("lib/x86_64-linux-gnu"),
        dir("sbin"),
        dir("mnt"),
        (
            cpio::NewcBuilder::new("dev/console")
                .mode(0o020600)
                .rdev_major(5)
                .rdev_minor(1),
            Vec::new(),
        ),
        file("bin/busybox", 0o755, read(busybox)?),
        file("init", 0o755, INIT.as_bytes().to_vec()),
    ];
    for (path, bytes) in programs {
        entries.push(file(&path, 0o755, bytes));
    }
    for (i, m) in MODULES.iter().enumerate() {
        let name = Path::new(m)
            .file_name()
            .and_then(|f| f.to_str())
            .unwrap_or("m.ko");
        // Numbered so that `/init` loads them in dependency order.
        entries.push(file(
            &format!("lib/modules/{i:02}-{name}"),
            0o644,
            read(&modules.join(m))?,
        ));
    }
    let out = cpio::write_cpio(
        entries
            .into_iter()
            .map(|(b, bytes)| (b, Cursor::new(bytes))),
        Cursor::new(Vec::new()),
    )
    .map_err(|e| format!("cannot build the initramfs: {e}"))?;
    Ok(out.into_inner())
}
