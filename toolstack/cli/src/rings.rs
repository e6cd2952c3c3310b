//! `toolstack ring list`: the ring connections as a table or as JSON.
//!
//! JSON: an array of objects with the keys `frontend`, `backend` (domain
//! ids as consoles show them), `device` (console, block, net-tx, net-rx),
//! `index`, `state`, `epoch`, `slots`, `req_prod`, `req_event`,
//! `rsp_prod`, `rsp_event`, `in_flight`, `stalled_ms` (numbers) and
//! `verdict` (healthy, stuck, "not a ring", "broken indices"); see
//! docs/user-guide.md.

use toolstack::RingEntry;

/// Prints the rings, one line each (or a JSON array).
pub fn print(rings: &[RingEntry], json: bool) {
    if json {
        let items: Vec<String> = rings.iter().map(to_json).collect();
        println!("[{}]", items.join(","));
        return;
    }
    println!(
        "{:>5} {:>5} {:<8} {:>5} {:<12} {:>5} {:>5} {:>10} {:>10} {:>9} {:>10}  VERDICT",
        "FRONT",
        "BACK",
        "DEVICE",
        "INDEX",
        "STATE",
        "EPOCH",
        "SLOTS",
        "REQ_PROD",
        "RSP_PROD",
        "IN_FLIGHT",
        "STALLED_MS"
    );
    for r in rings {
        println!(
            "{:>5} {:>5} {:<8} {:>5} {:<12} {:>5} {:>5} {:>10} {:>10} {:>9} {:>10}  {}",
            r.frontend & 0xffff,
            r.backend & 0xffff,
            r.device,
            r.index,
            r.state,
            r.epoch,
            r.slots,
            r.req_prod,
            r.rsp_prod,
            r.in_flight,
            r.stalled_ms,
            r.verdict
        );
    }
}

fn to_json(r: &RingEntry) -> String {
    format!(
        "{{\"frontend\":{},\"backend\":{},\"device\":{:?},\"index\":{},\"state\":{:?},\"epoch\":{},\"slots\":{},\"req_prod\":{},\"req_event\":{},\"rsp_prod\":{},\"rsp_event\":{},\"in_flight\":{},\"stalled_ms\":{},\"verdict\":{:?}}}",
        r.frontend & 0xffff,
        r.backend & 0xffff,
        r.device,
        r.index,
        r.state,
        r.epoch,
        r.slots,
        r.req_prod,
        r.req_event,
        r.rsp_prod,
        r.rsp_event,
        r.in_flight,
        r.stalled_ms,
        r.verdict
    )
}
