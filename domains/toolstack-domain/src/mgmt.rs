//! The management protocol server on COM2 (`ipc_abi::mgmt`).
//!
//! Owns: COM2 (given to domain 0 at boot with `mgmt=com2`), reading bytes by
//! interrupt into the frame decoder, and sending answers framed. Garbage,
//! bad checksums and malformed requests are counted or answered with an
//! error; they never disturb the toolstack or any domain. What each request
//! does is `requests.rs` (saves and restores: `save_requests.rs`).

extern crate alloc;
mod requests;
mod save_requests;

use crate::table::RingRecord;
use crate::table::Started;

/// The toolstack's list of domains it started.
type Started_ = crate::table::Domains;
use crate::viewer::Viewer;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::mgmt::messages::{
    self, Answer, Request, KIND_ANSWER, KIND_REQUEST, VERSION,
};
use domain_runtime::ipc_abi::mgmt::{encode, Decoder, Event, FrameHeader, HEADER_LEN};
use domain_runtime::ipc_abi::proto::console::ConsoleResponse;
use domain_runtime::ipc_abi::proto::control::Status;
use domain_runtime::ipc_abi::ring_view::{RingView, SlotStage, Verdict};
use domain_runtime::{io, println, DomainId};
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::IER;
use uart_16550::{Config, Uart16550};

/// Largest answer payload this domain sends (a piece of a save file is the largest).
const ANSWER_MAX: usize = domain_runtime::ipc_abi::mgmt::MAX_PAYLOAD;
/// Largest trace chunk in one answer.
const TRACE_MAX: usize = 2048;

use domain_runtime::ipc_abi::pc::{COM2_BASE as COM2, COM2_IRQ};

/// Requests that wait longer than this with no answer coming mark a ring stuck.
const STUCK_NS: u64 = 1_000_000_000;

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
    /// A `ConsoleRead` waiting for console-dom's answer.
    console_read: Option<ConsoleRead>,
    /// A save and a restore in progress.
    save: Option<crate::save::Save>,
    restore: Option<crate::save::Restore>,
    /// Domains whose save was given up on: unpaused if they suspend after all.
    late: Vec<DomainId>,
    /// Room to encode an answer in (on the heap: answers may be 16 KiB).
    payload: Vec<u8>,
    frame: Vec<u8>,
}

/// A `ConsoleRead` in progress.
struct ConsoleRead {
    seq: u32,
    /// The `Peek` asked of console-dom.
    peek: u64,
    offset: u64,
    /// When it is answered empty if nothing came (ns since boot).
    deadline: u64,
    /// The domain runs and will connect a console (it was started after
    /// console-dom): "no such console" from console-dom only means "not yet".
    console_coming: bool,
}

/// Longest a `ConsoleRead` waits for output before it is answered empty
/// (the client sends typed input between reads, so this bounds input delay).
const CONSOLE_POLL_NS: u64 = 100_000_000;

/// Silence after which a partial frame is forgotten: its client went away
/// (a new client's bytes must not be read as the rest of it).
const RESYNC_GAP_NS: u64 = 1_000_000_000;

/// How long the server polls for the rest of a frame before it waits for
/// an interrupt (measured: `cargo xtask bench toolstack`, upload row).
const MID_FRAME_SPIN_NS: u64 = 200_000;

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
            console_read: None,
            save: None,
            restore: None,
            late: Vec::new(),
            payload: alloc::vec![0; ANSWER_MAX],
            frame: alloc::vec![0; HEADER_LEN + ANSWER_MAX],
        })
    }

    /// Reads what arrived and answers every complete request.
    pub fn poll(&mut self, started: &mut Started_, viewer: &mut Option<Viewer>) {
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
                self.drain(started, viewer);
                if taken == 0 {
                    // A partial frame fills the buffer: give up on it.
                    self.decoder.reset();
                }
            }
            if n < chunk.len() {
                // In the middle of a frame the rest is usually on its way:
                // waiting a little for it beats an interrupt per FIFO-full.
                if self.decoder.buffered() > 0 && self.wait_for_byte(MID_FRAME_SPIN_NS) {
                    continue 'irq;
                }
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

    /// Polls the UART for up to `ns`; whether a byte arrived.
    fn wait_for_byte(&mut self, ns: u64) -> bool {
        let until = domain_runtime::time::now_ns() + ns;
        while domain_runtime::time::now_ns() < until {
            if self
                .uart
                .lsr()
                .contains(uart_16550::spec::registers::LSR::DATA_READY)
            {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }

    fn drain(&mut self, started: &mut Started_, viewer: &mut Option<Viewer>) {
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
                Some(r) => self.answer_owned(seq, r, started, viewer),
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
        let mut payload = core::mem::take(&mut self.payload);
        let mut frame = core::mem::take(&mut self.frame);
        self.send_with(seq, answer, &mut payload, &mut frame);
        self.payload = payload;
        self.frame = frame;
    }

    fn send_with(&mut self, seq: u32, answer: &Answer<'_>, payload: &mut [u8], frame: &mut [u8]) {
        let Some(n) = messages::encode(answer, payload).or_else(|| {
            let too_big = Answer::Error {
                message: "answer too large",
            };
            messages::encode(&too_big, payload)
        }) else {
            return;
        };
        let header = FrameHeader {
            kind: KIND_ANSWER,
            flags: 0,
            seq,
        };
        if let Some(len) = encode(header, &payload[..n], frame) {
            self.uart.send_bytes_exact(&frame[..len]);
        }
    }
}

/// A request copied out of the receive buffer.
enum OwnedRequest {
    Plain(Request<'static>),
    DebugKeys {
        keys: String,
    },
    RingDump {
        frontend: u32,
        device: String,
        index: u32,
    },
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
    ConsoleWrite {
        domain: u32,
        data: Vec<u8>,
    },
    RestoreData {
        data: Vec<u8>,
    },
    Rename {
        domain: u32,
        name: String,
    },
    /// `BlockAttach` (a disk entry), `BlockDetach` (a vdev), `NetAttach`
    /// (a vif entry) or `NetDetach` (a MAC), with its text.
    Hotplug {
        domain: u32,
        op: crate::hotplug::Op,
        text: String,
    },
}

impl From<Request<'_>> for OwnedRequest {
    fn from(r: Request<'_>) -> OwnedRequest {
        match r {
            Request::Hello { version } => OwnedRequest::Plain(Request::Hello { version }),
            Request::List => OwnedRequest::Plain(Request::List),
            Request::HostInfo => OwnedRequest::Plain(Request::HostInfo),
            Request::Pause { domain } => OwnedRequest::Plain(Request::Pause { domain }),
            Request::Crash { domain } => OwnedRequest::Plain(Request::Crash { domain }),
            Request::DebugKeys { keys } => OwnedRequest::DebugKeys { keys: keys.into() },
            Request::RingList => OwnedRequest::Plain(Request::RingList),
            Request::Trace { cpu, from } => OwnedRequest::Plain(Request::Trace { cpu, from }),
            Request::Pin { domain, vcpu, cpus } => {
                OwnedRequest::Plain(Request::Pin { domain, vcpu, cpus })
            }
            Request::CoreBegin { domain } => OwnedRequest::Plain(Request::CoreBegin { domain }),
            Request::Devices { domain } => OwnedRequest::Plain(Request::Devices { domain }),
            Request::MemSet { domain, kib } => OwnedRequest::Plain(Request::MemSet { domain, kib }),
            Request::MemMax { domain, kib } => OwnedRequest::Plain(Request::MemMax { domain, kib }),
            Request::VcpuSet { domain, count } => {
                OwnedRequest::Plain(Request::VcpuSet { domain, count })
            }
            Request::CoreEnd { domain } => OwnedRequest::Plain(Request::CoreEnd { domain }),
            Request::VcpuList => OwnedRequest::Plain(Request::VcpuList),
            Request::Rename { domain, name } => OwnedRequest::Rename {
                domain,
                name: name.into(),
            },
            Request::BlockAttach { domain, spec } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::BlockAttach,
                text: spec.into(),
            },
            Request::BlockDetach { domain, vdev } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::BlockDetach,
                text: vdev.into(),
            },
            Request::NetAttach { domain, vif } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::NetAttach,
                text: vif.into(),
            },
            Request::NetDetach { domain, mac } => OwnedRequest::Hotplug {
                domain,
                op: crate::hotplug::Op::NetDetach,
                text: mac.into(),
            },
            Request::SetSched {
                domain,
                weight,
                cap,
            } => OwnedRequest::Plain(Request::SetSched {
                domain,
                weight,
                cap,
            }),
            Request::RingDump {
                frontend,
                device,
                index,
            } => OwnedRequest::RingDump {
                frontend,
                device: device.into(),
                index,
            },
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
            Request::ConsoleRead { domain, offset } => {
                OwnedRequest::Plain(Request::ConsoleRead { domain, offset })
            }
            Request::ConsoleWrite { domain, data } => OwnedRequest::ConsoleWrite {
                domain,
                data: data.to_vec(),
            },
            Request::RestoreData { data } => OwnedRequest::RestoreData {
                data: data.to_vec(),
            },
            Request::SaveBegin { domain } => OwnedRequest::Plain(Request::SaveBegin { domain }),
            Request::SaveRead { domain, cursor } => {
                OwnedRequest::Plain(Request::SaveRead { domain, cursor })
            }
            Request::SaveEnd { domain, keep } => {
                OwnedRequest::Plain(Request::SaveEnd { domain, keep })
            }
            Request::SaveCancel { domain } => OwnedRequest::Plain(Request::SaveCancel { domain }),
            Request::RestoreBegin => OwnedRequest::Plain(Request::RestoreBegin),
            Request::RestoreCommit { paused } => {
                OwnedRequest::Plain(Request::RestoreCommit { paused })
            }
        }
    }
}
