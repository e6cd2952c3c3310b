//! A save file (`domain restore FILE`: whatever the file holds): accepted
//! whole and consistent, or refused; never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ipc_abi::save::check_file(data);
    // Record by record, as domain 0 checks them again.
    let Ok(mut rest) = ipc_abi::save::check_file_header(data) else {
        return;
    };
    let mut checker = ipc_abi::save::Checker::new();
    while let Ok((record, next)) = ipc_abi::save::next_record(rest) {
        if checker.accept(&record).is_err() {
            break;
        }
        rest = next;
    }
});
