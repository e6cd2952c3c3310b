//! What `bench linux` says when one of its machines stops: the kernel's
//! view (debug keys), every ring's indices (`ring list`), Linux's own
//! interface counters (which its `/init` prints), QEMU's view of the
//! NIC's queues (its monitor), and what the NIC's recorded frames say of
//! each server's connections. Each part is best effort: a
//! part that cannot be had says why, and the others still come.

use super::guest_tcp::GUEST_PORTS;
use crate::qemu::Machine;
use std::path::Path;
use std::time::Duration;

/// The machine's state through domain 0's management channel at `com2`.
pub fn state(m: &Machine, com2: &Path) -> String {
    let mut out = kernel_state(com2);
    out += &rings(com2);
    out += &linux_counters(m);
    out
}

/// Every domain, vCPU, run queue and HVM vCPU's exits (debug keys `q`,
/// `r`, `x`).
fn kernel_state(com2: &Path) -> String {
    let dump = || -> Result<Vec<String>, toolstack::Error> {
        let mut c = toolstack::Client::connect(com2)?;
        c.debug_keys("qrx")?;
        std::thread::sleep(Duration::from_millis(500));
        c.dmesg()
    };
    match dump() {
        Ok(lines) => format!(
            "\n--- the kernel's state (debug keys q r x) ---\n{}",
            lines[lines.len().saturating_sub(150)..].join("\n")
        ),
        Err(e) => format!("\n(no kernel state: {e})"),
    }
}

/// Each ring's shared and private indices and notification counts.
fn rings(com2: &Path) -> String {
    let list = toolstack::Client::connect(com2).and_then(|mut c| c.ring_list());
    match list {
        Ok(rings) => {
            let mut out = String::from("\n--- the rings (ring list) ---");
            for r in rings {
                out += &format!(
                    "\n{} -> {} {} {}: {}, req {}/{} (pvt {}), rsp {}/{} (pvt {}), in flight {}, notified {} to the backend, {} to the frontend, {}",
                    r.frontend,
                    r.backend,
                    r.device,
                    r.index,
                    r.state,
                    r.req_prod,
                    r.req_cons,
                    r.req_prod_pvt,
                    r.rsp_prod,
                    r.rsp_cons,
                    r.rsp_prod_pvt,
                    r.in_flight,
                    r.notify_to_backend,
                    r.notify_to_frontend,
                    r.verdict
                );
            }
            out
        }
        Err(e) => format!("\n(no ring list: {e})"),
    }
}

/// The last of the interface counters Linux's `/init` prints every 10 s
/// in the bench (received bytes, packets, errors, drops... then the same
/// sent: `/proc/net/dev`'s columns).
fn linux_counters(m: &Machine) -> String {
    let lines = m.lines();
    let counters: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("xenolith-linux: counters"))
        .collect();
    let last = &counters[counters.len().saturating_sub(3)..];
    format!(
        "\n--- Linux's eth0 counters, its last three reports (/proc/net/dev) ---\n{}",
        last.iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// QEMU's own view of the NIC's virtqueues (its monitor's `info
/// virtio-queue-status`): the indices the driver published and the device
/// took, and whether the device waits for a notification.
pub fn nic_queues(m: &Machine) -> String {
    let devices = match m.monitor("info virtio") {
        Ok(d) => d,
        Err(e) => return format!("\n(no virtio queues from QEMU: {e})"),
    };
    let Some(path) = devices.lines().find_map(|l| {
        let (path, kind) = l.trim().split_once(' ')?;
        kind.contains("virtio-net").then(|| path.to_string())
    }) else {
        return format!("\n(QEMU lists no virtio-net: {devices:?})");
    };
    let mut out = format!("\n--- the NIC's queues as QEMU sees them ({path}) ---");
    for queue in [0, 1] {
        match m.monitor(&format!("info virtio-queue-status {path} {queue}")) {
            // The monitor echoes the command with terminal escapes.
            Ok(status) => {
                let lines: Vec<_> = status
                    .lines()
                    .filter(|l| !l.contains('\x1b') && !l.starts_with("(qemu)"))
                    .collect();
                out += &format!("\nqueue {queue}:\n{}", lines.join("\n"));
                out += &rings_in_memory(m, &status);
            }
            Err(e) => out += &format!("\nqueue {queue}: {e}"),
        }
    }
    out
}

/// The queue's indices as they are in guest memory now (the status above
/// gives QEMU's copies): the available ring's flags and index, the used
/// ring's flags and index, and `avail_event` after the used ring.
fn rings_in_memory(m: &Machine, status: &str) -> String {
    let field = |name: &str| {
        status.lines().find_map(|l| {
            let v = l.trim().strip_prefix(name)?.trim();
            u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
        })
    };
    let num = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("num:")?.trim().parse::<u64>().ok());
    let (Some(avail), Some(used), Some(num)) = (field("avail:"), field("used:"), num) else {
        return "\n(no ring addresses in the status)".into();
    };
    let mut out = String::new();
    for (what, at, words) in [
        ("avail flags, idx", avail, 2),
        ("used flags, idx", used, 2),
        ("avail_event", used + 4 + 8 * num, 1),
    ] {
        let shown = m
            .monitor(&format!("xp /{words}hx {at:#x}"))
            .map(|o| {
                o.lines()
                    .filter(|l| !l.contains('\x1b') && !l.starts_with("(qemu)"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|e| e);
        out += &format!("\n  in memory, {what}: {shown}");
    }
    out
}

/// What the NIC's recorded frames say of each server's connections (who
/// opened, closed or reset them).
pub fn connections(capture: &Path) -> String {
    let mut out = format!("\n--- the NIC's frames ({}) ---", capture.display());
    for port in GUEST_PORTS {
        match crate::pcap::story(capture, port) {
            Ok(story) => out += &format!("\nport {port}:\n{story}"),
            Err(e) => out += &format!("\n(no frames: {e})"),
        }
    }
    out
}
