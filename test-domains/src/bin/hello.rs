//! Says hello with its command line and powers off.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::println;

domain_runtime::entry!(run);

fn run(start: &'static domain_runtime::StartInfo) {
    println!(
        "hello from domain {} ({} KiB): {}",
        start.domain_id & 0xffff,
        start.memory_kib,
        domain_runtime::command_line()
    );
}
