//! Relaying the kernel log to COM1.

use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::shared::Virq;
use domain_runtime::{events, io, println};
use uart_16550::Config;

/// COM1's standard I/O base.
const COM1: u16 = 0x3f8;

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
    let port = match hc::event_bind_virq(Virq::ConsoleLog) {
        Ok(p) => p,
        Err(e) => {
            println!("console-dom: cannot watch the kernel log: {}", e);
            return;
        }
    };
    // Start after what the kernel has already printed itself.
    let mut next = end_of_log();
    if let Err(e) = hc::console_takeover() {
        println!("console-dom: cannot take COM1 over: {}", e);
        return;
    }
    let mut relayed = 0u64;
    let mut buf = [0u8; 161];
    loop {
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
        events::wait(port);
    }
}

fn end_of_log() -> u64 {
    let mut seq = 0;
    let mut buf = [0u8; 161];
    while let Ok((n, _)) = hc::console_read(seq, &mut buf) {
        seq = n + 1;
    }
    seq
}

/// Writes one line to the UART, ending it with CR LF.
fn write_line(
    uart: &mut uart_16550::Uart16550<uart_16550::backend::PioBackend>,
    args: core::fmt::Arguments<'_>,
) {
    struct W<'a>(&'a mut uart_16550::Uart16550<uart_16550::backend::PioBackend>);
    impl core::fmt::Write for W<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            self.0.send_bytes_exact(s.as_bytes());
            Ok(())
        }
    }
    let _ = core::fmt::Write::write_fmt(&mut W(uart), args);
    uart.send_bytes_exact(b"\r\n");
}
