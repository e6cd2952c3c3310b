//! The boot bundle: a GRUB module (command line `bundle`) holding domain
//! configurations and images as a tar archive (layout in `docs/boot-bundle.md`):
//!
//! ```text
//! auto/NN-name.cfg   started at boot, in name order (as xendomains did)
//! images/NAME        the image a configuration's `kernel = "NAME"` names
//! ```
//!
//! Owns: finding the bundle, listing `auto/` in order, and turning a checked
//! configuration into the toolstack's start description. A configuration with
//! any error starts nothing; its errors are printed with file, line and key.

extern crate alloc;
use alloc::string::String;
use alloc::vec::Vec;
use domain_config::{DomainConfig, OnEvent};
use domain_runtime::ipc_abi::proto::net;
use domain_runtime::println;
use tar_no_std::TarArchiveRef;

/// The bundle module, if the boot loaded one.
pub fn find() -> Option<&'static [u8]> {
    domain_runtime::modules()
        .find(|(_, line)| line.split_whitespace().next() == Some("bundle"))
        .map(|(b, _)| b)
}

/// `(path, text)` of every `auto/*.cfg`, in name order.
pub fn auto_configs(bundle: &'static [u8]) -> Vec<(String, &'static str)> {
    let Ok(tar) = TarArchiveRef::new(bundle) else {
        println!("toolstack: the boot bundle is not a readable tar archive");
        return Vec::new();
    };
    let mut out: Vec<(String, &'static str)> = tar
        .entries()
        .filter_map(|e| {
            let name = e.filename().as_str().ok()?.trim_start_matches("./").into();
            let name: String = name;
            if !(name.starts_with("auto/") && name.ends_with(".cfg")) {
                return None;
            }
            match e.data_as_str() {
                Ok(text) => Some((name, text)),
                Err(_) => {
                    println!("toolstack: {}: not UTF-8, skipped", name);
                    None
                }
            }
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The file at `path` in the bundle.
pub fn file(bundle: &'static [u8], path: &str) -> Option<&'static [u8]> {
    let tar = TarArchiveRef::new(bundle).ok()?;
    tar.entries()
        .find(|e| {
            e.filename()
                .as_str()
                .is_ok_and(|f| f.trim_start_matches("./") == path)
        })
        .map(|e| e.data())
}

/// The image `images/NAME` of the bundle.
pub fn image(bundle: &'static [u8], name: &str) -> Option<&'static [u8]> {
    file(bundle, &alloc::format!("images/{}", name))
}

/// The toolstack's start line for a configuration (the same words a module line uses).
pub fn start_line(c: &DomainConfig) -> String {
    use core::fmt::Write;
    let mut line = String::new();
    let _ = write!(
        line,
        "{} mem={} weight={} cap={}",
        c.name,
        c.memory_mib * 1024,
        c.weight,
        c.cap
    );
    for (first, count) in &c.ioports {
        let _ = write!(line, " ioports={:#x}+{}", first, count);
    }
    for irq in &c.irqs {
        let _ = write!(line, " irq={}", irq);
    }
    for (page, pages) in &c.iomem {
        let _ = write!(line, " mmio={:#x}+{}", page * 4096, pages);
    }
    for &bdf in &c.pci {
        let _ = write!(line, " pci={}", domain_config::config::pci_text(bdf));
    }
    if c.dma_kib > 0 {
        let _ = write!(line, " dma={}", c.dma_kib);
    }
    if c.vcpus > 1 {
        let _ = write!(line, " vcpus={}", c.vcpus);
    }
    if let Some(mask) = c.cpus {
        let _ = write!(line, " cpus={:#x}", mask);
    }
    for v in &c.vdisks {
        match v.sectors {
            Some(n) => {
                let _ = write!(line, " vdisk={}:{}+{}", v.name, v.start, n);
            }
            None => {
                let _ = write!(line, " vdisk={}:all", v.name);
            }
        }
    }
    for d in &c.disks {
        let mode = if d.writable { "w" } else { "r" };
        let _ = write!(line, " disk={}:{}:{}", d.target, d.vdev, mode);
    }
    for (i, v) in c.vifs.iter().enumerate() {
        let mac = v
            .mac
            .unwrap_or_else(|| net::generated_mac(&c.name, i as u8));
        let _ = write!(line, " vif={}", net::MacText(mac));
    }
    if let Some(role) = &c.role {
        let _ = write!(line, " role={}", role);
    }
    let _ = write!(line, " restart_limit={}", c.restart_limit);
    if c.heartbeat_ms > 0 {
        let _ = write!(line, " heartbeat_ms={}", c.heartbeat_ms);
    }
    let word = |e: OnEvent| match e {
        OnEvent::Destroy => "destroy",
        OnEvent::Restart => "restart",
        OnEvent::Preserve => "preserve",
    };
    let _ = write!(
        line,
        " on_poweroff={} on_reboot={} on_crash={}",
        word(c.on_poweroff),
        word(c.on_reboot),
        word(c.on_crash)
    );
    if !c.cmdline.is_empty() {
        line.push(' ');
        line.push_str(&c.cmdline);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line_of(text: &str) -> String {
        let parsed = domain_config::config::parse("web.cfg", text, &[]);
        start_line(&parsed.expect("a good configuration").config)
    }

    #[test]
    fn vcpus_and_cpus_reach_the_line_only_when_set() {
        let l = line_of("name = \"web\"\nkernel = \"web\"\nvcpus = 2\ncpus = \"1-2\"\n");
        assert!(l.contains(" vcpus=2") && l.contains(" cpus=0x6"), "{l}");
        let l = line_of("name = \"web\"\nkernel = \"web\"\n");
        assert!(!l.contains("vcpus=") && !l.contains("cpus="), "{l}");
    }

    #[test]
    fn interfaces_get_their_mac_or_a_stable_generated_one() {
        let l = line_of(
            "name = \"web\"\nkernel = \"web\"\nvif = ['mac=00:16:3e:00:00:80', '']\nrole = \"net\"\n",
        );
        let vifs: Vec<&str> = l
            .split_whitespace()
            .filter_map(|w| w.strip_prefix("vif="))
            .collect();
        assert_eq!(vifs.len(), 2);
        assert_eq!(vifs[0], "00:16:3e:00:00:80");
        assert!(vifs[1].starts_with("02:16:3e:"), "{l}");
        assert!(l.contains(" role=net"));
        // The same name gets the same address on every boot.
        assert_eq!(
            line_of("name = \"web\"\nkernel = \"web\"\nvif = ['mac=00:16:3e:00:00:80', '']\nrole = \"net\"\n"),
            l
        );
    }
}
