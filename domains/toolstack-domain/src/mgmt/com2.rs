//! The management protocol on COM2 (given to domain 0 at boot with
//! `mgmt=com2`): the channel of a machine's first setup, and of when the
//! network is down.
//!
//! Owns: COM2, reading bytes by interrupt into its one session, forgetting
//! a partial frame whose client went quiet, and writing the answers out.

use super::session::Session;
use super::Started_;
use crate::viewer::Viewer;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::pc::{COM2_BASE as COM2, COM2_IRQ};
use domain_runtime::{io, println};
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::{IER, LSR};
use uart_16550::{Config, Uart16550};

/// Silence after which a partial frame is forgotten: its client went away
/// (a new client's bytes must not be read as the rest of it).
const RESYNC_GAP_NS: u64 = 1_000_000_000;

/// How long the server polls for the rest of a frame before it waits for
/// an interrupt (measured: `cargo xtask bench toolstack`, upload row).
const MID_FRAME_SPIN_NS: u64 = 200_000;

/// COM2 and its client's session.
pub struct Com2 {
    uart: Uart16550<PioBackend>,
    pub port: u16,
    /// When bytes last arrived (ns since boot).
    last_rx_ns: u64,
    pub session: Session,
}

impl Com2 {
    /// Starts serving if domain 0 was given COM2 (`mgmt=com2`).
    pub fn start() -> Option<Com2> {
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
        Some(Com2 {
            uart,
            port,
            last_rx_ns: 0,
            session: Session::new(),
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
                let decoder = &mut self.session.decoder;
                if now.saturating_sub(self.last_rx_ns) > RESYNC_GAP_NS && decoder.buffered() > 0 {
                    println!(
                        "toolstack: dropped {} bytes of a management frame its client never finished",
                        decoder.buffered()
                    );
                    decoder.reset();
                }
                self.last_rx_ns = now;
            }
            self.session.feed(&chunk[..n], started, viewer);
            self.flush();
            if n < chunk.len() {
                // In the middle of a frame the rest is usually on its way:
                // waiting a little for it beats an interrupt per FIFO-full.
                if self.session.decoder.buffered() > 0 && self.wait_for_byte(MID_FRAME_SPIN_NS) {
                    continue 'irq;
                }
                let _ = hc::pirq_ack(self.port);
                // A byte that came after the last read but before the ack
                // raised no new edge: look once more before leaving.
                if self.uart.lsr().contains(LSR::DATA_READY) {
                    continue 'irq;
                }
                break;
            }
        }
    }

    /// Sends the answers the session owes.
    pub fn flush(&mut self) {
        if self.session.output_len() > 0 {
            let out = self.session.take_output();
            self.uart.send_bytes_exact(&out);
        }
    }

    /// Polls the UART for up to `ns`; whether a byte arrived.
    fn wait_for_byte(&mut self, ns: u64) -> bool {
        let until = domain_runtime::time::now_ns() + ns;
        while domain_runtime::time::now_ns() < until {
            if self.uart.lsr().contains(LSR::DATA_READY) {
                return true;
            }
            core::hint::spin_loop();
        }
        false
    }
}
