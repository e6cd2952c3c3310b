//! Booting an ISO in QEMU, interactively or under a test's control.
//!
//! Owns: the QEMU command line, and [`Machine`], a running QEMU whose COM1 is
//! captured line by line so a test can wait for marker lines with a timeout.
//! Dropping a `Machine` kills QEMU, so no path leaves one running.

use crate::Accel;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where the management socket for `wanted` really is (the toolstack
/// library's rule, so the host command finds what QEMU was given).
pub use toolstack::socket_path;

/// Creates a sparse raw disk image of `bytes` if `path` does not exist.
pub fn ensure_disk(path: &Path, bytes: u64) -> Result<(), String> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    f.set_len(bytes)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// How to start QEMU.
#[derive(Clone)]
pub struct Config {
    iso: PathBuf,
    accel: Accel,
    memory: String,
    smp: String,
    /// COM2's `-serial` value (`file:...`, `pipe:...`), if any.
    com2: Option<String>,
    com2_socket: Option<PathBuf>,
    monitor_socket: Option<PathBuf>,
    icount: bool,
    /// QEMU trace events to log, and the file they go to.
    trace: Option<(Vec<String>, PathBuf)>,
    com1_input: bool,
    disk: Option<PathBuf>,
    /// The disk's image file opened with O_DIRECT (`cache=none`), as a
    /// benchmark's fair comparison wants it.
    disk_cache_none: bool,
    /// QEMU's `edu` test device at 00:06.0 (a function with MSI only).
    edu: bool,
    nic: Option<NicBackend>,
    /// Boot this kernel, initramfs and command line directly instead of the
    /// ISO (what a user runs instead of Xenolith: `bench hvm`).
    direct: Option<(PathBuf, PathBuf, String)>,
    iommu: bool,
    /// The IOMMU remaps interrupts too (`intremap=on`; on by default).
    intremap: bool,
    /// Every frame between the NIC and its backend, cut to its first 128
    /// bytes, recorded in this pcap file (QEMU's `filter-dump`).
    net_capture: Option<PathBuf>,
}

/// A host port on 127.0.0.1 forwarded to a guest's address and port
/// through QEMU's user-mode network.
#[derive(Clone, Debug)]
pub struct Forward {
    pub udp: bool,
    pub host_port: u16,
    pub guest: String,
    pub guest_port: u16,
}

impl Forward {
    fn hostfwd(&self) -> String {
        format!(
            "hostfwd={}:127.0.0.1:{}-{}:{}",
            if self.udp { "udp" } else { "tcp" },
            self.host_port,
            self.guest,
            self.guest_port
        )
    }
}

/// Host ports `http` (TCP) and `echo` (UDP) forwarded to the example web
/// guest's ports 80 and 7.
pub fn web_forwards(http: u16, echo: u16) -> Vec<Forward> {
    let to = |udp, host_port, guest_port| Forward {
        udp,
        host_port,
        guest: crate::iso::WEB_GUEST_IP.into(),
        guest_port,
    };
    vec![to(false, http, 80), to(true, echo, 7)]
}

/// A TCP port on 127.0.0.1 that nothing listens on now (for a forward).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// What the virtio-net NIC is connected to on the host.
#[derive(Clone, Debug)]
enum NicBackend {
    /// QEMU's user-mode network, with these forwarded ports.
    User(Vec<Forward>),
    /// A TCP listener on this host port.
    Socket(u16),
}

impl Config {
    pub fn new(iso: &Path) -> Config {
        Config {
            iso: iso.to_path_buf(),
            accel: Accel::Tcg,
            memory: "256M".into(),
            // XENOLITH_TEST_SMP=N runs every machine that does not ask for
            // a CPU count with N CPUs (to shake the SMP paths with the
            // whole suite); one by default.
            smp: std::env::var("XENOLITH_TEST_SMP").unwrap_or_else(|_| "1".into()),
            com2: None,
            com2_socket: None,
            com1_input: false,
            monitor_socket: None,
            icount: false,
            trace: None,
            disk: None,
            disk_cache_none: false,
            edu: false,
            nic: None,
            direct: None,
            iommu: false,
            intremap: true,
            net_capture: None,
        }
    }

    /// QEMU's q35 machine with an Intel IOMMU (VT-d) in front of its PCI
    /// devices, and virtio devices whose DMA goes through it
    /// (`iommu_platform=on`).
    pub fn iommu(mut self) -> Self {
        self.iommu = true;
        self
    }

    /// QEMU's `edu` test device at 00:06.0: a PCI function whose only
    /// message interrupt is MSI, which raises one when told.
    pub fn edu(mut self) -> Self {
        self.edu = true;
        self
    }

    /// The IOMMU without interrupt remapping (for the kernel's path on a
    /// unit that only remaps DMA).
    pub fn without_interrupt_remapping(mut self) -> Self {
        self.intremap = false;
        self
    }

    /// QEMU's `pc` machine, without an IOMMU (for what must run without
    /// one, whatever the test suite's default machine).
    pub fn without_iommu(mut self) -> Self {
        self.iommu = false;
        self
    }

    /// QEMU boots `kernel` with `initrd` and `append` itself (its own
    /// loader and firmware), not the ISO.
    pub fn direct_linux(mut self, kernel: &Path, initrd: &Path, append: &str) -> Self {
        self.direct = Some((kernel.to_path_buf(), initrd.to_path_buf(), append.into()));
        self
    }

    /// A virtio-net NIC at PCI 00:05.0 on QEMU's user-mode network
    /// (10.0.2.0/24, gateway and DHCP at 10.0.2.2), with `forwards`.
    pub fn nic(mut self, forwards: &[Forward]) -> Self {
        self.nic = Some(NicBackend::User(forwards.to_vec()));
        self
    }

    /// The same NIC with its frames sent to a TCP listener on the host's
    /// `port` instead (QEMU's `socket` network backend: each frame as a
    /// 4-byte big-endian length and the frame). A listener that stops
    /// reading stops the NIC: QEMU holds its transmit buffers until the
    /// socket takes bytes again.
    pub fn nic_to_socket(mut self, port: u16) -> Self {
        self.nic = Some(NicBackend::Socket(port));
        self
    }

    /// The NIC's frames, both ways, recorded in the pcap file `path` (their
    /// headers: the first 128 bytes of each), for a test or bench that
    /// must say which side of a connection did what (`crate::pcap`).
    pub fn capture_frames(mut self, path: &Path) -> Self {
        self.net_capture = Some(path.to_path_buf());
        self
    }

    pub fn accel(mut self, a: Accel) -> Self {
        self.accel = a;
        self
    }

    pub fn memory(mut self, m: &str) -> Self {
        self.memory = m.into();
        self
    }

    pub fn smp(self, n: u32) -> Self {
        self.smp_spec(&n.to_string())
    }

    /// QEMU's full `-smp` value, e.g. `2,sockets=1,cores=1,threads=2`.
    pub fn smp_spec(mut self, spec: &str) -> Self {
        self.smp = spec.into();
        self
    }

    /// Sends COM2 to a file.
    pub fn com2_file(mut self, p: &Path) -> Self {
        self.com2 = Some(format!("file:{}", p.display()));
        self
    }

    /// Sends COM2 into the FIFO `p.out` (and reads it from `p.in`): a line
    /// whose far end can stop reading, so that the UART stays full.
    pub fn com2_pipe(mut self, p: &Path) -> Self {
        self.com2 = Some(format!("pipe:{}", p.display()));
        self
    }

    /// Lets the test type into COM1 (`Machine::com1_send`).
    pub fn com1_input(mut self) -> Self {
        self.com1_input = true;
        self
    }

    /// Serves COM2 on a Unix socket (for `Machine::com2_send`).
    pub fn com2_socket(mut self, p: &Path) -> Self {
        self.com2_socket = Some(p.to_path_buf());
        self
    }

    /// Serves the human monitor on a Unix socket (for `Machine::monitor`).
    pub fn monitor_socket(mut self, p: &Path) -> Self {
        self.monitor_socket = Some(p.to_path_buf());
        self
    }

    /// A raw image as a virtio 1.x block device at PCI 00:04.0.
    pub fn disk(mut self, p: &Path) -> Self {
        self.disk = Some(p.to_path_buf());
        self
    }

    /// The disk's image without the host's page cache (`cache=none`).
    pub fn disk_cache_none(mut self) -> Self {
        self.disk_cache_none = true;
        self
    }

    /// Logs QEMU's trace `events` (`qemu-system-x86_64 -trace help`) to `log`.
    pub fn trace(mut self, events: &[&str], log: &Path) -> Self {
        self.trace = Some((
            events.iter().map(|e| e.to_string()).collect(),
            log.to_path_buf(),
        ));
        self
    }

    /// Deterministic instruction counting: the guest TSC counts retired instructions.
    pub fn icount(mut self) -> Self {
        self.icount = true;
        self
    }

    fn common_args(&self, cmd: &mut Command) {
        // The IOMMU comes before every PCI device it translates for.
        if self.iommu {
            cmd.args(["-machine", "q35", "-device"]);
            cmd.arg(if self.intremap {
                "intel-iommu,intremap=on"
            } else {
                "intel-iommu,intremap=off"
            });
        }
        let through_iommu = if self.iommu { ",iommu_platform=on" } else { "" };
        match &self.direct {
            Some((kernel, initrd, append)) => {
                cmd.arg("-kernel").arg(kernel).arg("-initrd").arg(initrd);
                cmd.arg("-append").arg(append);
            }
            None => {
                // The ISO as a CD on an AHCI controller (slot 0x10, clear of
                // the disk's and NIC's): SeaBIOS reads it by DMA, and GRUB
                // loads a bundle with Linux in it in half the time the
                // IDE CD's port I/O takes under TCG (performance.md).
                let iso = self.iso.to_string_lossy().replace(',', ",,");
                cmd.args(["-device", "ahci,id=ahci,addr=0x10", "-drive"])
                    .arg(format!(
                        "file={iso},if=none,id=cd0,format=raw,media=cdrom,readonly=on"
                    ))
                    .args(["-device", "ide-cd,drive=cd0,bus=ahci.0,bootindex=0"]);
            }
        }
        cmd.args(["-m", &self.memory, "-smp", &self.smp]);
        let netdev = match &self.nic {
            None => None,
            Some(NicBackend::User(forwards)) => {
                let mut netdev = String::from("user,id=net0");
                for f in forwards {
                    netdev.push(',');
                    netdev.push_str(&f.hostfwd());
                }
                Some(netdev)
            }
            Some(NicBackend::Socket(port)) => {
                Some(format!("socket,id=net0,connect=127.0.0.1:{port}"))
            }
        };
        match netdev {
            // No NIC unless asked for (and no option ROM to find).
            None => cmd.args(["-nic", "none"]),
            Some(netdev) => cmd
                .args(["-nic", "none", "-netdev", &netdev, "-device"])
                .arg(format!(
                    "virtio-net-pci,netdev=net0,addr=0x5,disable-legacy=on,romfile={through_iommu}"
                )),
        };
        if let (Some(_), Some(path)) = (&self.nic, &self.net_capture) {
            let path = path.to_string_lossy().replace(',', ",,");
            cmd.arg("-object").arg(format!(
                "filter-dump,id=capture0,netdev=net0,file={path},maxlen=128"
            ));
        }
        match self.accel {
            Accel::Tcg => cmd.args(["-accel", "tcg", "-cpu", "max"]),
            Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        };
        if let Some((events, log)) = &self.trace {
            for e in events {
                cmd.arg("-trace").arg(format!("enable={e}"));
            }
            cmd.arg("-D").arg(log);
        }
        if self.icount {
            cmd.args(["-icount", "shift=0,align=off,sleep=off"]);
        }
        if let Some(disk) = &self.disk {
            cmd.arg("-drive")
                .arg(format!(
                    "file={},if=none,id=disk0,format=raw,discard=unmap{}",
                    disk.display(),
                    if self.disk_cache_none {
                        ",cache=none"
                    } else {
                        ""
                    }
                ))
                .arg("-device")
                .arg(format!(
                    "virtio-blk-pci,drive=disk0,addr=0x4,disable-legacy=on{through_iommu}"
                ));
        }
        if self.edu {
            cmd.args(["-device", "edu,addr=0x6"]);
        }
        // A hook for looking inside a bench's run by hand (performance.md,
        // "Profiles"): for example `-singlestep` and a second monitor.
        if let Ok(extra) = std::env::var("XTASK_QEMU_ARGS") {
            cmd.args(extra.split_whitespace());
        }
    }

    /// COM2 as a Unix socket server, after COM1 (which each caller sets up).
    fn com2_socket_args(&self, cmd: &mut Command) {
        if let Some(s) = &self.com2_socket {
            let _ = std::fs::remove_file(s);
            cmd.arg("-chardev")
                .arg(format!(
                    "socket,id=com2,path={},server=on,wait=off",
                    s.display()
                ))
                .args(["-serial", "chardev:com2"]);
        }
    }

    /// The command `cargo xtask run` executes: COM1 and the monitor on this
    /// terminal, multiplexed (Ctrl-A C switches, Ctrl-A X quits).
    ///
    /// `-nographic` puts `mon:stdio` on COM1 only when no `-serial` is
    /// given at all; the COM2 socket is one, so COM1 is named here first,
    /// or the socket would become COM1 and the terminal show only the monitor.
    pub fn interactive_command(&self) -> Command {
        let mut cmd = Command::new("qemu-system-x86_64");
        self.common_args(&mut cmd);
        cmd.args(["-nographic", "-serial", "mon:stdio"]);
        self.com2_socket_args(&mut cmd);
        cmd
    }

    /// Starts QEMU with COM1 captured.
    pub fn spawn(&self) -> Result<Machine, String> {
        let mut cmd = Command::new("qemu-system-x86_64");
        self.common_args(&mut cmd);
        cmd.args(["-display", "none", "-serial", "stdio"]);
        if let Some(spec) = &self.com2 {
            cmd.arg("-serial").arg(spec);
        }
        self.com2_socket_args(&mut cmd);
        match &self.monitor_socket {
            Some(s) => {
                let _ = std::fs::remove_file(s);
                cmd.arg("-monitor")
                    .arg(format!("unix:{},server=on,wait=off", s.display()));
            }
            None => {
                cmd.args(["-monitor", "none"]);
            }
        }
        let stdin = if self.com1_input {
            Stdio::piped()
        } else {
            Stdio::null()
        };
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let com1 = child.stdin.take();
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let writer = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = stdout.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*writer;
                let mut l = lock.lock().expect("log lock");
                if n == 0 {
                    l.closed = true;
                    cv.notify_all();
                    return;
                }
                l.append(&buf[..n], started.elapsed());
                cv.notify_all();
            }
        });
        let errs = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            errs.0.lock().expect("log lock").stderr = s;
        });
        Ok(Machine {
            child,
            started,
            log,
            monitor_socket: self.monitor_socket.clone(),
            com2_socket: self.com2_socket.clone(),
            com2: None,
            com1,
        })
    }
}

#[derive(Default)]
struct Log {
    text: String,
    /// Complete lines, each with the time since QEMU started when its end arrived.
    lines: Vec<(Duration, String)>,
    partial: String,
    closed: bool,
    stderr: String,
}

impl Log {
    fn append(&mut self, bytes: &[u8], at: Duration) {
        let s = String::from_utf8_lossy(bytes);
        self.text.push_str(&s);
        for ch in s.chars() {
            match ch {
                '\n' => {
                    let line = std::mem::take(&mut self.partial);
                    self.lines.push((at, line));
                }
                '\r' => {}
                c => self.partial.push(c),
            }
        }
    }
}

/// A running QEMU. Killed when dropped.
pub struct Machine {
    child: Child,
    /// When QEMU was started (line times count from here).
    started: Instant,
    log: Arc<(Mutex<Log>, Condvar)>,
    monitor_socket: Option<PathBuf>,
    com2_socket: Option<PathBuf>,
    com2: Option<UnixStream>,
    com1: Option<std::process::ChildStdin>,
}

impl Machine {
    /// Time since QEMU started, on the clock line times use.
    pub fn clock(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `count` complete COM1 lines contain `marker`; returns the last one and when it arrived.
    pub fn wait_for_nth(
        &self,
        marker: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<(Duration, String), String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().expect("log lock");
        loop {
            let found: Vec<_> = log
                .lines
                .iter()
                .filter(|(_, l)| l.contains(marker))
                .collect();
            if found.len() >= count {
                let (at, line) = found[count - 1];
                return Ok((*at, line.clone()));
            }
            if log.closed {
                return Err(format!(
                    "QEMU exited before printing {count} line(s) with {marker:?}"
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(format!("no line with {marker:?} within {timeout:?}"));
            }
            log = cv.wait_timeout(log, deadline - now).expect("log lock").0;
        }
    }

    /// Waits for a COM1 line containing `marker` and returns it.
    pub fn wait_for(&self, marker: &str, timeout: Duration) -> Result<String, String> {
        self.wait_for_nth(marker, 1, timeout).map(|(_, l)| l)
    }

    /// Waits until COM1's output, the line it is in the middle of
    /// included, contains `marker`.
    pub fn wait_for_text(&self, marker: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.log;
        let mut log = lock.lock().expect("log lock");
        while !log.text.contains(marker) {
            let now = Instant::now();
            if log.closed || now >= deadline {
                return Err(format!("COM1 never printed {marker:?}"));
            }
            log = cv.wait_timeout(log, deadline - now).expect("log lock").0;
        }
        Ok(())
    }

    /// Every COM1 line so far.
    pub fn lines(&self) -> Vec<String> {
        self.log
            .0
            .lock()
            .expect("log lock")
            .lines
            .iter()
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// Every COM1 line so far with when it arrived (on [`Machine::clock`]).
    pub fn timed_lines(&self) -> Vec<(Duration, String)> {
        self.log.0.lock().expect("log lock").lines.clone()
    }

    /// Everything COM1 printed, and QEMU's own stderr, for a failure report.
    pub fn transcript(&self) -> String {
        let log = self.log.0.lock().expect("log lock");
        let mut t = log.text.replace('\r', "");
        if !log.stderr.is_empty() {
            t.push_str("\n--- qemu stderr ---\n");
            t.push_str(&log.stderr);
        }
        t
    }

    /// Waits for QEMU to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                return Err(format!("QEMU still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether QEMU is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Types bytes into COM1.
    pub fn com1_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let s = self
            .com1
            .as_mut()
            .ok_or("this machine takes no COM1 input")?;
        s.write_all(bytes)
            .and_then(|_| s.flush())
            .map_err(|e| format!("COM1: {e}"))
    }

    /// Sends bytes into COM2 (connecting on first use; bytes sent before
    /// anyone connects are dropped by QEMU, so connect before the guest needs them).
    pub fn com2_send(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.com2.is_none() {
            let path = self
                .com2_socket
                .as_ref()
                .ok_or("this machine has no COM2 socket")?;
            // QEMU creates the socket while it starts up: retry until it is there.
            let deadline = Instant::now() + Duration::from_secs(20);
            let stream = loop {
                match UnixStream::connect(path) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() >= deadline => return Err(format!("COM2: {e}")),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            };
            self.com2 = Some(stream);
        }
        let s = self.com2.as_mut().ok_or("COM2 not connected")?;
        s.write_all(bytes).map_err(|e| format!("COM2: {e}"))
    }

    /// Runs one human-monitor command and returns its output.
    pub fn monitor(&self, command: &str) -> Result<String, String> {
        let path = self
            .monitor_socket
            .as_ref()
            .ok_or("this machine has no monitor socket")?;
        let mut s = UnixStream::connect(path).map_err(|e| format!("monitor: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        read_until_prompt(&mut s)?;
        s.write_all(format!("{command}\n").as_bytes())
            .map_err(|e| format!("monitor: {e}"))?;
        read_until_prompt(&mut s)
    }
}

fn read_until_prompt(s: &mut UnixStream) -> Result<String, String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    while !out.ends_with(b"(qemu) ") {
        let n = s.read(&mut buf).map_err(|e| format!("monitor: {e}"))?;
        if n == 0 {
            return Err("monitor closed".into());
        }
        out.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(s) = &self.monitor_socket {
            let _ = std::fs::remove_file(s);
        }
    }
}
