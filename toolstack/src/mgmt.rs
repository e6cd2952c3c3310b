//! The management protocol server on COM2 (`ipc_abi::mgmt`).
//!
//! Owns: COM2 (given to domain 0 at boot with `mgmt=com2`), reading bytes by
//! interrupt into the frame decoder, and answering each request. Garbage,
//! bad checksums and malformed requests are counted or answered with an
//! error; they never disturb the toolstack or any domain.

extern crate alloc;
use crate::start::Started;
use alloc::boxed::Box;
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
}

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
        })
    }

    /// Reads what arrived and answers every complete request.
    pub fn poll(&mut self, started: &mut [Started]) {
        let mut chunk = [0u8; 64];
        loop {
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
                break;
            }
        }
        let _ = hc::pirq_ack(self.port);
    }

    fn drain(&mut self, started: &mut [Started]) {
        loop {
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
                    (h.seq, messages::decode::<Request>(payload))
                }
            };
            match request {
                Some(r) => self.answer(seq, r, started),
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

    fn answer(&mut self, seq: u32, request: Request, started: &mut [Started]) {
        match request {
            Request::Hello { version } if version == VERSION => {
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

    fn send_domain(&mut self, seq: u32, id: DomainId) {
        let Ok(info) = hc::domain_info(id) else {
            return;
        };
        let state = match info.state {
            s if s == DomainState::Running as u32 => "running",
            s if s == DomainState::Paused as u32 => "paused",
            s if s == DomainState::Shutdown as u32 => "shutdown",
            s if s == DomainState::Crashed as u32 => "crashed",
            _ => "unknown",
        };
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
