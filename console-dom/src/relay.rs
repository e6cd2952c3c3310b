//! The main loop: the kernel log and every domain's console ring, to COM1.

use crate::clients::Clients;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::shared::Virq;
use domain_runtime::{control, events, io, println, time};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550};

/// COM1's standard I/O base.
const COM1: u16 = 0x3f8;
/// How long an unfinished line waits for the rest before it is printed.
const PARTIAL_FLUSH_NS: u64 = 50_000_000;

pub fn run() {
    let Some(mut uart) = io::uart(COM1) else {
        println!("console-dom: no UART at {:#x}", COM1);
        return;
    };
    if uart
        .init(Config {
            baud_rate: uart_16550::BaudRate::Baud115200,
            ..Config::DEFAULT
        })
        .is_err()
    {
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
    let mut clients = Clients::new();
    if control::connected() && control::listen().is_err() {
        println!("console-dom: cannot listen on the control ring");
    }
    let mut relayed = 0u64;
    let mut partial_since: Option<u64> = None;
    let mut buf = [0u8; 161];
    loop {
        // The kernel log (the kernel's lines and debug-hypercall lines).
        while let Ok((seq, text)) = hc::console_read(next, &mut buf) {
            if seq > next {
                write_line(
                    &mut uart,
                    format_args!("console-dom: {} kernel log lines lost", seq - next),
                );
            }
            write_line(&mut uart, format_args!("{}", text));
            relayed += 1;
            next = seq + 1;
            if relayed.is_multiple_of(1000) {
                write_line(
                    &mut uart,
                    format_args!("console-dom: {} lines relayed", relayed),
                );
            }
        }
        // News from the control domain: new consoles to serve.
        while let Ok(Some(msg)) = control::poll() {
            clients.on_control(msg);
            let _ = control::listen();
        }
        // The consoles themselves.
        clients.serve(&mut |args| write_line(&mut uart, args));
        // An unfinished line is printed after a quiet spell of PARTIAL_FLUSH_NS.
        let now = time::now_ns();
        if partial_since.is_some_and(|t| now >= t + PARTIAL_FLUSH_NS) {
            clients.flush_partials(&mut |args| write_line(&mut uart, args));
            partial_since = None;
        }
        if clients.has_partial() {
            let since = *partial_since.get_or_insert(now);
            let _ = hc::set_timer(since + PARTIAL_FLUSH_NS);
        }
        hc::block();
        events::take_all(|_| {});
    }
}

/// Writes one line to the UART, ending it with CR LF.
fn write_line(uart: &mut Uart16550<PioBackend>, args: core::fmt::Arguments<'_>) {
    struct W<'a>(&'a mut Uart16550<PioBackend>);
    impl core::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.send_bytes_exact(s.as_bytes());
            Ok(())
        }
    }
    let _ = core::fmt::Write::write_fmt(&mut W(uart), args);
    uart.send_bytes_exact(b"\r\n");
}
