//! The management protocol server on COM2 (`ipc_abi::mgmt`).
//!
//! Owns: COM2 (given to domain 0 at boot with `mgmt=com2`), reading bytes by
//! interrupt into the frame decoder, and answering each request. Garbage,
//! bad checksums and malformed requests are counted or answered with an
//! error; they never disturb the toolstack or any domain.

extern crate alloc;
use crate::start::{Started, MAX};

/// The toolstack's list of domains it started.
type Started_ = crate::start::Domains;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainState;
use domain_runtime::ipc_abi::mgmt::messages::{
    self, Answer, Request, KIND_ANSWER, KIND_REQUEST, VERSION,
};
use domain_runtime::ipc_abi::mgmt::{encode, Decoder, Event, FrameHeader, HEADER_LEN};
use domain_runtime::{io, println, DomainId};
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{Config, Uart16550};

const COM2: u16 = 0x2f8;
const COM2_IRQ: u8 = 3;

/// The server: COM2, its IRQ port and the frame decoder.
pub struct Server {
    uart: Uart16550<PioBackend>,
    pub port: u16,
    decoder: Box<Decoder>,
    frame_errors: u64,
    /// A creation in progress: configuration, image so far, image size, paused.
    pending: Option<(String, Vec<u8>, usize, bool)>,
    /// When bytes last arrived (ns since boot).
    last_rx_ns: u64,
}

/// Silence after which a partial frame is forgotten: its client went away
/// (a new client's bytes must not be read as the rest of it).
const RESYNC_GAP_NS: u64 = 1_000_000_000;

/// Largest image accepted by upload (16 MiB).
const MAX_IMAGE: usize = 16 << 20;

impl Server {
    /// Starts serving if domain 0 was given COM2 (`mgmt=com2`).
    pub fn start() -> Option<Server> {
        if !domain_runtime::command_line()
            .split_whitespace()
            .any(|w| w == "mgmt=com2")
        {
            return None;
        }
        let mut uart = io::uart(COM2)?;
        let config = Config {
            baud_rate: uart_16550::BaudRate::Baud115200,
            interrupts: IER::DATA_READY,
            ..Config::DEFAULT
        };
        if uart.init(config).is_err() {
            println!("toolstack: COM2 did not initialise; no management protocol");
            return None;
        }
        let port = match hc::event_bind_pirq(COM2_IRQ) {
            Ok(p) => p,
            Err(e) => {
                println!("toolstack: cannot bind COM2's IRQ: {}", e);
                return None;
            }
        };
        println!("toolstack: serving the management protocol on COM2");
        Some(Server {
            uart,
            port,
            decoder: Box::new(Decoder::new()),
            frame_errors: 0,
            pending: None,
            last_rx_ns: 0,
        })
    }

    /// Reads what arrived and answers every complete request.
    pub fn poll(&mut self, started: &mut Started_) {
        let mut chunk = [0u8; 64];
        'irq: loop {
            let mut n = 0;
            while n < chunk.len() {
                match self.uart.try_receive_byte() {
                    Ok(b) => {
                        chunk[n] = b;
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            if n > 0 {
                let now = domain_runtime::time::now_ns();
                if now.saturating_sub(self.last_rx_ns) > RESYNC_GAP_NS
                    && self.decoder.buffered() > 0
                {
                    println!(
                        "toolstack: dropped {} bytes of a management frame its client never finished",
                        self.decoder.buffered()
                    );
                    self.decoder.reset();
                }
                self.last_rx_ns = now;
            }
            let mut rest = &chunk[..n];
            while !rest.is_empty() {
                let taken = self.decoder.push(rest);
                rest = &rest[taken..];
                self.drain(started);
                if taken == 0 {
                    // A partial frame fills the buffer: give up on it.
                    self.decoder.reset();
                }
            }
            if n < chunk.len() {
                let _ = hc::pirq_ack(self.port);
                // A byte that came after the last read but before the ack
                // raised no new edge: look once more before leaving.
                if self
                    .uart
                    .lsr()
                    .contains(uart_16550::spec::registers::LSR::DATA_READY)
                {
                    continue 'irq;
                }
                break;
            }
        }
    }

    fn drain(&mut self, started: &mut Started_) {
        loop {
            // Copy the request out of the decoder's buffer before answering.
            let (seq, request) = match self.decoder.next_event() {
                None => return,
                Some(Event::Error(_)) => {
                    self.frame_errors += 1;
                    continue;
                }
                Some(Event::Frame(h, payload)) => {
                    if h.kind != KIND_REQUEST {
                        continue;
                    }
                    (
                        h.seq,
                        messages::decode::<Request>(payload).map(OwnedRequest::from),
                    )
                }
            };
            match request {
                Some(r) => self.answer_owned(seq, r, started),
                None => self.send(
                    seq,
                    &Answer::Error {
                        message: "malformed request",
                    },
                ),
            }
        }
    }

    fn send(&mut self, seq: u32, answer: &Answer<'_>) {
        let mut payload = [0u8; 256];
        let Some(n) = messages::encode(answer, &mut payload) else {
            return;
        };
        let mut frame = [0u8; HEADER_LEN + 256];
        let header = FrameHeader {
            kind: KIND_ANSWER,
            flags: 0,
            seq,
        };
        if let Some(len) = encode(header, &payload[..n], &mut frame) {
            self.uart.send_bytes_exact(&frame[..len]);
        }
    }

    fn answer_owned(&mut self, seq: u32, request: OwnedRequest, started: &mut Started_) {
        let request = match request {
            OwnedRequest::Plain(r) => r,
            OwnedRequest::CreateBegin {
                config,
                image_len,
                paused,
            } => {
                if image_len > MAX_IMAGE {
                    return self.send(
                        seq,
                        &Answer::Error {
                            message: "image too large",
                        },
                    );
                }
                self.pending = Some((config, Vec::new(), image_len, paused));
                return self.send(seq, &Answer::Ok);
            }
            OwnedRequest::Upload { offset, data } => {
                let ok = match self.pending.as_mut() {
                    Some((_, image, len, _))
                        if offset == image.len() && image.len() + data.len() <= *len =>
                    {
                        image.extend_from_slice(&data);
                        true
                    }
                    _ => false,
                };
                if !ok {
                    self.pending = None;
                    return self.send(
                        seq,
                        &Answer::Error {
                            message: "upload out of order or too long; creation abandoned",
                        },
                    );
                }
                return self.send(seq, &Answer::Ok);
            }
            OwnedRequest::CreateCommit => return self.commit(seq, started),
            OwnedRequest::Dmesg { from } => return self.dmesg(seq, from),
        };
        self.answer(seq, request, started)
    }

    fn commit(&mut self, seq: u32, started: &mut Started_) {
        let Some((config, image, len, paused)) = self.pending.take() else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no creation in progress",
                },
            );
        };
        if image.len() != len {
            return self.send(
                seq,
                &Answer::Error {
                    message: "the image upload is incomplete",
                },
            );
        }
        if started.len() >= MAX {
            return self.send(
                seq,
                &Answer::Error {
                    message: "the toolstack already tracks as many domains as it can",
                },
            );
        }
        let parsed = match domain_config::parse("upload", &config, &[]) {
            Ok(p) => p,
            Err(errors) => {
                let text = errors
                    .first()
                    .map(alloc::string::ToString::to_string)
                    .unwrap_or_default();
                return self.send(seq, &Answer::Error { message: &text });
            }
        };
        let c = parsed.config;
        let image: &'static [u8] = if len == 0 {
            match crate::bundle::find().and_then(|b| crate::bundle::image(b, &c.kernel)) {
                Some(i) => i,
                None => {
                    return self.send(
                        seq,
                        &Answer::Error {
                            message: "no image of that name in the boot bundle",
                        },
                    )
                }
            }
        } else {
            // Kept for restarts (on_crash = "restart") for the toolstack's life.
            Box::leak(image.into_boxed_slice())
        };
        let mut line = crate::bundle::start_line(&c);
        if paused {
            line.push_str(" start_paused");
        }
        let line: &'static str = Box::leak(line.into_boxed_str());
        let me = DomainId(domain_runtime::start_info().domain_id);
        match crate::start::start_one(me, image, line, started) {
            Some(s) => {
                let id = s.id.0;
                started.push(s);
                self.send(seq, &Answer::Created { id })
            }
            None => self.send(
                seq,
                &Answer::Error {
                    message: "the domain could not be created (see the console)",
                },
            ),
        }
    }

    fn dmesg(&mut self, seq: u32, from: u64) {
        let mut next = from;
        let mut buf = [0u8; 161];
        for _ in 0..200 {
            match hc::console_read(next, &mut buf) {
                Ok((n, text)) => {
                    let mut owned: heapless::String<161> = heapless::String::new();
                    let _ = owned.push_str(text);
                    self.send(
                        seq,
                        &Answer::Line {
                            seq: n,
                            text: &owned,
                        },
                    );
                    next = n + 1;
                }
                Err(_) => break,
            }
        }
        self.send(seq, &Answer::End);
    }

    fn answer(&mut self, seq: u32, request: Request<'_>, started: &mut Started_) {
        match request {
            Request::Hello { version } if version == VERSION => {
                // A new session: a creation the last client left unfinished is dropped.
                self.pending = None;
                self.send(seq, &Answer::Hello { version: VERSION })
            }
            Request::Hello { .. } => self.send(
                seq,
                &Answer::Error {
                    message: "unsupported protocol version",
                },
            ),
            Request::List => {
                let me = DomainId(domain_runtime::start_info().domain_id);
                self.send_domain(seq, me);
                for s in started.iter() {
                    self.send_domain(seq, s.id);
                }
                self.send(seq, &Answer::End);
            }
            Request::HostInfo => {
                let stats = hc::kernel_stats().unwrap_or_default();
                self.send(
                    seq,
                    &Answer::HostInfo {
                        free_kib: stats.free_frames * 4,
                        domains: stats.live_domains,
                        version: env!("CARGO_PKG_VERSION"),
                    },
                );
            }
            Request::Pause { domain } => self.control(seq, started, domain, hc::domain_pause),
            Request::Unpause { domain } => self.control(seq, started, domain, hc::domain_unpause),
            Request::Destroy { domain } => self.control(seq, started, domain, hc::domain_destroy),
            Request::Info { domain } => self.info(seq, started, domain),
            Request::Shutdown { domain, reboot } => self.shutdown(seq, started, domain, reboot),
            Request::HostShutdown => {
                let ids: Vec<u32> = started
                    .iter()
                    .filter(|s| !s.reported)
                    .map(|s| s.id.0)
                    .collect();
                for id in ids {
                    if let Some(s) = started.iter_mut().find(|s| s.id.0 == id) {
                        match s.control.as_mut() {
                            Some(link) => {
                                let mut req = <domain_runtime::ipc_abi::proto::control::ControlMessage as zerocopy::FromZeros>::new_zeroed();
                                req.op = domain_runtime::ipc_abi::proto::control::ControlOp::ShutdownRequest as u32;
                                link.tell(req);
                                s.shutdown_deadline = Some(
                                    domain_runtime::time::now_ns()
                                        + crate::start::SHUTDOWN_TIMEOUT_NS,
                                );
                            }
                            None => {
                                let _ = hc::domain_destroy(s.id);
                                s.reported = true;
                            }
                        }
                    }
                }
                crate::start::request_power_off();
                println!("toolstack: host shutdown: every domain asked to stop, then power off");
                self.send(seq, &Answer::Ok)
            }
            // Handled in `answer_owned`.
            Request::CreateBegin { .. }
            | Request::Upload { .. }
            | Request::CreateCommit
            | Request::Dmesg { .. } => {}
        }
    }

    fn control(
        &mut self,
        seq: u32,
        started: &[Started],
        domain: u32,
        op: fn(DomainId) -> domain_runtime::ipc_abi::hypercall::Result<u64>,
    ) {
        // A bare index names the live domain in that slot.
        let id = started
            .iter()
            .map(|s| s.id)
            .find(|id| id.0 == domain || id.index() as u32 == domain);
        match id.map(op) {
            Some(Ok(_)) => self.send(seq, &Answer::Ok),
            Some(Err(e)) => {
                let mut text: heapless::String<64> = heapless::String::new();
                let _ = core::fmt::Write::write_fmt(&mut text, format_args!("{}", e));
                self.send(seq, &Answer::Error { message: &text });
            }
            None => self.send(
                seq,
                &Answer::Error {
                    message: "no such domain",
                },
            ),
        }
    }

    fn shutdown(&mut self, seq: u32, started: &mut Started_, domain: u32, reboot: bool) {
        let Some(s) = started
            .iter_mut()
            .find(|s| s.id.0 == domain || s.id.index() as u32 == domain)
        else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no such domain",
                },
            );
        };
        let Some(link) = s.control.as_mut() else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "the domain has no control ring; destroy it instead",
                },
            );
        };
        let mut req = <domain_runtime::ipc_abi::proto::control::ControlMessage as zerocopy::FromZeros>::new_zeroed();
        req.op = domain_runtime::ipc_abi::proto::control::ControlOp::ShutdownRequest as u32;
        req.index = reboot as u32;
        link.tell(req);
        s.shutdown_deadline =
            Some(domain_runtime::time::now_ns() + crate::start::SHUTDOWN_TIMEOUT_NS);
        println!("toolstack: asked domain {} ({}) to shut down", s.id, s.name);
        self.send(seq, &Answer::Ok)
    }

    fn info(&mut self, seq: u32, started: &[Started], domain: u32) {
        let me = DomainId(domain_runtime::start_info().domain_id);
        let id = core::iter::once(me)
            .chain(started.iter().map(|s| s.id))
            .find(|id| id.0 == domain || id.index() as u32 == domain);
        let Some(info) = id.and_then(|id| hc::domain_info(id).ok()) else {
            return self.send(
                seq,
                &Answer::Error {
                    message: "no such domain",
                },
            );
        };
        let name_len = (info.name_len as usize).min(info.name.len());
        let name = core::str::from_utf8(&info.name[..name_len]).unwrap_or("?");
        let c = &info.crash;
        let answer = Answer::Info {
            id: info.id.0,
            name,
            state: state_name(info.state),
            memory_kib: info.memory_kib,
            cpu_ticks: info.cpu_ticks,
            crash_vector: c.vector,
            crash_error: c.error_code,
            crash_rip: c.rip,
            crash_address: c.address,
            crash_message: c.message(),
        };
        self.send(seq, &answer);
    }

    fn send_domain(&mut self, seq: u32, id: DomainId) {
        let Ok(info) = hc::domain_info(id) else {
            return;
        };
        let state = state_name(info.state);
        let name_len = (info.name_len as usize).min(info.name.len());
        let name = core::str::from_utf8(&info.name[..name_len]).unwrap_or("?");
        let answer = Answer::Domain {
            id: info.id.0,
            name,
            state,
            memory_kib: info.memory_kib,
            vcpus: 1,
            cpu_ticks: info.cpu_ticks,
        };
        self.send(seq, &answer);
    }
}

/// The name of a `DomainState` value.
fn state_name(state: u32) -> &'static str {
    match state {
        s if s == DomainState::Running as u32 => "running",
        s if s == DomainState::Paused as u32 => "paused",
        s if s == DomainState::Shutdown as u32 => "shutdown",
        s if s == DomainState::Crashed as u32 => "crashed",
        _ => "unknown",
    }
}

/// A request copied out of the receive buffer.
enum OwnedRequest {
    Plain(Request<'static>),
    CreateBegin {
        config: String,
        image_len: usize,
        paused: bool,
    },
    Upload {
        offset: usize,
        data: Vec<u8>,
    },
    CreateCommit,
    Dmesg {
        from: u64,
    },
}

impl From<Request<'_>> for OwnedRequest {
    fn from(r: Request<'_>) -> OwnedRequest {
        match r {
            Request::Hello { version } => OwnedRequest::Plain(Request::Hello { version }),
            Request::List => OwnedRequest::Plain(Request::List),
            Request::HostInfo => OwnedRequest::Plain(Request::HostInfo),
            Request::Pause { domain } => OwnedRequest::Plain(Request::Pause { domain }),
            Request::Unpause { domain } => OwnedRequest::Plain(Request::Unpause { domain }),
            Request::Destroy { domain } => OwnedRequest::Plain(Request::Destroy { domain }),
            Request::Info { domain } => OwnedRequest::Plain(Request::Info { domain }),
            Request::Shutdown { domain, reboot } => {
                OwnedRequest::Plain(Request::Shutdown { domain, reboot })
            }
            Request::HostShutdown => OwnedRequest::Plain(Request::HostShutdown),
            Request::CreateBegin {
                config,
                image_len,
                paused,
            } => OwnedRequest::CreateBegin {
                config: config.into(),
                image_len: image_len as usize,
                paused,
            },
            Request::Upload { offset, data } => OwnedRequest::Upload {
                offset: offset as usize,
                data: data.to_vec(),
            },
            Request::CreateCommit => OwnedRequest::CreateCommit,
            Request::Dmesg { from } => OwnedRequest::Dmesg { from },
        }
    }
}
