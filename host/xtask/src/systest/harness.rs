//! What every system test uses: the context a test gets (`Ctx`: its
//! directory, the kernel and domains it boots), the description of a test
//! (`Test`: name, body, what it needs of the host), booting a machine and
//! waiting for its lines, and the host `toolstack` against its management
//! socket. Topic files register their tests (`tests()`); `mod.rs` runs them.

use crate::iso::{self, Module};
pub(super) use crate::qemu::{Config, Machine};
pub(super) use crate::{build, Accel};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// console-dom as a boot module: COM1 and its IRQ, the console role.
pub(super) const CONSOLE_DOM: (&str, &str) = (
    "console-dom",
    "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
);

/// Long enough for a TCG boot on a loaded CI machine; a healthy boot takes about a second.
pub(super) const BOOT: Duration = Duration::from_secs(60);

/// One prepared test: its own directory, and the kernel to boot.
pub struct Ctx {
    pub(crate) dir: PathBuf,
    pub(crate) kernel: PathBuf,
    pub(crate) domains: PathBuf,
    pub(crate) accel: Accel,
}

impl Ctx {
    pub(super) fn iso(&self, cmdline: &str, modules: &[Module]) -> Result<PathBuf, String> {
        iso::build(&self.kernel, cmdline, modules, &self.dir.join("boot.iso"))
    }

    /// Builds an ISO with `cmdline` and returns a QEMU configuration for it.
    pub(super) fn config(&self, cmdline: &str) -> Result<Config, String> {
        Ok(self.qemu(&self.iso(cmdline, &[])?))
    }

    /// The test suite's machine for `iso`: QEMU's q35 with its Intel IOMMU
    /// in front of the PCI devices, as `cargo xtask run` boots;
    /// `XENOLITH_TEST_IOMMU=0` runs every test that does not ask for one
    /// on the plain `pc` machine instead (a whole suite without an IOMMU).
    pub(super) fn qemu(&self, iso: &std::path::Path) -> Config {
        let config = Config::new(iso).accel(self.accel);
        if std::env::var("XENOLITH_TEST_IOMMU").is_ok_and(|v| v == "0") {
            config
        } else {
            config.iommu()
        }
    }

    /// Boot modules: domain 0 first, then `(binary, command line)` each.
    pub(super) fn with_domains(&self, guests: &[(&str, &str)]) -> Vec<Module> {
        let mut v = vec![Module {
            path: build::domain(&self.domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        }];
        for (bin, line) in guests {
            v.push(Module {
                path: build::domain(&self.domains, bin),
                cmdline: (*line).into(),
            });
        }
        v
    }

    /// A machine to describe and boot (`MachineDesc`).
    pub(super) fn machine(&self) -> MachineDesc<'_> {
        MachineDesc {
            c: self,
            cmdline: String::new(),
            dom0: None,
            guests: Vec::new(),
            bundle: None,
            qemu: Vec::new(),
        }
    }

    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A Unix socket path for this test (short enough for `sun_path`).
    pub(super) fn socket(&self, name: &str) -> PathBuf {
        crate::qemu::socket_path(&self.path(name))
    }
}

/// A machine a test boots, described: the kernel command line, domain 0
/// (the toolstack, serving the management protocol on COM2 or not, or
/// another binary), the domains started from modules after it, a boot
/// bundle, and QEMU's own settings. `Ctx::machine` starts one; `config`
/// (then `boot`) or `boot_managed` ends it.
pub(super) struct MachineDesc<'c> {
    c: &'c Ctx,
    cmdline: String,
    dom0: Option<(String, String)>,
    guests: Vec<(String, String)>,
    bundle: Option<PathBuf>,
    qemu: Vec<Box<dyn FnOnce(Config) -> Config + 'c>>,
}

impl<'c> MachineDesc<'c> {
    /// The hypervisor's command line.
    pub(super) fn cmdline(mut self, cmdline: &str) -> Self {
        self.cmdline = cmdline.into();
        self
    }

    /// Another domain 0 than the toolstack: `(binary, command line)`.
    pub(super) fn dom0(mut self, dom0: (&str, &str)) -> Self {
        self.dom0 = Some((dom0.0.into(), dom0.1.into()));
        self
    }

    /// Domains started from modules after domain 0: `(binary, command line)`.
    pub(super) fn guests(mut self, guests: &[(&str, &str)]) -> Self {
        self.guests = guests
            .iter()
            .map(|(b, l)| (b.to_string(), l.to_string()))
            .collect();
        self
    }

    /// A boot bundle, the last module.
    pub(super) fn bundle(mut self, tar: PathBuf) -> Self {
        self.bundle = Some(tar);
        self
    }

    /// A last word on QEMU's configuration (a disk, CPUs, a NIC...).
    pub(super) fn qemu(mut self, f: impl FnOnce(Config) -> Config + 'c) -> Self {
        self.qemu.push(Box::new(f));
        self
    }

    fn modules(&self, dom0_line: Option<&str>) -> Vec<Module> {
        let (bin, line) = match &self.dom0 {
            Some((b, l)) => (b.as_str(), l.as_str()),
            None => ("toolstack-domain", dom0_line.unwrap_or("toolstack-domain")),
        };
        let mut mods = vec![Module {
            path: build::domain(&self.c.domains, bin),
            cmdline: line.into(),
        }];
        for (bin, line) in &self.guests {
            mods.push(Module {
                path: build::domain(&self.c.domains, bin),
                cmdline: line.clone(),
            });
        }
        mods.extend(self.bundle.clone().map(|path| Module {
            path,
            cmdline: "bundle".into(),
        }));
        mods
    }

    fn build(self, mods: &[Module]) -> Result<Config, String> {
        let mut config = self.c.qemu(&self.c.iso(&self.cmdline, mods)?);
        for f in self.qemu {
            config = f(config);
        }
        Ok(config)
    }

    /// Its QEMU configuration, not booted yet.
    pub(super) fn config(self) -> Result<Config, String> {
        let mods = self.modules(None);
        self.build(&mods)
    }

    /// Boots it with domain 0 serving the management protocol on COM2 (a
    /// Unix socket in the test's directory, returned), once it does.
    pub(super) fn boot_managed(
        self,
        slot: &mut Option<Machine>,
    ) -> Result<(&mut Machine, PathBuf), String> {
        let sock = self.c.socket("com2.sock");
        let mods = self.modules(Some("toolstack-domain mgmt=com2"));
        let config = self.build(&mods)?.com2_socket(&sock);
        let m = boot(&config, slot)?;
        // Bytes sent to COM2 before domain 0 set its UART up are lost (the
        // FIFO is reset): a request then went unanswered for 20 s, as when a
        // test pinned a domain the moment it printed, before this line.
        m.wait_for("toolstack: serving the management protocol on COM2", BOOT)?;
        Ok((m, sock))
    }
}

pub(super) type Case = fn(&Ctx, &mut Option<Machine>) -> Result<(), String>;

/// A system test: its name (a sentence saying what it shows), its body, and
/// what it needs of the host.
pub(super) struct Test {
    pub(super) name: &'static str,
    pub(super) run: Case,
    /// It measures how guests share a resource flat out: it runs by itself,
    /// after the others (beside another machine on the host's two cores a
    /// guest can see a share it never had alone).
    pub(super) alone: bool,
}

impl Test {
    pub(super) fn new(name: &'static str, run: Case) -> Test {
        Test {
            name,
            run,
            alone: false,
        }
    }

    pub(super) fn alone(name: &'static str, run: Case) -> Test {
        Test {
            alone: true,
            ..Test::new(name, run)
        }
    }
}

/// A boot bundle in the test's directory: `auto/` configurations as
/// `(file name, text)` and images as `(name, path)`.
pub(super) fn bundle_of(
    c: &Ctx,
    configs: &[(String, String)],
    images: &[(&str, &Path)],
) -> Result<PathBuf, String> {
    let auto: Vec<(&str, &str)> = configs
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    crate::iso::bundle(&c.path("bundle.tar"), &auto, images)
}

/// Starts `config`, keeping the machine in `slot` so its log is reported on failure.
pub(super) fn boot<'m>(
    config: &Config,
    slot: &'m mut Option<Machine>,
) -> Result<&'m mut Machine, String> {
    Ok(slot.insert(config.spawn()?))
}

/// How many times the toolstack has restarted the domain named `name` so far.
pub(super) fn restarts_of(m: &Machine, name: &str) -> usize {
    let marker = format!("toolstack: restarting {name} ");
    m.lines().iter().filter(|l| l.contains(&marker)).count()
}

pub(super) fn expect_line(m: &Machine, marker: &str) -> Result<String, String> {
    m.wait_for(marker, BOOT)
}

pub(super) fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

/// The number right after `key` in `line`.
pub(super) fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(key).nth(1)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

/// Runs the host `toolstack` command; returns (exit code, stdout + stderr).
/// The kernel's free memory in KiB, as `toolstack host info` reports it.
pub(super) fn free_kib(sock: &Path) -> Result<u64, String> {
    let (code, out) = toolstack(sock, &["host", "info"])?;
    out.lines()
        .find_map(|l| l.strip_prefix("free:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .filter(|_| code == 0)
        .ok_or_else(|| format!("host info: {code} {out}"))
}

pub(super) fn toolstack(sock: &Path, args: &[&str]) -> Result<(i32, String), String> {
    toolstack_with(&["--connect".as_ref(), sock.as_os_str()], args)
}

/// Runs the host `toolstack` command with `options` (how to connect) before
/// `args`; returns (exit code, stdout + stderr).
pub(super) fn toolstack_with(
    options: &[&std::ffi::OsStr],
    args: &[&str],
) -> Result<(i32, String), String> {
    let out = std::process::Command::new(build::target_dir().join("debug/toolstack"))
        .args(options)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run toolstack: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

/// The JSON a `--json` command prints, once it succeeded.
pub(super) fn toolstack_json(sock: &Path, args: &[&str]) -> Result<serde_json::Value, String> {
    let (code, out) = toolstack(sock, args)?;
    check(code == 0, || format!("{args:?}: {code} {out}"))?;
    serde_json::from_str(out.trim()).map_err(|e| format!("{args:?} is not JSON ({e}): {out}"))
}

/// Waits until no domain `domain list` shows has a name `gone` accepts (a
/// destroyed one and what served it are removed), then until the free
/// memory is `before` again (a frame another domain still maps, such as a
/// dead device model's console ring until console-dom has unmapped it, is
/// freed a moment later) or a deadline passes; the free memory then.
/// Without `before`: once two readings half a second apart agree.
pub(super) fn free_kib_once_gone(
    client: &mut toolstack::Client,
    gone: impl Fn(&str) -> bool,
    before: Option<u64>,
) -> Result<u64, String> {
    let err = |e: toolstack::Error| e.to_string();
    let deadline = std::time::Instant::now() + BOOT;
    let mut last = None;
    loop {
        let list = client.list().map_err(err)?;
        if !list.iter().any(|d| gone(&d.name)) {
            let free = client.host_info().map_err(err)?.free_kib;
            let settled = before.map_or(last == Some(free), |b| free == b);
            if settled || std::time::Instant::now() > deadline {
                return Ok(free);
            }
            if before.is_none() {
                last = Some(free);
                std::thread::sleep(Duration::from_millis(400));
            }
        } else if std::time::Instant::now() > deadline {
            return Err(format!("still there after destroy: {list:?}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// What the kernel says of every domain it holds (memory, grants, mapped
/// window slots; debug keys `q` and `g`), for a free-memory check that
/// failed: which domain holds the missing frames.
pub(super) fn kernel_memory_report(client: &mut toolstack::Client) -> String {
    if let Err(e) = client.debug_keys("qg") {
        return format!("(debug keys refused: {e})");
    }
    // The kernel logs the dump before the hypercall returns.
    match client.dmesg() {
        Ok(lines) => {
            let start = lines
                .iter()
                .rposition(|l| l.contains("debug-keys 'q'"))
                .unwrap_or(lines.len());
            lines[start..].join("\n")
        }
        Err(e) => format!("(dmesg refused: {e})"),
    }
}

/// `Test::new(stringify!(f), f)` for each test function of a topic file:
/// a test's name is its function's.
macro_rules! tests {
    ($($f:ident),* $(,)?) => {
        vec![$($crate::systest::harness::Test::new(stringify!($f), $f)),*]
    };
}
pub(super) use tests;
