//! Echoes every line typed at its console: `echo: <line>`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::{console, println};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    println!("echo: ready (ring {})", console::ring_connected());
    let mut line: heapless::Vec<u8, 128> = heapless::Vec::new();
    let mut buf = [0u8; 48];
    loop {
        let n = console::read(&mut buf);
        if n == 0 {
            return;
        }
        for &b in &buf[..n] {
            if b == b'\n' || b == b'\r' {
                if !line.is_empty() {
                    println!(
                        "echo: {}",
                        core::str::from_utf8(&line).unwrap_or("(not UTF-8)")
                    );
                    line.clear();
                }
            } else {
                let _ = line.push(b);
            }
        }
    }
}
