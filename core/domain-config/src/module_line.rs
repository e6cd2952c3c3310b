//! GRUB module lines: the second front end of the configuration checks.
//!
//! A module line is `NAME key=value ... [word ...]`. `NAME` names the domain
//! and the module is its image. Each `key=value` whose key is a
//! configuration key is that key with the value a configuration file would
//! give it, unquoted (`memory=4M`, `disk=kv,xvda,w`, `ioports=0x3f8-0x3ff`,
//! `vdisk=kv=0+8192`, `heartbeat=2000`); a list key is repeated, one value
//! per word (`irqs=3 irqs=4`). Three words exist only here: `evtchn=NAME`,
//! `history_on_exit` and `start_paused`. Every other word is the domain's
//! own (`cmdline`), passed on as it is. Two defaults differ from a file's:
//! a module's domain gets 1 MiB of memory, and it is kept when it stops
//! (`on_poweroff`, `on_reboot` and `on_crash` are `preserve` unless the
//! line says otherwise), as the domains GRUB starts are the machine's own
//! small services and a person looks at them when they stop.
//!
//! Owns: turning a line into the entries [`crate::config`] checks, so that
//! a module line and a configuration file mean the same thing by the same
//! code; and [`render`], the line of a configuration (what a save file
//! keeps), which reads back as the same configuration.

use crate::config::{self, DomainConfig, OnEvent, Parsed};
use crate::syntax::{self, ConfigError, Entry, Value};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;

/// Memory of a module's domain whose line names none (a file's default is 64M).
pub const MEMORY_DEFAULT: &str = "1M";

/// Keys whose value is a list: repeated words add to it.
const LISTS: &[&str] = &["disk", "vif", "ioports", "iomem", "irqs", "pci", "vdisk"];
/// Keys whose value is a number.
const NUMBERS: &[&str] = &[
    "vcpus",
    "weight",
    "cap",
    "dma",
    "restart_limit",
    "heartbeat",
];
/// Keys whose value is a string.
const STRINGS: &[&str] = &[
    "type",
    "memory",
    "maxmem",
    "cpus",
    "role",
    "on_poweroff",
    "on_reboot",
    "on_crash",
];

/// Parses a module line (`file` names it in errors: "module 3", say).
pub fn parse(file: &str, line: &str) -> Result<Parsed, Vec<ConfigError>> {
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or("");
    let entry = |key: &str, value: Value| Entry {
        key: key.into(),
        value,
        line: 0,
    };
    let mut entries = alloc::vec![
        entry("name", Value::Str(name.into())),
        entry("kernel", Value::Str(name.into())),
    ];
    // A module's defaults (the line's words come after and win).
    entries.push(entry("memory", Value::Str(MEMORY_DEFAULT.into())));
    for key in ["on_poweroff", "on_reboot", "on_crash"] {
        entries.push(entry(key, Value::Str("preserve".into())));
    }
    let mut lists: Vec<(&str, Vec<Value>)> = Vec::new();
    let mut own: Vec<&str> = Vec::new();
    let (mut evtchn, mut history_on_exit, mut start_paused) = (None, false, false);
    for word in words {
        match word {
            "history_on_exit" => history_on_exit = true,
            "start_paused" => start_paused = true,
            _ => {
                let Some((key, value)) = word.split_once('=') else {
                    own.push(word);
                    continue;
                };
                if key == "evtchn" {
                    evtchn = Some(value.to_string());
                } else if LISTS.contains(&key) {
                    let item = match syntax::parse_int(value) {
                        Some(n) if key == "irqs" => Value::Int(n),
                        _ => Value::Str(value.into()),
                    };
                    match lists.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, items)) => items.push(item),
                        None => lists.push((key, alloc::vec![item])),
                    }
                } else if NUMBERS.contains(&key) {
                    // Not a number: the checks say "expected a number".
                    let v = syntax::parse_int(value).map_or(Value::Str(value.into()), Value::Int);
                    entries.push(entry(key, v));
                } else if STRINGS.contains(&key) {
                    entries.push(entry(key, Value::Str(value.into())));
                } else {
                    own.push(word);
                }
            }
        }
    }
    for (key, items) in lists {
        entries.push(entry(key, Value::List(items)));
    }
    entries.push(entry("cmdline", Value::Str(own.join(" "))));
    let mut parsed = config::check(file, &entries)?;
    let c = &mut parsed.config;
    c.evtchn = evtchn;
    c.history_on_exit = history_on_exit;
    c.start_paused = start_paused;
    Ok(parsed)
}

/// The module line of `c`: [`parse`] reads it back as `c` (with `kernel`
/// equal to the name: the line has no image of its own to name).
pub fn render(c: &DomainConfig) -> String {
    let mut line = String::new();
    let _ = write!(line, "{}", c.name);
    if c.kind != config::Kind::Pv {
        let _ = write!(line, " type={}", c.kind.word());
    }
    let size = |kib: u64| {
        if kib.is_multiple_of(1024) {
            alloc::format!("{}M", kib / 1024)
        } else {
            alloc::format!("{}K", kib)
        }
    };
    let _ = write!(
        line,
        " memory={} vcpus={} weight={} cap={}",
        size(c.memory_kib),
        c.vcpus,
        c.weight,
        c.cap
    );
    if c.maxmem_kib != 0 {
        let _ = write!(line, " maxmem={}", size(c.maxmem_kib));
    }
    if let Some(mask) = c.cpus {
        let _ = write!(line, " cpus={}", cpu_list(mask));
    }
    for (first, count) in &c.ioports {
        let last = u32::from(*first) + u32::from(*count) - 1;
        let _ = write!(line, " ioports={first:#x}-{last:#x}");
    }
    for (page, pages) in &c.iomem {
        let _ = write!(line, " iomem={page:#x},{pages}");
    }
    for irq in &c.irqs {
        let _ = write!(line, " irqs={irq}");
    }
    for &bdf in &c.pci {
        let _ = write!(line, " pci={}", config::pci_text(bdf));
    }
    if c.dma_kib > 0 {
        let _ = write!(line, " dma={}", c.dma_kib);
    }
    for v in &c.vdisks {
        let _ = write!(line, " vdisk={v}");
    }
    for d in &c.disks {
        let mode = if d.writable { "w" } else { "r" };
        let _ = write!(line, " disk={},{},{}", d.target, d.vdev, mode);
    }
    for v in &c.vifs {
        let _ = write!(line, " vif={v}");
    }
    if let Some(role) = c.role {
        let _ = write!(line, " role={}", role.word());
    }
    let _ = write!(line, " restart_limit={}", c.restart_limit);
    if c.heartbeat_ms > 0 {
        let _ = write!(line, " heartbeat={}", c.heartbeat_ms);
    }
    let _ = write!(
        line,
        " on_poweroff={} on_reboot={} on_crash={}",
        word(c.on_poweroff),
        word(c.on_reboot),
        word(c.on_crash)
    );
    if let Some(peer) = &c.evtchn {
        let _ = write!(line, " evtchn={peer}");
    }
    if c.history_on_exit {
        line.push_str(" history_on_exit");
    }
    if c.start_paused {
        line.push_str(" start_paused");
    }
    if !c.cmdline.is_empty() {
        line.push(' ');
        line.push_str(&c.cmdline);
    }
    line
}

fn word(e: OnEvent) -> &'static str {
    match e {
        OnEvent::Destroy => "destroy",
        OnEvent::Restart => "restart",
        OnEvent::Preserve => "preserve",
    }
}

/// `0b1011` → `"0-1,3"` (the syntax `cpus` takes).
fn cpu_list(mask: u64) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut cpu = 0;
    while cpu < 64 {
        if mask & (1 << cpu) == 0 {
            cpu += 1;
            continue;
        }
        let first = cpu;
        while cpu + 1 < 64 && mask & (1 << (cpu + 1)) != 0 {
            cpu += 1;
        }
        out.push(if first == cpu {
            alloc::format!("{first}")
        } else {
            alloc::format!("{first}-{cpu}")
        });
        cpu += 1;
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn ok(line: &str) -> DomainConfig {
        parse("module", line).expect("a good line").config
    }

    #[test]
    fn a_module_line_means_what_the_same_keys_mean_in_a_file() {
        let c = ok(
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=kv=0+8192 vdisk=whole=all \
                    on_crash=restart heartbeat=2000 role=block on_poweroff=destroy on_reboot=restart",
        );
        let file =
            "name = \"drvdom-blk\"\nkernel = \"drvdom-blk\"\nmemory = 2\npci = ['00:04.0']\n\
                    dma = 512\nvdisk = ['kv=0+8192', 'whole=all']\non_crash = \"restart\"\n\
                    heartbeat = 2000\nrole = \"block\"\n";
        assert_eq!(c, crate::parse("f.cfg", file, &[]).unwrap().config);
        assert_eq!(c.role, Some(Role::Block));
        assert_eq!(c.vdisks.len(), 2);
        // Unless the line says otherwise, a module's domain is kept when it stops.
        let kept = ok("hello");
        assert_eq!(kept.on_poweroff, OnEvent::Preserve);
        assert_eq!(kept.on_crash, OnEvent::Preserve);
        assert_eq!(kept.memory_kib, 1024);
    }

    #[test]
    fn other_words_are_the_domains_own_and_flags_are_kept() {
        let c = ok("ping memory=512K evtchn=pong rounds=10 poll history_on_exit start_paused");
        assert_eq!(c.memory_kib, 512);
        assert_eq!(c.cmdline, "rounds=10 poll");
        assert_eq!(c.evtchn.as_deref(), Some("pong"));
        assert!(c.history_on_exit && c.start_paused);
    }

    #[test]
    fn lists_repeat_and_bad_values_are_errors_with_their_key() {
        let c = ok("console-dom ioports=0x3f8-0x3ff ioports=0x2f8-0x2ff irqs=4 irqs=3");
        assert_eq!(c.ioports, [(0x3f8, 8), (0x2f8, 8)]);
        assert_eq!(c.irqs, [4, 3]);
        for (line, key) in [
            ("a disk=kv:xvda:w", "disk"),
            ("a ioports=0x3f8+8", "ioports"),
            ("a memory=0", "memory"),
            ("a weight=heavy", "weight"),
            ("a role=granter", "role"),
            ("a vif=mac=01:00:5e:00:00:01", "vif"),
            ("a vif=mtu=20000", "vif"),
        ] {
            let errors = parse("module", line).expect_err(line);
            assert_eq!(errors[0].key.as_deref(), Some(key), "{line}: {errors:?}");
        }
    }

    #[test]
    fn a_rendered_line_reads_back_as_the_same_configuration() {
        let file = "name = \"web\"\ntype = \"hvm\"\nkernel = \"web\"\nmemory = 4\nvcpus = 2\ncpus = \"0-1,3\"\n\
                    disk = ['kv,xvda,w', 'logs,xvdb,r']\nvif = ['mac=00:16:3e:00:00:80', '', 'mtu=4082']\n\
                    cmdline = \"ip=10.0.2.15/24 gw=10.0.2.2\"\nheartbeat = 500\nweight = 3\nmaxmem = 8\n";
        let c = crate::parse("web.cfg", file, &[]).unwrap().config;
        assert_eq!(c.vifs[2].mtu, Some(4082));
        assert_eq!(ok(&render(&c)), c);
        let mut d = ok(
            "console-dom memory=1024K ioports=0x3f8-0x3ff irqs=4 iomem=0xb8,1 \
                        role=console evtchn=x history_on_exit start_paused pci=00:05.0 dma=64",
        );
        assert_eq!(ok(&render(&d)), d);
        d.memory_kib = 1536;
        assert_eq!(ok(&render(&d)).memory_kib, 1536);
        assert_eq!(c.maxmem_kib, 8192);
    }

    #[test]
    fn maxmem_below_memory_is_refused() {
        let file = "name = \"x\"\nkernel = \"x\"\nmemory = 8\nmaxmem = \"4M\"\n";
        let errors = crate::parse("x.cfg", file, &[]).unwrap_err();
        assert_eq!(errors[0].key.as_deref(), Some("maxmem"), "{errors:?}");
    }
}
