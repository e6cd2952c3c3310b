//! The main loop: the kernel log and every domain's console ring, to COM1.

use crate::clients::Clients;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::shared::Virq;
use domain_runtime::{control, events, io, println, time};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

use domain_runtime::ipc_abi::pc::{COM1_BASE as COM1, COM1_IRQ};
/// Ctrl-A: three in a row move the input focus to the next domain (as Xen's console did).
const ESCAPE: u8 = 0x01;
/// How long an unfinished line waits for the rest before it is printed.
const PARTIAL_FLUSH_NS: u64 = 50_000_000;
/// Longest time typed input may wait if its interrupt was lost. A second:
/// an idle console-dom wakes once a second, not ten times (at 100 ms, a
/// loaded host charged it up to 5% of a CPU in `cargo xtask run`, tick by
/// tick, for looking at a UART that had nothing).
const INPUT_POLL_NS: u64 = 1_000_000_000;

pub fn run() {
    let Some(mut uart) = io::uart(COM1) else {
        println!("console-dom: no UART at {:#x}", COM1);
        return;
    };
    let config = Config {
        baud_rate: uart_16550::BaudRate::Baud115200,
        interrupts: uart_16550::spec::registers::IER::DATA_READY,
        ..Config::DEFAULT
    };
    if uart.init(config).is_err() {
        println!("console-dom: COM1 did not initialise");
        return;
    }
    if let Err(e) = hc::event_bind_virq(Virq::ConsoleLog) {
        println!("console-dom: cannot watch the kernel log: {}", e);
        return;
    }
    // From the takeover on, the kernel's log lines are ours to print.
    let mut next = match hc::console_takeover() {
        Ok(first) => first,
        Err(e) => {
            println!("console-dom: cannot take COM1 over: {}", e);
            return;
        }
    };
    write_line(
        &mut uart,
        own!("COM1 is mine; what you type goes to domain 0 (Ctrl-A three times: the next domain)"),
    );
    let mut clients = Clients::new();
    // Fault injection: crash after this many domain lines (`crash_after=`, `crash_every=`).
    let crash_point = domain_runtime::fault::crash_point();
    let hang_point = domain_runtime::fault::hang_point();
    if control::connected() && control::listen().is_err() {
        println!("console-dom: cannot listen on the control ring");
    }
    // Input arrives by interrupt (IRQ 4, given at creation).
    let irq_port = hc::event_bind_pirq(COM1_IRQ).ok();
    let mut focus = 0usize;
    let mut escapes = 0u8;
    let mut relayed = 0u64;
    let mut partial_since: Option<u64> = None;
    let mut armed = 0u64;
    let mut buf = [0u8; domain_runtime::ipc_abi::hypercall::LOG_LINE_BUF];
    loop {
        // The kernel log (the kernel's lines and debug-hypercall lines).
        while let Ok((seq, text)) = hc::console_read(next, &mut buf) {
            if seq > next {
                write_line(&mut uart, own!("{} kernel log lines lost", seq - next));
            }
            write_line(&mut uart, format_args!("{}", text));
            relayed += 1;
            next = seq + 1;
            if relayed.is_multiple_of(1000) {
                write_line(&mut uart, own!("{} lines relayed", relayed));
            }
        }
        // Input: bytes for the focused console; Ctrl-A three times moves the focus.
        let mut typed: heapless::Vec<u8, 64> = heapless::Vec::new();
        while let Ok(b) = uart.try_receive_byte() {
            if b == ESCAPE {
                escapes += 1;
                if escapes == 3 {
                    escapes = 0;
                    report(&mut uart, clients.input(focus, &typed));
                    typed.clear();
                    focus = (focus + 1) % clients.len().max(1);
                    if let Some(d) = clients.focused(focus) {
                        write_line(&mut uart, own!("input now goes to domain {}", d));
                    }
                }
                continue;
            }
            for _ in 0..core::mem::take(&mut escapes) {
                let _ = typed.push(ESCAPE);
            }
            if typed.push(b).is_err() {
                report(&mut uart, clients.input(focus, &typed));
                typed.clear();
                let _ = typed.push(b);
            }
        }
        report(&mut uart, clients.input(focus, &typed));
        if let Some(p) = irq_port {
            let _ = hc::pirq_ack(p);
            // A byte that came after the last read but before the ack raised
            // no new edge: go round again rather than wait for one.
            if uart
                .lsr()
                .contains(uart_16550::spec::registers::LSR::DATA_READY)
            {
                continue;
            }
        }
        // News from the control domain: new consoles to serve.
        while let Ok(Some(msg)) = control::poll() {
            clients.on_control(msg, &mut Com1(&mut uart));
        }
        // The consoles themselves: one turn each, then the other duties again.
        let more = clients.serve(&mut Com1(&mut uart));
        if crash_point.is_some_and(|n| clients.history.recorded() >= n) {
            panic!(
                "deliberate crash after {} lines (fault injection)",
                clients.history.recorded()
            );
        }
        if hang_point.is_some_and(|n| clients.history.recorded() >= n) {
            domain_runtime::fault::hang("console-dom", clients.history.recorded());
        }
        // An unfinished line is printed after a quiet spell of PARTIAL_FLUSH_NS.
        let now = time::now_ns();
        if partial_since.is_some_and(|t| now >= t + PARTIAL_FLUSH_NS) {
            clients.flush_partials(&mut Com1(&mut uart));
            partial_since = None;
        }
        // Wake for the partial-line flush, and at least every INPUT_POLL_NS to
        // look at the UART: QEMU's I/O APIC can lose an edge that came while
        // the line was masked (Linux's 8250 driver keeps a backup timer for
        // the same kind of loss).
        let mut wake = now + INPUT_POLL_NS;
        // Alive: the toolstack restarts a console-dom that misses its heartbeat.
        if let Some(due) = control::heartbeat_tick() {
            wake = wake.min(due);
        }
        if clients.has_partial() {
            let since = *partial_since.get_or_insert(now);
            wake = wake.min(since + PARTIAL_FLUSH_NS);
        }
        // Re-arm only when the armed timer has fired or would come too late
        // (a hypercall per line would be a measurable share of its cost).
        if now >= armed || wake < armed {
            let _ = hc::set_timer(wake);
            armed = wake;
        }
        if !more {
            hc::block();
        }
        events::take_all(|_| {});
    }
}

/// Reports input a domain did not read in time.
fn report(uart: &mut Uart16550<PioBackend>, dropped: Option<(domain_runtime::DomainId, u64)>) {
    if let Some((dom, n)) = dropped {
        write_line(uart, format_args!("[{}] {} input bytes dropped", dom, n));
    }
}

/// Writes one line to the UART, ending it with CR LF.
fn write_line(uart: &mut Uart16550<PioBackend>, args: core::fmt::Arguments<'_>) {
    write_text(uart, args);
    uart.send_bytes_exact(b"\r\n");
}

/// Writes text to the UART, no line end.
fn write_text(uart: &mut Uart16550<PioBackend>, args: core::fmt::Arguments<'_>) {
    struct W<'a>(&'a mut Uart16550<PioBackend>);
    impl core::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.send_bytes_exact(s.as_bytes());
            Ok(())
        }
    }
    let _ = core::fmt::Write::write_fmt(&mut W(uart), args);
}

/// The lines of the consoles we serve, on COM1.
struct Com1<'a>(&'a mut Uart16550<PioBackend>);

impl crate::clients::Lines for Com1<'_> {
    fn line(&mut self, args: core::fmt::Arguments<'_>) {
        write_line(self.0, args);
    }

    fn done_line(
        &mut self,
        args: core::fmt::Arguments<'_>,
        mark: &core::sync::atomic::AtomicU64,
        done: u64,
    ) {
        write_text(self.0, args);
        // Room for the CR LF is waited for here, not by the kernel (which
        // would spin under its lock, on our CPU time all the same).
        while !self
            .0
            .lsr()
            .contains(uart_16550::spec::registers::LSR::THR_EMPTY)
        {
            core::hint::spin_loop();
        }
        if hc::console_line_done(mark, done).is_err() {
            self.0.send_bytes_exact(b"\r\n");
        }
    }
}
