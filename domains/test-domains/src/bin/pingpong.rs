//! Two of these ping-pong over one interdomain event channel.
//!
//! The one started with `peer=` and `peer_port=` (wired by domain 0's
//! `evtchn=`) binds and serves first; the other answers every event on the
//! port it learns from the first one. `rounds=` round trips (default 10000).

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use domain_runtime::hypercall as hc;
use domain_runtime::{events, println, time};

domain_runtime::entry!(run);

fn run(_: &'static domain_runtime::StartInfo) {
    let rounds = test_domains::number("rounds").unwrap_or(10_000);
    println!("pingpong: on cpu {}", hc::current_cpu());
    match (
        test_domains::domain("peer"),
        test_domains::number("peer_port"),
    ) {
        (Some(peer), Some(peer_port)) => {
            let port = hc::event_bind_interdomain(peer, peer_port as u16)
                .expect("bind to the peer's port");
            let start = time::now_ns();
            for _ in 0..rounds {
                hc::event_send(port).expect("send");
                events::wait(port);
            }
            let us = (time::now_ns() - start) / 1000;
            println!("pingpong: {} round trips done in {} us", rounds, us);
        }
        _ => {
            let mut answered = 0;
            while answered < rounds {
                hc::block();
                events::take_all(|p| {
                    if hc::event_send(p).is_ok() {
                        answered += 1;
                    }
                });
            }
            println!("pingpong: answered {} pings", answered);
        }
    }
}
