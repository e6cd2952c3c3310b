//! A 16550A serial port as the guest's driver sees it: its eight
//! registers, the divisor latch, loopback (Linux's probe checks it), the
//! FIFO's presence, and its interrupt line. What the guest sends comes out
//! as bytes; what it receives goes in with `receive`.
//!
//! Pure: host-tested.

extern crate alloc;
use alloc::collections::VecDeque;

const IER_RX: u8 = 1;
const IER_THRE: u8 = 2;
const LCR_DLAB: u8 = 0x80;
const MCR_LOOP: u8 = 0x10;
const MCR_OUT2: u8 = 0x08;
const LSR_DR: u8 = 0x01;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
/// Most bytes held for the guest to read: a 16550A's receive FIFO. No
/// more, because the interrupt is an edge: Linux's handler reads at most
/// 256 bytes an interrupt, and bytes left after it would wait for an edge
/// that never comes (the line never fell). The device model keeps the
/// rest of the input until there is room ([`Uart::room`]).
const RX_MAX: usize = 16;

#[derive(Default)]
pub struct Uart {
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    fifo: bool,
    /// The transmitter-empty interrupt is pending (until IIR reports it or THR is written).
    thre_pending: bool,
    rx: VecDeque<u8>,
}

impl Uart {
    pub fn new() -> Uart {
        Uart {
            dll: 1,
            ..Default::default()
        }
    }

    /// A register read (`offset` 0–7).
    pub fn read(&mut self, offset: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll,
            0 => self.rx.pop_front().unwrap_or(0),
            1 if dlab => self.dlm,
            1 => self.ier,
            2 => {
                let id = self.interrupt_id();
                if id == 0x02 {
                    self.thre_pending = false;
                }
                id | if self.fifo { 0xc0 } else { 0 }
            }
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
                dr | LSR_THRE | LSR_TEMT
            }
            6 => {
                if self.mcr & MCR_LOOP != 0 {
                    // Loopback: DCD ← OUT2, RI ← OUT1, DSR ← DTR, CTS ← RTS.
                    let m = self.mcr;
                    (m & 0x08) << 4 | (m & 0x04) << 4 | (m & 0x01) << 5 | (m & 0x02) << 3
                } else {
                    // Carrier, data set ready, clear to send.
                    0xb0
                }
            }
            _ => self.scr,
        }
    }

    /// A register write; returns the byte sent, if THR was written.
    pub fn write(&mut self, offset: u16, value: u8) -> Option<u8> {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            0 if dlab => self.dll = value,
            0 => {
                self.thre_pending = true;
                // In loopback the byte comes back instead of going out.
                if self.mcr & MCR_LOOP != 0 {
                    self.receive(&[value]);
                    return None;
                }
                return Some(value);
            }
            1 if dlab => self.dlm = value,
            1 => {
                let enabling = value & IER_THRE != 0 && self.ier & IER_THRE == 0;
                self.ier = value & 0x0f;
                if enabling {
                    self.thre_pending = true;
                }
            }
            2 => {
                self.fifo = value & 1 != 0;
                if value & 2 != 0 {
                    self.rx.clear();
                }
            }
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1f,
            7 => self.scr = value,
            _ => {}
        }
        None
    }

    /// How many more bytes the receive FIFO takes now.
    pub fn room(&self) -> usize {
        RX_MAX - self.rx.len()
    }

    /// Bytes arriving for the guest (input): what does not fit is dropped,
    /// as a full FIFO drops (give no more than [`Uart::room`]).
    pub fn receive(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.rx.len() < RX_MAX {
                self.rx.push_back(b);
            }
        }
    }

    /// IIR's interrupt identification: received data first, then THR empty.
    fn interrupt_id(&self) -> u8 {
        if self.ier & IER_RX != 0 && !self.rx.is_empty() {
            0x04
        } else if self.ier & IER_THRE != 0 && self.thre_pending {
            0x02
        } else {
            0x01
        }
    }

    /// Whether its interrupt line is up (OUT2 gates it to the PIC, as on a PC).
    pub fn irq(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.interrupt_id() != 0x01
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_probe_sees_a_16550a_with_loopback() {
        let mut u = Uart::new();
        u.write(1, 0);
        assert_eq!(u.read(1), 0);
        u.write(1, 0x0f);
        assert_eq!(u.read(1), 0x0f);
        u.write(4, MCR_LOOP | 0x0a);
        assert_eq!(u.read(6) & 0xf0, 0x90);
        u.write(2, 0x07);
        assert_eq!(u.read(2) & 0xc0, 0xc0);
        u.write(7, 0xa5);
        assert_eq!(u.read(7), 0xa5);
    }

    #[test]
    fn bytes_go_out_and_come_in_with_their_interrupts() {
        let mut u = Uart::new();
        u.write(4, MCR_OUT2);
        assert_eq!(u.write(0, b'x'), Some(b'x'));
        assert!(!u.irq(), "no interrupt until enabled");
        u.write(1, IER_THRE | IER_RX);
        assert!(u.irq());
        assert_eq!(u.read(2) & 0x0f, 0x02);
        assert!(!u.irq(), "reading IIR clears THRE");
        u.receive(b"ab");
        assert!(u.irq());
        assert_eq!(u.read(5) & LSR_DR, LSR_DR);
        assert_eq!((u.read(0), u.read(0)), (b'a', b'b'));
        assert_eq!(u.read(5) & LSR_DR, 0);
        assert!(!u.irq());
        u.write(3, LCR_DLAB);
        u.write(0, 12);
        assert_eq!(u.read(0), 12);
    }
}
