//! The TCP checksum code drvdom-net runs on frames from guests (checksum
//! offload): any bytes are recognised or not, never a panic; a frame it
//! fills in then checks, and one it does not recognise is left as it was.
#![no_main]

#[path = "../../domains/domain-runtime/src/net/checksum.rs"]
mod checksum;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut frame = data.to_vec();
    if checksum::fill_tcp(&mut frame) {
        assert!(checksum::tcp_ok(&frame), "a filled checksum checks");
        assert!(checksum::tcp_ipv4(&frame).is_some());
    } else {
        assert_eq!(frame, data, "nothing changed");
        assert!(checksum::tcp_ipv4(data).is_none());
    }
});
