//! `cargo xtask bench ring`: requests per second through the `ipc-abi` ring
//! between two threads, against `rtrb` and `crossbeam_queue::ArrayQueue`
//! doing the same request/response work in the same run, and how many
//! notifications our ring asks for per 1,000 requests.

use ipc_abi::ring::{Back, Front, Header, Shared, HEADER_BYTES};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Requests through each queue (`--short`: few).
fn requests() -> u64 {
    super::setup::sized(2_000_000, 20_000)
}
const PAGES: u32 = 17; // 1,024 slots

#[repr(C)]
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
struct Msg {
    id: u64,
    value: u64,
}

/// Our ring: returns (requests per second, notifications per 1,000 requests).
fn ours(batch: u64) -> (f64, f64) {
    let header = Header::new();
    let words = (PAGES as usize * 4096 - HEADER_BYTES) / 8;
    let slots: Vec<AtomicU64> = (0..words).map(|_| AtomicU64::new(0)).collect();
    let shared = Shared::new(&header, &slots);
    let mut front: Front<Msg, Msg> = Front::init(shared, PAGES).expect("ring");
    let mut back: Back<Msg, Msg> = Back::attach(shared).expect("ring");
    // Counted per thread and summed at the end, so counting adds no shared traffic.
    let back_notes = AtomicU64::new(0);
    let mut front_notes = 0u64;
    let start = Instant::now();
    crossbeam_utils::thread::scope(|s| {
        s.spawn(|_| {
            let mut done = 0;
            let mut notes = 0u64;
            let mut armed = false;
            while done < requests() {
                let mut n = 0;
                while n < batch {
                    match back.pop().expect("well-behaved peer") {
                        Some(m) => {
                            back.push(&Msg {
                                id: m.id,
                                value: m.value + 1,
                            })
                            .expect("slot");
                            n += 1;
                        }
                        None => break,
                    }
                }
                done += n;
                if n > 0 && back.publish() {
                    notes += 1;
                }
                // Idle: arm the event index once, then wait (as a blocked domain would).
                if n == 0 && !armed {
                    let _ = back.final_check();
                    armed = true;
                } else if n > 0 {
                    armed = false;
                } else {
                    std::hint::spin_loop();
                }
            }
            back_notes.store(notes, Ordering::Relaxed);
        });
        let (mut sent, mut got) = (0, 0);
        let mut armed = false;
        while got < requests() {
            let mut n = 0;
            while n < batch
                && sent < requests()
                && front
                    .push(&Msg {
                        id: sent,
                        value: sent,
                    })
                    .is_ok()
            {
                sent += 1;
                n += 1;
            }
            if n > 0 && front.publish() {
                front_notes += 1;
            }
            while let Some(m) = front.pop().expect("well-behaved peer") {
                assert_eq!(m.value, m.id + 1);
                got += 1;
            }
            if n == 0 && !armed {
                let _ = front.final_check();
                armed = true;
            } else if n > 0 {
                armed = false;
            }
        }
    })
    .expect("threads");
    let secs = start.elapsed().as_secs_f64();
    let notes = front_notes + back_notes.load(Ordering::Relaxed);
    (
        requests() as f64 / secs,
        notes as f64 * 1000.0 / requests() as f64,
    )
}

/// rtrb: one queue each way.
fn rtrb_pair(batch: u64) -> f64 {
    let (mut req_tx, mut req_rx) = rtrb::RingBuffer::<Msg>::new(1024);
    let (mut rsp_tx, mut rsp_rx) = rtrb::RingBuffer::<Msg>::new(1024);
    let start = Instant::now();
    crossbeam_utils::thread::scope(|s| {
        s.spawn(move |_| {
            let mut done = 0;
            while done < requests() {
                let mut n = 0;
                while n < batch {
                    match req_rx.pop() {
                        Ok(m) => {
                            while rsp_tx
                                .push(Msg {
                                    id: m.id,
                                    value: m.value + 1,
                                })
                                .is_err()
                            {}
                            n += 1;
                        }
                        Err(_) => break,
                    }
                }
                done += n;
            }
        });
        let (mut sent, mut got) = (0, 0);
        while got < requests() {
            let mut n = 0;
            while n < batch
                && sent < requests()
                && req_tx
                    .push(Msg {
                        id: sent,
                        value: sent,
                    })
                    .is_ok()
            {
                sent += 1;
                n += 1;
            }
            while let Ok(m) = rsp_rx.pop() {
                assert_eq!(m.value, m.id + 1);
                got += 1;
            }
        }
    })
    .expect("threads");
    requests() as f64 / start.elapsed().as_secs_f64()
}

/// crossbeam's ArrayQueue: one queue each way.
fn array_queue_pair(batch: u64) -> f64 {
    let req = crossbeam_queue::ArrayQueue::<Msg>::new(1024);
    let rsp = crossbeam_queue::ArrayQueue::<Msg>::new(1024);
    let start = Instant::now();
    crossbeam_utils::thread::scope(|s| {
        s.spawn(|_| {
            let mut done = 0;
            while done < requests() {
                let mut n = 0;
                while n < batch {
                    match req.pop() {
                        Some(m) => {
                            let mut r = Msg {
                                id: m.id,
                                value: m.value + 1,
                            };
                            while let Err(back) = rsp.push(r) {
                                r = back;
                            }
                            n += 1;
                        }
                        None => break,
                    }
                }
                done += n;
            }
        });
        let (mut sent, mut got) = (0, 0);
        while got < requests() {
            let mut n = 0;
            while n < batch
                && sent < requests()
                && req
                    .push(Msg {
                        id: sent,
                        value: sent,
                    })
                    .is_ok()
            {
                sent += 1;
                n += 1;
            }
            while let Some(m) = rsp.pop() {
                assert_eq!(m.value, m.id + 1);
                got += 1;
            }
        }
    })
    .expect("threads");
    requests() as f64 / start.elapsed().as_secs_f64()
}

/// Prints the table.
pub fn run() -> Result<(), String> {
    println!("| batch | ipc-abi ring (M req/s) | rtrb (M req/s) | ArrayQueue (M req/s) | ring / rtrb | notifications per 1,000 requests |");
    println!("|---|---|---|---|---|---|");
    for batch in [1u64, 16, 256] {
        let (ring, notes) = ours(batch);
        let r = rtrb_pair(batch);
        let q = array_queue_pair(batch);
        println!(
            "| {batch} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
            ring / 1e6,
            r / 1e6,
            q / 1e6,
            ring / r,
            notes
        );
    }
    Ok(())
}
