//! Echoes every line typed at its console: `echo: <line>`.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::{console, println};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    println!("echo: ready (ring {})", console::ring_connected());
    let mut input: console::LineReader<128> = console::LineReader::new();
    while let Some(line) = input.next_line() {
        println!("echo: {}", line);
    }
}
