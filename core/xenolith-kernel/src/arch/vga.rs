//! The VGA text screen (80x25 at physical 0xb8000), the `vga`/`tty` console.
//!
//! Owns: the text memory and a cursor. Output only. It scrolls in
//! hardware, as Linux's vgacon does: the 32 KiB text window holds 204
//! rows, new lines go below the shown ones and the CRT controller's start
//! address moves down a row; only when the window's end is reached are the
//! shown rows copied back to its top. Text memory is a device's under an
//! emulator (each access a call into it) and slow on hardware too: a
//! scroll that copied the screen cost about 4,000 accesses a line, this
//! one about 80.

use crate::layout::phys_to_virt;
use x86_64::instructions::port::Port;

const WIDTH: usize = 80;
const HEIGHT: usize = 25;
const BUFFER_PHYS: u64 = 0xb8000;
/// Rows the 32 KiB text window (0xb8000-0xbffff) holds.
const ROWS: usize = 0x8000 / 2 / WIDTH;
/// Light grey on black.
const ATTRIBUTE: u16 = 0x07 << 8;
/// The CRT controller's index and data ports (colour), and its start
/// address registers (high, low byte), in cells.
const CRTC_INDEX: u16 = 0x3d4;
const CRTC_DATA: u16 = 0x3d5;
const START_HIGH: u8 = 0x0c;
const START_LOW: u8 = 0x0d;
/// The cursor start register, and its bit that hides the cursor.
const CURSOR_START: u8 = 0x0a;
const CURSOR_OFF: u8 = 1 << 5;

/// A cursor on the VGA text memory.
pub struct VgaText {
    /// The window's row shown at the top of the screen.
    top: usize,
    /// The cursor, its row counted from `top`.
    row: usize,
    col: usize,
}

impl VgaText {
    /// Takes the screen and clears it.
    pub fn new() -> VgaText {
        let mut v = VgaText {
            top: 0,
            row: 0,
            col: 0,
        };
        for i in 0..WIDTH * HEIGHT {
            v.store(i, ATTRIBUTE | u16::from(b' '));
        }
        // No blinking cursor where the firmware left it: this console has
        // no input.
        v.crtc(CURSOR_START, CURSOR_OFF);
        v.show_from(0);
        v
    }

    /// Writes CRT controller register `register`.
    fn crtc(&mut self, register: u8, value: u8) {
        // The colour CRT controller's index and data ports, which only the
        // console (behind its lock) writes; the registers written (the
        // cursor's, the start address) choose what the screen shows, nothing else.
        // SAFETY: as above: writing them touches no memory and no other device.
        unsafe {
            Port::<u8>::new(CRTC_INDEX).write(register);
            Port::<u8>::new(CRTC_DATA).write(value);
        }
    }

    fn cell(i: usize) -> *mut u16 {
        (phys_to_virt(BUFFER_PHYS) as *mut u16).wrapping_add(i)
    }

    fn store(&mut self, i: usize, value: u16) {
        debug_assert!(i < WIDTH * ROWS);
        // SAFETY: i < WIDTH*ROWS, so the cell lies in the 32 KiB VGA text
        // window, which the physmap always maps (the first 2 MiB are mapped).
        // Only the console owns a `VgaText`, behind its lock.
        unsafe { core::ptr::write_volatile(Self::cell(i), value) }
    }

    fn load(&self, i: usize) -> u16 {
        debug_assert!(i < WIDTH * ROWS);
        // SAFETY: as in `store`.
        unsafe { core::ptr::read_volatile(Self::cell(i)) }
    }

    /// Shows the window from row `top` on (the CRT controller's start address).
    fn show_from(&mut self, top: usize) {
        self.top = top;
        let start = (top * WIDTH) as u16;
        self.crtc(START_HIGH, (start >> 8) as u8);
        self.crtc(START_LOW, start as u8);
    }

    fn newline(&mut self) {
        self.col = 0;
        if self.row + 1 < HEIGHT {
            self.row += 1;
            return;
        }
        if self.top + HEIGHT == ROWS {
            // The window's end: the rows shown but the top one go back to
            // its start (once every 180 lines).
            for i in 0..WIDTH * (HEIGHT - 1) {
                let v = self.load((self.top + 1) * WIDTH + i);
                self.store(i, v);
            }
            self.show_from(0);
        } else {
            self.show_from(self.top + 1);
        }
        let bottom = (self.top + HEIGHT - 1) * WIDTH;
        for i in bottom..bottom + WIDTH {
            self.store(i, ATTRIBUTE | u16::from(b' '));
        }
    }

    /// Writes bytes; non-printable bytes show as `?`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match b {
                b'\n' => self.newline(),
                b'\r' => self.col = 0,
                _ => {
                    if self.col == WIDTH {
                        self.newline();
                    }
                    let shown = if (0x20..0x7f).contains(&b) { b } else { b'?' };
                    let at = (self.top + self.row) * WIDTH + self.col;
                    self.store(at, ATTRIBUTE | u16::from(shown));
                    self.col += 1;
                }
            }
        }
    }
}
