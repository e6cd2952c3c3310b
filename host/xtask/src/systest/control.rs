//! System tests of the control ring every domain has to domain 0.

use super::harness::*;
use std::time::Duration;

fn every_domain_gets_a_control_ring_to_domain_0(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(
        &c.machine()
            .guests(&[("control-client", "client beats=5")])
            .config()?,
        slot,
    )?;
    expect_line(m, "[0] toolstack: domain 1 connected its control ring")?;
    expect_line(
        m,
        "[1] control-client: 5 of 5 heartbeats answered OK (connected: true)",
    )?;
    expect_line(
        m,
        "[1] control-client: a malformed message is answered Ok(1) (Invalid is 1)",
    )?;
    expect_line(m, "toolstack: domain 1 (client) shut down")?;
    Ok(())
}

/// Twelve messages for the broker (more than one batch of eight, fewer
/// than the runtime's inbox of sixteen answers) posted at once, without waiting:
/// every one is answered (a ninth in one batch was answered `Unsupported`).
fn a_burst_of_control_messages_is_answered_whole(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let m = boot(
        &c.machine()
            .guests(&[("control-client", "client burst=12")])
            .config()?,
        slot,
    )?;
    expect_line(
        m,
        "[1] control-client: burst of 12: 12 answered NoDevice, 0 otherwise, 0 unanswered",
    )
    .map(drop)
}

/// A domain keeps its control ring full from another CPU: domain 0 still
/// answers the host at once, and console-dom, watched for heartbeats every
/// second, is not taken for hung.
fn a_domain_flooding_its_control_ring_cannot_hold_domain_0(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 heartbeat=1000",
        ),
        ("control-client", "flooder flood cpus=1"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(2))
        .boot_managed(slot)?;
    expect_line(m, "[2] control-client: flooding the control ring")?;
    // It has been at it a while.
    m.wait_for_nth("[2] control-client: ", 3, BOOT)?;
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let (code, out) = toolstack(&sock, &["domain", "list"])?;
        let took = asked.elapsed();
        check(code == 0 && out.contains("flooder"), || {
            format!("domain list under the flood: {code} {out}")
        })?;
        check(took < Duration::from_secs(3), || {
            format!("domain list took {took:?} under the flood")
        })?;
    }
    check(
        !m.lines().iter().any(|l| l.contains("missed its heartbeat")),
        || "a domain was taken for hung while another flooded domain 0".into(),
    )
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        every_domain_gets_a_control_ring_to_domain_0,
        a_burst_of_control_messages_is_answered_whole,
        a_domain_flooding_its_control_ring_cannot_hold_domain_0,
    ]
}
