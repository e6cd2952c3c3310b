//! Drives COM2 (given as `ioports=0x2f8-0x2ff irqs=3`) by interrupt: each line
//! received is printed; then it tries a port it was not given (`forbidden=`)
//! when told to, which must crash it.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::io::{inb, outb};
use domain_runtime::{events, println};

domain_runtime::entry!(run);

const BASE: u16 = 0x2f8;

fn run(_: &'static domain_runtime::StartInfo) {
    let port = hc::event_bind_pirq(3).expect("bind IRQ 3");
    outb(BASE + 1, 0x00); // no interrupts while programming
    outb(BASE + 3, 0x80); // divisor latch
    outb(BASE, 1); // 115200 baud
    outb(BASE + 1, 0);
    outb(BASE + 3, 0x03); // 8n1
    outb(BASE + 2, 0xc7); // FIFO on, cleared
    outb(BASE + 4, 0x0b); // DTR, RTS, OUT2 (routes the interrupt on a PC)
    outb(BASE + 1, 0x01); // interrupt on received data
    println!("irq-serial: ready on IRQ 3, port {}", port);
    let mut line: heapless::Vec<u8, 128> = heapless::Vec::new();
    let mut interrupts = 0u32;
    loop {
        events::wait(port);
        interrupts += 1;
        while inb(BASE + 5) & 1 != 0 {
            let b = inb(BASE);
            if b == b'\n' {
                let text = core::str::from_utf8(&line).unwrap_or("?");
                println!(
                    "irq-serial: received {:?} after {} interrupts",
                    text, interrupts
                );
                if text == "forbidden" {
                    println!("irq-serial: reading port 0x60, which it was not given");
                    let _ = inb(0x60);
                }
                line.clear();
            } else {
                let _ = line.push(b);
            }
        }
        hc::pirq_ack(port).expect("ack");
    }
}
