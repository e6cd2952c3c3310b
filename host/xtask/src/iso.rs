//! The bootable GRUB 2 ISO.
//!
//! Owns: the generated `grub.cfg` (no menu wait, the kernel on a `multiboot2`
//! line with its command line, one `module2` line per domain image) and the
//! `grub-mkrescue` call that turns a staging directory into an ISO.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The command line `cargo xtask run` and `image` use unless told otherwise.
pub const DEFAULT_CMDLINE: &str = "dom0_mem=131072 com1=115200,8n1 console=com1,vga";

/// A file GRUB loads next to the kernel, with its command line.
#[derive(Clone)]
pub struct Module {
    pub path: PathBuf,
    pub cmdline: String,
}

/// Writes a boot bundle (a tar archive: `auto/*.cfg` and `images/*`; see
/// `docs/boot-bundle.md`) to `out`.
pub fn bundle(
    out: &Path,
    auto: &[(&str, &str)],
    images: &[(&str, &Path)],
) -> Result<PathBuf, String> {
    bundle_with_files(out, auto, images, &[])
}

/// [`bundle`] with other files too, as `(path in the bundle, bytes)`.
pub fn bundle_with_files(
    out: &Path,
    auto: &[(&str, &str)],
    images: &[(&str, &Path)],
    files: &[(&str, Vec<u8>)],
) -> Result<PathBuf, String> {
    let file =
        fs::File::create(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut tar = tar::Builder::new(file);
    let mut add = |path: &str, data: &[u8]| -> Result<(), String> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data)
            .map_err(|e| format!("cannot add {path} to the bundle: {e}"))
    };
    for (name, text) in auto {
        add(&format!("auto/{name}"), text.as_bytes())?;
    }
    for (name, path) in images {
        let data = fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        add(&format!("images/{name}"), &data)?;
    }
    for (path, data) in files {
        add(path, data)?;
    }
    tar.into_inner()
        .map_err(|e| format!("cannot finish the bundle: {e}"))?;
    Ok(out.to_path_buf())
}

/// The modules `cargo xtask run` and `image` boot: domain 0 first, then the example guests.
pub fn default_modules(domains: &Path) -> Vec<Module> {
    vec![
        Module {
            path: crate::build::domain(domains, "toolstack-domain"),
            cmdline: format!("toolstack-domain mgmt=com2 {MGMT_ENDPOINT}"),
        },
        Module {
            path: crate::build::domain(domains, "console-dom"),
            cmdline:
                "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 on_crash=restart heartbeat=2000"
                    .into(),
        },
        Module {
            path: default_bundle(domains),
            cmdline: "bundle".into(),
        },
    ]
}

/// What `cargo xtask run` boots: the default modules with drvdom-blk and
/// drvdom-net for the virtio disk and NIC it attaches.
pub fn run_modules(domains: &Path) -> Vec<Module> {
    let mut modules = default_modules(domains);
    modules.insert(2, block_driver_module(domains));
    modules.insert(3, net_driver_module(domains));
    modules
}

/// drvdom-blk with the disk `cargo xtask run` attaches at PCI 00:04.0.
pub fn block_driver_module(domains: &Path) -> Module {
    Module {
        path: crate::build::domain(domains, "drvdom-blk"),
        cmdline: BLOCK_DRIVER_LINE.into(),
    }
}

/// drvdom-blk's module line for the QEMU disk (`qemu::Config::disk`).
pub const BLOCK_DRIVER_LINE: &str =
    "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=kv=0+8192 vdisk=linux=8192+122880 on_crash=restart heartbeat=2000";

/// drvdom-net with the NIC `cargo xtask run` attaches at PCI 00:05.0.
pub fn net_driver_module(domains: &Path) -> Module {
    Module {
        path: crate::build::domain(domains, "drvdom-net"),
        cmdline: NET_DRIVER_LINE.into(),
    }
}

/// drvdom-net's module line for the QEMU NIC (`qemu::Config::nic`).
pub const NET_DRIVER_LINE: &str =
    "drvdom-net role=net memory=4M pci=00:05.0 dma=512 on_crash=restart heartbeat=2000";

/// Where domain 0 serves the management protocol over TCP on QEMU's user
/// network (`cargo xtask run` forwards a host port to it).
pub const MGMT_ENDPOINT: ipc_abi::mgmt_net::Endpoint = ipc_abi::mgmt_net::Endpoint {
    address: [10, 0, 2, 9],
    prefix: 24,
    port: ipc_abi::mgmt_net::DEFAULT_PORT,
    mac: [0x00, 0x16, 0x3e, 0x00, 0x00, 0x02],
};

/// The web guest's address on QEMU's user network (its ports are forwarded there).
pub const WEB_GUEST_IP: &str = "10.0.2.15";

/// The Linux guest of the example bundle: Debian's cloud kernel, unmodified,
/// in an HVM domain, its console served by its device model.
pub const LINUX_CFG: &str = "# Linux (Debian's cloud kernel, unmodified) in an HVM domain: its console\n# is COM1 of the PC its device model emulates (toolstack domain console linux);\n# its disk (/dev/vda, mounted on /data) and interface (eth0, 10.0.2.16, a page\n# on port 80 that `cargo xtask run` forwards) come from drvdom-blk and drvdom-net.\nname = \"linux\"\ntype = \"hvm\"\nkernel = \"vmlinuz\"\nramdisk = \"initrd.img\"\ncmdline = \"console=ttyS0 quiet xenolith_data=1 xenolith_ip=10.0.2.16/24\"\nmemory = 128\ndisk = [\"linux,xvda,w\"]\nvif = [\"mac=00:16:3e:00:00:40\"]\n";

/// The Linux guest's address on QEMU's user network (its page is forwarded there).
pub const LINUX_GUEST_IP: &str = "10.0.2.16";

/// The example boot bundle: the guests started at boot.
fn default_bundle(domains: &Path) -> PathBuf {
    let out = crate::build::target_dir().join("bundle.tar");
    let hello = crate::build::domain(domains, "hello");
    let kv = crate::build::domain(domains, "kv-store");
    let cfg = "# Started at boot: the example guest.\nname = \"hello\"\nmemory = 1\nkernel = \"hello\"\ncmdline = \"greeting=from-the-boot-bundle\"\n";
    let kv_cfg = "# The example key-value store: its data lives on the virtual disk 'kv'\n# that drvdom-blk serves (type 'put KEY VALUE', 'get KEY', 'list' at its console).\nname = \"kv\"\nmemory = 2\nkernel = \"kv-store\"\ndisk = [\"kv,xvda,w\"]\n";
    let web = crate::build::domain(domains, "web");
    let web_cfg = format!("# The example web guest: HTTP on port 80 (uptime, requests served), UDP echo\n# on port 7, on QEMU's user network; `cargo xtask run` forwards host ports to it.\nname = \"web\"\nmemory = 4\nkernel = \"web\"\nvif = [\"mac=00:16:3e:00:00:80\"]\ncmdline = \"ip={WEB_GUEST_IP}/24 gw=10.0.2.2\"\n");
    let mut autos = vec![
        ("10-hello.cfg", cfg.to_string()),
        ("20-kv.cfg", kv_cfg.to_string()),
        ("30-web.cfg", web_cfg),
    ];
    let mut images: Vec<(&str, PathBuf)> = vec![("hello", hello), ("kv-store", kv), ("web", web)];
    // Debian's cloud kernel in an HVM domain, if it could be fetched.
    match crate::linux_guest::guest() {
        Ok(linux) => {
            autos.push(("40-linux.cfg", LINUX_CFG.to_string()));
            images.push(("vmlinuz", linux.kernel));
            images.push(("initrd.img", linux.initrd));
            images.push((
                "device-model",
                crate::build::domain(domains, "device-model"),
            ));
        }
        Err(e) => eprintln!("xtask: no Linux guest in the bundle: {e}"),
    }
    let autos: Vec<(&str, &str)> = autos.iter().map(|(n, t)| (*n, t.as_str())).collect();
    let images: Vec<(&str, &Path)> = images.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let keys = match crate::mgmt_keys::ensure(&crate::build::target_dir()) {
        Ok(k) => k.bundle_files(),
        Err(e) => {
            eprintln!("xtask: no keys for the network management channel: {e}");
            Vec::new()
        }
    };
    match bundle_with_files(&out, &autos, &images, &keys) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("xtask: {e}");
            out
        }
    }
}

/// The `grub.cfg` for a kernel command line and modules (named `/boot/<file name>`).
pub fn grub_cfg(cmdline: &str, modules: &[Module]) -> String {
    let mut cfg = String::from(
        "# Generated by cargo xtask; edits are overwritten.\n\
         set timeout=0\n\
         set default=0\n\
         menuentry \"Xenolith\" {\n",
    );
    cfg.push_str(&format!("    multiboot2 /boot/xenolith {cmdline}\n"));
    for m in modules {
        let name = m
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        cfg.push_str(&format!("    module2 /boot/{name} {}\n", m.cmdline));
    }
    cfg.push_str("    boot\n}\n");
    cfg
}

/// Assembles the ISO at `out` and returns its path.
pub fn build(
    kernel: &Path,
    cmdline: &str,
    modules: &[Module],
    out: &Path,
) -> Result<PathBuf, String> {
    let stage = out.with_extension("stage");
    let _ = fs::remove_dir_all(&stage);
    let grub_dir = stage.join("boot/grub");
    fs::create_dir_all(&grub_dir)
        .map_err(|e| format!("cannot create {}: {e}", grub_dir.display()))?;
    fs::copy(kernel, stage.join("boot/xenolith"))
        .map_err(|e| format!("cannot copy {}: {e}", kernel.display()))?;
    for m in modules {
        let name = m
            .path
            .file_name()
            .ok_or_else(|| format!("module {} has no file name", m.path.display()))?;
        fs::copy(&m.path, stage.join("boot").join(name))
            .map_err(|e| format!("cannot copy module {}: {e}", m.path.display()))?;
    }
    fs::write(grub_dir.join("grub.cfg"), grub_cfg(cmdline, modules))
        .map_err(|e| format!("cannot write grub.cfg: {e}"))?;
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(out)
        .arg(&stage)
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    let _ = fs::remove_dir_all(&stage);
    if !output.status.success() {
        return Err(format!(
            "grub-mkrescue failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(out.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grub_cfg_has_no_menu_wait_and_one_line_per_module() {
        let cfg = grub_cfg(
            "noreboot",
            &[Module {
                path: "/x/console-dom".into(),
                cmdline: "console-dom role=console".into(),
            }],
        );
        assert!(cfg.contains("set timeout=0\n"));
        assert!(cfg.contains("multiboot2 /boot/xenolith noreboot\n"));
        assert!(cfg.contains("module2 /boot/console-dom console-dom role=console\n"));
    }
}
