//! Framing of the management protocol between the host `toolstack` command
//! and the toolstack domain, carried over COM2 (a byte stream that may lose,
//! repeat or invent bytes, and whose client may vanish mid-frame).
//!
//! Owns: the frame layout and a streaming [`Decoder`] that turns any byte
//! sequence into frames or counted errors — never a panic, never an
//! unbounded buffer — and resynchronises on the next magic after garbage.
//! What frames carry (requests and answers) is defined with the toolstack
//! (issue 5).
//!
//! ```text
//! offset size  field
//!      0    4  magic "XNM1"
//!      4    1  version (MGMT_VERSION)
//!      5    1  kind (request, answer, error, ... as the messages define)
//!      6    2  flags (little-endian)
//!      8    4  sequence number (LE), echoed by the answer
//!     12    4  payload length (LE, at most MAX_PAYLOAD)
//!     16    4  CRC-32 (LE) of bytes 0..16 and the payload
//!     20    n  payload
//! ```

/// Frame magic.
pub const MAGIC: [u8; 4] = *b"XNM1";
/// Version of the framing.
pub const MGMT_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 20;
/// Largest payload (an image is uploaded in chunks of at most this).
pub const MAX_PAYLOAD: usize = 16 * 1024;
/// Largest domain image an upload (`domain create` with a local image)
/// may send, and a save file carry: 16 MiB.
pub const MAX_IMAGE: usize = 16 << 20;

/// A frame's header fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: u8,
    pub flags: u16,
    pub seq: u32,
}

/// Why bytes were thrown away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// Bytes that were not the start of a frame (skipped to the next magic).
    Garbage(usize),
    /// A frame with another framing version.
    Version(u8),
    /// A length above [`MAX_PAYLOAD`].
    TooLong(u32),
    /// The checksum did not match.
    Checksum,
}

fn crc(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// Writes a frame into `out`; returns its length, or None if `out` is too
/// small or the payload too long.
pub fn encode(header: FrameHeader, payload: &[u8], out: &mut [u8]) -> Option<usize> {
    if payload.len() > MAX_PAYLOAD || out.len() < HEADER_LEN + payload.len() {
        return None;
    }
    out[0..4].copy_from_slice(&MAGIC);
    out[4] = MGMT_VERSION;
    out[5] = header.kind;
    out[6..8].copy_from_slice(&header.flags.to_le_bytes());
    out[8..12].copy_from_slice(&header.seq.to_le_bytes());
    out[12..16].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    let sum = crc(&out[0..16], payload);
    out[16..20].copy_from_slice(&sum.to_le_bytes());
    out[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    Some(HEADER_LEN + payload.len())
}

/// What the decoder found.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Frame(FrameHeader, &'a [u8]),
    Error(FrameError),
}

/// Reassembles frames from a byte stream, in a fixed buffer.
pub struct Decoder {
    buf: [u8; HEADER_LEN + MAX_PAYLOAD],
    len: usize,
    /// Bytes of the buffer already handed out as the last frame.
    consumed: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub const fn new() -> Decoder {
        Decoder {
            buf: [0; HEADER_LEN + MAX_PAYLOAD],
            len: 0,
            consumed: 0,
        }
    }

    /// Bytes held that are not yet a whole frame.
    pub fn buffered(&self) -> usize {
        self.len - self.consumed
    }

    /// Forgets a partial frame (the client went away).
    pub fn reset(&mut self) {
        self.len = 0;
        self.consumed = 0;
    }

    /// Adds bytes; returns how many were taken (the rest must be offered again
    /// after `next_event` made room).
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        self.compact();
        let n = bytes.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    fn compact(&mut self) {
        if self.consumed > 0 {
            self.buf.copy_within(self.consumed..self.len, 0);
            self.len -= self.consumed;
            self.consumed = 0;
        }
    }

    fn drop_front(&mut self, n: usize) {
        self.consumed = (self.consumed + n).min(self.len);
    }

    /// The next frame or error, if the buffered bytes hold one.
    pub fn next_event(&mut self) -> Option<Event<'_>> {
        self.compact();
        let data = &self.buf[..self.len];
        // Resynchronise on the magic.
        let start =
            (0..data.len()).find(|&i| data[i..].starts_with(&MAGIC[..(data.len() - i).min(4)]));
        match start {
            None => {
                let n = self.len;
                if n == 0 {
                    return None;
                }
                self.drop_front(n);
                return Some(Event::Error(FrameError::Garbage(n)));
            }
            Some(s) if s > 0 => {
                self.drop_front(s);
                return Some(Event::Error(FrameError::Garbage(s)));
            }
            Some(_) => {}
        }
        if data.len() < HEADER_LEN {
            return None;
        }
        let version = data[4];
        if version != MGMT_VERSION {
            // Skip this magic so the scan moves on.
            self.drop_front(1);
            return Some(Event::Error(FrameError::Version(version)));
        }
        let len = u32::from_le_bytes([data[12], data[13], data[14], data[15]]);
        if len as usize > MAX_PAYLOAD {
            self.drop_front(1);
            return Some(Event::Error(FrameError::TooLong(len)));
        }
        let total = HEADER_LEN + len as usize;
        if data.len() < total {
            return None;
        }
        let sum = u32::from_le_bytes([data[16], data[17], data[18], data[19]]);
        if crc(&data[0..16], &data[HEADER_LEN..total]) != sum {
            self.drop_front(1);
            return Some(Event::Error(FrameError::Checksum));
        }
        let header = FrameHeader {
            kind: data[5],
            flags: u16::from_le_bytes([data[6], data[7]]),
            seq: u32::from_le_bytes([data[8], data[9], data[10], data[11]]),
        };
        self.consumed = total;
        Some(Event::Frame(header, &self.buf[HEADER_LEN..total]))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    fn frame(seq: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = std::vec![0u8; HEADER_LEN + payload.len()];
        let n = encode(
            FrameHeader {
                kind: 1,
                flags: 0,
                seq,
            },
            payload,
            &mut out,
        )
        .unwrap();
        out.truncate(n);
        out
    }

    /// Feeds everything and collects (frames' seq + payload, errors).
    fn run(d: &mut Decoder, mut bytes: &[u8]) -> (Vec<(u32, Vec<u8>)>, Vec<FrameError>) {
        let (mut frames, mut errors) = (Vec::new(), Vec::new());
        loop {
            let n = d.push(bytes);
            bytes = &bytes[n..];
            while let Some(e) = d.next_event() {
                match e {
                    Event::Frame(h, p) => frames.push((h.seq, p.to_vec())),
                    Event::Error(e) => errors.push(e),
                }
            }
            if bytes.is_empty() {
                return (frames, errors);
            }
        }
    }

    #[test]
    fn frames_round_trip_even_byte_by_byte() {
        let mut stream = frame(1, b"hello");
        stream.extend(frame(2, &[]));
        stream.extend(frame(3, &[7u8; MAX_PAYLOAD]));
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.push(core::slice::from_ref(b));
            while let Some(Event::Frame(h, p)) = d.next_event() {
                got.push((h.seq, p.len()));
            }
        }
        assert_eq!(got, [(1, 5), (2, 0), (3, MAX_PAYLOAD)]);
    }

    #[test]
    fn garbage_before_a_frame_is_skipped_and_counted() {
        let mut stream = b"noise!".to_vec();
        stream.extend(frame(9, b"ok"));
        let (frames, errors) = run(&mut Decoder::new(), &stream);
        assert_eq!(frames, [(9, b"ok".to_vec())]);
        assert_eq!(errors, [FrameError::Garbage(6)]);
    }

    #[test]
    fn a_corrupted_frame_is_dropped_and_the_next_one_served() {
        let mut bad = frame(1, b"payload");
        bad[HEADER_LEN + 2] ^= 0xff;
        let mut stream = bad;
        stream.extend(frame(2, b"good"));
        let (frames, errors) = run(&mut Decoder::new(), &stream);
        assert_eq!(frames, [(2, b"good".to_vec())]);
        assert_eq!(errors[0], FrameError::Checksum);
    }

    #[test]
    fn a_half_sent_frame_is_forgotten_on_reset() {
        let f = frame(1, b"abcdef");
        let mut d = Decoder::new();
        let (frames, _) = run(&mut d, &f[..10]);
        assert!(frames.is_empty());
        d.reset();
        let (frames, errors) = run(&mut d, &frame(2, b"x"));
        assert_eq!(frames, [(2, b"x".to_vec())]);
        assert!(errors.is_empty());
    }

    #[test]
    fn an_absurd_length_is_refused() {
        let mut f = frame(1, b"");
        f[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let (frames, errors) = run(&mut Decoder::new(), &f);
        assert!(frames.is_empty());
        assert_eq!(errors[0], FrameError::TooLong(u32::MAX));
    }

    proptest! {
        #[test]
        fn random_bytes_then_a_frame_always_get_the_frame(noise in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut stream = noise;
            stream.extend(frame(77, b"after the noise"));
            let (frames, _) = run(&mut Decoder::new(), &stream);
            prop_assert_eq!(frames.last().map(|f| f.0), Some(77));
        }
    }
}

/// What the management protocol says, inside frames (encoded with `postcard`).
pub mod messages {
    use serde::{Deserialize, Serialize};

    /// Version of the messages.
    pub const VERSION: u32 = 13;
    /// Most `SaveData` answers one `SaveRead` gets.
    pub const SAVE_READ_MAX: u32 = 16;
    /// Frame kind of a request (host → toolstack domain).
    pub const KIND_REQUEST: u8 = 1;
    /// Frame kind of an answer (toolstack domain → host).
    pub const KIND_ANSWER: u8 = 2;

    /// A request from the host command.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub enum Request<'a> {
        /// First message of a session: both sides check the version.
        Hello {
            version: u32,
        },
        /// One `Domain` answer per domain, then `End`.
        List,
        HostInfo,
        Pause {
            domain: u32,
        },
        Unpause {
            domain: u32,
        },
        Destroy {
            domain: u32,
        },
        /// Starts a creation: the configuration text (checked again by the
        /// toolstack domain) and the image size to follow (0: the image the
        /// configuration's `kernel` names in the boot bundle).
        CreateBegin {
            config: &'a str,
            image_len: u32,
            paused: bool,
        },
        /// The next piece of the image, at `offset`.
        Upload {
            offset: u32,
            #[serde(serialize_with = "crate::byte_field::write")]
            data: &'a [u8],
        },
        /// Creates the domain; answered `Created`.
        CreateCommit,
        /// Kernel log lines from number `from` on: `Line` answers, then `End`.
        Dmesg {
            from: u64,
        },
        /// One domain's state and crash record: an `Info` answer.
        Info {
            domain: u32,
        },
        /// Ask a domain to shut down (or reboot) cleanly; it is destroyed if
        /// it has not stopped within the toolstack's timeout.
        Shutdown {
            domain: u32,
            reboot: bool,
        },
        /// Shut every domain down (destroying those that do not stop in
        /// time), then power the machine off.
        HostShutdown,
        /// A domain's console output from stream offset `offset` (every byte
        /// it printed has one, counted from its first): a `ConsoleData`
        /// answer, held back a short while if there is nothing new yet.
        ConsoleRead {
            domain: u32,
            offset: u64,
        },
        /// Bytes typed into a domain's console: answered `Ok`.
        ConsoleWrite {
            domain: u32,
            #[serde(serialize_with = "crate::byte_field::write")]
            data: &'a [u8],
        },
        /// Crash a domain as if it had faulted (fault injection): its
        /// `on_crash` policy applies. Answered `Ok`.
        Crash {
            domain: u32,
        },
        /// Dump kernel state to the kernel log, one debug key per character
        /// (`h` lists them). Answered `Ok`, or `Error` naming an unknown key
        /// (the keys before it were carried out).
        DebugKeys {
            keys: &'a str,
        },
        /// Every ring connection on the machine, as its shared header shows
        /// now: `Ring` answers, then `End`. Looking changes nothing.
        RingList,
        /// One ring (`frontend`'s `device` number `index`): a `Ring` answer,
        /// a `Slot` for each unread response and each request in flight
        /// (oldest first), then `End`.
        RingDump {
            frontend: u32,
            device: &'a str,
            index: u32,
        },
        /// Let vCPU `vcpu` of `domain` run only on the CPUs in `cpus` (bit
        /// n: CPU n): answered `Ok`, or `Error`.
        Pin {
            domain: u32,
            vcpu: u32,
            cpus: u64,
        },
        /// Every vCPU: `Vcpu` answers, then `End`.
        VcpuList,
        /// A domain's disks and network interfaces as its configuration
        /// gives them: `Device` answers, then `End`.
        Devices {
            domain: u32,
        },
        /// Asks a domain to hold `kib` of memory (its balloon moves
        /// toward it): answered `Ok` at once (`Domain`/`Info` answers show
        /// when it has), or `Error` (outside 256 KiB to its maximum).
        MemSet {
            domain: u32,
            kib: u64,
        },
        /// The most memory a domain may hold: answered `Ok`, or `Error`.
        MemMax {
            domain: u32,
            kib: u64,
        },
        /// Asks a running domain to have `count` vCPUs online (1 up to its
        /// `vcpus`): answered `Ok` at once (`VcpuList` shows when it
        /// has: a vCPU offline is `Down`), or `Error`.
        VcpuSet {
            domain: u32,
            count: u32,
        },
        /// Gives a running domain one more disk (`TARGET,VDEV,r|w`, as a
        /// `disk =` entry): the same checks as at creation, then the domain
        /// is told (`ControlOp::DeviceAttached`). Answered `Ok`, or `Error`.
        BlockAttach {
            domain: u32,
            spec: &'a str,
        },
        /// Takes disk `vdev` (`xvdb`) away from a running domain: its
        /// backend stops serving it (what it answered was done), requests
        /// still unanswered fail in the domain, which is told
        /// (`ControlOp::DeviceDetached`). Answered `Ok`, or `Error`.
        BlockDetach {
            domain: u32,
            vdev: &'a str,
        },
        /// Gives a running domain one more network interface (`vif` as a
        /// `vif =` entry, `mac=...`, or "" for a MAC made from its name):
        /// answered `Ok`, or `Error`.
        NetAttach {
            domain: u32,
            vif: &'a str,
        },
        /// Takes the interface with MAC `mac` away from a running domain
        /// (frames in flight are lost, as when a cable is pulled):
        /// answered `Ok`, or `Error`.
        NetDetach {
            domain: u32,
            mac: &'a str,
        },
        /// Gives a domain a new name (unused, printable ASCII, up to
        /// `domain::NAME_MAX` bytes): answered `Ok`, or `Error`.
        Rename {
            domain: u32,
            name: &'a str,
        },
        /// Changes a domain's scheduler weight and/or cap (percent of one
        /// CPU, 0: none) at once: answered `Ok`, or `Error`. `domain list`
        /// shows both.
        SetSched {
            domain: u32,
            weight: Option<u32>,
            cap: Option<u32>,
        },
        /// CPU `cpu`'s kernel trace bytes from position `from` on: a `Trace`
        /// answer (an `Error` when tracing is off).
        Trace {
            cpu: u32,
            from: u64,
        },
        /// Asks a domain to suspend itself for saving: answered `Ok` once it
        /// has (then `SaveRead` streams it), or `Error` (it cannot be saved,
        /// or did not suspend in time: it runs on untouched).
        SaveBegin {
            domain: u32,
        },
        /// The suspended domain's save file from position `cursor` on (0:
        /// the start): up to `count` `SaveData` answers (at most
        /// [`SAVE_READ_MAX`]), each going on from where the one before
        /// ended, the last one `done` or the `count`th (fewer round trips
        /// where they are slow). Asking again for the same cursor gives the
        /// same bytes.
        SaveRead {
            domain: u32,
            cursor: u64,
            count: u32,
        },
        /// The file is stored: the domain is destroyed (`keep`: left
        /// paused, as it was saved). Answered `Ok`.
        SaveEnd {
            domain: u32,
            keep: bool,
        },
        /// The save failed on the host: the domain runs on as if it had
        /// not been asked. Answered `Ok`.
        SaveCancel {
            domain: u32,
        },
        /// Starts a core dump of a domain (any state; one at a time, not
        /// during a save): it is paused if it ran, then answered `Ok`, and
        /// `SaveRead` streams a file of every page of its memory and its
        /// vCPUs' registers (the save file's records), or `Error`.
        CoreBegin {
            domain: u32,
        },
        /// The dump is read: a domain that ran runs on. Answered `Ok`.
        CoreEnd {
            domain: u32,
        },
        /// Starts a restore (forgetting one unfinished): answered `Ok`.
        RestoreBegin,
        /// The next records of the save file (`ipc_abi::save` framing, whole
        /// records, file header excluded): answered `Ok`, or `Error` (the
        /// restore is then abandoned and nothing of it is left).
        RestoreData {
            #[serde(serialize_with = "crate::byte_field::write")]
            data: &'a [u8],
        },
        /// Every record has come: the restored domain runs on (`paused`:
        /// stays paused). Answered `Created`.
        RestoreCommit {
            paused: bool,
        },
    }

    /// A domain as `domain list` reports it. The records of answers are
    /// generic over how they hold text (`S`) and bytes (`B`): borrowed from
    /// the frame (`&str`, `&[u8]`) on the wire, owned (`String`,
    /// `Vec<u8>`) where a client keeps them (`map` turns one into the
    /// other), so each is defined once, here.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct DomainRecord<S> {
        /// The full id (index and generation); `id & 0xffff` is what consoles show.
        pub id: u32,
        pub name: S,
        /// running, blocked, paused, shutdown, crashed
        pub state: S,
        /// What runs in it: "pv" (a Rust domain) or "hvm" (`type =`).
        pub kind: S,
        pub memory_kib: u64,
        pub vcpus: u32,
        pub cpu_ticks: u64,
        /// Times the toolstack restarted it after a crash.
        pub restarts: u32,
        /// Its scheduler weight and cap (percent of one CPU, 0: none).
        pub weight: u32,
        pub cap: u32,
        /// The most memory it may hold (`memory_kib` is what it holds).
        pub max_kib: u64,
    }

    /// The host as `host info` reports it.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct HostRecord<S> {
        pub free_kib: u64,
        pub domains: u64,
        /// CPUs running.
        pub cpus: u64,
        pub version: S,
        /// Domain 0's heap in use, in KiB (what it keeps per domain).
        pub toolstack_heap_kib: u64,
        /// Whether HVM guests can run here, or why not.
        pub hvm: S,
        /// Whether driver domains' DMA is confined by an IOMMU, or why not.
        pub dma_isolation: S,
    }

    /// One domain in detail, as `domain info` reports it.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct DetailsRecord<S> {
        pub id: u32,
        pub name: S,
        pub state: S,
        pub memory_kib: u64,
        pub cpu_ticks: u64,
        /// The crash: CPU vector (u64::MAX: the domain's own report), error code, RIP, address, message.
        pub crash_vector: u64,
        pub crash_error: u64,
        pub crash_rip: u64,
        pub crash_address: u64,
        pub crash_message: S,
        /// Times the toolstack restarted it after a crash, and what the
        /// last of those crashes was ("" if none).
        pub restarts: u32,
        pub last_crash: S,
        /// DMA its devices attempted that the IOMMU refused (its earlier
        /// instances' too, when it was restarted).
        pub dma_faults: u64,
        /// The most memory it may hold.
        pub max_kib: u64,
    }

    /// Console output starting at stream offset `offset` (later than asked
    /// if older output was cut from the history); `closed` once the console
    /// is closed and nothing more will come; `more` when more output than
    /// `data` was already kept (not caught up yet).
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct ConsoleRecord<B> {
        pub offset: u64,
        pub data: B,
        pub closed: bool,
        pub more: bool,
    }

    /// One disk or network interface of a domain (answer to `Devices`).
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct DeviceRecord<S> {
        /// "block" or "net".
        pub kind: S,
        /// The device's number (xvda = 0, the first interface = 0).
        pub index: u32,
        /// A disk's name in the guest (`xvda`), an interface's MAC.
        pub name: S,
        /// A disk's backend disk (`vdisk` name); "" for an interface.
        pub target: S,
        /// A disk: "r" or "w"; "" for an interface.
        pub mode: S,
        /// The domain serving it now (0: none yet).
        pub backend: u32,
        /// Its frontend has connected it.
        pub connected: bool,
        /// An interface's MTU (`mtu=` in its `vif` entry, else 1,500); 0
        /// for a disk.
        pub mtu: u32,
    }

    /// One ring connection (answer to `RingList`).
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct RingRecord<S> {
        pub frontend: u32,
        pub backend: u32,
        /// console, block, net-tx or net-rx.
        pub device: S,
        /// The frontend's device index (xvda = 0, the first interface = 0).
        pub index: u32,
        /// From the shared header: connected, resetting, disconnected, invalid.
        pub state: S,
        pub epoch: u32,
        /// Pages the ring occupies (header included) and its slots.
        pub pages: u32,
        pub slots: u32,
        pub req_prod: u32,
        pub req_event: u32,
        pub rsp_prod: u32,
        pub rsp_event: u32,
        /// The sides' private indices, as they published them: the
        /// frontend's requests written and responses taken, the
        /// backend's requests taken and responses written.
        pub req_prod_pvt: u32,
        pub rsp_cons: u32,
        pub req_cons: u32,
        pub rsp_prod_pvt: u32,
        /// Requests published and not yet answered.
        pub in_flight: u32,
        /// Notifications sent on the device's event channel by the
        /// frontend and by the backend (a net device's two rings share one).
        pub notify_to_backend: u32,
        pub notify_to_frontend: u32,
        /// How long requests have waited with no answer coming (ms; 0 when
        /// none waits), to within the 250 ms between domain 0's own looks
        /// at every ring.
        pub stalled_ms: u64,
        /// healthy, stuck (stalled over a second), "not a ring" or
        /// "broken indices".
        pub verdict: S,
    }

    /// A ring slot's bytes (answer to `RingDump`), at free-running index
    /// `index`: a request `waiting` for the backend or `taken` by it, or an
    /// `unread` response.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct SlotRecord<S, B> {
        pub index: u32,
        pub stage: S,
        pub bytes: B,
    }

    /// One vCPU (answer to `VcpuList`): where it runs and may run.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct VcpuRecord<S> {
        pub domain: u32,
        pub name: S,
        pub vcpu: u32,
        /// The CPU whose run queue holds it; whether it is loaded on that
        /// CPU now; the CPUs it may run on (bit n: CPU n).
        pub cpu: u32,
        pub running: bool,
        pub affinity: u64,
        pub state: S,
        pub cpu_ticks: u64,
    }

    /// Kernel trace bytes (answer to `Trace`; `crate::trace` says how to
    /// read them): `data` starts at position `start`; `head` is where the
    /// CPU's ring has got to, `capacity` how much it keeps; `stamp`
    /// identifies the kernel build.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub struct TraceRecord<B> {
        pub cpus: u32,
        pub start: u64,
        pub head: u64,
        pub capacity: u64,
        pub stamp: u64,
        pub data: B,
    }

    /// `map` for records with text: the same record, its text turned by `f`.
    macro_rules! map_text {
        ($t:ident { $($s:ident),* } { $($o:ident),* }) => {
            impl<S> $t<S> {
                /// The same record with its text turned by `f` (borrowed to owned, say).
                pub fn map<T>(self, f: impl Fn(S) -> T) -> $t<T> {
                    $t { $($s: f(self.$s),)* $($o: self.$o,)* }
                }
            }
        };
    }
    map_text!(DomainRecord { name, state, kind } { id, memory_kib, vcpus, cpu_ticks, restarts, weight, cap, max_kib });
    map_text!(HostRecord { version, hvm, dma_isolation } { free_kib, domains, cpus, toolstack_heap_kib });
    map_text!(DetailsRecord { name, state, crash_message, last_crash } {
        id, memory_kib, cpu_ticks, crash_vector, crash_error, crash_rip, crash_address, restarts,
        dma_faults, max_kib
    });
    map_text!(RingRecord { device, state, verdict } {
        frontend, backend, index, epoch, pages, slots, req_prod, req_event, rsp_prod, rsp_event,
        req_prod_pvt, rsp_cons, req_cons, rsp_prod_pvt, in_flight, notify_to_backend,
        notify_to_frontend, stalled_ms
    });
    map_text!(VcpuRecord { name, state } { domain, vcpu, cpu, running, affinity, cpu_ticks });
    map_text!(DeviceRecord { kind, name, target, mode } { index, backend, connected, mtu });

    impl<B> ConsoleRecord<B> {
        /// The same record with its bytes turned by `f`.
        pub fn map<C>(self, f: impl Fn(B) -> C) -> ConsoleRecord<C> {
            ConsoleRecord {
                offset: self.offset,
                data: f(self.data),
                closed: self.closed,
                more: self.more,
            }
        }
    }

    impl<B> TraceRecord<B> {
        /// The same record with its bytes turned by `f`.
        pub fn map<C>(self, f: impl Fn(B) -> C) -> TraceRecord<C> {
            TraceRecord {
                cpus: self.cpus,
                start: self.start,
                head: self.head,
                capacity: self.capacity,
                stamp: self.stamp,
                data: f(self.data),
            }
        }
    }

    impl<S, B> SlotRecord<S, B> {
        /// The same record with its text and bytes turned by `f` and `g`.
        pub fn map<T, C>(self, f: impl Fn(S) -> T, g: impl Fn(B) -> C) -> SlotRecord<T, C> {
            SlotRecord {
                index: self.index,
                stage: f(self.stage),
                bytes: g(self.bytes),
            }
        }
    }

    /// An answer of the toolstack domain.
    #[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
    pub enum Answer<'a> {
        Hello {
            version: u32,
        },
        #[serde(borrow)]
        Domain(DomainRecord<&'a str>),
        End,
        #[serde(borrow)]
        HostInfo(HostRecord<&'a str>),
        Created {
            id: u32,
        },
        Line {
            seq: u64,
            text: &'a str,
        },
        #[serde(borrow)]
        Info(DetailsRecord<&'a str>),
        #[serde(borrow)]
        ConsoleData(ConsoleRecord<&'a [u8]>),
        #[serde(borrow)]
        Ring(RingRecord<&'a str>),
        #[serde(borrow)]
        Device(DeviceRecord<&'a str>),
        #[serde(borrow)]
        Slot(SlotRecord<&'a str, &'a [u8]>),
        #[serde(borrow)]
        Vcpu(VcpuRecord<&'a str>),
        #[serde(borrow)]
        Trace(TraceRecord<&'a [u8]>),
        /// Save file bytes (answer to `SaveRead`) from position `cursor`:
        /// `next` is where the next read starts; `done` when the file is
        /// whole. `pages` is how many pages the file holds in all.
        SaveData {
            cursor: u64,
            next: u64,
            pages: u64,
            done: bool,
            #[serde(serialize_with = "crate::byte_field::write")]
            data: &'a [u8],
        },
        Ok,
        Error {
            message: &'a str,
        },
    }

    /// Encodes a message into `out`; returns the bytes used.
    pub fn encode<T: Serialize>(msg: &T, out: &mut [u8]) -> Option<usize> {
        postcard::to_slice(msg, out).ok().map(|s| s.len())
    }

    /// Decodes a message; `None` for anything malformed.
    pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
        postcard::from_bytes(bytes).ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn byte_strings_are_written_as_a_slice_of_bytes_would_be() {
            // The wire format of a byte field is serde's for any slice:
            // postcard's length, then each byte.
            #[derive(Serialize)]
            struct AsSequence<'a> {
                cursor: u64,
                next: u64,
                pages: u64,
                done: bool,
                data: &'a [u8],
            }
            let data: [u8; 300] = core::array::from_fn(|i| i as u8);
            let (mut fast, mut slow) = ([0u8; 512], [0u8; 512]);
            let n = encode(
                &Answer::SaveData {
                    cursor: 1,
                    next: 2,
                    pages: 3,
                    done: true,
                    data: &data,
                },
                &mut fast,
            )
            .unwrap();
            let m = postcard::to_slice(
                &AsSequence {
                    cursor: 1,
                    next: 2,
                    pages: 3,
                    done: true,
                    data: &data,
                },
                &mut slow,
            )
            .unwrap()
            .len();
            // The answer is its variant's index (one byte) and then the same.
            assert_eq!((n, &fast[1..n]), (m + 1, &slow[..m]));
            match decode::<Answer>(&fast[..n]) {
                Some(Answer::SaveData { data: d, .. }) => assert_eq!(d, &data[..]),
                other => panic!("{other:?}"),
            }
        }

        #[test]
        fn messages_round_trip_and_garbage_is_refused() {
            let mut buf = [0u8; 256];
            let n = encode(
                &Request::Upload {
                    offset: 8,
                    data: b"abc",
                },
                &mut buf,
            )
            .unwrap();
            assert_eq!(
                decode::<Request>(&buf[..n]),
                Some(Request::Upload {
                    offset: 8,
                    data: b"abc"
                })
            );
            let n = encode(&Request::Pause { domain: 7 }, &mut buf).unwrap();
            assert_eq!(
                decode::<Request>(&buf[..n]),
                Some(Request::Pause { domain: 7 })
            );
            let a = Answer::Domain(DomainRecord {
                id: 1,
                name: "web",
                state: "running",
                kind: "pv",
                memory_kib: 4096,
                vcpus: 1,
                cpu_ticks: 9,
                restarts: 2,
                weight: 256,
                cap: 0,
                max_kib: 4096,
            });
            let n = encode(&a, &mut buf).unwrap();
            assert_eq!(decode::<Answer>(&buf[..n]), Some(a));
            assert_eq!(decode::<Request>(&[0xff, 0xff, 0xff]), None);
            assert_eq!(decode::<Request>(&[]), None);
        }
    }
}
