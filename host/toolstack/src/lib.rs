//! Managing a Xenolith machine from the host: the library behind the
//! `toolstack` command (the role Xen's `Xc` and `XenoUtil` had), so scripts
//! can do in Rust what the command does.
//!
//! ```no_run
//! let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
//! for d in machine.list()? {
//!     println!("{} {} {}", d.id, d.name, d.state);
//! }
//! # Ok::<(), toolstack::Error>(())
//! ```

#![forbid(unsafe_code)]

use ipc_abi::mgmt::messages::{self, Answer, Request, KIND_ANSWER, KIND_REQUEST, VERSION};
use ipc_abi::mgmt::{encode, Decoder, Event, FrameHeader, HEADER_LEN};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

mod save;
pub mod trace;

pub use save::Saved;

/// The longest Unix socket path QEMU accepts is 107 bytes (`sun_path`).
const MAX_SOCKET_PATH: usize = 100;

/// Where the management socket meant to be at `wanted` really is: `wanted`
/// itself if it is short enough to be a Unix socket, otherwise a stable
/// path in the temporary directory derived from it (FNV-1a of the path), so
/// `cargo xtask run` in a deep directory still works and this command,
/// given the same path (or, by default, `target/xenolith-com2.sock` from
/// the same directory), finds it.
pub fn socket_path(wanted: &Path) -> std::path::PathBuf {
    if wanted.as_os_str().len() <= MAX_SOCKET_PATH {
        return wanted.to_path_buf();
    }
    let hash = wanted
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    std::env::temp_dir().join(format!("xenolith-{hash:016x}.sock"))
}

/// What went wrong talking to the machine.
#[derive(Debug)]
pub enum Error {
    /// Cannot reach the management channel.
    Connect(String),
    /// The channel broke or timed out.
    Channel(String),
    /// The toolstack domain refused the request.
    Refused(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Connect(m) => write!(f, "cannot connect: {m}"),
            Error::Channel(m) => write!(f, "management channel: {m}"),
            Error::Refused(m) => write!(f, "refused: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A domain as `list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainEntry {
    /// The full id (index and generation); `id & 0xffff` is what consoles show.
    pub id: u32,
    pub name: String,
    pub state: String,
    pub memory_kib: u64,
    pub vcpus: u32,
    pub cpu_ticks: u64,
    /// Times it was restarted after a crash.
    pub restarts: u32,
}

/// A ring connection as `ring list` reports it: who serves whom, and the
/// ring's shared header as it was read (the toolstack domain reads it
/// through a kernel call that changes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingEntry {
    pub frontend: u32,
    pub backend: u32,
    /// console, block, net-tx or net-rx.
    pub device: String,
    /// The frontend's device index (xvda = 0, the first interface = 0).
    pub index: u32,
    /// connected, resetting, disconnected or invalid.
    pub state: String,
    pub epoch: u32,
    /// Pages the ring occupies (header included).
    pub pages: u32,
    pub slots: u32,
    pub req_prod: u32,
    pub req_event: u32,
    pub rsp_prod: u32,
    pub rsp_event: u32,
    /// The frontend's private indices as it published them: requests
    /// written (published or not), responses taken.
    pub req_prod_pvt: u32,
    pub rsp_cons: u32,
    /// The backend's: requests taken, responses written.
    pub req_cons: u32,
    pub rsp_prod_pvt: u32,
    /// Requests published and not yet answered.
    pub in_flight: u32,
    /// Notifications sent on the device's event channel each way.
    pub notify_to_backend: u32,
    pub notify_to_frontend: u32,
    /// How long requests have waited with no answer coming, in ms.
    pub stalled_ms: u64,
    /// healthy, stuck, "not a ring" or "broken indices".
    pub verdict: String,
}

/// A ring, its unread responses and its requests in flight, as `ring
/// dump` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingDump {
    pub ring: RingEntry,
    /// Oldest first.
    pub slots: Vec<DumpedSlot>,
}

/// One slot of a [`RingDump`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DumpedSlot {
    /// Free-running index (the slot is `index % slots`).
    pub index: u32,
    /// `waiting` (a request the backend has not taken), `taken` (taken, not
    /// answered) or `unread` (a response the frontend has not taken).
    pub stage: String,
    pub bytes: Vec<u8>,
}

/// One domain in detail, as `domain info` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainDetails {
    pub id: u32,
    pub name: String,
    pub state: String,
    pub memory_kib: u64,
    pub cpu_ticks: u64,
    /// The crash record (all zero if none): CPU vector (u64::MAX for the
    /// domain's own report), error code, RIP, address, message.
    pub crash_vector: u64,
    pub crash_error: u64,
    pub crash_rip: u64,
    pub crash_address: u64,
    pub crash_message: String,
    /// Times it was restarted after a crash, and the last such crash.
    pub restarts: u32,
    pub last_crash: String,
}

/// Kernel trace bytes of one CPU as the machine keeps them (see
/// `ipc_abi::trace`): `data` starts at position `start`; `head` is where
/// the CPU's ring has got to, `capacity` how much it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceChunk {
    pub cpus: u32,
    pub start: u64,
    pub head: u64,
    pub capacity: u64,
    /// Identifies the kernel build (the address of its trace stamp symbol).
    pub stamp: u64,
    pub data: Vec<u8>,
}

/// The host as `host info` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostInfo {
    pub free_kib: u64,
    pub domains: u64,
    /// CPUs running.
    pub cpus: u64,
    pub version: String,
    /// Domain 0's heap in use (KiB).
    pub toolstack_heap_kib: u64,
}

/// A vCPU as `domain vcpu-list` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuEntry {
    pub domain: u32,
    pub name: String,
    pub vcpu: u32,
    /// The CPU whose run queue holds it, and whether it is on that CPU now.
    pub cpu: u32,
    pub running: bool,
    /// The CPUs it may run on (bit n: CPU n).
    pub affinity: u64,
    pub state: String,
    pub cpu_ticks: u64,
}

/// A piece of a domain's console output (see [`Client::console_read`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleChunk {
    /// Stream offset of `data[0]`: later than asked if older output was cut.
    pub offset: u64,
    pub data: Vec<u8>,
    /// The console is closed (its domain stopped) and nothing more will come.
    pub closed: bool,
    /// More output than `data` was already kept: not caught up yet.
    pub more: bool,
}

/// A session with a machine's toolstack domain.
pub struct Client {
    stream: UnixStream,
    decoder: Box<Decoder>,
    seq: u32,
}

/// Bytes of image per upload frame.
const UPLOAD_CHUNK: usize = 8192;
/// How long an answer may take.
const TIMEOUT: Duration = Duration::from_secs(20);
/// How long one Hello waits (longer than the machine's resynchronisation gap).
const HELLO_TIMEOUT: Duration = Duration::from_millis(1500);
const HELLO_ATTEMPTS: u32 = 12;

impl Client {
    /// Connects to the management channel (QEMU's COM2 socket) and says hello.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, Error> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .map_err(|e| Error::Connect(format!("{}: {e}", path.display())))?;
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| Error::Channel(e.to_string()))?;
        let mut c = Client {
            stream,
            decoder: Box::new(Decoder::new()),
            seq: 0,
        };
        // A client that went away mid-frame leaves the machine waiting for the
        // rest; it forgets that after a second of silence, so a Hello that
        // went unanswered is sent again after a longer pause.
        let mut attempt = 0;
        loop {
            let hello = c.call_within(
                &Request::Hello { version: VERSION },
                |a| matches!(a, Answer::Hello { .. } | Answer::Error { .. }),
                HELLO_TIMEOUT,
            );
            attempt += 1;
            match hello.map(|mut a| a.pop()) {
                Ok(Some(Owned::Hello)) => return Ok(c),
                Ok(Some(Owned::Error(m))) => return Err(Error::Refused(m)),
                Ok(_) => return Err(Error::Channel("no hello".into())),
                Err(Error::Channel(_)) if attempt < HELLO_ATTEMPTS => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Every domain.
    pub fn list(&mut self) -> Result<Vec<DomainEntry>, Error> {
        let answers = self.call(&Request::List, |a| {
            matches!(a, Answer::End | Answer::Error { .. })
        })?;
        let mut out = Vec::new();
        for a in answers {
            match a {
                Owned::Domain(d) => out.push(d),
                Owned::Error(m) => return Err(Error::Refused(m)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Every ring connection on the machine and its shared indices now.
    pub fn ring_list(&mut self) -> Result<Vec<RingEntry>, Error> {
        let answers = self.call(&Request::RingList, |a| {
            matches!(a, Answer::End | Answer::Error { .. })
        })?;
        let mut out = Vec::new();
        for a in answers {
            match a {
                Owned::Ring(r) => out.push(r),
                Owned::Error(m) => return Err(Error::Refused(m)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// One ring (`frontend`'s `device` number `index`) and its requests in
    /// flight, oldest first: (free-running slot index, the slot's bytes).
    pub fn ring_dump(
        &mut self,
        frontend: u32,
        device: &str,
        index: u32,
    ) -> Result<RingDump, Error> {
        let request = Request::RingDump {
            frontend,
            device,
            index,
        };
        let answers = self.call(&request, |a| {
            matches!(a, Answer::End | Answer::Error { .. })
        })?;
        let mut ring = None;
        let mut slots = Vec::new();
        for a in answers {
            match a {
                Owned::Ring(r) => ring = Some(r),
                Owned::Slot(s) => slots.push(s),
                Owned::Error(m) => return Err(Error::Refused(m)),
                _ => {}
            }
        }
        let ring = ring.ok_or_else(|| Error::Refused("the ring could not be read".into()))?;
        Ok(RingDump { ring, slots })
    }

    /// A piece of CPU `cpu`'s kernel trace from position `from` on
    /// ([`trace`] decodes it). Refused when the machine booted with tracing off.
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let chunk = machine.trace_read(0, 0)?;
    /// println!("{} trace bytes of {} written", chunk.data.len(), chunk.head);
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn trace_read(&mut self, cpu: u32, from: u64) -> Result<TraceChunk, Error> {
        match self.call(&Request::Trace { cpu, from }, |_| true)?.pop() {
            Some(Owned::Trace(t)) => Ok(t),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }

    /// Lets vCPU `vcpu` of `domain` run only on the CPUs in `cpus` (bit n:
    /// CPU n), at once (as `xl vcpu-pin`).
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let id = machine.resolve("web")?;
    /// machine.pin(id, 0, 0b10)?; // CPU 1 only
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn pin(&mut self, domain: u32, vcpu: u32, cpus: u64) -> Result<(), Error> {
        self.simple(&Request::Pin { domain, vcpu, cpus })
    }

    /// Every vCPU, where it runs and where it may (as `xl vcpu-list`).
    pub fn vcpu_list(&mut self) -> Result<Vec<VcpuEntry>, Error> {
        let answers = self.call(&Request::VcpuList, |a| {
            matches!(a, Answer::End | Answer::Error { .. })
        })?;
        let mut out = Vec::new();
        for a in answers {
            match a {
                Owned::Vcpu(v) => out.push(v),
                Owned::Error(m) => return Err(Error::Refused(m)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Memory and domains of the host.
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let host = machine.host_info()?;
    /// println!("{} domains, {} MiB free", host.domains, host.free_kib / 1024);
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn host_info(&mut self) -> Result<HostInfo, Error> {
        match self.call(&Request::HostInfo, |_| true)?.pop() {
            Some(Owned::Host(h)) => Ok(h),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }

    /// Creates a domain from configuration text and an image (`None`: the
    /// image the configuration's `kernel` names in the machine's boot bundle).
    /// Returns the new domain's id.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let config = "name = \"web\"\nkernel = \"hello\"\nmemory = 4\n";
    /// let id = machine.create(config, None, false)?;
    /// machine.shutdown(id, false)?;
    /// println!("web is {}", machine.wait_stopped(id, Duration::from_secs(10))?);
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn create(
        &mut self,
        config: &str,
        image: Option<&[u8]>,
        paused: bool,
    ) -> Result<u32, Error> {
        self.create_with_progress(config, image, paused, |_, _| {})
    }

    /// [`Client::create`], calling `progress(bytes sent, image size)` after
    /// each piece of the image (for a progress bar).
    pub fn create_with_progress(
        &mut self,
        config: &str,
        image: Option<&[u8]>,
        paused: bool,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<u32, Error> {
        let image = image.unwrap_or(&[]);
        self.create_begin(config, image.len(), paused)?;
        for (i, chunk) in image.chunks(UPLOAD_CHUNK).enumerate() {
            self.upload(i * UPLOAD_CHUNK, chunk)?;
            progress(i * UPLOAD_CHUNK + chunk.len(), image.len());
        }
        match self.call(&Request::CreateCommit, |_| true)?.pop() {
            Some(Owned::Created(id)) => Ok(id),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }

    /// First step of [`Client::create`]: the configuration and the size of
    /// the image to follow (0: the boot bundle's image).
    pub fn create_begin(
        &mut self,
        config: &str,
        image_len: usize,
        paused: bool,
    ) -> Result<(), Error> {
        let image_len = u32::try_from(image_len)
            .map_err(|_| Error::Refused("the image is too large".into()))?;
        self.simple(&Request::CreateBegin {
            config,
            image_len,
            paused,
        })
    }

    /// Second step of [`Client::create`]: the piece of the image at `offset`
    /// (at most 8 KiB).
    pub fn upload(&mut self, offset: usize, data: &[u8]) -> Result<(), Error> {
        let offset =
            u32::try_from(offset).map_err(|_| Error::Refused("the image is too large".into()))?;
        self.simple(&Request::Upload { offset, data })
    }

    /// One domain in detail.
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let id = machine.resolve("web")?;
    /// let d = machine.info(id)?;
    /// if d.state == "crashed" {
    ///     eprintln!("web crashed at {:#x}: {}", d.crash_rip, d.crash_message);
    /// }
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn info(&mut self, domain: u32) -> Result<DomainDetails, Error> {
        match self.call(&Request::Info { domain }, |_| true)?.pop() {
            Some(Owned::Info(d)) => Ok(d),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }

    /// The domain with this id (full or index) or name.
    pub fn resolve(&mut self, domain: &str) -> Result<u32, Error> {
        if let Ok(n) = domain.parse() {
            return Ok(n);
        }
        self.list()?
            .into_iter()
            .find(|d| d.name == domain)
            .map(|d| d.id)
            .ok_or_else(|| Error::Refused(format!("no domain named {domain}")))
    }

    /// The kernel log (the last lines the kernel keeps).
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// for line in machine.dmesg()?.iter().filter(|l| l.contains("crashed")) {
    ///     println!("{line}");
    /// }
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn dmesg(&mut self) -> Result<Vec<String>, Error> {
        let answers = self.call(&Request::Dmesg { from: 0 }, |a| {
            matches!(a, Answer::End | Answer::Error { .. })
        })?;
        Ok(answers
            .into_iter()
            .filter_map(|a| {
                if let Owned::Line(l) = a {
                    Some(l)
                } else {
                    None
                }
            })
            .collect())
    }

    /// Asks a domain to shut down (or reboot) cleanly; the machine destroys
    /// it if it has not stopped within its timeout.
    pub fn shutdown(&mut self, domain: u32, reboot: bool) -> Result<(), Error> {
        self.simple(&Request::Shutdown { domain, reboot })
    }

    /// Waits until a domain is no longer running (stopped, crashed or gone).
    pub fn wait_stopped(&mut self, domain: u32, timeout: Duration) -> Result<String, Error> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.info(domain) {
                Ok(d) if d.state != "running" && d.state != "paused" => return Ok(d.state),
                Err(Error::Refused(_)) => return Ok("destroyed".into()),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if Instant::now() > deadline {
                return Err(Error::Channel("the domain did not stop in time".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A domain's console output from stream offset `offset` (every byte a
    /// domain printed has one, counted from its first; 0 reads the history
    /// from its start). Waits a short while (about 100 ms) for output before
    /// answering with nothing new.
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let mut offset = 0;
    /// loop {
    ///     let chunk = machine.console_read(1, offset)?;
    ///     print!("{}", String::from_utf8_lossy(&chunk.data));
    ///     offset = chunk.offset + chunk.data.len() as u64;
    ///     if chunk.closed || chunk.data.is_empty() {
    ///         break;
    ///     }
    /// }
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn console_read(&mut self, domain: u32, offset: u64) -> Result<ConsoleChunk, Error> {
        match self
            .call(&Request::ConsoleRead { domain, offset }, |_| true)?
            .pop()
        {
            Some(Owned::Console(c)) => Ok(c),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }

    /// Types `data` into a domain's console (it reads it as input).
    pub fn console_write(&mut self, domain: u32, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(UPLOAD_CHUNK) {
            self.simple(&Request::ConsoleWrite {
                domain,
                data: chunk,
            })?;
        }
        Ok(())
    }

    /// Has the kernel dump the state each debug key names (`h` lists them:
    /// domains, run queue, event channels, grants) to its log, as `xl
    /// debug-keys` does; read it with [`Client::dmesg`].
    pub fn debug_keys(&mut self, keys: &str) -> Result<(), Error> {
        self.simple(&Request::DebugKeys { keys })
    }

    /// Shuts every domain down, then powers the machine off.
    pub fn host_shutdown(&mut self) -> Result<(), Error> {
        self.simple(&Request::HostShutdown)
    }

    /// Stops a domain's vCPUs until [`Client::unpause`].
    ///
    /// ```no_run
    /// let mut machine = toolstack::Client::connect("target/xenolith-com2.sock")?;
    /// let id = machine.resolve("batch-job")?;
    /// machine.pause(id)?;
    /// // ... the machine is quieter for a while ...
    /// machine.unpause(id)?;
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn pause(&mut self, domain: u32) -> Result<(), Error> {
        self.simple(&Request::Pause { domain })
    }

    /// Crashes a domain as if it had faulted (fault injection, like `xl
    /// trigger`): its `on_crash` policy applies; a driver domain is
    /// restarted and its guests carry on.
    pub fn crash(&mut self, domain: u32) -> Result<(), Error> {
        self.simple(&Request::Crash { domain })
    }

    /// Lets a paused domain run again.
    pub fn unpause(&mut self, domain: u32) -> Result<(), Error> {
        self.simple(&Request::Unpause { domain })
    }

    /// Ends a domain at once (no shutdown request; see [`Client::shutdown`]).
    pub fn destroy(&mut self, domain: u32) -> Result<(), Error> {
        self.simple(&Request::Destroy { domain })
    }

    fn simple(&mut self, r: &Request<'_>) -> Result<(), Error> {
        match self.call(r, |_| true)?.pop() {
            Some(Owned::Ok) => Ok(()),
            Some(Owned::Error(m)) => Err(Error::Refused(m)),
            _ => Err(Error::Channel("unexpected answer".into())),
        }
    }

    /// Sends a request and collects answers until `last` says one is the last.
    fn call(
        &mut self,
        request: &Request,
        last: impl Fn(&Answer<'_>) -> bool,
    ) -> Result<Vec<Owned>, Error> {
        self.call_within(request, last, TIMEOUT)
    }

    /// [`Client::call`] with its own time limit.
    fn call_within(
        &mut self,
        request: &Request,
        last: impl Fn(&Answer<'_>) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Owned>, Error> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let mut payload = vec![0u8; ipc_abi::mgmt::MAX_PAYLOAD];
        let n = messages::encode(request, &mut payload)
            .ok_or_else(|| Error::Channel("request too large".into()))?;
        let mut frame = vec![0u8; HEADER_LEN + n];
        let len = encode(
            FrameHeader {
                kind: KIND_REQUEST,
                flags: 0,
                seq,
            },
            &payload[..n],
            &mut frame,
        )
        .ok_or_else(|| Error::Channel("cannot frame the request".into()))?;
        self.stream
            .write_all(&frame[..len])
            .map_err(|e| Error::Channel(e.to_string()))?;
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            while let Some(ev) = self.decoder.next_event() {
                if let Event::Frame(h, p) = ev {
                    if h.kind != KIND_ANSWER || h.seq != seq {
                        continue;
                    }
                    let a: Answer<'_> = messages::decode(p)
                        .ok_or_else(|| Error::Channel("malformed answer".into()))?;
                    let done = last(&a);
                    answers.push(Owned::from(&a));
                    if done {
                        return Ok(answers);
                    }
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Channel("no answer in time".into()));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Error::Channel("closed by the machine".into())),
                Ok(n) => {
                    let mut rest = &buf[..n];
                    while !rest.is_empty() {
                        let taken = self.decoder.push(rest);
                        rest = &rest[taken..];
                        if taken == 0 {
                            break;
                        }
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => return Err(Error::Channel(e.to_string())),
            }
        }
    }
}

/// An answer that outlives the receive buffer.
enum Owned {
    Vcpu(VcpuEntry),
    Trace(TraceChunk),
    Hello,
    Domain(DomainEntry),
    End,
    Host(HostInfo),
    Ok,
    Error(String),
    Created(u32),
    Line(String),
    Info(DomainDetails),
    Console(ConsoleChunk),
    Ring(RingEntry),
    Slot(DumpedSlot),
    SaveData {
        cursor: u64,
        next: u64,
        pages: u64,
        done: bool,
        data: Vec<u8>,
    },
}

impl From<&Answer<'_>> for Owned {
    fn from(a: &Answer<'_>) -> Owned {
        match a {
            Answer::Hello { .. } => Owned::Hello,
            Answer::Domain {
                id,
                name,
                state,
                memory_kib,
                vcpus,
                cpu_ticks,
                restarts,
            } => Owned::Domain(DomainEntry {
                id: *id,
                name: (*name).into(),
                state: (*state).into(),
                memory_kib: *memory_kib,
                vcpus: *vcpus,
                cpu_ticks: *cpu_ticks,
                restarts: *restarts,
            }),
            Answer::End => Owned::End,
            Answer::SaveData { .. } => {
                save::owned(a).unwrap_or_else(|| Owned::Error("unreadable save data".into()))
            }
            Answer::Slot {
                index,
                stage,
                bytes,
            } => Owned::Slot(DumpedSlot {
                index: *index,
                stage: (*stage).into(),
                bytes: bytes.to_vec(),
            }),
            Answer::Trace {
                cpus,
                start,
                head,
                capacity,
                stamp,
                data,
            } => Owned::Trace(TraceChunk {
                cpus: *cpus,
                start: *start,
                head: *head,
                capacity: *capacity,
                stamp: *stamp,
                data: data.to_vec(),
            }),
            Answer::Ring {
                frontend,
                backend,
                device,
                index,
                state,
                epoch,
                pages,
                slots,
                req_prod,
                req_event,
                rsp_prod,
                rsp_event,
                req_prod_pvt,
                rsp_cons,
                req_cons,
                rsp_prod_pvt,
                in_flight,
                notify_to_backend,
                notify_to_frontend,
                stalled_ms,
                verdict,
            } => Owned::Ring(RingEntry {
                frontend: *frontend,
                backend: *backend,
                device: (*device).into(),
                index: *index,
                state: (*state).into(),
                epoch: *epoch,
                pages: *pages,
                slots: *slots,
                req_prod: *req_prod,
                req_event: *req_event,
                rsp_prod: *rsp_prod,
                rsp_event: *rsp_event,
                req_prod_pvt: *req_prod_pvt,
                rsp_cons: *rsp_cons,
                req_cons: *req_cons,
                rsp_prod_pvt: *rsp_prod_pvt,
                in_flight: *in_flight,
                notify_to_backend: *notify_to_backend,
                notify_to_frontend: *notify_to_frontend,
                stalled_ms: *stalled_ms,
                verdict: (*verdict).into(),
            }),
            Answer::HostInfo {
                free_kib,
                domains,
                cpus,
                version,
                toolstack_heap_kib,
            } => Owned::Host(HostInfo {
                free_kib: *free_kib,
                domains: *domains,
                cpus: *cpus,
                version: (*version).into(),
                toolstack_heap_kib: *toolstack_heap_kib,
            }),
            Answer::Vcpu {
                domain,
                name,
                vcpu,
                cpu,
                running,
                affinity,
                state,
                cpu_ticks,
            } => Owned::Vcpu(VcpuEntry {
                domain: *domain,
                name: (*name).into(),
                vcpu: *vcpu,
                cpu: *cpu,
                running: *running,
                affinity: *affinity,
                state: (*state).into(),
                cpu_ticks: *cpu_ticks,
            }),
            Answer::Ok => Owned::Ok,
            Answer::Created { id } => Owned::Created(*id),
            Answer::Line { text, .. } => Owned::Line((*text).into()),
            Answer::Info {
                id,
                name,
                state,
                memory_kib,
                cpu_ticks,
                crash_vector,
                crash_error,
                crash_rip,
                crash_address,
                crash_message,
                restarts,
                last_crash,
            } => Owned::Info(DomainDetails {
                id: *id,
                name: (*name).into(),
                state: (*state).into(),
                memory_kib: *memory_kib,
                cpu_ticks: *cpu_ticks,
                crash_vector: *crash_vector,
                crash_error: *crash_error,
                crash_rip: *crash_rip,
                crash_address: *crash_address,
                crash_message: (*crash_message).into(),
                restarts: *restarts,
                last_crash: (*last_crash).into(),
            }),
            Answer::ConsoleData {
                offset,
                data,
                closed,
                more,
            } => Owned::Console(ConsoleChunk {
                offset: *offset,
                data: data.to_vec(),
                closed: *closed,
                more: *more,
            }),
            Answer::Error { message } => Owned::Error((*message).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_socket_paths_are_kept_and_long_ones_shortened_stably() {
        let short = Path::new("/tmp/a/com2.sock");
        assert_eq!(socket_path(short), short);
        let long = std::path::PathBuf::from(format!("/{}/com2.sock", "d".repeat(120)));
        let other = std::path::PathBuf::from(format!("/{}/mon.sock", "d".repeat(120)));
        let a = socket_path(&long);
        assert!(a.as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(a, socket_path(&long));
        assert_ne!(a, socket_path(&other));
    }
}
