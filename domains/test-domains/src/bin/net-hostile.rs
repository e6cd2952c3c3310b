//! A hostile network frontend: every kind of bad transmit request (chains
//! of requests for a frame over several pages among them), a flood of
//! frames, then the transmit ring's index pushed past the ring's size.
//! Each answer is printed; the backend must answer errors (or drop the
//! interface at the end) and stay up, serving everyone else. With
//! `jumbo_to=MAC`, only chains of whole pages to that guest (and with
//! `blank_to=MAC` one with a blank checksum to another); with `jumbo_rx`,
//! it only receives such a chain.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::proto::net::{parse_mac, Mac, TxRequest, TX_MORE, TX_TCP_CSUM_BLANK};
use domain_runtime::net::{checksum, NetFront};
use domain_runtime::{println, time};
use zerocopy::FromZeros;

domain_runtime::entry!(run);

fn request(gref: u32, offset: u16, len: u16) -> TxRequest {
    let mut r = TxRequest::new_zeroed();
    r.gref = gref;
    r.offset = offset;
    r.len = len;
    r
}

/// Sends `requests` as they are and prints whether the backend refused
/// them (an answer with an error within 5 s) or not.
fn try_case(net: &mut NetFront, what: &str, requests: &[TxRequest]) {
    let before = net.tx.settle().unwrap_or(0);
    let _ = net.tx.push_raw(requests);
    // Wait for the answer (the backend answers every request).
    let deadline = time::now_ns() + 5_000_000_000;
    let mut refused = before;
    while refused == before && time::now_ns() < deadline {
        domain_runtime::events::wait_until(net.port(), time::now_ns() + 10_000_000);
        refused = net.tx.settle().unwrap_or(before);
    }
    println!(
        "net-hostile: {}: {}",
        what,
        if refused > before {
            "refused"
        } else {
            "accepted"
        }
    );
}

/// `jumbo_to=MAC` (an interface of a jumbo MTU, to a guest of one): only
/// chains of whole pages to that guest, which drvdom-net copies from our
/// pages to its straight, one with a page of a grant we do not own.
fn jumbo_chains(net: &mut NetFront, to: Mac) {
    let mac = net.mac();
    for i in 0..2 {
        let page = net.tx.page_mut(i);
        page.fill(0);
        page[..6].copy_from_slice(&to);
        page[6..12].copy_from_slice(&mac);
        // The IEEE's local experimental ethertype: the guest drops it.
        page[12..14].copy_from_slice(&[0x88, 0xb5]);
    }
    let whole = |net: &NetFront, i: usize| TxRequest {
        flags: TX_MORE,
        ..request(net.tx.page_gref(i), 0, 4096)
    };
    let cases = [
        (
            "a chain of whole pages, the last of a grant it does not own",
            [whole(net, 0), request(4000, 0, 100)],
        ),
        (
            "a chain of whole pages",
            [whole(net, 0), request(net.tx.page_gref(1), 0, 100)],
        ),
    ];
    for (what, r) in cases {
        try_case(net, what, &r);
    }
    if let Some(to) = test_domains::option("blank_to").and_then(parse_mac) {
        blank_chain(net, to);
    }
}

/// `blank_to=MAC`: a TCP/IPv4 frame of 4,196 bytes over two whole pages,
/// its checksum left blank, to a guest whose buffers do not take blank
/// checksums: drvdom-net must fill it in on the way (`jumbo_rx` checks).
fn blank_chain(net: &mut NetFront, to: Mac) {
    const LEN: usize = 4196;
    let mac = net.mac();
    let page = net.tx.page_mut(2);
    page.fill(0);
    page[..6].copy_from_slice(&to);
    page[6..12].copy_from_slice(&mac);
    page[12..14].copy_from_slice(&[0x08, 0x00]);
    page[14] = 0x45;
    page[16..18].copy_from_slice(&((LEN - 14) as u16).to_be_bytes());
    page[23] = 6;
    page[26..30].copy_from_slice(&[10, 0, 2, 65]);
    page[30..34].copy_from_slice(&[10, 0, 2, 66]);
    page[34 + 12] = 5 << 4;
    net.tx.page_mut(3).fill(0x5a);
    let first = TxRequest {
        flags: TX_MORE | TX_TCP_CSUM_BLANK,
        ..request(net.tx.page_gref(2), 0, 4096)
    };
    let last = request(net.tx.page_gref(3), 0, (LEN - 4096) as u16);
    try_case(net, "a blank chain of whole pages", &[first, last]);
}

/// `jumbo_rx`: waits for a chain of more than a page and says whether its
/// TCP checksum arrived filled in (our buffers do not take blank ones).
fn jumbo_rx(net: &mut NetFront) {
    let deadline = time::now_ns() + 60_000_000_000;
    while time::now_ns() < deadline {
        if let Some((frame, blank)) = net.rx.next_frame_blank() {
            if frame.len() > 4096 {
                println!(
                    "net-hostile: received a chain of {} bytes, its checksum {}",
                    frame.len(),
                    if !blank && checksum::tcp_ok(frame) {
                        "filled in"
                    } else {
                        "not filled in"
                    }
                );
                return;
            }
            continue;
        }
        net.wait_until(time::now_ns() + 10_000_000);
    }
    println!("net-hostile: no chain came");
}

fn run(_: &'static domain_runtime::StartInfo) {
    let mut net = match NetFront::connect(0) {
        Ok(n) => n,
        Err(e) => return println!("net-hostile: no interface: {}", e),
    };
    if let Some(to) = test_domains::option("jumbo_to").and_then(parse_mac) {
        return jumbo_chains(&mut net, to);
    }
    if test_domains::flag("jumbo_rx") {
        return jumbo_rx(&mut net);
    }
    let gref = net.tx.page_gref(0);
    let more = |r: TxRequest| TxRequest {
        flags: TX_MORE,
        ..r
    };
    let part = |i: usize| request(net.tx.page_gref(i), 0, 100);
    let cases: [(&str, &[TxRequest]); 10] = [
        ("an oversized frame", &[request(gref, 0, 4097)]),
        ("a frame past its page", &[request(gref, 4000, 200)]),
        ("a runt", &[request(gref, 0, 10)]),
        ("a grant it does not own", &[request(4000, 0, 60)]),
        // Its page holds no TCP segment: a blank checksum the switch could
        // not fill in.
        (
            "a blank checksum on a frame that is not TCP",
            &[TxRequest {
                flags: TX_TCP_CSUM_BLANK,
                ..request(gref, 0, 60)
            }],
        ),
        // Chains of requests (a frame over several pages), each wrong.
        (
            "a chain of five parts",
            &[
                more(part(0)),
                more(part(1)),
                more(part(2)),
                more(part(3)),
                part(4),
            ],
        ),
        ("a chain cut short", &[more(part(0)), more(part(1))]),
        (
            "a chain whose first part is past its page",
            &[more(request(gref, 4000, 200)), part(1)],
        ),
        (
            "a chain with a part of a grant it does not own",
            &[more(part(0)), more(request(4000, 0, 100)), part(2)],
        ),
        (
            "a chain that makes a runt",
            &[
                more(request(gref, 0, 5)),
                request(net.tx.page_gref(1), 0, 5),
            ],
        ),
    ];
    for (what, r) in cases {
        try_case(&mut net, what, r);
    }
    // A broadcast longer than the wire and every other interface here
    // take (all of the default MTU): the switch sends it nowhere and counts
    // it against us (its disconnection report says so).
    let mut giant = [0u8; 2000];
    giant[..6].fill(0xff);
    giant[6..12].copy_from_slice(&net.mac());
    giant[12..14].copy_from_slice(&[0x08, 0x00]);
    match net.tx.send(&giant) {
        Ok(()) => println!("net-hostile: sent a broadcast longer than any port takes"),
        Err(e) => println!("net-hostile: cannot send a long broadcast: {:?}", e),
    }
    // The same over three pages (a chain of requests, well made): taken,
    // and counted too big in turn.
    let mut chained = [0u8; 9000];
    chained[..14].copy_from_slice(&giant[..14]);
    match net.tx.send(&chained) {
        Ok(()) => println!("net-hostile: sent a broadcast of three pages"),
        Err(e) => println!(
            "net-hostile: cannot send a broadcast of three pages: {:?}",
            e
        ),
    }
    // A flood: frames to our own MAC (the switch drops them), as fast as
    // the ring takes them, until a UDP datagram to port 9 arrives (the
    // other guests' signal that they are done) or `flood=` frames went.
    let flood = test_domains::number("flood").unwrap_or(100_000);
    let me = net.mac();
    let mut frame = [0u8; 60];
    frame[..6].copy_from_slice(&me);
    frame[6..12].copy_from_slice(&me);
    println!("net-hostile: flooding {} frames", flood);
    let mut sent = 0u64;
    while sent < flood {
        if sent.is_multiple_of(64) && stop_heard(&mut net) {
            println!("net-hostile: told to stop");
            break;
        }
        match net.tx.send(&frame) {
            Ok(()) => {
                sent += 1;
                if sent.is_multiple_of(20_000) {
                    println!("net-hostile: {} frames sent", sent);
                }
            }
            Err(domain_runtime::net::SendError::Busy) => {
                domain_runtime::events::wait_until(net.port(), time::now_ns() + 10_000_000);
            }
            Err(e) => {
                println!("net-hostile: the ring broke during the flood: {:?}", e);
                break;
            }
        }
    }
    println!("net-hostile: flood done: {} frames", sent);
    // drvdom-net maps the pages we send from: while it does, the grant of
    // one cannot be ended (the page cannot be taken back from under it),
    // and sending from it goes on.
    match hc::grant_end(net.tx.page_gref(0)) {
        Ok(_) => println!("net-hostile: ended the grant of a page drvdom-net maps"),
        Err(e) => {
            println!("net-hostile: ending the grant of a page drvdom-net maps: refused ({e})")
        }
    }
    // The transmit index pushed past the ring: the backend must drop us.
    let header = net.tx_ring().shared().header();
    let prod = header.req_prod.load(Ordering::Relaxed);
    header
        .req_prod
        .store(prod.wrapping_add(1000), Ordering::Release);
    let _ = hc::event_send(net.port());
    println!("net-hostile: pushed the transmit index 1000 past the ring");
    loop {
        domain_runtime::events::wait(net.port());
    }
}

/// Whether a UDP datagram to port 9 (discard) has arrived.
fn stop_heard(net: &mut NetFront) -> bool {
    while let Some(f) = net.rx.next_frame() {
        let ipv4_udp = f.len() >= 38 && f[12..14] == [0x08, 0x00] && f[23] == 17;
        let ihl = usize::from(f.get(14).map_or(5, |b| b & 0xf)) * 4;
        let port = f.get(14 + ihl + 2..14 + ihl + 4);
        if ipv4_udp && port == Some(&[0, 9][..]) {
            return true;
        }
    }
    false
}
