//! The hypervisor console: where `kprintln!` goes.
//!
//! Owns: the set of console outputs chosen by `console=` (COM1, COM2 with
//! the top bit set or cleared, the VGA screen) and fan-out of every line to
//! all of them. Before it is configured, output goes to COM1 at its defaults.
//! While a console domain owns COM1, the kernel does not write it (the domain
//! prints the kernel log); a panic writes it regardless. A serial line that
//! stops taking bytes is not waited for (`arch::serial`): it is said so here.

use crate::arch::serial::{SerialPort, TopBit};
use crate::arch::vga::VgaText;
use crate::cmdline::{SerialConfig, Settings};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use spin::Mutex;

struct Console {
    com1: Option<SerialPort>,
    com2: Option<SerialPort>,
    vga: Option<VgaText>,
    /// COM1, COM2 became congested during the line being written.
    stuck: [bool; 2],
}

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_all(s.as_bytes());
        // A serial line that stopped taking bytes is said so once, on the
        // others and in the log, after the line being written (it says
        // itself what it missed when it moves again).
        self.stuck[0] |= self.com1.as_mut().is_some_and(|p| p.take_newly_congested());
        self.stuck[1] |= self.com2.as_mut().is_some_and(|p| p.take_newly_congested());
        if !s.ends_with('\n') {
            return Ok(());
        }
        let stuck = core::mem::take(&mut self.stuck);
        for (stuck, name) in stuck.into_iter().zip(["COM1", "COM2"]) {
            if stuck {
                let mut note = heapless::String::<96>::new();
                let _ = writeln!(
                    note,
                    "console: {name} takes no bytes; what it misses is dropped until it does"
                );
                self.write_all(note.as_bytes());
            }
        }
        Ok(())
    }
}

impl Console {
    fn write_all(&mut self, bytes: &[u8]) {
        if DIRECT_COM1.load(Ordering::Relaxed) {
            if let Some(p) = self.com1.as_mut() {
                p.write_bytes(bytes);
            }
        }
        if let Some(p) = self.com2.as_mut() {
            p.write_bytes(bytes);
        }
        if let Some(v) = self.vga.as_mut() {
            v.write_bytes(bytes);
        }
        crate::klog::append(bytes);
    }
}

/// Whether the kernel writes COM1 itself. False while a console domain owns
/// COM1 and drains the kernel log instead (see `klog.rs`).
static DIRECT_COM1: AtomicBool = AtomicBool::new(true);
/// COM1's I/O base as configured (`com1=`), for the takeover check.
static COM1_BASE: AtomicU16 = AtomicU16::new(ipc_abi::pc::COM1_BASE);

/// Hands COM1 to a console domain (`false`) or takes it back (`true`).
pub fn set_direct_com1(direct: bool) {
    DIRECT_COM1.store(direct, Ordering::Relaxed);
}

/// Prints a line already in the kernel log on COM1 alone (a console domain
/// stopped before printing it; the other outputs had it already).
pub fn reprint_on_com1(line: &[u8]) {
    if let Some(p) = CONSOLE.lock().com1.as_mut() {
        p.write_bytes(line);
        p.write_bytes(b"\n");
    }
}

/// Ends the console domain's line on COM1 (CR LF), for `ConsoleLineDone`.
pub fn end_line_on_com1() {
    if let Some(p) = CONSOLE.lock().com1.as_mut() {
        p.write_bytes(b"\n");
    }
}

/// COM1's I/O base.
pub fn com1_base() -> u16 {
    COM1_BASE.load(Ordering::Relaxed)
}

static CONSOLE: Mutex<Console> = Mutex::new(Console {
    com1: None,
    com2: None,
    vga: None,
    stuck: [false; 2],
});

/// Brings up COM1 at its defaults, so the earliest messages are seen, and
/// takes the hardware layer's messages from now on.
pub fn init_early() {
    CONSOLE.lock().com1 = SerialPort::init(&SerialConfig::COM1, TopBit::AsIs).ok();
    crate::arch::log::set(crate::arch::log::Sink { print, print_panic });
}

/// Applies `com1=`, `com2=` and `console=`. Returns what failed, for a warning.
pub fn configure(settings: &Settings) -> Option<&'static str> {
    let mut problem = None;
    let c = &settings.console;
    COM1_BASE.store(settings.com1.io_base, Ordering::Relaxed);
    let mut console = CONSOLE.lock();
    console.com1 = None;
    let com1 = SerialPort::init(&settings.com1, TopBit::AsIs);
    if com1.is_err() {
        problem = Some("com1: no 16550 answers at the configured port");
    }
    // COM1 stays programmed even when it is not a console target, so the
    // panic path can still reach it; it just is not written to.
    console.com1 = com1.ok().filter(|_| c.com1);
    console.com2 = None;
    if c.uses_com2() {
        if let Some(cfg) = &settings.com2 {
            let top = if c.com2_high {
                TopBit::Set
            } else {
                TopBit::Clear
            };
            console.com2 = SerialPort::init(cfg, top).ok();
            if console.com2.is_none() {
                problem = Some("com2: no 16550 answers at the configured port");
            }
        }
    }
    console.vga = c.vga.then(VgaText::new);
    problem
}

/// Writes formatted text to every console output.
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Writes from the panic path: waits a bounded time for whoever holds the
/// console to finish its line (another CPU may be printing while this one
/// faults), then takes it even if the holder never lets go.
pub fn print_panic(args: fmt::Arguments<'_>) {
    // About a quarter of a second at today's clock rates: several lines at
    // 115,200 baud, and no calibration needed (the panic may come before it).
    const PATIENCE_TSC: u64 = 1 << 29;
    let start = crate::arch::cpu::rdtsc();
    let mut console = loop {
        if let Some(console) = CONSOLE.try_lock() {
            break console;
        }
        if crate::arch::cpu::rdtsc().wrapping_sub(start) > PATIENCE_TSC {
            // The holder is this CPU (it panicked while printing) or a CPU
            // that is wedged: its line will never end. Breaking the lock
            // lets a half-written line meet ours, nothing worse: the
            // serial port and the VGA screen take any byte at any time.
            // SAFETY: see above; the guard is dropped below like any other.
            unsafe { CONSOLE.force_unlock() };
        }
        core::hint::spin_loop();
    };
    // The emergency path: the kernel's last words go to COM1 whoever owns it.
    DIRECT_COM1.store(true, Ordering::Relaxed);
    let _ = console.write_fmt(args);
}

/// Prints to the hypervisor console.
#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the hypervisor console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
