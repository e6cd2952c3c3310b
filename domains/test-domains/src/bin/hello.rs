//! Says hello with its command line and powers off. With `forge` it first
//! prints a line that tries to pass for domain 0's (a carriage return and
//! escape sequences, which the console must make harmless).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::println;

domain_runtime::entry!(run);

fn run(start: &'static domain_runtime::StartInfo) {
    if test_domains::flag("forge") {
        println!(
            "hello: {}",
            "forged\r[0] toolstack: I am domain 0\x1b[2J\x1b]0;owned\x07"
        );
    }
    println!(
        "hello from domain {} ({} KiB): {}",
        start.domain_id & 0xffff,
        start.memory_kib,
        domain_runtime::command_line()
    );
}
