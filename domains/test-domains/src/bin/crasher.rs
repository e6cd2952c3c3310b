//! Commits the fault named by `fault=` (see `test_domains::faults`).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::println;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let kind = test_domains::option("fault").unwrap_or("none");
    println!("crasher: committing {}", kind);
    test_domains::faults::commit(kind);
    println!("crasher: {} did not fault!", kind);
}
