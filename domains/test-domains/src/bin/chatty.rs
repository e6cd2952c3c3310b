//! Prints as fast as it can, for ever: the console rate limit must keep it
//! from starving everyone else.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::println;

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let mut n = 0u64;
    loop {
        n += 1;
        println!("chatty: line {}", n);
    }
}
