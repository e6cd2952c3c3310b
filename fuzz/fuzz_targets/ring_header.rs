//! A ring's header as a peer left it (`ring list` reads any domain's):
//! a view or nothing, never a panic; derived counts never overflow.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(v) = ipc_abi::ring_view::RingView::parse(data) {
        let _ = (
            v.in_flight(),
            v.waiting(),
            v.taken(),
            v.verdict(),
            v.state_name(),
        );
    }
});
