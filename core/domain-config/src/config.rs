//! What a configuration means: [`DomainConfig`], checked.
//!
//! Keys (as `xl.cfg`): `name`, `memory` (MiB), `vcpus`, `cpus` (affinity,
//! e.g. `"0-1,3"`), `weight`, `cap`, `kernel`, `cmdline`, `disk`, `vif`,
//! `on_poweroff`, `on_reboot`, `on_crash`, and for driver domains `ioports`,
//! `iomem`, `irqs`, `pci`, `dma`, `vdisk`, `role`, `restart_limit` and
//! `heartbeat`. Later entries and command-line overrides win over earlier
//! ones. A GRUB module line is a second front end of the same checks
//! (`module_line`), with the same keys and values.

use crate::syntax::{self, ConfigError, Entry, Value};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Longest domain name (as the kernel's `NAME_MAX`).
pub const NAME_MAX: usize = 32;
/// Most memory a configuration may ask for, in MiB.
pub const MEMORY_MAX_MIB: u64 = 16 * 1024;
/// Crashes within 10 s after which a restarting domain is given up on,
/// unless `restart_limit` says otherwise.
pub const RESTART_LIMIT: u64 = 5;
/// Most vCPUs.
pub const VCPUS_MAX: u64 = ipc_abi::domain::MAX_VCPUS as u64;

/// What to do when a domain powers off, reboots or crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnEvent {
    Destroy,
    Restart,
    /// Keep it (and its crash record) until destroyed by hand.
    Preserve,
}

/// A virtual disk: which backend disk, the name the guest sees, writable or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disk {
    pub target: String,
    pub vdev: String,
    pub writable: bool,
}

impl Disk {
    /// One `disk =` entry (`TARGET,VDEV,r|w`), as `domain block-attach` takes it.
    pub fn parse(s: &str) -> Option<Disk> {
        disk(s)
    }
}

/// A virtual disk a block driver domain serves (`vdisk = ['NAME=START+SECTORS']`,
/// or `'NAME=all'` for the whole device).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VDisk {
    pub name: String,
    /// First sector on the device.
    pub start: u64,
    /// Sectors, or None for the rest of the device.
    pub sectors: Option<u64>,
}

/// Written as a configuration (and a module line, and a domain's command
/// line) writes it: `NAME=START+SECTORS` or `NAME=all`.
impl core::fmt::Display for VDisk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.sectors {
            Some(n) => write!(f, "{}={}+{}", self.name, self.start, n),
            None => write!(f, "{}=all", self.name),
        }
    }
}

/// The index of a guest-visible disk name: `xvda` → 0 ... `xvdz` → 25.
pub fn vdev_index(vdev: &str) -> Option<u32> {
    let c = vdev.strip_prefix("xvd")?;
    let mut chars = c.chars();
    let letter = chars.next().filter(char::is_ascii_lowercase)?;
    chars.next().is_none().then(|| letter as u32 - 'a' as u32)
}

fn vdisk(s: &str) -> Option<VDisk> {
    let v = ipc_abi::launch::vdisk(s)?;
    Some(VDisk {
        name: v.name.to_string(),
        start: v.start,
        sectors: v.sectors,
    })
}

/// A virtual network interface: one `vif =` entry (`mac=...`, `mtu=...`,
/// or empty), as `domain network-attach` takes it too (`Vif::parse`).
pub use ipc_abi::launch::VifSpec as Vif;

/// The service a driver domain provides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Console,
    Block,
    Net,
}

impl Role {
    pub fn word(self) -> &'static str {
        match self {
            Role::Console => "console",
            Role::Block => "block",
            Role::Net => "net",
        }
    }
}

/// What runs in the domain (`type =`, as in xl.cfg).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    /// A Rust domain on `domain-runtime`, in ring 3 (the default).
    #[default]
    Pv,
    /// An unmodified guest under SVM (`ipc_abi::hvm`).
    Hvm,
}

impl Kind {
    pub fn word(self) -> &'static str {
        match self {
            Kind::Pv => "pv",
            Kind::Hvm => "hvm",
        }
    }
}

/// A checked domain configuration: everything needed to start the domain,
/// from a configuration file or a GRUB module line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainConfig {
    pub name: String,
    /// `type`: what runs in it.
    pub kind: Kind,
    /// `memory`: MiB as a number, or `"512K"`/`"4M"`/`"1G"`.
    pub memory_kib: u64,
    /// `maxmem`: the most it may grow to at run time (`domain mem-set`),
    /// as `memory`; 0: `memory` (it can only shrink and grow back).
    pub maxmem_kib: u64,
    pub vcpus: u64,
    /// CPUs the vCPUs may run on (bit n = CPU n); `None` = any.
    pub cpus: Option<u64>,
    pub weight: u32,
    pub cap: u32,
    pub kernel: String,
    /// `ramdisk`: an HVM Linux guest's initramfs image (empty: none).
    pub ramdisk: String,
    pub cmdline: String,
    pub disks: Vec<Disk>,
    pub vifs: Vec<Vif>,
    pub on_poweroff: OnEvent,
    pub on_reboot: OnEvent,
    pub on_crash: OnEvent,
    /// I/O port ranges `(first, count)`.
    pub ioports: Vec<(u16, u16)>,
    /// Device memory `(first page frame, pages)`.
    pub iomem: Vec<(u64, u64)>,
    pub irqs: Vec<u8>,
    /// PCI functions, as `bus << 8 | device << 3 | function` (written `"BB:DD.F"`).
    pub pci: Vec<u16>,
    /// KiB of physically contiguous memory for device DMA (driver domains).
    pub dma_kib: u64,
    /// Virtual disks a block driver domain serves.
    pub vdisks: Vec<VDisk>,
    /// The service a driver domain provides.
    pub role: Option<Role>,
    /// Crashes within 10 s after which a restarting domain is given up on.
    pub restart_limit: u32,
    /// Milliseconds between the heartbeats the domain must send (0: none).
    pub heartbeat_ms: u32,
    /// GRUB module lines only: connect it by an event channel to the
    /// earlier module of that name (`evtchn=NAME`).
    pub evtchn: Option<String>,
    /// GRUB module lines only: console-dom replays its console history once
    /// it has stopped (`history_on_exit`).
    pub history_on_exit: bool,
    /// Created paused (a module line's `start_paused`, `toolstack domain create -p`).
    pub start_paused: bool,
}

/// A configuration and what was not quite right about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub config: DomainConfig,
    /// Unknown keys and similar: reported, not fatal.
    pub warnings: Vec<ConfigError>,
}

const KEYS: &[&str] = &[
    "name",
    "type",
    "memory",
    "maxmem",
    "vcpus",
    "cpus",
    "weight",
    "cap",
    "kernel",
    "ramdisk",
    "cmdline",
    "disk",
    "vif",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "ioports",
    "iomem",
    "irqs",
    "pci",
    "dma",
    "vdisk",
    "role",
    "restart_limit",
    "heartbeat",
];

/// Most DMA memory a domain may have, in KiB (64 MiB).
pub const DMA_MAX_KIB: u64 = 64 * 1024;

/// `"BB:DD.F"` (hexadecimal bus, device below 32, function below 8) →
/// `bus << 8 | device << 3 | function`.
pub fn pci_address(s: &str) -> Option<u16> {
    let (bus, rest) = s.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let bus = u16::from_str_radix(bus, 16).ok().filter(|&b| b < 256)?;
    let dev = u16::from_str_radix(dev, 16).ok().filter(|&d| d < 32)?;
    let func = u16::from_str_radix(func, 16).ok().filter(|&f| f < 8)?;
    Some(bus << 8 | dev << 3 | func)
}

/// The `"BB:DD.F"` form of a PCI function.
pub fn pci_text(bdf: u16) -> String {
    alloc::format!("{:02x}:{:02x}.{}", bdf >> 8, (bdf >> 3) & 0x1f, bdf & 7)
}

struct Ctx<'a> {
    file: &'a str,
    errors: Vec<ConfigError>,
}

impl Ctx<'_> {
    fn error(&mut self, e: &Entry, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.into(),
            line: e.line,
            key: Some(e.key.clone()),
            message: message.into(),
        });
    }

    fn string(&mut self, e: &Entry) -> Option<String> {
        match &e.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.error(e, "expected a string in quotes");
                None
            }
        }
    }

    fn int(&mut self, e: &Entry, range: core::ops::RangeInclusive<u64>) -> Option<u64> {
        match &e.value {
            Value::Int(n) if range.contains(n) => Some(*n),
            Value::Int(n) => {
                self.error(
                    e,
                    alloc::format!("{n} is out of range {}..={}", range.start(), range.end()),
                );
                None
            }
            _ => {
                self.error(e, "expected a number");
                None
            }
        }
    }

    fn strings(&mut self, e: &Entry) -> Option<Vec<String>> {
        match &e.value {
            Value::List(items) => {
                let mut out = Vec::new();
                for v in items {
                    match v {
                        Value::Str(s) => out.push(s.clone()),
                        _ => {
                            self.error(e, "expected a list of strings");
                            return None;
                        }
                    }
                }
                Some(out)
            }
            _ => {
                self.error(e, "expected a list in [ ]");
                None
            }
        }
    }

    fn on_event(&mut self, e: &Entry) -> Option<OnEvent> {
        match self.string(e)?.as_str() {
            "destroy" => Some(OnEvent::Destroy),
            "restart" => Some(OnEvent::Restart),
            "preserve" => Some(OnEvent::Preserve),
            other => {
                self.error(
                    e,
                    alloc::format!("'{other}' is not destroy, restart or preserve"),
                );
                None
            }
        }
    }
}

/// Parses a configuration file with command-line overrides (`key=value`).
/// Returns every error found, or the checked configuration.
pub fn parse(file: &str, text: &str, overrides: &[&str]) -> Result<Parsed, Vec<ConfigError>> {
    let mut all = syntax::entries(file, text).map_err(|e| alloc::vec![e])?;
    for o in overrides {
        all.push(syntax::override_entry(o).map_err(|e| alloc::vec![e])?);
    }
    check(file, &all)
}

/// `memory`: a number of MiB, or a string with a unit (`"512K"`, `"4M"`, `"1G"`).
fn size_kib(v: &Value) -> Option<u64> {
    let kib = match v {
        Value::Int(mib) => mib.checked_mul(1024)?,
        Value::Str(s) => {
            let (n, unit) = s.split_at(s.len().checked_sub(1)?);
            let n = syntax::parse_int(n)?;
            match unit {
                "K" | "k" => n,
                "M" | "m" => n.checked_mul(1024)?,
                "G" | "g" => n.checked_mul(1024 * 1024)?,
                _ => return None,
            }
        }
        Value::List(_) => return None,
    };
    (1..=MEMORY_MAX_MIB * 1024).contains(&kib).then_some(kib)
}

/// Checks entries (the last of each key wins) into a configuration.
pub(crate) fn check(file: &str, all: &[Entry]) -> Result<Parsed, Vec<ConfigError>> {
    let mut ctx = Ctx {
        file,
        errors: Vec::new(),
    };
    let mut warnings = Vec::new();
    // The last entry of each key wins.
    let mut last: Vec<&Entry> = Vec::new();
    for e in all {
        if !KEYS.contains(&e.key.as_str()) {
            warnings.push(ConfigError {
                file: file.into(),
                line: e.line,
                key: Some(e.key.clone()),
                message: "unknown key, ignored".into(),
            });
            continue;
        }
        last.retain(|x| x.key != e.key);
        last.push(e);
    }
    let get = |k: &str| last.iter().find(|e| e.key == k).copied();

    let name = get("name").and_then(|e| {
        let n = ctx.string(e)?;
        if n.is_empty() || n.len() > NAME_MAX || !n.bytes().all(|b| b.is_ascii_graphic()) {
            ctx.error(
                e,
                alloc::format!("a name is 1 to {NAME_MAX} printable characters without spaces"),
            );
            return None;
        }
        Some(n)
    });
    let kernel = get("kernel").and_then(|e| {
        let k = ctx.string(e)?;
        if k.is_empty() {
            ctx.error(e, "empty kernel path");
            return None;
        }
        Some(k)
    });
    let ramdisk = get("ramdisk").and_then(|e| ctx.string(e));
    let memory_kib = get("memory").map_or(Some(64 * 1024), |e| {
        if matches!(e.value, Value::Int(_)) {
            return ctx.int(e, 1..=MEMORY_MAX_MIB).map(|mib| mib * 1024);
        }
        size_kib(&e.value).or_else(|| {
            ctx.error(
                e,
                alloc::format!(
                    "expected MiB (1 to {MEMORY_MAX_MIB}) or a size like \"512K\", \"4M\""
                ),
            );
            None
        })
    });
    let maxmem_kib = get("maxmem").map_or(Some(0), |e| {
        let kib = if let Value::Int(_) = e.value {
            ctx.int(e, 1..=MEMORY_MAX_MIB).map(|mib| mib * 1024)
        } else {
            size_kib(&e.value)
        };
        match kib {
            Some(k) if k >= memory_kib.unwrap_or(0) => Some(k),
            Some(_) => {
                ctx.error(e, "below memory: maxmem is the most it may grow to");
                None
            }
            None => {
                ctx.error(e, "expected MiB or a size like \"512K\", \"4M\"");
                None
            }
        }
    });
    let vcpus = get("vcpus").map_or(Some(1), |e| ctx.int(e, 1..=VCPUS_MAX));
    let weight = get("weight").map_or(Some(u64::from(ipc_abi::domain::DEFAULT_WEIGHT)), |e| {
        ctx.int(e, 1..=65535)
    });
    let restart_limit =
        get("restart_limit").map_or(Some(RESTART_LIMIT), |e| ctx.int(e, 1..=100_000));
    let heartbeat_ms = get("heartbeat").map_or(Some(0), |e| ctx.int(e, 0..=600_000));
    let cap = get("cap").map_or(Some(0), |e| ctx.int(e, 0..=100));
    let cpus = get("cpus").map(|e| {
        ctx.string(e).and_then(|s| {
            cpu_mask(&s).or_else(|| {
                ctx.error(e, "expected CPUs like \"0-3,6\" (0 to 63)");
                None
            })
        })
    });
    let cmdline = get("cmdline").map_or(Some(String::new()), |e| ctx.string(e));
    let disks = get("disk").map_or(Some(Vec::new()), |e| {
        let list = ctx.strings(e)?;
        let mut out = Vec::new();
        for d in list {
            match disk(&d) {
                Some(x) => out.push(x),
                None => {
                    ctx.error(e, alloc::format!("'{d}' is not 'target,vdev,r|w'"));
                    return None;
                }
            }
        }
        Some(out)
    });
    let vifs = get("vif").map_or(Some(Vec::new()), |e| {
        let list = ctx.strings(e)?;
        let mut out = Vec::new();
        for v in list {
            match vif(&v) {
                Some(x) => out.push(x),
                None => {
                    ctx.error(
                        e,
                        alloc::format!(
                            "'{v}' is not a vif spec like 'mac=00:16:3e:00:00:01,mtu=1500' (mtu {} to {})",
                            ipc_abi::proto::net::MIN_MTU,
                            ipc_abi::proto::net::MAX_MTU
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    });
    let on_poweroff = get("on_poweroff").map_or(Some(OnEvent::Destroy), |e| ctx.on_event(e));
    let on_reboot = get("on_reboot").map_or(Some(OnEvent::Restart), |e| ctx.on_event(e));
    // A driver domain (one with a role) is restarted when it crashes.
    let crash_default = if get("role").is_some() {
        OnEvent::Restart
    } else {
        OnEvent::Destroy
    };
    let on_crash = get("on_crash").map_or(Some(crash_default), |e| ctx.on_event(e));
    let ioports = get("ioports").map_or(Some(Vec::new()), |e| {
        let mut out = Vec::new();
        for r in ctx.strings(e)? {
            match range(&r).filter(|&(a, b)| b <= 0xffff && a <= b) {
                Some((a, b)) => out.push((a as u16, (b - a + 1) as u16)),
                None => {
                    ctx.error(
                        e,
                        alloc::format!("'{r}' is not a port range like '0x3f8-0x3ff'"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    });
    let iomem = get("iomem").map_or(Some(Vec::new()), |e| {
        let mut out = Vec::new();
        for r in ctx.strings(e)? {
            let parsed = r.split_once(',').and_then(|(a, b)| {
                Some((syntax::parse_int(a.trim())?, syntax::parse_int(b.trim())?))
            });
            match parsed.filter(|&(_, n)| n > 0) {
                Some(x) => out.push(x),
                None => {
                    ctx.error(e, alloc::format!("'{r}' is not 'first_page,pages'"));
                    return None;
                }
            }
        }
        Some(out)
    });
    let irqs = get("irqs").map_or(Some(Vec::new()), |e| match &e.value {
        Value::List(items) if items.iter().all(|v| matches!(v, Value::Int(n) if *n < 24)) => Some(
            items
                .iter()
                .filter_map(|v| {
                    if let Value::Int(n) = v {
                        Some(*n as u8)
                    } else {
                        None
                    }
                })
                .collect(),
        ),
        _ => {
            ctx.error(e, "expected a list of IRQ numbers below 24");
            None
        }
    });
    let pci = get("pci").map_or(Some(Vec::new()), |e| {
        let mut out = Vec::new();
        for text in ctx.strings(e)? {
            match pci_address(&text) {
                Some(bdf) => out.push(bdf),
                None => {
                    ctx.error(e, alloc::format!("'{text}' is not a PCI address 'BB:DD.F'"));
                    return None;
                }
            }
        }
        Some(out)
    });
    let vdisks = get("vdisk").map_or(Some(Vec::new()), |e| {
        let mut out: Vec<VDisk> = Vec::new();
        for text in ctx.strings(e)? {
            match vdisk(&text) {
                Some(v) if !out.iter().any(|o| o.name == v.name) => out.push(v),
                _ => {
                    ctx.error(
                        e,
                        alloc::format!(
                            "'{text}' is not 'NAME=START+SECTORS' or 'NAME=all' with a new NAME"
                        ),
                    );
                    return None;
                }
            }
        }
        Some(out)
    });
    let dma_kib = get("dma").map_or(Some(0), |e| ctx.int(e, 4..=DMA_MAX_KIB));
    let kind = get("type").map(|e| match ctx.string(e)?.as_str() {
        "pv" => Some(Kind::Pv),
        "hvm" => Some(Kind::Hvm),
        other => {
            ctx.error(e, alloc::format!("'{other}' is not pv or hvm"));
            None
        }
    });
    if let (Some(Some(Kind::Hvm)), Some(e), Some(v)) = (kind, get("vif"), vifs.as_ref()) {
        if v.iter().any(|v| v.mtu.is_some()) {
            warnings.push(ConfigError {
                file: file.into(),
                line: e.line,
                key: Some("vif".into()),
                message: "mtu is for guests on the runtime's stack: an HVM guest's \
                          interfaces keep the wire's, ignored"
                    .into(),
            });
        }
    }
    let role = get("role").map(|e| match ctx.string(e)?.as_str() {
        "console" => Some(Role::Console),
        "block" => Some(Role::Block),
        "net" => Some(Role::Net),
        other => {
            ctx.error(e, alloc::format!("'{other}' is not console, block or net"));
            None
        }
    });

    if name.is_none() && get("name").is_none() {
        ctx.errors.push(ConfigError {
            file: file.into(),
            line: 0,
            key: Some("name".into()),
            message: "missing".into(),
        });
    }
    if kernel.is_none() && get("kernel").is_none() {
        ctx.errors.push(ConfigError {
            file: file.into(),
            line: 0,
            key: Some("kernel".into()),
            message: "missing".into(),
        });
    }
    if !ctx.errors.is_empty() {
        return Err(ctx.errors);
    }
    let config = DomainConfig {
        name: name.unwrap_or_default(),
        kind: kind.flatten().unwrap_or_default(),
        memory_kib: memory_kib.unwrap_or(64 * 1024),
        maxmem_kib: maxmem_kib.unwrap_or(0),
        vcpus: vcpus.unwrap_or(1),
        cpus: cpus.flatten(),
        weight: weight.map_or(ipc_abi::domain::DEFAULT_WEIGHT, |w| w as u32),
        cap: cap.unwrap_or(0) as u32,
        kernel: kernel.unwrap_or_default(),
        ramdisk: ramdisk.unwrap_or_default(),
        cmdline: cmdline.unwrap_or_default(),
        disks: disks.unwrap_or_default(),
        vifs: vifs.unwrap_or_default(),
        on_poweroff: on_poweroff.unwrap_or(OnEvent::Destroy),
        on_reboot: on_reboot.unwrap_or(OnEvent::Restart),
        on_crash: on_crash.unwrap_or(crash_default),
        ioports: ioports.unwrap_or_default(),
        iomem: iomem.unwrap_or_default(),
        irqs: irqs.unwrap_or_default(),
        pci: pci.unwrap_or_default(),
        dma_kib: dma_kib.unwrap_or(0),
        vdisks: vdisks.unwrap_or_default(),
        role: role.flatten(),
        restart_limit: restart_limit.unwrap_or(RESTART_LIMIT) as u32,
        heartbeat_ms: heartbeat_ms.unwrap_or(0) as u32,
        evtchn: None,
        history_on_exit: false,
        start_paused: false,
    };
    Ok(Parsed { config, warnings })
}

/// `"0-3,6"` → bits 0,1,2,3,6 (`cpus =` in a configuration, and
/// `toolstack domain pin`).
pub fn cpu_mask(s: &str) -> Option<u64> {
    let mut mask = 0u64;
    for part in s.split(',') {
        let (a, b) = range(part.trim())?;
        if a > b || b > 63 {
            return None;
        }
        for c in a..=b {
            mask |= 1 << c;
        }
    }
    (mask != 0).then_some(mask)
}

/// `"A-B"` or `"A"` (decimal or hex).
fn range(s: &str) -> Option<(u64, u64)> {
    match s.split_once('-') {
        Some((a, b)) => Some((syntax::parse_int(a.trim())?, syntax::parse_int(b.trim())?)),
        None => {
            let n = syntax::parse_int(s.trim())?;
            Some((n, n))
        }
    }
}

/// `"target,vdev,r|w"` (an optional `phy:` prefix on the target is accepted).
fn disk(s: &str) -> Option<Disk> {
    let mut it = s.split(',').map(str::trim);
    let target = it.next()?.trim_start_matches("phy:");
    let vdev = it.next()?;
    let writable = match it.next()? {
        "w" | "rw" => true,
        "r" | "ro" => false,
        _ => return None,
    };
    if it.next().is_some() || !ipc_abi::launch::simple_name(target) || vdev_index(vdev).is_none() {
        return None;
    }
    Some(Disk {
        target: target.to_string(),
        vdev: vdev.to_string(),
        writable,
    })
}

/// `"mac=00:16:3e:00:00:01,mtu=4082"`, either part, or `""` for a
/// generated MAC and the wire's MTU.
fn vif(s: &str) -> Option<Vif> {
    Vif::parse(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const WEB: &str = r#"
# A web server guest.
name = "web"
memory = 128
vcpus = 2
cpus = "0-1"
kernel = "httpd"
cmdline = "port=80"
disk = [ 'phy:data,xvda,w', 'logs,xvdb,r' ]
vif = [ 'mac=00:16:3e:00:00:01' ]
on_crash = "restart"
"#;

    #[test]
    fn a_full_configuration() {
        let p = parse("web.cfg", WEB, &[]).unwrap();
        let c = p.config;
        assert_eq!(c.name, "web");
        assert_eq!((c.memory_kib, c.vcpus, c.cpus), (128 * 1024, 2, Some(0b11)));
        assert_eq!(
            c.disks[0],
            Disk {
                target: "data".into(),
                vdev: "xvda".into(),
                writable: true
            }
        );
        assert!(!c.disks[1].writable);
        assert_eq!(c.vifs[0].mac, Some([0, 0x16, 0x3e, 0, 0, 1]));
        assert!(vif("mac=01:00:5e:00:00:01").is_none());
        assert!(vif("mac=00:16:3e:00:01").is_none());
        assert_eq!(
            (c.on_crash, c.on_poweroff, c.on_reboot),
            (OnEvent::Restart, OnEvent::Destroy, OnEvent::Restart)
        );
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn overrides_win_over_the_file() {
        let p = parse("web.cfg", WEB, &["memory=256", "name=web2"]).unwrap();
        assert_eq!(
            (p.config.memory_kib, p.config.name.as_str()),
            (256 * 1024, "web2")
        );
    }

    #[test]
    fn unknown_keys_are_warnings() {
        let p = parse(
            "a.cfg",
            "name = \"a\"\nkernel = \"k\"\ncolour = \"blue\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(
            alloc::string::ToString::to_string(&p.warnings[0]),
            "a.cfg:3: colour: unknown key, ignored"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_line_and_key() {
        let text = "name = \"a b\"\nkernel = \"k\"\nmemory = 0\non_crash = \"explode\"\ndisk = ['x,xvda,q']\n";
        let errs = parse("bad.cfg", text, &[]).unwrap_err();
        let shown: Vec<String> = errs
            .iter()
            .map(alloc::string::ToString::to_string)
            .collect();
        assert_eq!(shown.len(), 4, "{shown:?}");
        assert!(shown[0].starts_with("bad.cfg:1: name:"));
        assert!(shown
            .iter()
            .any(|s| s.starts_with("bad.cfg:3: memory: 0 is out of range")));
        assert!(shown.iter().any(|s| s.starts_with("bad.cfg:4: on_crash:")));
        assert!(shown.iter().any(|s| s.starts_with("bad.cfg:5: disk:")));
    }

    #[test]
    fn missing_name_or_kernel() {
        let errs = parse("m.cfg", "memory = 8\n", &[]).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert!(errs.iter().all(|e| e.message == "missing"));
    }

    #[test]
    fn driver_domain_rights() {
        let text = "name = \"console-dom\"\nkernel = \"console-dom\"\nrole = \"console\"\nioports = ['0x3f8-0x3ff']\nirqs = [4]\niomem = ['0xb8,1']\n";
        let c = parse("c.cfg", text, &[]).unwrap().config;
        assert_eq!(c.ioports, vec![(0x3f8, 8)]);
        assert_eq!(c.irqs, vec![4]);
        assert_eq!(c.iomem, vec![(0xb8, 1)]);
        assert_eq!(c.role, Some(Role::Console));
        assert!(parse("c.cfg", "name=\"c\"\nkernel=\"k\"\nrole=\"granter\"\n", &[]).is_err());
        assert!(parse("c.cfg", "name=\"c\"\nkernel=\"k\"\nirqs=[99]\n", &[]).is_err());
        assert!(parse(
            "c.cfg",
            "name=\"c\"\nkernel=\"k\"\nioports=['0x400-0x3ff']\n",
            &[]
        )
        .is_err());
    }

    #[test]
    fn virtual_disks_and_guest_disks() {
        let text = "name=\"blk\"\nkernel=\"k\"\nvdisk=['data=0+2048', 'rest=all']\n";
        let c = parse("b.cfg", text, &[]).unwrap().config;
        assert_eq!(
            c.vdisks[0],
            VDisk {
                name: "data".into(),
                start: 0,
                sectors: Some(2048)
            }
        );
        assert_eq!(c.vdisks[1].sectors, None);
        for bad in ["data", "data=5", "da ta=0+1", "x=0+0", "a=0+1', 'a=1+1"] {
            let t = alloc::format!("name=\"b\"\nkernel=\"k\"\nvdisk=['{bad}']\n");
            assert!(parse("b.cfg", &t, &[]).is_err(), "{bad}");
        }
        assert_eq!(vdev_index("xvda"), Some(0));
        assert_eq!(vdev_index("xvdc"), Some(2));
        assert_eq!(vdev_index("sda"), None);
        assert_eq!(vdev_index("xvdaa"), None);
        let g = "name=\"g\"\nkernel=\"k\"\ndisk=['data,xvdb,r']\n";
        let d = &parse("g.cfg", g, &[]).unwrap().config.disks[0];
        assert_eq!(
            (d.target.as_str(), d.vdev.as_str(), d.writable),
            ("data", "xvdb", false)
        );
        let beat = parse(
            "b.cfg",
            "name = \"b\"\nkernel = \"b\"\nheartbeat = 500\n",
            &[],
        )
        .unwrap();
        assert_eq!(beat.config.heartbeat_ms, 500);
        assert!(parse(
            "g.cfg",
            "name=\"g\"\nkernel=\"k\"\ndisk=['data,hda,w']\n",
            &[]
        )
        .is_err());
    }

    #[test]
    fn pci_functions_and_dma() {
        let text = "name=\"blk\"\nkernel=\"drvdom-blk\"\npci=['00:04.0', '1f:1f.7']\ndma=1024\n";
        let c = parse("b.cfg", text, &[]).unwrap().config;
        assert_eq!(c.pci, vec![4 << 3, 0x1f << 8 | 0x1f << 3 | 7]);
        assert_eq!(pci_text(c.pci[1]), "1f:1f.7");
        assert_eq!(c.dma_kib, 1024);
        for bad in ["00:20.0", "00:04.8", "100:00.0", "0004.0", "xx:00.0"] {
            let t = alloc::format!("name=\"b\"\nkernel=\"k\"\npci=['{bad}']\n");
            assert!(parse("b.cfg", &t, &[]).is_err(), "{bad}");
        }
        assert!(parse("b.cfg", "name=\"b\"\nkernel=\"k\"\ndma=999999\n", &[]).is_err());
    }

    #[test]
    fn syntax_errors_stop_everything() {
        let errs = parse("s.cfg", "name = \"a\"\nmemory = [1,\n", &[]).unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].line, 2);
    }

    #[test]
    fn driver_domains_restart_on_crash_with_a_limit() {
        let driver = parse(
            "d.cfg",
            "name = \"d\"\nkernel = \"d\"\nrole = \"block\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(driver.config.on_crash, OnEvent::Restart);
        assert_eq!(driver.config.restart_limit, 5);
        let guest = parse(
            "g.cfg",
            "name = \"g\"\nkernel = \"g\"\nrestart_limit = 9\n",
            &[],
        )
        .unwrap();
        assert_eq!(guest.config.on_crash, OnEvent::Destroy);
        assert_eq!(guest.config.restart_limit, 9);
        assert!(parse(
            "g.cfg",
            "name = \"g\"\nkernel = \"g\"\nrestart_limit = 0\n",
            &[]
        )
        .is_err());
    }

    #[test]
    fn an_hvm_guests_mtu_is_ignored_with_a_warning() {
        let file = "name = \"linux\"\ntype = \"hvm\"\nkernel = \"vmlinuz\"\nmemory = 512\nvif = ['mtu=4082']\n";
        let p = crate::parse("linux.cfg", file, &[]).unwrap();
        assert_eq!(p.config.vifs[0].mtu, Some(4082));
        assert_eq!(p.warnings.len(), 1);
        assert_eq!(p.warnings[0].key.as_deref(), Some("vif"));
        let pv = file.replace("type = \"hvm\"\n", "");
        assert!(crate::parse("rust.cfg", &pv, &[])
            .unwrap()
            .warnings
            .is_empty());
    }
}
