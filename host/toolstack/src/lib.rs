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

pub mod core_file;
mod dump;
pub mod network;
mod save;
pub mod trace;

pub use dump::Dumped;
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

/// A disk or interface of a domain (`ipc_abi::mgmt::messages::DeviceRecord`).
pub type DeviceEntry = messages::DeviceRecord<String>;

/// A domain as `list` reports it (`ipc_abi::mgmt::messages::DomainRecord`).
pub type DomainEntry = messages::DomainRecord<String>;

/// A ring connection as `ring list` reports it: who serves whom, and the
/// ring's shared header as it was read (`messages::RingRecord`).
pub type RingEntry = messages::RingRecord<String>;

/// A ring, its unread responses and its requests in flight, as `ring
/// dump` reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingDump {
    pub ring: RingEntry,
    /// Oldest first.
    pub slots: Vec<DumpedSlot>,
}

/// One slot of a [`RingDump`] (`messages::SlotRecord`).
pub type DumpedSlot = messages::SlotRecord<String, Vec<u8>>;

/// One domain in detail, as `domain info` reports it (`messages::DetailsRecord`).
pub type DomainDetails = messages::DetailsRecord<String>;

/// Kernel trace bytes of one CPU as the machine keeps them (`messages::TraceRecord`;
/// `ipc_abi::trace` says how to read them).
pub type TraceChunk = messages::TraceRecord<Vec<u8>>;

/// The host as `host info` reports it (`messages::HostRecord`).
pub type HostInfo = messages::HostRecord<String>;

/// A vCPU as `domain vcpu-list` reports it (`messages::VcpuRecord`).
pub type VcpuEntry = messages::VcpuRecord<String>;

/// A piece of a domain's console output (see [`Client::console_read`];
/// `messages::ConsoleRecord`).
pub type ConsoleChunk = messages::ConsoleRecord<Vec<u8>>;

/// What carries the frames: COM2 (QEMU's socket for it), or TCP with Noise.
enum Channel {
    Serial(UnixStream),
    Network(Box<network::SecureStream>),
}

impl Channel {
    fn set_read_timeout(&self, t: Option<Duration>) -> std::io::Result<()> {
        match self {
            Channel::Serial(s) => s.set_read_timeout(t),
            Channel::Network(s) => s.set_read_timeout(t),
        }
    }
}

impl Read for Channel {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Channel::Serial(s) => s.read(buf),
            Channel::Network(s) => s.read(buf),
        }
    }
}

impl Write for Channel {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Channel::Serial(s) => s.write(buf),
            Channel::Network(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Channel::Serial(s) => s.flush(),
            Channel::Network(s) => s.flush(),
        }
    }
}

/// A session with a machine's toolstack domain.
pub struct Client {
    stream: Channel,
    /// Requests sent before the first is answered, where they can be.
    window: usize,
    /// Bytes of image per upload frame.
    upload_chunk: usize,
    decoder: Box<Decoder>,
    /// Bytes read from the channel that the decoder had no room for yet
    /// (it holds one frame: several answers can come in one read).
    unread: Vec<u8>,
    seq: u32,
}

/// Bytes of image per upload frame.
const UPLOAD_CHUNK: usize = 8192;
/// Bytes of image per upload frame over the network (nearly a whole frame:
/// fewer, larger messages).
const NETWORK_UPLOAD_CHUNK: usize = ipc_abi::mgmt::MAX_PAYLOAD - 256;
/// Upload and restore frames in flight over the network (COM2 takes one
/// at a time: its 16-byte FIFO and domain 0's reading are the pace there).
const NETWORK_WINDOW: usize = 8;
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
        Client::hello(Channel::Serial(stream))
    }

    /// Connects to a machine's management channel over the network
    /// (`HOST:PORT`), as `identity` (its key file: [`network::Identity`]),
    /// and says hello.
    ///
    /// ```no_run
    /// let me = toolstack::network::Identity::load("target/xenolith-client.key".as_ref())
    ///     .map_err(toolstack::Error::Connect)?;
    /// let mut machine = toolstack::Client::connect_tcp("127.0.0.1:7070", &me)?;
    /// println!("{} domains", machine.list()?.len());
    /// # Ok::<(), toolstack::Error>(())
    /// ```
    pub fn connect_tcp(address: &str, identity: &network::Identity) -> Result<Client, Error> {
        let stream = network::SecureStream::connect(address, identity).map_err(Error::Connect)?;
        // The machine checks our key after the handshake's last message:
        // a refusal is the connection closed before any answer.
        Client::hello(Channel::Network(Box::new(stream))).map_err(|e| match e {
            Error::Channel(m) => Error::Connect(format!(
                "{address}: the machine ended the session ({m}): is this client's key in its mgmt/authorized_keys?"
            )),
            e => e,
        })
    }

    fn hello(stream: Channel) -> Result<Client, Error> {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(|e| Error::Channel(e.to_string()))?;
        let (window, upload_chunk) = match stream {
            Channel::Serial(_) => (1, UPLOAD_CHUNK),
            Channel::Network(_) => (NETWORK_WINDOW, NETWORK_UPLOAD_CHUNK),
        };
        let mut c = Client {
            stream,
            window,
            upload_chunk,
            decoder: Box::new(Decoder::new()),
            unread: Vec::new(),
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
        self.records(&Request::List, |a| match a {
            Owned::Domain(d) => Some(d),
            _ => None,
        })
    }

    /// Sends `request` and collects the records its answers carry, up to
    /// `End` (`record` picks them out); an `Error` answer refuses.
    fn records<T>(
        &mut self,
        request: &Request<'_>,
        record: impl Fn(Owned) -> Option<T>,
    ) -> Result<Vec<T>, Error> {
        let answers = self.call(request, |a| matches!(a, Answer::End | Answer::Error { .. }))?;
        let mut out = Vec::new();
        for a in answers {
            match a {
                Owned::Error(m) => return Err(Error::Refused(m)),
                a => out.extend(record(a)),
            }
        }
        Ok(out)
    }

    /// Every ring connection on the machine and its shared indices now.
    pub fn ring_list(&mut self) -> Result<Vec<RingEntry>, Error> {
        self.records(&Request::RingList, |a| match a {
            Owned::Ring(d) => Some(d),
            _ => None,
        })
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

    /// Asks `domain` to hold `kib` of memory (as `xl mem-set`), and waits
    /// until it does: `Refused` naming what it holds if its balloon did
    /// not get there within `within` (a domain that does not wait through
    /// the runtime never answers the request).
    pub fn mem_set(&mut self, domain: u32, kib: u64, within: Duration) -> Result<(), Error> {
        self.simple(&Request::MemSet { domain, kib })?;
        let deadline = Instant::now() + within;
        loop {
            let now = self.info(domain)?.memory_kib;
            if now == kib {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Refused(format!(
                    "domain {} holds {now} KiB after {} s, not the {kib} KiB asked: it did not \
                     give back (or take) the memory (a domain does while it waits through the runtime)",
                    domain & 0xffff,
                    within.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The most memory `domain` may hold, in KiB (as `xl mem-max`).
    pub fn mem_max(&mut self, domain: u32, kib: u64) -> Result<(), Error> {
        self.simple(&Request::MemMax { domain, kib })
    }

    /// Asks `domain` to have `count` vCPUs online and waits until it has
    /// (as `xl vcpu-set`), at most `within`.
    pub fn vcpu_set(&mut self, domain: u32, count: u32, within: Duration) -> Result<(), Error> {
        self.simple(&Request::VcpuSet { domain, count })?;
        let deadline = Instant::now() + within;
        loop {
            let online = self
                .vcpu_list()?
                .iter()
                .filter(|v| v.domain == domain && v.state != "down")
                .count();
            if online == count as usize {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Refused(format!(
                    "domain {} has {online} vCPUs online after {} s, not the {count} asked: \
                     its program did not start or stop them (a program does as the runtime's \
                     hotplug tells it)",
                    domain & 0xffff,
                    within.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Gives running `domain` another disk, `spec` as a `disk =` entry
    /// (as `xl block-attach`).
    pub fn block_attach(&mut self, domain: u32, spec: &str) -> Result<(), Error> {
        self.simple(&Request::BlockAttach { domain, spec })
    }

    /// Takes disk `vdev` away from running `domain` (as `xl block-detach`).
    pub fn block_detach(&mut self, domain: u32, vdev: &str) -> Result<(), Error> {
        self.simple(&Request::BlockDetach { domain, vdev })
    }

    /// Gives running `domain` another interface, `vif` as a `vif =` entry
    /// ("" for a MAC made from its name) (as `xl network-attach`).
    pub fn network_attach(&mut self, domain: u32, vif: &str) -> Result<(), Error> {
        self.simple(&Request::NetAttach { domain, vif })
    }

    /// Takes the interface with `mac` away from running `domain` (as `xl network-detach`).
    pub fn network_detach(&mut self, domain: u32, mac: &str) -> Result<(), Error> {
        self.simple(&Request::NetDetach { domain, mac })
    }

    /// Gives `domain` the name `name` (as `xl rename`).
    pub fn rename(&mut self, domain: u32, name: &str) -> Result<(), Error> {
        self.simple(&Request::Rename { domain, name })
    }

    /// Changes `domain`'s scheduler weight and/or cap (percent of one CPU,
    /// 0: none) at once (as `xl sched-credit -d`); `list` shows both.
    pub fn set_sched(
        &mut self,
        domain: u32,
        weight: Option<u32>,
        cap: Option<u32>,
    ) -> Result<(), Error> {
        self.simple(&Request::SetSched {
            domain,
            weight,
            cap,
        })
    }

    /// A domain's disks and interfaces (as `xl block-list` and
    /// `xl network-list`), from its configuration and what it connected.
    pub fn devices(&mut self, domain: u32) -> Result<Vec<DeviceEntry>, Error> {
        self.records(&Request::Devices { domain }, |a| match a {
            Owned::Device(d) => Some(d),
            _ => None,
        })
    }

    /// Every vCPU, where it runs and where it may (as `xl vcpu-list`).
    pub fn vcpu_list(&mut self) -> Result<Vec<VcpuEntry>, Error> {
        self.records(&Request::VcpuList, |a| match a {
            Owned::Vcpu(d) => Some(d),
            _ => None,
        })
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
        let chunk = self.upload_chunk;
        let pieces = image
            .chunks(chunk)
            .enumerate()
            .map(|(i, data)| Request::Upload {
                offset: (i * chunk) as u32,
                data,
            });
        if u32::try_from(image.len()).is_err() {
            return Err(Error::Refused("the image is too large".into()));
        }
        self.pipelined(pieces, |i| {
            progress((i * chunk + chunk).min(image.len()), image.len())
        })?;
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

    /// Sends requests that each answer `Ok`, up to the channel's window of
    /// them before waiting for the first answer (COM2: one at a time; TCP:
    /// several, so the round trips overlap); `done(i)` after request `i`
    /// was answered. Stops at the first refusal.
    fn pipelined<'r>(
        &mut self,
        requests: impl Iterator<Item = Request<'r>>,
        mut done: impl FnMut(usize),
    ) -> Result<(), Error> {
        let mut waiting = std::collections::VecDeque::new();
        let mut requests = requests.enumerate().peekable();
        while requests.peek().is_some() || !waiting.is_empty() {
            while waiting.len() < self.window {
                let Some((i, r)) = requests.next() else { break };
                waiting.push_back((i, self.send_request(&r)?));
            }
            let Some((i, seq)) = waiting.pop_front() else {
                break;
            };
            match self.answers(seq, |_| true, TIMEOUT)?.pop() {
                Some(Owned::Ok) => done(i),
                Some(Owned::Error(m)) => return Err(Error::Refused(m)),
                _ => return Err(Error::Channel("unexpected answer".into())),
            }
        }
        Ok(())
    }

    /// [`Client::call`] with its own time limit.
    fn call_within(
        &mut self,
        request: &Request,
        last: impl Fn(&Answer<'_>) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Owned>, Error> {
        let seq = self.send_request(request)?;
        self.answers(seq, last, timeout)
    }

    /// Frames and sends a request; its sequence number.
    fn send_request(&mut self, request: &Request) -> Result<u32, Error> {
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
        Ok(seq)
    }

    /// Collects the answers to request `seq` until `last` says one is the
    /// last (answers to later requests stay in the decoder for their turn).
    fn answers(
        &mut self,
        seq: u32,
        last: impl Fn(&Answer<'_>) -> bool,
        timeout: Duration,
    ) -> Result<Vec<Owned>, Error> {
        let deadline = Instant::now() + timeout;
        let mut answers = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            // Whole frames first, then the bytes read before, as room allows.
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
                let taken = self.decoder.push(&self.unread);
                self.unread.drain(..taken);
                if taken == 0 {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(Error::Channel("no answer in time".into()));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(Error::Channel("closed by the machine".into())),
                Ok(n) => self.unread.extend_from_slice(&buf[..n]),
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
    Device(DeviceEntry),
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
        let text = |t: &str| t.to_string();
        let bytes = |b: &[u8]| b.to_vec();
        match a {
            Answer::Hello { .. } => Owned::Hello,
            Answer::Domain(d) => Owned::Domain(d.clone().map(text)),
            Answer::End => Owned::End,
            Answer::SaveData { .. } => {
                save::owned(a).unwrap_or_else(|| Owned::Error("unreadable save data".into()))
            }
            Answer::Slot(s) => Owned::Slot(s.clone().map(text, bytes)),
            Answer::Trace(t) => Owned::Trace(t.clone().map(bytes)),
            Answer::Ring(r) => Owned::Ring(r.clone().map(text)),
            Answer::HostInfo(h) => Owned::Host(h.clone().map(text)),
            Answer::Vcpu(v) => Owned::Vcpu(v.clone().map(text)),
            Answer::Device(d) => Owned::Device(d.clone().map(text)),
            Answer::Ok => Owned::Ok,
            Answer::Created { id } => Owned::Created(*id),
            Answer::Line { text, .. } => Owned::Line((*text).into()),
            Answer::Info(i) => Owned::Info(i.clone().map(text)),
            Answer::ConsoleData(c) => Owned::Console(c.clone().map(bytes)),
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

    /// Several answers of nearly a frame each in one read: none is lost
    /// (the decoder holds one frame; the rest of a read waits its turn).
    #[test]
    fn answers_that_arrive_together_are_all_read() {
        let (ours, mut machine) = UnixStream::pair().expect("a socket pair");
        ours.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("a timeout");
        let mut client = Client {
            stream: Channel::Serial(ours),
            window: 1,
            upload_chunk: UPLOAD_CHUNK,
            decoder: Box::new(Decoder::new()),
            unread: Vec::new(),
            seq: 0,
        };
        let data = vec![0x5a; 12 * 1024 + 300];
        let mut wire = Vec::new();
        for i in 0..8u64 {
            let answer = Answer::SaveData {
                cursor: i,
                next: i + 1,
                pages: 24,
                done: i == 7,
                data: &data,
            };
            let mut payload = vec![0u8; ipc_abi::mgmt::MAX_PAYLOAD];
            let n = messages::encode(&answer, &mut payload).expect("an answer that fits");
            let mut frame = vec![0u8; HEADER_LEN + n];
            let header = FrameHeader {
                kind: KIND_ANSWER,
                flags: 0,
                seq: 1,
            };
            let len = encode(header, &payload[..n], &mut frame).expect("a frame");
            wire.extend_from_slice(&frame[..len]);
        }
        machine.write_all(&wire).expect("written");
        let answers = client
            .answers(
                1,
                |a| matches!(a, Answer::SaveData { done: true, .. }),
                Duration::from_secs(2),
            )
            .expect("every answer");
        assert_eq!(answers.len(), 8);
    }
}
