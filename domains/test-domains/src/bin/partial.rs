//! Prints text without a newline, waits two seconds, then finishes a line:
//! the unfinished text must appear before the wait is over.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::{print, println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    print!("no newline yet");
    time::sleep_ns(2_000_000_000);
    println!();
    println!("partial: done");
}
