//! The VGA text screen (80x25 at physical 0xb8000), the `vga`/`tty` console.
//!
//! Owns: the text buffer and a cursor; scrolls when full. Output only.

use crate::layout::phys_to_virt;

const WIDTH: usize = 80;
const HEIGHT: usize = 25;
const BUFFER_PHYS: u64 = 0xb8000;
/// Light grey on black.
const ATTRIBUTE: u16 = 0x07 << 8;

/// A cursor on the VGA text buffer.
pub struct VgaText {
    row: usize,
    col: usize,
}

impl VgaText {
    /// Takes the screen and clears it.
    pub fn new() -> VgaText {
        let mut v = VgaText { row: 0, col: 0 };
        for i in 0..WIDTH * HEIGHT {
            v.store(i, b' ');
        }
        v
    }

    fn cell(i: usize) -> *mut u16 {
        (phys_to_virt(BUFFER_PHYS) as *mut u16).wrapping_add(i)
    }

    fn store(&mut self, i: usize, byte: u8) {
        debug_assert!(i < WIDTH * HEIGHT);
        // SAFETY: i < WIDTH*HEIGHT, so the cell lies in the 4000-byte VGA text
        // buffer, which the physmap always maps (the first 2 MiB are mapped).
        // Only the console owns a `VgaText`, behind its lock.
        unsafe { core::ptr::write_volatile(Self::cell(i), ATTRIBUTE | byte as u16) }
    }

    fn load(&self, i: usize) -> u16 {
        // SAFETY: as in `store`.
        unsafe { core::ptr::read_volatile(Self::cell(i)) }
    }

    fn newline(&mut self) {
        self.col = 0;
        if self.row + 1 < HEIGHT {
            self.row += 1;
            return;
        }
        for i in 0..WIDTH * (HEIGHT - 1) {
            let v = self.load(i + WIDTH);
            self.store(i, v as u8);
        }
        for i in WIDTH * (HEIGHT - 1)..WIDTH * HEIGHT {
            self.store(i, b' ');
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
                    self.store(self.row * WIDTH + self.col, shown);
                    self.col += 1;
                }
            }
        }
    }
}
