//! A domain configuration file (written by anyone who may create domains)
//! with command-line overrides: typed settings or errors, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    // The last line, if it starts with "@", doubles as overrides.
    let overrides: Vec<&str> = text
        .lines()
        .last()
        .and_then(|l| l.strip_prefix('@'))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let _ = domain_config::parse("fuzz.cfg", text, &overrides);
});
