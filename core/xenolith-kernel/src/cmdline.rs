//! The hypervisor command line (the options of the Xen 1.2 HOWTO).
//!
//! Owns: turning the text GRUB passes on the `multiboot2` line into a typed
//! [`Settings`] value plus a list of [`Warning`]s. It is a pure function so the
//! host tests can cover every option and every malformed form.
//!
//! Never: panics, allocates, or rejects a boot. Unknown options and malformed
//! values become warnings, and the value used instead is named in the warning.

use core::fmt;

/// Largest `dom0_mem` accepted: 1 TiB in KiB. Anything larger is surely a typo.
const DOM0_MEM_MAX_KIB: u64 = 1 << 30;
/// Default memory for domain 0 when `dom0_mem=` is absent: 64 MiB.
const DOM0_MEM_DEFAULT_KIB: u64 = 64 * 1024;
/// Largest trace buffer, in pages per CPU (16 MiB).
const TBUF_MAX_PAGES: u32 = 4096;
/// How many warnings are kept; later ones are counted in `Parsed::dropped_warnings`.
const MAX_WARNINGS: usize = 16;
/// Longest network interface name kept for `ifname=`.
pub const IFNAME_MAX: usize = 15;

/// Parity of a serial line, the `P` of `DPS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parity {
    None,
    Odd,
    Even,
    Mark,
    Space,
}

impl Parity {
    fn letter(self) -> char {
        match self {
            Parity::None => 'n',
            Parity::Odd => 'o',
            Parity::Even => 'e',
            Parity::Mark => 'm',
            Parity::Space => 's',
        }
    }
}

/// Settings of one 16550 serial port: `<baud>,DPS[,<io_base>,<irq>]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SerialConfig {
    pub baud: u32,
    pub data_bits: u8,
    pub parity: Parity,
    pub stop_bits: u8,
    pub io_base: u16,
    pub irq: u8,
}

impl SerialConfig {
    /// COM1 at its standard place, 115200 baud, 8n1.
    pub const COM1: SerialConfig =
        SerialConfig::standard(ipc_abi::pc::COM1_BASE, ipc_abi::pc::COM1_IRQ);
    /// COM2 at its standard place, 115200 baud, 8n1.
    pub const COM2: SerialConfig =
        SerialConfig::standard(ipc_abi::pc::COM2_BASE, ipc_abi::pc::COM2_IRQ);

    const fn standard(io_base: u16, irq: u8) -> SerialConfig {
        SerialConfig {
            baud: 115_200,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            io_base,
            irq,
        }
    }

    /// Parses `<baud>,DPS[,<io_base>,<irq>]`; `io_base` and `irq` default to `standard`'s.
    fn parse(value: &str, standard: SerialConfig) -> Option<SerialConfig> {
        let mut fields = value.split(',');
        let baud: u32 = fields.next()?.parse().ok()?;
        if !(50..=4_000_000).contains(&baud) {
            return None;
        }
        let dps = fields.next()?.as_bytes();
        if dps.len() != 3 {
            return None;
        }
        let data_bits = match dps[0] {
            b @ b'5'..=b'8' => b - b'0',
            _ => return None,
        };
        let parity = match dps[1].to_ascii_lowercase() {
            b'n' => Parity::None,
            b'o' => Parity::Odd,
            b'e' => Parity::Even,
            b'm' => Parity::Mark,
            b's' => Parity::Space,
            _ => return None,
        };
        let stop_bits = match dps[2] {
            b'1' => 1,
            b'2' => 2,
            _ => return None,
        };
        let (io_base, irq) = match (fields.next(), fields.next()) {
            (None, None) => (standard.io_base, standard.irq),
            (Some(base), Some(irq)) => {
                let io_base = parse_u64(base).filter(|&b| b > 0 && b <= 0xfff8)? as u16;
                let irq = parse_u64(irq).filter(|&i| i < 16)? as u8;
                (io_base, irq)
            }
            _ => return None,
        };
        if fields.next().is_some() {
            return None;
        }
        Some(SerialConfig {
            baud,
            data_bits,
            parity,
            stop_bits,
            io_base,
            irq,
        })
    }
}

impl fmt::Display for SerialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{},{}{}{},{:#x},{}",
            self.baud,
            self.data_bits,
            self.parity.letter(),
            self.stop_bits,
            self.io_base,
            self.irq
        )
    }
}

/// Where console output goes (`console=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ConsoleTargets {
    pub vga: bool,
    pub com1: bool,
    /// COM2, transmitting with the top bit set (shared port, high half).
    pub com2_high: bool,
    /// COM2, transmitting with the top bit cleared (shared port, low half).
    pub com2_low: bool,
}

impl ConsoleTargets {
    /// The HOWTO's default, `com1,tty`; `tty` is the VGA text screen here.
    pub const DEFAULT: ConsoleTargets = ConsoleTargets {
        vga: true,
        com1: true,
        com2_high: false,
        com2_low: false,
    };

    fn is_empty(&self) -> bool {
        !(self.vga || self.com1 || self.com2_high || self.com2_low)
    }

    /// Whether any console output goes to COM2.
    pub fn uses_com2(&self) -> bool {
        self.com2_high || self.com2_low
    }
}

impl fmt::Display for ConsoleTargets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = [
            (self.com1, "com1"),
            (self.com2_high, "com2H"),
            (self.com2_low, "com2L"),
            (self.vga, "vga"),
        ];
        let mut first = true;
        for (_, name) in names.iter().filter(|(on, _)| *on) {
            if !first {
                f.write_str(",")?;
            }
            f.write_str(name)?;
            first = false;
        }
        Ok(())
    }
}

/// Test-only hooks (`ktest=`), used by the system tests to reach paths a
/// healthy boot never takes. Documented in `docs/cmdline.md`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestHook {
    /// Panic right after "ready".
    Panic,
    /// Touch an unmapped address after "ready" (page-fault report, then panic).
    PageFault,
    /// Overflow the boot stack into its guard page (double fault on the IST stack).
    StackOverflow,
    /// Read a ring-3 page (SMAP must fault it).
    ReadUserPage,
    /// Run a ring-3 page's code (SMEP must fault it).
    RunUserPage,
    /// Power the machine off cleanly after "ready".
    PowerOff,
    /// Spin with interrupts off after "ready" (what the watchdog catches).
    Hang,
    /// The first application processor spins with interrupts off once up.
    HangAp,
    /// The first application processor overflows its kernel stack into
    /// its guard page once up.
    StackOverflowAp,
}

impl TestHook {
    fn parse(value: &str) -> Option<TestHook> {
        match value {
            "panic" => Some(TestHook::Panic),
            "pagefault" => Some(TestHook::PageFault),
            "stackoverflow" => Some(TestHook::StackOverflow),
            "smap" => Some(TestHook::ReadUserPage),
            "smep" => Some(TestHook::RunUserPage),
            "poweroff" => Some(TestHook::PowerOff),
            "hang" => Some(TestHook::Hang),
            "hang_ap" => Some(TestHook::HangAp),
            "stackoverflow_ap" => Some(TestHook::StackOverflowAp),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            TestHook::Panic => "panic",
            TestHook::PageFault => "pagefault",
            TestHook::StackOverflow => "stackoverflow",
            TestHook::ReadUserPage => "smap",
            TestHook::RunUserPage => "smep",
            TestHook::PowerOff => "poweroff",
            TestHook::Hang => "hang",
            TestHook::HangAp => "hang_ap",
            TestHook::StackOverflowAp => "stackoverflow_ap",
        }
    }
}

/// Everything the kernel understood from its command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Memory for domain 0, in KiB.
    pub dom0_mem_kib: u64,
    pub com1: SerialConfig,
    /// COM2, if configured with `com2=` or used by `console=`.
    pub com2: Option<SerialConfig>,
    pub console: ConsoleTargets,
    pub noreboot: bool,
    pub nosmp: bool,
    pub noacpi: bool,
    pub ignorebiostables: bool,
    pub watchdog: bool,
    pub noht: bool,
    /// NIC for the network driver domain; `dummy` means none.
    pub ifname: heapless::String<IFNAME_MAX>,
    /// Trace buffer pages per CPU.
    pub tbuf_pages: u32,
    /// DMA isolation through the IOMMU (`iommu=`).
    pub iommu: IommuMode,
    pub ktest: Option<TestHook>,
}

/// `iommu=on|off|force`: whether driver domains' devices go through the
/// IOMMU (`on`, the default: when there is one, with a loud warning when
/// there is none), never (`off`), or must (`force`: no PCI function is
/// given to a domain without one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IommuMode {
    On,
    Off,
    Force,
}

impl IommuMode {
    pub fn name(self) -> &'static str {
        match self {
            IommuMode::On => "on",
            IommuMode::Off => "off",
            IommuMode::Force => "force",
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        let mut ifname = heapless::String::new();
        let _ = ifname.push_str("auto");
        Settings {
            dom0_mem_kib: DOM0_MEM_DEFAULT_KIB,
            com1: SerialConfig::COM1,
            com2: None,
            console: ConsoleTargets::DEFAULT,
            noreboot: false,
            nosmp: false,
            noacpi: false,
            ignorebiostables: false,
            watchdog: false,
            noht: false,
            ifname,
            tbuf_pages: 0,
            iommu: IommuMode::On,
            ktest: None,
        }
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// The one-line summary of the effective settings (after `cmdline: `).
impl fmt::Display for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dom0_mem={}K com1={} ", self.dom0_mem_kib, self.com1)?;
        match &self.com2 {
            Some(c) => write!(f, "com2={c} ")?,
            None => f.write_str("com2=off ")?,
        }
        write!(
            f,
            "console={} noreboot={} nosmp={} noacpi={} ignorebiostables={} watchdog={} noht={} ifname={} tbuf_size={} iommu={}",
            self.console,
            on_off(self.noreboot),
            on_off(self.nosmp),
            on_off(self.noacpi),
            on_off(self.ignorebiostables),
            on_off(self.watchdog),
            on_off(self.noht),
            self.ifname,
            self.tbuf_pages,
            self.iommu.name()
        )?;
        if let Some(hook) = self.ktest {
            write!(f, " ktest={}", hook.name())?;
        }
        Ok(())
    }
}

/// Something in the command line that was not taken as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning<'a> {
    /// An option this kernel does not know; it was ignored.
    Unknown(&'a str),
    /// A known option with a value it cannot use; `used` says what was used instead.
    Malformed {
        option: &'static str,
        value: &'a str,
        used: &'static str,
    },
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Unknown(opt) => write!(f, "unknown option '{opt}' ignored"),
            Warning::Malformed {
                option,
                value,
                used,
            } => write!(f, "malformed {option}='{value}', using {used}"),
        }
    }
}

/// The result of parsing: settings plus what went wrong on the way.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub settings: Settings,
    pub warnings: heapless::Vec<Warning<'a>, MAX_WARNINGS>,
    /// Warnings that did not fit in `warnings`.
    pub dropped_warnings: usize,
}

impl<'a> Parsed<'a> {
    fn warn(&mut self, w: Warning<'a>) {
        if self.warnings.push(w).is_err() {
            self.dropped_warnings += 1;
        }
    }

    fn malformed(&mut self, option: &'static str, value: &'a str, used: &'static str) {
        self.warn(Warning::Malformed {
            option,
            value,
            used,
        });
    }
}

/// Parses a number in decimal or `0x` hexadecimal.
fn parse_u64(s: &str) -> Option<u64> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()
    } else {
        s.parse().ok()
    }
}

/// Parses `dom0_mem=`: KiB by default (as in the HOWTO), or with a K/M/G suffix.
fn parse_mem_kib(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 0),
        b'm' | b'M' => (&s[..s.len() - 1], 10),
        b'g' | b'G' => (&s[..s.len() - 1], 20),
        _ => (s, 0),
    };
    let n = parse_u64(digits)?;
    let kib = n.checked_mul(1 << shift)?;
    (1..=DOM0_MEM_MAX_KIB).contains(&kib).then_some(kib)
}

/// Parses a flag's optional value: `noreboot`, `noreboot=on`, `noreboot=0`...
fn parse_flag(value: Option<&str>) -> Option<bool> {
    match value {
        None => Some(true),
        Some("1" | "on" | "yes" | "true") => Some(true),
        Some("0" | "off" | "no" | "false") => Some(false),
        Some(_) => None,
    }
}

/// Parses the hypervisor command line. Never fails: see the module doc.
pub fn parse(cmdline: &str) -> Parsed<'_> {
    let mut p = Parsed {
        settings: Settings::default(),
        warnings: heapless::Vec::new(),
        dropped_warnings: 0,
    };
    let mut tokens = cmdline.split_ascii_whitespace().peekable();
    // GRUB may pass the image path first; it is not an option.
    if tokens.peek().is_some_and(|t| t.starts_with('/')) {
        tokens.next();
    }
    for token in tokens {
        let (key, value) = match token.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (token, None),
        };
        parse_option(&mut p, token, key, value);
    }
    let s = &mut p.settings;
    if s.ignorebiostables {
        s.nosmp = true;
        s.noacpi = true;
    }
    if s.console.uses_com2() && s.com2.is_none() {
        s.com2 = Some(SerialConfig::COM2);
    }
    p
}

fn parse_option<'a>(p: &mut Parsed<'a>, token: &'a str, key: &str, value: Option<&'a str>) {
    let s = &mut p.settings;
    let flag = match key {
        "noreboot" => Some(&mut s.noreboot),
        "nosmp" => Some(&mut s.nosmp),
        "noacpi" => Some(&mut s.noacpi),
        "ignorebiostables" => Some(&mut s.ignorebiostables),
        "watchdog" => Some(&mut s.watchdog),
        "noht" => Some(&mut s.noht),
        _ => None,
    };
    if let Some(slot) = flag {
        match parse_flag(value) {
            Some(b) => *slot = b,
            None => {
                *slot = true;
                let name = match key {
                    "noreboot" => "noreboot",
                    "nosmp" => "nosmp",
                    "noacpi" => "noacpi",
                    "ignorebiostables" => "ignorebiostables",
                    "watchdog" => "watchdog",
                    _ => "noht",
                };
                p.malformed(name, value.unwrap_or(""), "on");
            }
        }
        return;
    }
    let Some(value) = value else {
        match key {
            "dom0_mem" | "com1" | "com2" | "console" | "ifname" | "tbuf_size" | "iommu"
            | "ktest" => p.warn(Warning::Malformed {
                option: static_key(key),
                value: "",
                used: "the default",
            }),
            _ => p.warn(Warning::Unknown(token)),
        }
        return;
    };
    match key {
        "dom0_mem" => match parse_mem_kib(value) {
            Some(kib) => s.dom0_mem_kib = kib,
            None => p.malformed("dom0_mem", value, "the previous value (default 65536K)"),
        },
        "com1" => match SerialConfig::parse(value, SerialConfig::COM1) {
            Some(c) => s.com1 = c,
            None => p.malformed("com1", value, "115200,8n1,0x3f8,4"),
        },
        "com2" => match SerialConfig::parse(value, SerialConfig::COM2) {
            Some(c) => s.com2 = Some(c),
            None => p.malformed("com2", value, "115200,8n1,0x2f8,3"),
        },
        "console" => parse_console(p, value),
        "ifname" => {
            if value.is_empty()
                || !value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            {
                p.malformed("ifname", value, "auto");
            } else {
                let mut name = heapless::String::new();
                if name.push_str(value).is_ok() {
                    s.ifname = name;
                } else {
                    p.malformed("ifname", value, "auto (names are at most 15 bytes)");
                }
            }
        }
        "tbuf_size" => match parse_u64(value).filter(|&n| n <= TBUF_MAX_PAGES as u64) {
            Some(n) => s.tbuf_pages = n as u32,
            None => p.malformed("tbuf_size", value, "0 (at most 4096 pages)"),
        },
        "iommu" => match value {
            "on" | "1" | "yes" => s.iommu = IommuMode::On,
            "off" | "0" | "no" => s.iommu = IommuMode::Off,
            "force" => s.iommu = IommuMode::Force,
            _ => p.malformed("iommu", value, "on"),
        },
        "ktest" => match TestHook::parse(value) {
            Some(h) => s.ktest = Some(h),
            None => p.malformed("ktest", value, "none"),
        },
        _ => p.warn(Warning::Unknown(token)),
    }
}

fn parse_console<'a>(p: &mut Parsed<'a>, value: &'a str) {
    let mut targets = ConsoleTargets::default();
    for item in value.split(',') {
        match item {
            "vga" | "tty" => targets.vga = true,
            "com1" => targets.com1 = true,
            "com2H" => targets.com2_high = true,
            "com2L" => targets.com2_low = true,
            _ => p.malformed("console", item, "nothing for this entry"),
        }
    }
    if targets.com2_high && targets.com2_low {
        targets.com2_low = false;
        p.malformed(
            "console",
            value,
            "com2H (com2H and com2L exclude each other)",
        );
    }
    if targets.is_empty() {
        p.malformed("console", value, "com1,vga");
        targets = ConsoleTargets::DEFAULT;
    }
    p.settings.console = targets;
}

fn static_key(key: &str) -> &'static str {
    match key {
        "dom0_mem" => "dom0_mem",
        "com1" => "com1",
        "com2" => "com2",
        "console" => "console",
        "ifname" => "ifname",
        "tbuf_size" => "tbuf_size",
        "iommu" => "iommu",
        _ => "ktest",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn ok(line: &str) -> Settings {
        let p = parse(line);
        assert!(
            p.warnings.is_empty(),
            "unexpected warnings: {:?}",
            p.warnings
        );
        p.settings
    }

    fn warnings(line: &str) -> std::vec::Vec<std::string::String> {
        parse(line).warnings.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn empty_line_gives_the_howto_defaults() {
        let s = ok("");
        assert_eq!(s, Settings::default());
        assert_eq!(
            s.to_string(),
            "dom0_mem=65536K com1=115200,8n1,0x3f8,4 com2=off console=com1,vga noreboot=off \
             nosmp=off noacpi=off ignorebiostables=off watchdog=off noht=off ifname=auto tbuf_size=0 iommu=on"
        );
    }

    #[test]
    fn the_howto_example_line() {
        let s = ok("dom0_mem=131072 com1=115200,8n1 noht");
        assert_eq!(s.dom0_mem_kib, 131072);
        assert_eq!(s.com1, SerialConfig::COM1);
        assert!(s.noht);
    }

    #[test]
    fn image_path_first_is_skipped() {
        assert!(ok("/boot/xenolith noreboot").noreboot);
    }

    #[test]
    fn dom0_mem_suffixes() {
        assert_eq!(ok("dom0_mem=512K").dom0_mem_kib, 512);
        assert_eq!(ok("dom0_mem=128M").dom0_mem_kib, 128 * 1024);
        assert_eq!(ok("dom0_mem=2g").dom0_mem_kib, 2 * 1024 * 1024);
        assert_eq!(ok("dom0_mem=0x1000").dom0_mem_kib, 4096);
    }

    #[test]
    fn dom0_mem_malformed_keeps_default() {
        for bad in ["-5", "0", "", "12Q", "99999999999999999999", "2000G", "M"] {
            let p = parse_line_with("dom0_mem", bad);
            assert_eq!(p.settings.dom0_mem_kib, DOM0_MEM_DEFAULT_KIB, "{bad}");
            assert_eq!(p.warnings.len(), 1, "{bad}");
            assert!(p.warnings[0].to_string().contains("dom0_mem"));
        }
    }

    fn parse_line_with(key: &str, value: &str) -> Parsed<'static> {
        let line: &'static str = std::boxed::Box::leak(std::format!("{key}={value}").into());
        parse(line)
    }

    #[test]
    fn serial_ports_full_form() {
        let s = ok("com1=9600,8n1,0x408,5 com2=57600,7e2");
        assert_eq!(
            s.com1,
            SerialConfig {
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                io_base: 0x408,
                irq: 5
            }
        );
        let c2 = s.com2.unwrap();
        assert_eq!(
            (c2.baud, c2.data_bits, c2.parity, c2.stop_bits),
            (57600, 7, Parity::Even, 2)
        );
        assert_eq!((c2.io_base, c2.irq), (0x2f8, 3));
        assert_eq!(c2.to_string(), "57600,7e2,0x2f8,3");
    }

    #[test]
    fn serial_malformed_forms() {
        for bad in [
            "fast",
            "115200",
            "115200,8x1",
            "115200,9n1",
            "115200,8n3",
            "115200,8n1,0x3f8",
            "115200,8n1,0x3f8,4,9",
            "115200,8n1,zz,4",
            "115200,8n1,0x3f8,16",
            "0,8n1",
            "115200,8n1,0,4",
        ] {
            let p = parse_line_with("com1", bad);
            assert_eq!(p.settings.com1, SerialConfig::COM1, "{bad}");
            assert_eq!(p.warnings.len(), 1, "{bad}");
            assert!(
                p.warnings[0].to_string().starts_with("malformed com1="),
                "{bad}"
            );
        }
    }

    #[test]
    fn console_lists() {
        let s = ok("console=com1");
        assert_eq!(s.console.to_string(), "com1");
        let s = ok("console=vga,com2H");
        assert!(s.console.vga && s.console.com2_high && !s.console.com1);
        assert_eq!(
            s.com2,
            Some(SerialConfig::COM2),
            "com2 console turns com2 on"
        );
        let s = ok("console=com2L,tty");
        assert!(s.console.com2_low && s.console.vga);
    }

    #[test]
    fn console_malformed() {
        let p = parse("console=com1,lpt1");
        assert!(p.settings.console.com1 && !p.settings.console.vga);
        assert_eq!(p.warnings.len(), 1);
        let p = parse("console=bogus");
        assert_eq!(p.settings.console, ConsoleTargets::DEFAULT);
        assert_eq!(p.warnings.len(), 2);
        let p = parse("console=com2H,com2L");
        assert!(p.settings.console.com2_high && !p.settings.console.com2_low);
        assert_eq!(p.warnings.len(), 1);
    }

    #[test]
    fn flags() {
        let s = ok("noreboot nosmp noacpi watchdog noht");
        assert!(s.noreboot && s.nosmp && s.noacpi && s.watchdog && s.noht);
        assert!(!s.ignorebiostables);
        assert!(!ok("noreboot=off").noreboot);
        assert!(ok("noreboot=1").noreboot);
    }

    #[test]
    fn flag_with_garbage_value_is_set_and_warned() {
        let p = parse("noreboot=maybe");
        assert!(p.settings.noreboot);
        assert_eq!(
            warnings("noreboot=maybe"),
            ["malformed noreboot='maybe', using on"]
        );
    }

    #[test]
    fn ignorebiostables_implies_nosmp_and_noacpi() {
        let s = ok("ignorebiostables");
        assert!(s.ignorebiostables && s.nosmp && s.noacpi);
    }

    #[test]
    fn ifname() {
        assert_eq!(ok("ifname=eth1").ifname.as_str(), "eth1");
        assert_eq!(ok("ifname=dummy").ifname.as_str(), "dummy");
        assert_eq!(parse("ifname=a/b").settings.ifname.as_str(), "auto");
        assert_eq!(parse("ifname=").warnings.len(), 1);
        assert_eq!(
            parse("ifname=abcdefghijklmnopq").settings.ifname.as_str(),
            "auto"
        );
    }

    #[test]
    fn tbuf_size() {
        assert_eq!(ok("tbuf_size=8").tbuf_pages, 8);
        assert_eq!(ok("tbuf_size=0").tbuf_pages, 0);
    }

    #[test]
    fn iommu_is_on_by_default_and_off_or_forced_on_request() {
        assert_eq!(ok("").iommu, IommuMode::On);
        assert_eq!(ok("iommu=off").iommu, IommuMode::Off);
        assert_eq!(ok("iommu=force").iommu, IommuMode::Force);
        let p = parse("iommu=maybe");
        assert_eq!(p.settings.iommu, IommuMode::On);
        assert_eq!(
            p.warnings[0],
            Warning::Malformed {
                option: "iommu",
                value: "maybe",
                used: "on"
            }
        );
        assert!(ok("iommu=force").to_string().ends_with("iommu=force"));
        for bad in ["999999999999", "-1", "x", "4097"] {
            let p = parse_line_with("tbuf_size", bad);
            assert_eq!(p.settings.tbuf_pages, 0, "{bad}");
            assert_eq!(p.warnings.len(), 1, "{bad}");
        }
    }

    #[test]
    fn unknown_options_are_named() {
        assert_eq!(
            warnings("frobnicate noreboot quiet=1"),
            [
                "unknown option 'frobnicate' ignored",
                "unknown option 'quiet=1' ignored"
            ]
        );
    }

    #[test]
    fn value_option_without_value() {
        let p = parse("dom0_mem com1");
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.warnings.len(), 2);
    }

    #[test]
    fn ktest_hooks() {
        assert_eq!(ok("ktest=panic").ktest, Some(TestHook::Panic));
        assert_eq!(ok("ktest=poweroff").ktest, Some(TestHook::PowerOff));
        assert_eq!(ok("ktest=hang").ktest, Some(TestHook::Hang));
        assert_eq!(ok("ktest=hang_ap").ktest, Some(TestHook::HangAp));
        assert_eq!(
            ok("ktest=stackoverflow_ap").ktest,
            Some(TestHook::StackOverflowAp)
        );
        assert!(ok("ktest=pagefault")
            .to_string()
            .ends_with(" ktest=pagefault"));
        assert_eq!(parse("ktest=explode").settings.ktest, None);
    }

    #[test]
    fn too_many_warnings_are_counted_not_lost() {
        let line = "a b c d e f g h i j k l m n o p q r s t";
        let p = parse(line);
        assert_eq!(p.warnings.len(), MAX_WARNINGS);
        assert_eq!(p.dropped_warnings, 20 - MAX_WARNINGS);
    }

    #[test]
    fn later_option_wins() {
        assert_eq!(ok("dom0_mem=1M dom0_mem=2M").dom0_mem_kib, 2048);
    }
}
