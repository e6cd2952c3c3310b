//! drvdom-net's switch on raw frames from guests and the wire: every
//! frame gets a verdict (the learning table is a bounded vector), never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../domains/drvdom-net/src/switch.rs"]
mod switch;

use switch::{Port, Switch};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut sw = Switch::new();
    // Two interfaces of the wire's MTU, two of a page's.
    for i in 0..4u16 {
        let max_frame = if i < 2 { 1518 } else { 4096 };
        let _ = sw.add_vif(i, [0x02, 0, 0, 0, 0, i as u8], max_frame);
    }
    // Frames separated by 0xff 0xff; the first byte of each picks the port.
    let mut now = 0u64;
    for frame in data.split(|&b| b == 0xff) {
        let (port, frame) = match frame.split_first() {
            Some((&p, rest)) if p < 4 => (Port::Vif(u16::from(p)), rest),
            Some((_, rest)) => (Port::Uplink, rest),
            None => continue,
        };
        now += 1_000_000;
        let verdict = sw.decide(port, frame, now);
        if let switch::Verdict::To(to) = verdict {
            assert!(
                sw.fits(to, frame.len()),
                "{to:?} got a frame it does not take"
            );
        }
        if frame.len() == 1 {
            sw.remove_vif(u16::from(frame[0] % 4));
        }
    }
    core::hint::black_box(&sw);
});
