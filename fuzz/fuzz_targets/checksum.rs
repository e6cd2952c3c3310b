//! The TCP checksum code drvdom-net runs on frames from guests (checksum
//! offload): any bytes are recognised or not, never a panic; a frame it
//! fills in then checks, and one it does not recognise is left as it was;
//! a frame is recognised alike from its headers and length alone.
#![no_main]

#[path = "../../domains/domain-runtime/src/net/checksum.rs"]
mod checksum;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // Recognised from its first 34 bytes (Ethernet and IPv4 headers) and
    // its length alone, as drvdom-net does for a frame over several pages.
    let whole = checksum::tcp_ipv4(data);
    let head = &data[..data.len().min(34)];
    assert_eq!(checksum::tcp_ipv4_in(head, data.len()), whole);
    if let Some(s) = whole {
        let (src, dst) = s.addresses();
        assert_eq!((&data[26..30], &data[30..34]), (&src[..], &dst[..]));
    }
    let mut frame = data.to_vec();
    if checksum::fill_tcp(&mut frame) {
        assert!(checksum::tcp_ok(&frame), "a filled checksum checks");
        assert!(checksum::tcp_ipv4(&frame).is_some());
    } else {
        assert_eq!(frame, data, "nothing changed");
        assert!(checksum::tcp_ipv4(data).is_none());
    }
});
