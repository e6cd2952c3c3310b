//! 16550 serial ports (COM1, COM2) through the `uart_16550` crate.
//!
//! Owns: programming a port from a [`SerialConfig`] and writing bytes to it,
//! with the `com2H`/`com2L` top-bit convention of the Xen HOWTO applied,
//! and a bounded wait: a line that takes no byte for [`PATIENCE`] polls is
//! *congested*, and until it takes one again the kernel drops what it would
//! send there (and says how much once it can). It writes under the kernel's
//! locks, for domains too (`ConsoleWrite`): a line slower than what they may
//! print, or one whose far end stopped reading, must not stop the machine.

use crate::cmdline::{Parity, SerialConfig};
use uart_16550::backend::PioBackend;
use uart_16550::spec::registers::{Parity as UartParity, WordLength};
use uart_16550::{BaudRate, Config, Uart16550};

/// What to do with bit 7 of each transmitted byte on a shared port.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TopBit {
    AsIs,
    Set,
    Clear,
}

/// Polls of a full transmitter before the line counts as congested: about
/// 20 ms at a PC's I/O timing, over what a 16-byte FIFO takes at 9600 baud.
const PATIENCE: u32 = 20_000;

/// An initialised serial port.
pub struct SerialPort {
    uart: Uart16550<PioBackend>,
    top_bit: TopBit,
    /// The line took nothing for `PATIENCE` polls; writes are dropped
    /// without waiting until it takes a byte again.
    congested: bool,
    /// Bytes dropped since the line last took one.
    lost: u64,
    /// It became congested and nobody was told yet.
    newly_congested: bool,
}

/// Why a port could not be brought up.
#[derive(Debug)]
pub enum SerialError {
    /// Nothing answers at the I/O base.
    Absent,
    /// The port rejected the configuration (for example an impossible baud rate).
    Rejected,
}

impl SerialPort {
    /// Programs the port at `cfg.io_base`.
    pub fn init(cfg: &SerialConfig, top_bit: TopBit) -> Result<SerialPort, SerialError> {
        // SAFETY: the ports are a 16550 by configuration or PC standard, owned by
        // the kernel alone, one `SerialPort` per base; `new_port` checks wrapping.
        let mut uart =
            unsafe { Uart16550::new_port(cfg.io_base) }.map_err(|_| SerialError::Absent)?;
        let config = Config {
            baud_rate: BaudRate::from_integer(cfg.baud),
            data_bits: WordLength::from_integer(cfg.data_bits),
            extra_stop_bits: cfg.stop_bits == 2,
            parity: match cfg.parity {
                Parity::None => UartParity::Disabled,
                Parity::Odd => UartParity::Odd,
                Parity::Even => UartParity::Even,
                Parity::Mark => UartParity::Forced1,
                Parity::Space => UartParity::Forced0,
            },
            ..Config::DEFAULT
        };
        uart.init(config).map_err(|e| match e {
            uart_16550::InitError::DeviceNotPresent => SerialError::Absent,
            _ => SerialError::Rejected,
        })?;
        Ok(SerialPort {
            uart,
            top_bit,
            congested: false,
            lost: 0,
            newly_congested: false,
        })
    }

    /// Writes bytes, turning `\n` into `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        let mut chunk = [0u8; 64];
        let mut n = 0;
        for &b in bytes {
            if n + 2 > chunk.len() {
                self.send(&chunk[..n]);
                n = 0;
            }
            if b == b'\n' {
                chunk[n] = self.top(b'\r');
                n += 1;
            }
            chunk[n] = self.top(b);
            n += 1;
        }
        self.send(&chunk[..n]);
    }

    fn top(&self, b: u8) -> u8 {
        match self.top_bit {
            TopBit::AsIs => b,
            TopBit::Set => b | 0x80,
            TopBit::Clear => b & 0x7f,
        }
    }

    /// Sends `bytes`, waiting at most [`PATIENCE`] polls for room, and not
    /// at all on a congested line (see the module).
    fn send(&mut self, mut bytes: &[u8]) {
        let mut idle = 0;
        while !bytes.is_empty() {
            let n = self.uart.send_bytes(bytes);
            if n > 0 {
                bytes = &bytes[n..];
                idle = 0;
                if core::mem::take(&mut self.congested) {
                    self.say_lost();
                }
                continue;
            }
            if self.congested || idle >= PATIENCE {
                self.newly_congested |= !self.congested;
                self.congested = true;
                self.lost = self.lost.saturating_add(bytes.len() as u64);
                return;
            }
            idle += 1;
            core::hint::spin_loop();
        }
    }

    /// Whether the line became congested since the last call.
    pub fn take_newly_congested(&mut self) -> bool {
        core::mem::take(&mut self.newly_congested)
    }

    /// The line moves again: says what it missed (on this line alone).
    fn say_lost(&mut self) {
        let lost = core::mem::take(&mut self.lost);
        let mut note = heapless::String::<64>::new();
        let _ = core::fmt::Write::write_fmt(
            &mut note,
            format_args!("\r\n[{} bytes not sent: the line was congested]\r\n", lost),
        );
        let bytes = note.as_bytes();
        let mut sent = 0;
        let mut idle = 0;
        while sent < bytes.len() && idle < PATIENCE {
            let n = self.uart.send_bytes(&bytes[sent..]);
            sent += n;
            idle = if n > 0 { 0 } else { idle + 1 };
        }
    }
}
