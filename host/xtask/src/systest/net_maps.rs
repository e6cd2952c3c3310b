//! drvdom-net maps each guest's transmit pages once and copies frames out
//! of them itself: a guest that goes takes its pages with it, and the
//! mappings of one that went leave room for the next.

use super::harness::{check, expect_line, free_kib_once_gone, tests, Ctx, Machine, Test};
use crate::iso::NET_DRIVER_LINE;

/// Guests created and destroyed one after another: their mapped pages
/// together (16 each at most) are more than drvdom-net maps at once
/// (128), so a mapping not let go would leave the last ones none.
const GUESTS: u32 = 12;

/// Each guest sends frames through drvdom-net (which maps the pages they
/// are in: its report when the guest leaves says how many) and ends, and
/// the toolstack destroys it: every guest's pages were mapped, and afterwards the kernel's
/// free memory is what it was before the first, so drvdom-net let go of
/// every page of every guest that went.
fn drvdom_net_lets_go_of_the_transmit_pages_of_guests_that_go(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let bench = crate::build::domain(&c.domains, "net-bench");
    let tar = crate::iso::bundle(
        &c.path("bundle.tar"),
        &[],
        &[("net-bench", bench.as_path())],
    )?;
    let (m, sock) = c
        .machine()
        .cmdline("ifname=dummy")
        .guests(&[("drvdom-net", NET_DRIVER_LINE)])
        .bundle(tar)
        .boot_managed(slot)?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let free_before = client.host_info().map_err(|e| e.to_string())?.free_kib;
    for i in 1..=GUESTS {
        let name = format!("sender{i}");
        let config = format!(
            "name = \"{name}\"\nkernel = \"net-bench\"\nmemory = 2\n\
             cmdline = \"send=3000 to=02:00:00:00:0a:ff\"\nvif = [\"mac=02:00:00:00:0a:{i:02x}\"]\n"
        );
        let id = client
            .create(&config, None, false)
            .map_err(|e| format!("create {name}: {e}"))?
            & 0xffff;
        expect_line(m, &format!("[{id}] net-bench: sent 3000 frames"))?;
        // It ends once sent (powered off, then destroyed by the toolstack).
        let report = expect_line(
            m,
            &format!("drvdom-net: domain {id} vif 0 left the switch (sent "),
        )?;
        let mapped: u32 = report
            .rsplit("pages mapped ")
            .next()
            .and_then(|n| n.trim_end_matches(')').parse().ok())
            .unwrap_or(0);
        check(mapped >= 1, || {
            format!("guest {i} of {GUESTS}: none of its pages were mapped: {report}")
        })?;
    }
    let free_after =
        free_kib_once_gone(&mut client, |n| n.starts_with("sender"), Some(free_before))?;
    check(free_after == free_before, || {
        format!(
            "free memory {free_before} KiB before {GUESTS} senders, {free_after} KiB after they went; the kernel holds:\n{}",
            super::harness::kernel_memory_report(&mut client)
        )
    })
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![drvdom_net_lets_go_of_the_transmit_pages_of_guests_that_go]
}
