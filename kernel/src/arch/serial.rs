//! 16550 serial ports (COM1, COM2) through the `uart_16550` crate.
//!
//! Owns: programming a port from a [`SerialConfig`] and writing bytes to it,
//! with the `com2H`/`com2L` top-bit convention of the Xen HOWTO applied.

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

/// An initialised serial port.
pub struct SerialPort {
    uart: Uart16550<PioBackend>,
    top_bit: TopBit,
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
        Ok(SerialPort { uart, top_bit })
    }

    /// Writes bytes, turning `\n` into `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    fn put(&mut self, b: u8) {
        let b = match self.top_bit {
            TopBit::AsIs => b,
            TopBit::Set => b | 0x80,
            TopBit::Clear => b & 0x7f,
        };
        self.uart.send_bytes_exact(&[b]);
    }
}
