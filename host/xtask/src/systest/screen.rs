//! The VGA text screen the kernel's console writes (`console=com1,vga`),
//! as QEMU shows it: after the console has scrolled past the end of the
//! text memory (the kernel scrolls in hardware, `arch/vga.rs`), the screen
//! shows the console's last lines, in order.

use super::harness::*;
use crate::qemu::Machine;
use std::collections::HashMap;
use std::time::Duration;

const WIDTH: usize = 80;
const HEIGHT: usize = 25;
/// Rows of the 32 KiB text memory.
const ROWS: usize = 204;

/// A domain prints lines without end; once it has printed far more than
/// text memory holds, the machine is stopped, its text memory read and its
/// screen dumped. Exactly one run of 25 rows of text memory is what the
/// screen shows (each character always drawn alike, no two alike), and it
/// ends with the last line COM1 got.
fn the_screen_shows_the_consoles_last_lines_after_scrolling_past_text_memory(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let sock = c.socket("monitor.sock");
    let m = boot(
        &c.machine()
            .cmdline("console=com1,vga")
            .guests(&[("chatty", "chatty")])
            .config()?
            .monitor_socket(&sock),
        slot,
    )?;
    // Lines of the console, not rows of the 80-column screen: more than
    // twice the text memory's 204 rows.
    expect_line(m, "[1] chatty: line 500")?;
    m.monitor("stop")?;
    let text = text_memory(m)?;
    let dump = c.path("screen.ppm");
    m.monitor(&format!("screendump {}", dump.display()))?;
    let screen = screen_cells(&dump)?;
    let shown: Vec<usize> = (0..=ROWS - HEIGHT)
        .filter(|&top| drawn_alike(&text[top * WIDTH..(top + HEIGHT) * WIDTH], &screen))
        .collect();
    let [top] = shown[..] else {
        return Err(format!(
            "rows of text memory the screen could show: {shown:?}"
        ));
    };
    let rows: Vec<String> = (top..top + HEIGHT)
        .map(|r| {
            let row = &text[r * WIDTH..(r + 1) * WIDTH];
            row.iter()
                .map(|&cell| (cell & 0xff) as u8 as char)
                .collect()
        })
        .collect();
    let numbers: Vec<u64> = rows
        .iter()
        .filter_map(|r| chatty_line(r.trim_end()))
        .collect();
    // The console writes each piece of a line to COM1 before the screen,
    // so COM1 had the screen's last line (its newline perhaps not yet)
    // when QEMU stopped; the host's reader may still be behind (CI once
    // read 500,684 against the screen's 500,685).
    if let Some(n) = numbers.last() {
        m.wait_for_text(&format!("[1] chatty: line {n}"), Duration::from_secs(10))?;
    }
    let serial_last = m
        .transcript()
        .lines()
        .rev()
        .find_map(chatty_line)
        .ok_or("no chatty line on COM1")?;
    check(
        numbers.windows(2).all(|w| w[0] < w[1])
            // (Lines the rate limit dropped are said in rows of their own.)
            && numbers.len() >= HEIGHT / 2
            && numbers
                .last()
                .is_some_and(|&n| n + 1 >= serial_last && n <= serial_last),
        || {
            format!(
                "COM1's last chatty line was {serial_last}; the screen (rows {top}..) shows:\n{}",
                rows.join("\n")
            )
        },
    )
}

/// N of a `[1] chatty: line N` line.
fn chatty_line(line: &str) -> Option<u64> {
    line.trim().strip_prefix("[1] chatty: line ")?.parse().ok()
}

/// The text memory's cells (character in the low byte), read through the
/// monitor.
fn text_memory(m: &Machine) -> Result<Vec<u16>, String> {
    let out = m.monitor(&format!("xp /{}xh 0xb8000", ROWS * WIDTH))?;
    let cells: Vec<u16> = out
        .lines()
        .filter_map(|l| l.split_once(": "))
        .flat_map(|(_, values)| values.split_whitespace())
        .filter_map(|v| u16::from_str_radix(v.trim_start_matches("0x"), 16).ok())
        .collect();
    check(cells.len() == ROWS * WIDTH, || {
        format!("{} cells of text memory read", cells.len())
    })?;
    Ok(cells)
}

/// Each screen cell's pixels (rows of cells, left to right), from a
/// binary PPM screen dump.
fn screen_cells(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while data.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
        let start = at;
        while data.get(at).is_some_and(|b| !b.is_ascii_whitespace()) {
            at += 1;
        }
        fields.push(String::from_utf8_lossy(&data[start..at]).into_owned());
    }
    let pixels = &data[at + 1..];
    let (w, h): (usize, usize) = match (&fields[0][..], fields[1].parse(), fields[2].parse()) {
        ("P6", Ok(w), Ok(h)) => (w, h),
        _ => return Err(format!("not a binary PPM: {fields:?}")),
    };
    check(
        pixels.len() >= w * h * 3 && w % WIDTH == 0 && h % HEIGHT == 0,
        || format!("a {w}x{h} screen dump of {} bytes", pixels.len()),
    )?;
    let (cw, ch) = (w / WIDTH, h / HEIGHT);
    let mut cells = vec![Vec::new(); WIDTH * HEIGHT];
    for y in 0..h {
        for x in 0..w {
            let p = &pixels[(y * w + x) * 3..][..3];
            cells[(y / ch) * WIDTH + x / cw].extend_from_slice(p);
        }
    }
    Ok(cells)
}

/// Whether `screen` draws `text` (25 rows of cells): every character drawn
/// alike wherever it is, and no two characters alike.
fn drawn_alike(text: &[u16], screen: &[Vec<u8>]) -> bool {
    let mut glyph: HashMap<u16, &[u8]> = HashMap::new();
    let mut char_of: HashMap<&[u8], u16> = HashMap::new();
    text.iter().zip(screen).all(|(&cell, pixels)| {
        *glyph.entry(cell).or_insert(pixels) == &pixels[..]
            && *char_of.entry(pixels).or_insert(cell) == cell
    })
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![the_screen_shows_the_consoles_last_lines_after_scrolling_past_text_memory]
}
