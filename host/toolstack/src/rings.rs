//! `toolstack ring list`: the ring connections as a table or as JSON.
//!
//! JSON: an array of objects with the keys `frontend`, `backend` (domain
//! ids as consoles show them), `device` (console, block, net-tx, net-rx),
//! `index`, `state`, `epoch`, `pages`, `slots`, `req_prod`, `req_event`,
//! `rsp_prod`, `rsp_event`, `req_prod_pvt`, `rsp_cons` (the frontend's
//! private indices), `req_cons`, `rsp_prod_pvt` (the backend's),
//! `in_flight`, `notify_to_backend`,
//! `notify_to_frontend`, `stalled_ms` (numbers) and
//! `verdict` (healthy, stuck, "not a ring", "broken indices"); see
//! docs/user-guide.md.

use ipc_abi::proto::block::{BlockRequest, BlockResponse};
use ipc_abi::proto::console::{ConsoleRequest, ConsoleResponse};
use ipc_abi::proto::net::{
    RxRequest, RxResponse, TxRequest, TxResponse, RX_MORE, RX_TAKES_BLANK_CSUM, RX_TCP_CSUM_BLANK,
    TX_MORE, TX_TCP_CSUM_BLANK,
};
use toolstack::{DumpedSlot, RingEntry};
use zerocopy::FromBytes;

/// Parses `FRONTEND:DEVICE[:INDEX]` (as `ring list` names rings): e.g. `2:block:0`.
pub fn parse_ring_name(name: &str) -> Option<(String, String, u32)> {
    let mut parts = name.split(':');
    let frontend = parts.next().filter(|f| !f.is_empty())?.to_string();
    let device = parts.next().filter(|d| !d.is_empty())?.to_string();
    let index = match parts.next() {
        Some(i) => i.parse().ok()?,
        None => 0,
    };
    parts.next().is_none().then_some((frontend, device, index))
}

/// Prints a ring, its unread responses and its requests in flight, decoded
/// per protocol (or in hex).
pub fn print_dump(ring: &RingEntry, slots: &[DumpedSlot], raw: bool) {
    print(std::slice::from_ref(ring), false);
    println!(
        "frontend: {} requests written, {} responses taken; backend: {} requests taken, {} responses written",
        ring.req_prod_pvt, ring.rsp_cons, ring.req_cons, ring.rsp_prod_pvt
    );
    if slots.is_empty() {
        println!("no request in flight, no response unread");
    }
    for s in slots {
        let text = if raw {
            s.bytes
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        } else if s.stage == "unread" {
            decode_response(&ring.device, &s.bytes)
        } else {
            decode(&ring.device, &s.bytes)
        };
        println!("slot {} ({}): {text}", s.index, s.stage);
    }
}

/// One response slot in words, by the ring's protocol.
fn decode_response(device: &str, bytes: &[u8]) -> String {
    let status = |s: u32| {
        if s == 0 {
            "ok".to_string()
        } else {
            format!("error {s}")
        }
    };
    let text = match device {
        "block" => BlockResponse::read_from_prefix(bytes)
            .ok()
            .map(|(r, _)| format!("response id {:#x}, {}", r.id, status(r.status))),
        "net-tx" => TxResponse::read_from_prefix(bytes)
            .ok()
            .map(|(r, _)| format!("response id {:#x}, {}", r.id, status(r.status))),
        "net-rx" => RxResponse::read_from_prefix(bytes).ok().map(|(r, _)| {
            format!(
                "response id {:#x}, {} bytes, {}{}{}",
                r.id,
                r.len,
                status(r.status),
                if r.flags & RX_TCP_CSUM_BLANK != 0 {
                    ", TCP checksum blank"
                } else {
                    ""
                },
                if r.flags & RX_MORE != 0 {
                    ", the frame goes on in the next"
                } else {
                    ""
                }
            )
        }),
        "console" => ConsoleResponse::read_from_prefix(bytes).ok().map(|(r, _)| {
            format!(
                "response id {:#x}, {} bytes, {}",
                r.id,
                r.len,
                status(r.status)
            )
        }),
        other => return format!("({other}: no decoder)"),
    };
    text.unwrap_or_else(|| "(short slot)".into())
}

/// One request slot in words, by the ring's protocol.
fn decode(device: &str, bytes: &[u8]) -> String {
    match device {
        "block" => match BlockRequest::read_from_prefix(bytes) {
            Ok((r, _)) => {
                let op = match r.op {
                    0 => "read",
                    1 => "write",
                    2 => "flush",
                    3 => "discard",
                    4 => "info",
                    _ => "unknown op",
                };
                format!(
                    "{op} sector {}, {} segments, id {:#x}",
                    r.sector, r.segments_used, r.id
                )
            }
            Err(_) => "(short slot)".into(),
        },
        "net-tx" => match TxRequest::read_from_prefix(bytes) {
            Ok((r, _)) => format!(
                "send {} bytes from grant {} at {}, id {:#x}{}{}",
                r.len,
                r.gref,
                r.offset,
                r.id,
                if r.flags & TX_TCP_CSUM_BLANK != 0 {
                    ", TCP checksum blank"
                } else {
                    ""
                },
                if r.flags & TX_MORE != 0 {
                    ", the frame goes on in the next"
                } else {
                    ""
                }
            ),
            Err(_) => "(short slot)".into(),
        },
        "net-rx" => match RxRequest::read_from_prefix(bytes) {
            Ok((r, _)) => format!(
                "receive into grant {}, id {:#x}{}",
                r.gref,
                r.id,
                if r.flags & RX_TAKES_BLANK_CSUM != 0 {
                    ", takes blank TCP checksums"
                } else {
                    ""
                }
            ),
            Err(_) => "(short slot)".into(),
        },
        "console" => match ConsoleRequest::read_from_prefix(bytes) {
            Ok((r, _)) => {
                let n = (r.len as usize).min(r.data.len());
                format!(
                    "op {} {:?}, id {:#x}",
                    r.op,
                    String::from_utf8_lossy(&r.data[..n]),
                    r.id
                )
            }
            Err(_) => "(short slot)".into(),
        },
        other => format!("({other}: no decoder)"),
    }
}

/// Prints the rings, one line each (or a JSON array).
pub fn print(rings: &[RingEntry], json: bool) {
    if json {
        let items: Vec<serde_json::Value> = rings.iter().map(to_json).collect();
        println!("{}", serde_json::Value::Array(items));
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

fn to_json(r: &RingEntry) -> serde_json::Value {
    serde_json::json!({
        "frontend": r.frontend & 0xffff,
        "backend": r.backend & 0xffff,
        "device": r.device,
        "index": r.index,
        "state": r.state,
        "epoch": r.epoch,
        "pages": r.pages,
        "slots": r.slots,
        "req_prod": r.req_prod,
        "req_event": r.req_event,
        "rsp_prod": r.rsp_prod,
        "rsp_event": r.rsp_event,
        "req_prod_pvt": r.req_prod_pvt,
        "rsp_cons": r.rsp_cons,
        "req_cons": r.req_cons,
        "rsp_prod_pvt": r.rsp_prod_pvt,
        "in_flight": r.in_flight,
        "notify_to_backend": r.notify_to_backend,
        "notify_to_frontend": r.notify_to_frontend,
        "stalled_ms": r.stalled_ms,
        "verdict": r.verdict,
    })
}

/// Requests per second between two looks at a ring's `req_prod` (which
/// wraps), over `seconds`.
pub fn request_rate(before: u32, after: u32, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    f64::from(after.wrapping_sub(before)) / seconds
}

/// `ring watch`: a line every `delay` with the request rate since the last
/// look, the requests in flight against the slots, and the verdict;
/// `iterations` lines, or until interrupted.
pub fn watch(
    client: &mut toolstack::Client,
    frontend: u32,
    device: &str,
    index: u32,
    delay: std::time::Duration,
    iterations: Option<u32>,
) -> Result<(), toolstack::Error> {
    let mut last: Option<(std::time::Instant, u32)> = None;
    let mut shown = 0;
    while iterations.is_none_or(|n| shown < n) {
        let d = client.ring_dump(frontend, device, index)?;
        let now = std::time::Instant::now();
        let r = &d.ring;
        let rate = last.map_or(0.0, |(t, before)| {
            request_rate(before, r.req_prod, now.duration_since(t).as_secs_f64())
        });
        println!(
            "{}:{}:{}  requests/s {:>9.0}  in flight {:>3}/{:<3} ({:>3.0}%)  notifications {}/{}  epoch {}  {}  {}",
            r.frontend & 0xffff,
            r.device,
            r.index,
            rate,
            r.in_flight,
            r.slots,
            100.0 * f64::from(r.in_flight) / f64::from(r.slots.max(1)),
            r.notify_to_backend,
            r.notify_to_frontend,
            r.epoch,
            r.state,
            r.verdict
        );
        last = Some((now, r.req_prod));
        shown += 1;
        if iterations.is_none_or(|n| shown < n) {
            std::thread::sleep(delay);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_names_parse_with_or_without_an_index() {
        assert_eq!(
            parse_ring_name("2:block"),
            Some(("2".into(), "block".into(), 0))
        );
        assert_eq!(
            parse_ring_name("web:net-rx:1"),
            Some(("web".into(), "net-rx".into(), 1))
        );
        assert_eq!(parse_ring_name("2"), None);
        assert_eq!(parse_ring_name("2:block:x"), None);
        assert_eq!(parse_ring_name("2:block:0:9"), None);
    }

    #[test]
    fn chained_network_slots_are_decoded_as_such() {
        use zerocopy::{FromZeros, IntoBytes};
        let mut tx = TxRequest::new_zeroed();
        (tx.len, tx.gref, tx.flags) = (4096, 7, TX_MORE | TX_TCP_CSUM_BLANK);
        assert_eq!(
            decode("net-tx", tx.as_bytes()),
            "send 4096 bytes from grant 7 at 0, id 0x0, TCP checksum blank, the frame goes on in the next"
        );
        let mut rx = RxResponse::new_zeroed();
        (rx.len, rx.flags) = (100, RX_MORE);
        assert_eq!(
            decode_response("net-rx", rx.as_bytes()),
            "response id 0x0, 100 bytes, ok, the frame goes on in the next"
        );
    }

    #[test]
    fn the_rate_survives_the_index_wrapping() {
        assert_eq!(request_rate(u32::MAX - 9, 10, 2.0), 10.0);
        assert_eq!(request_rate(5, 5, 0.0), 0.0);
    }
}
