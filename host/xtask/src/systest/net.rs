//! System tests of the network driver domain: drvdom-net drives the virtio
//! NIC on QEMU's user network and switches frames for guests; a user on the
//! host reaches the example web guest with `curl` and `nc -u` through
//! forwarded ports.

use super::harness::{check, expect_line, Ctx, Machine};
use super::harness::{tests, Test};
use crate::iso::NET_DRIVER_LINE;
use crate::qemu::{free_port, Forward};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `curl` on the host; the body, or why it failed.
pub fn curl(port: u16) -> Result<String, String> {
    curl_waiting(port, 30)
}

/// [`curl`], giving up after `seconds`.
fn curl_waiting(port: u16, seconds: u32) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", &seconds.to_string()])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The machine's lines with when each arrived, for a failure report about timing.
fn timed_log(m: &Machine) -> String {
    m.timed_lines()
        .iter()
        .map(|(at, l)| format!("{:>9.3} {l}\n", at.as_secs_f64()))
        .collect()
}

/// `nc -u` on the host: sends `text`, returns what came back.
fn nc_udp(port: u16, text: &str) -> Result<String, String> {
    let mut child = Command::new("nc")
        .args(["-u", "-w", "5", "127.0.0.1", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nc: {e}"))?;
    child
        .stdin
        .as_mut()
        .ok_or("nc has no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The web guest gets its address by DHCP, serves its page to `curl` and
/// echoes `nc -u`, through drvdom-net, the NIC and QEMU's forwarded ports;
/// the count goes up.
fn the_web_guest_serves_curl_and_nc_through_forwarded_ports(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let http = free_port()?;
    let udp = free_port()?;
    let forwards = crate::qemu::web_forwards(http, udp);
    // No `ip=`: the guest asks QEMU's DHCP server, which gives the first
    // client 10.0.2.15 (where the ports are forwarded).
    let web = "web memory=4M vif=mac=00:16:3e:00:00:80";
    let guests = [("drvdom-net", NET_DRIVER_LINE), ("web", web)];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.nic(&forwards), slot)?;
    expect_line(m, "[1] drvdom-net: virtio-net at 00:05.0 (auto), MAC ")?;
    expect_line(
        m,
        "[1] drvdom-net: domain 2 vif 0 joins the switch as 00:16:3e:00:00:80",
    )?;
    expect_line(m, "[2] net: 10.0.2.15/24 from DHCP")?;
    expect_line(
        m,
        "[2] web: serving http on 10.0.2.15:80 and udp echo on port 7",
    )?;
    let first = curl(http)?;
    check(
        first.contains("Hello from a Xenolith guest") && first.contains("requests served: 1"),
        || format!("the first page: {first:?}"),
    )?;
    let second = curl(http)?;
    check(second.contains("requests served: 2"), || {
        format!("the second page: {second:?}")
    })?;
    let echo = nc_udp(udp, "hello through the switch\n")?;
    check(echo == "hello through the switch\n", || {
        format!("nc -u got {echo:?} back")
    })
}

/// Test-frame listeners and an announcer on one switch: the announcer's
/// broadcast reaches every other interface once and never comes back to
/// it; the frame it sends from a forged MAC is dropped and counted, and
/// reaches nobody.
fn a_broadcast_reaches_every_other_guest_once_and_a_forged_mac_nobody(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        ("net-tool", "l1 memory=2M vif=mac=02:00:00:00:00:01 listen"),
        ("net-tool", "l2 memory=2M vif=mac=02:00:00:00:00:02 listen"),
        (
            "net-tool",
            "an memory=2M vif=mac=02:00:00:00:00:03 announce peers=2",
        ),
    ];
    let m = super::harness::boot(
        &c.machine()
            .cmdline("ifname=dummy")
            .guests(&guests)
            .config()?,
        slot,
    )?;
    expect_line(
        m,
        "[1] drvdom-net: ifname=dummy: no NIC; guests reach each other through the switch",
    )?;
    expect_line(m, "[4] net-tool: 2 peers ready")?;
    expect_line(
        m,
        "[1] drvdom-net: domain 4 vif 0 sent from 02:00:00:00:00:56, not its 02:00:00:00:00:03: dropped (1 so far)",
    )?;
    // `bye` follows the forged frame: once a listener printed it, anything
    // the switch let through before it was printed too.
    for dom in [2, 3] {
        expect_line(
            m,
            &format!("[{dom}] net-tool: frame from 02:00:00:00:00:03: bye"),
        )?;
    }
    let lines = m.lines();
    for dom in [2, 3] {
        let hellos = lines
            .iter()
            .filter(|l| {
                l.starts_with(&format!(
                    "[{dom}] net-tool: frame from 02:00:00:00:00:03: hello"
                ))
            })
            .count();
        check(hellos == 1, || {
            format!("domain {dom} got the broadcast {hellos} times")
        })?;
    }
    check(!lines.iter().any(|l| l.contains(": spoofed")), || {
        "a frame from a forged MAC got through".into()
    })?;
    check(
        !lines
            .iter()
            .any(|l| l.starts_with("[4] net-tool: frame from")),
        || "the announcer got a frame back".into(),
    )
}

/// drvdom-net is crashed after two guests were created but before they
/// connect: the backend their command lines name is dead by then, and each
/// interface follows drvdom-net's next instance instead of failing (under
/// load at boot, a driver domain restarting in that window left the web
/// guest with no network).
fn guests_whose_drvdom_net_restarts_before_they_connect_get_their_interfaces(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        (
            "net-tool",
            "l1 memory=2M vif=mac=02:00:00:00:00:01 listen connect_after=4000",
        ),
        (
            "net-tool",
            "an memory=2M vif=mac=02:00:00:00:00:03 announce peers=1 connect_after=4000",
        ),
    ];
    let (m, sock) = c
        .machine()
        .cmdline("ifname=dummy")
        .guests(&guests)
        .boot_managed(slot)?;
    expect_line(m, "[3] net-tool: connecting in 4000 ms")?;
    let (code, out) = super::harness::toolstack(&sock, &["domain", "crash", "drvdom-net"])?;
    check(code == 0, || format!("domain crash: {code} {out}"))?;
    expect_line(m, "toolstack: restarting drvdom-net")?;
    let early = m
        .lines()
        .iter()
        .any(|l| l.contains("net-tool: 1 peers ready") || l.contains("net-tool: frame from"));
    check(!early, || {
        "a guest connected before drvdom-net was crashed: the test proves nothing".into()
    })?;
    expect_line(m, "[3] net-tool: 1 peers ready")?;
    expect_line(m, "[2] net-tool: frame from 02:00:00:00:00:03: bye").map(|_| ())
}

/// Two guests on one switch: one sends 4 MiB over TCP, the other receives
/// it, and both count the same bytes and CRC-32. `cmdline` picks the NIC
/// (`ifname=dummy`: none).
fn guests_talk_tcp(
    c: &Ctx,
    slot: &mut Option<Machine>,
    cmdline: &str,
    nic: bool,
) -> Result<(), String> {
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        ("net-tool", "sink memory=4M vif=mac=02:00:00:00:01:01 ip=10.0.2.21/24 sink=5000"),
        (
            "net-tool",
            "source memory=4M vif=mac=02:00:00:00:01:02 ip=10.0.2.22/24 source=10.0.2.21:5000 bytes=4194304",
        ),
    ];
    let mut config = c.machine().cmdline(cmdline).guests(&guests).config()?;
    if nic {
        config = config.nic(&[]);
    }
    let m = super::harness::boot(&config, slot)?;
    let sent = m.wait_for("[3] net-tool: sent ", super::harness::BOOT * 3)?;
    let got = m.wait_for("[2] net-tool: received ", super::harness::BOOT * 3)?;
    let tail = |l: &str, what: &str| l.split(what).nth(1).map(str::to_owned);
    check(
        sent.starts_with("[3] net-tool: sent 4194304 bytes")
            && tail(&sent, "bytes") == tail(&got, "bytes"),
        || format!("sent {sent:?}, received {got:?}"),
    )
}

/// Guests whose `vif` says `mtu=16370` talk TCP in frames longer than a
/// page (each a chain of ring slots, up to four), and one of them to a
/// guest of the wire's MTU, in frames that guest takes (TCP's MSS sees to
/// it): both transfers intact, with the NIC on the switch.
fn guests_of_a_jumbo_mtu_talk_in_frames_over_several_pages(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    const BYTES: &str = "bytes=4194304";
    let jumbo_sink = "sink memory=4M vif=mac=02:00:00:00:06:01,mtu=16370 ip=10.0.2.61/24 sink=5000";
    let jumbo_source = format!(
        "source memory=4M vif=mac=02:00:00:00:06:02,mtu=16370 ip=10.0.2.62/24 source=10.0.2.61:5000 {BYTES}"
    );
    let plain_sink = "plain-sink memory=4M vif=mac=02:00:00:00:06:03 ip=10.0.2.63/24 sink=5000";
    let to_plain = format!(
        "to-plain memory=4M vif=mac=02:00:00:00:06:04,mtu=16370 ip=10.0.2.64/24 source=10.0.2.63:5000 {BYTES}"
    );
    // Chains of whole pages go from the sender's pages to the receiver's
    // straight: one with a page of a grant the sender does not own is
    // refused to it, and the sink's transfer meanwhile stays intact.
    // And one with a blank checksum to a guest whose buffers do not take
    // blank ones: drvdom-net fills it in.
    let hostile = "bad memory=2M vif=mac=02:00:00:00:06:05,mtu=16370 jumbo_to=02:00:00:00:06:01 blank_to=02:00:00:00:06:06";
    let raw_rx = "raw-rx memory=2M vif=mac=02:00:00:00:06:06,mtu=16370 jumbo_rx";
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        ("net-tool", jumbo_sink),
        ("net-tool", jumbo_source.as_str()),
        ("net-tool", plain_sink),
        ("net-tool", to_plain.as_str()),
        ("net-hostile", hostile),
        ("net-hostile", raw_rx),
    ];
    let config = c.machine().guests(&guests).config()?.nic(&[]);
    let m = super::harness::boot(&config, slot)?;
    expect_line(
        m,
        "[1] drvdom-net: domain 2 vif 0 joins the switch as 02:00:00:00:06:01 with MTU 16370",
    )?;
    for (sink, source, mtu, longest) in [(2, 3, 16370, 16384), (4, 5, 1500, 1514)] {
        let sent = m.wait_for(
            &format!("[{source}] net-tool: sent "),
            super::harness::BOOT * 3,
        )?;
        let got = m.wait_for(
            &format!("[{sink}] net-tool: received "),
            super::harness::BOOT * 3,
        )?;
        let tail = |l: &str| l.split("bytes").nth(1).map(str::to_owned);
        check(
            sent.starts_with(&format!("[{source}] net-tool: sent 4194304 bytes"))
                && tail(&sent) == tail(&got),
            || format!("sent {sent:?}, received {got:?}"),
        )?;
        let frames = m.wait_for(
            &format!("[{sink}] net-tool: frames up to "),
            super::harness::BOOT,
        )?;
        let largest: usize = frames
            .split_whitespace()
            .nth(5)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        // Above a page when both ends allow it (so over several slots),
        // never above what the receiver takes.
        let wanted = if mtu > 1500 {
            4097..=longest
        } else {
            60..=longest
        };
        check(
            frames.ends_with(&format!("(MTU {mtu})")) && wanted.contains(&largest),
            || format!("guest {sink}: {frames:?}; wanted frames of {wanted:?} bytes"),
        )?;
    }
    expect_line(
        m,
        "[6] net-hostile: a chain of whole pages, the last of a grant it does not own: refused",
    )?;
    expect_line(m, "[6] net-hostile: a chain of whole pages: accepted")?;
    expect_line(m, "[6] net-hostile: a blank chain of whole pages: accepted")?;
    expect_line(
        m,
        "[7] net-hostile: received a chain of 4196 bytes, its checksum filled in",
    )?;
    Ok(())
}

fn two_guests_talk_tcp_through_the_switch(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    guests_talk_tcp(c, slot, "", true)
}

fn two_guests_talk_tcp_through_the_switch_with_ifname_dummy(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    guests_talk_tcp(c, slot, "ifname=dummy", false)
}

/// 64 MiB, host to guest and guest to host over TCP through the NIC and
/// drvdom-net; each side's byte count and CRC-32 match the other's. On
/// QEMU's `pc` machine, without an IOMMU (dma.rs has the same behind one).
fn sixty_four_mib_go_host_to_guest_and_back_over_tcp_intact(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    sixty_four_mib_each_way(c, slot, false)
}

/// 64 MiB host to guest and another guest to host over TCP, each checked
/// by CRC; `iommu`: on q35 with the NIC behind the IOMMU, else on `pc`.
pub(super) fn sixty_four_mib_each_way(
    c: &Ctx,
    slot: &mut Option<Machine>,
    iommu: bool,
) -> Result<(), String> {
    use std::io::Read;
    const BYTES: usize = 64 << 20;
    let to_guest = free_port()?;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let from_guest = listener.local_addr().map_err(|e| e.to_string())?.port();
    let forwards = [Forward {
        udp: false,
        host_port: to_guest,
        guest: "10.0.2.31".into(),
        guest_port: 5001,
    }];
    let sink = "sink memory=4M vif=mac=02:00:00:00:02:01 ip=10.0.2.31/24 gw=10.0.2.2 sink=5001"
        .to_string();
    let source = format!(
        "source memory=4M vif=mac=02:00:00:00:02:02 ip=10.0.2.32/24 gw=10.0.2.2 source=10.0.2.2:{from_guest} bytes={BYTES}"
    );
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        ("net-tool", sink.as_str()),
        ("net-tool", source.as_str()),
    ];
    let mut config = c.machine().guests(&guests).config()?.nic(&forwards);
    config = if iommu {
        config.iommu()
    } else {
        config.without_iommu()
    };
    let m = super::harness::boot(&config, slot)?;
    // Guest to host: accept the guest's connection and count what comes.
    let reader = std::thread::spawn(move || -> Result<(usize, u32), String> {
        let (mut conn, _) = listener.accept().map_err(|e| e.to_string())?;
        let mut crc = crc32fast::Hasher::new();
        let mut total = 0;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = conn.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok((total, crc.finalize()));
            }
            crc.update(&buf[..n]);
            total += n;
        }
    });
    // Host to guest: once the guest listens, send 64 MiB of noise.
    expect_line(m, "[2] net-tool: listening on port 5001")?;
    let mut conn =
        std::net::TcpStream::connect(("127.0.0.1", to_guest)).map_err(|e| e.to_string())?;
    let sent_crc = send_noise(&mut conn, BYTES, 0x2545_f491_4f6c_dd1d)?;
    let got = m.wait_for("[2] net-tool: received ", super::harness::BOOT * 5)?;
    check(
        got == format!("[2] net-tool: received {BYTES} bytes crc32 {sent_crc:08x}"),
        || format!("the host sent {BYTES} bytes crc32 {sent_crc:08x}; the guest: {got:?}"),
    )?;
    let sent = m.wait_for("[3] net-tool: sent ", super::harness::BOOT * 5)?;
    let (total, crc) = reader
        .join()
        .map_err(|_| "the reader thread panicked".to_string())??;
    check(
        sent == format!("[3] net-tool: sent {total} bytes crc32 {crc:08x}") && total == BYTES,
        || format!("the host received {total} bytes crc32 {crc:08x}; the guest: {sent:?}"),
    )
}

/// A hostile frontend's bad requests (chains of requests among them) are
/// refused one by one; its flood
/// does not stop two other guests' TCP transfer from finishing meanwhile,
/// intact; its broken ring costs it its interface and nobody else anything.
pub fn a_hostile_frontend_harms_nobody(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let driver = format!("{NET_DRIVER_LINE} tx_write_test");
    let guests = [
        ("drvdom-net", driver.as_str()),
        ("net-hostile", "bad memory=2M vif=mac=02:00:00:00:03:01 flood=100000000"),
        (
            "net-tool",
            "sink memory=4M vif=mac=02:00:00:00:03:02 ip=10.0.2.41/24 sink=5000 notify",
        ),
        (
            "net-tool",
            "source memory=4M vif=mac=02:00:00:00:03:03 ip=10.0.2.42/24 source=10.0.2.41:5000 bytes=4194304",
        ),
    ];
    let m = super::harness::boot(
        &c.machine()
            .cmdline("ifname=dummy")
            .guests(&guests)
            .config()?,
        slot,
    )?;
    for what in [
        "an oversized frame",
        "a frame past its page",
        "a runt",
        "a grant it does not own",
        "a blank checksum on a frame that is not TCP",
        "a chain of five parts",
        "a chain cut short",
        "a chain whose first part is past its page",
        "a chain with a part of a grant it does not own",
        "a chain that makes a runt",
    ] {
        expect_line(m, &format!("[2] net-hostile: {what}: refused"))?;
    }
    expect_line(
        m,
        "[2] net-hostile: sent a broadcast longer than any port takes",
    )?;
    expect_line(m, "[2] net-hostile: sent a broadcast of three pages")?;
    expect_line(m, "[2] net-hostile: flooding 100000000 frames")?;
    let sent = m.wait_for("[4] net-tool: sent ", super::harness::BOOT * 3)?;
    let got = m.wait_for("[3] net-tool: received ", super::harness::BOOT * 3)?;
    check(
        sent.starts_with("[4] net-tool: sent 4194304 bytes")
            && sent.split("bytes").nth(1) == got.split("bytes").nth(1),
        || format!("sent {sent:?}, received {got:?}"),
    )?;
    // The sink's broadcast ends the flood: the transfer ran under it throughout.
    expect_line(m, "[2] net-hostile: told to stop")?;
    let done = expect_line(m, "[2] net-hostile: flood done: ")?;
    let flooded: u64 = done
        .rsplit(' ')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    check(flooded >= 1000, || {
        format!("the flood was only {flooded} frames: it tested nothing")
    })?;
    expect_line(
        m,
        "[2] net-hostile: ending the grant of a page drvdom-net maps: refused",
    )?;
    // Frontends grant their transmit pages read-only: drvdom-net reads
    // them and can never write them.
    expect_line(
        m,
        "[1] drvdom-net: tx_write_test: mapping a transmit page writable: refused (read-only)",
    )?;
    let report = expect_line(
        m,
        "[1] drvdom-net: domain 2 vif 0 broke its ring; disconnected",
    )?;
    // Its long broadcasts (of one page and of three) went nowhere (not to
    // the other guests, whose MTU is the wire's, nor to the uplink) and
    // were counted.
    check(report.contains(", too big 2, "), || {
        format!("drvdom-net's report: {report:?}")
    })
}

/// Two guests send to the NIC as fast as they can: while both are
/// sending, neither gets more than 1.5 times the other's frames through
/// (round-robin, and the NIC's free buffers go to each in turn, a turn
/// cut short by them resumed first next round). Runs beside other tests:
/// fairness must hold on a loaded host.
fn two_guests_sending_flat_out_share_the_nic(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let sender = |name: &str, mac: &str| {
        format!("{name} memory=2M vif=mac={mac} send=200000 to=52:55:0a:00:02:02 progress=2000 together")
    };
    let a = sender("a", "02:00:00:00:04:01");
    let b = sender("b", "02:00:00:00:04:02");
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE),
        ("net-bench", a.as_str()),
        ("net-bench", b.as_str()),
    ];
    let m = super::harness::boot(&c.machine().guests(&guests).config()?.nic(&[]), slot)?;
    m.wait_for(
        "[2] net-bench: sent 200000 frames",
        super::harness::BOOT * 3,
    )?;
    m.wait_for(
        "[3] net-bench: sent 200000 frames",
        super::harness::BOOT * 3,
    )?;
    // Each progress line says when (the kernel's clock, one for every
    // domain): the console may print one guest's lines late, in a burst,
    // so their order on the serial line is not the order they were sent.
    let lines = m.lines();
    let progress = |dom: u32| -> Vec<u64> {
        let prefix = format!("[{dom}] net-bench: ");
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix)?.split(" frames sent at ").nth(1))
            .filter_map(|t| t.strip_suffix(" ns")?.parse().ok())
            .collect()
    };
    let (pa, pb) = (progress(2), progress(3));
    let (Some(&a_first), Some(&b_first), Some(&a_last), Some(&b_last)) =
        (pa.first(), pb.first(), pa.last(), pb.last())
    else {
        return Err("a sender printed no progress".into());
    };
    // While both were sending: from the later start to the earlier end.
    let (from, to) = (a_first.max(b_first), a_last.min(b_last));
    let count = |p: &[u64]| p.iter().filter(|&&t| t >= from && t <= to).count();
    let (na, nb) = (count(&pa), count(&pb));
    println!("  while both sent: {na} and {nb} progress lines");
    check(na.max(nb) >= 20, || {
        format!("the senders overlapped for only {na} and {nb} progress lines")
    })?;
    check(3 * na.min(nb) >= 2 * na.max(nb), || {
        format!("while both sent, one got {na} and the other {nb} two-thousands through")
    })
}

/// drvdom-net crashes at a random frame in every 400 the guests send while
/// the host sends a guest 64 MiB over TCP and fetches the web guest's page
/// in a loop: the toolstack restarts drvdom-net ten times or more, the
/// guests' interfaces reconnect, TCP resends what was lost, the data
/// arrives whole and every page request is answered.
fn sixty_four_mib_and_page_requests_survive_ten_drvdom_net_crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use std::sync::atomic::{AtomicBool, Ordering};
    const BYTES: usize = 64 << 20;
    let port = free_port()?;
    let http = free_port()?;
    let echo = free_port()?;
    let mut forwards = crate::qemu::web_forwards(http, echo);
    forwards.push(Forward {
        udp: false,
        host_port: port,
        guest: "10.0.2.51".into(),
        guest_port: 5001,
    });
    let driver = format!("{NET_DRIVER_LINE} restart_limit=1000 crash_every=400");
    let guests = [
        ("drvdom-net", driver.as_str()),
        (
            "net-tool",
            "sink memory=4M vif=mac=02:00:00:00:06:01 ip=10.0.2.51/24 gw=10.0.2.2 sink=5001",
        ),
        (
            "web",
            "web memory=4M vif=mac=00:16:3e:00:00:80 ip=10.0.2.15/24 gw=10.0.2.2",
        ),
    ];
    // The NIC's frames, to say who reset a page request if one fails.
    let capture = c.dir.join("nic.pcap");
    let config = c.machine().guests(&guests).config()?.nic(&forwards);
    let m = super::harness::boot(&config.capture_frames(&capture), slot)?;
    expect_line(m, "[2] net-tool: listening on port 5001")?;
    expect_line(m, "[3] web: serving http on 10.0.2.15:80")?;
    // Page requests in a loop, all through the transfer. A request may
    // wait out TCP's backoff when the network is lost again and again
    // (QEMU's user network resends a connection's first packet after 6 s,
    // then 12 s more: two losses in a row take 18 s, three 42 s), so each
    // may take up to 90 s; the slowest is reported.
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let machine_start = std::time::Instant::now() - m.clock();
    let asker = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<(u32, Duration), String> {
            let mut served = 0;
            let mut slowest = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let asked = machine_start.elapsed();
                let page = curl_waiting(http, 90).map_err(|e| {
                    let failed = machine_start.elapsed();
                    format!("{e} (asked at {asked:?}, failed at {failed:?})")
                })?;
                if !page.contains("requests served: ") {
                    return Err(format!("a page request got {page:?}"));
                }
                slowest = slowest.max(machine_start.elapsed() - asked);
                served += 1;
            }
            Ok((served, slowest))
        })
    };
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let sent_crc = send_noise(&mut conn, BYTES, 0x0123_4567_89ab_cdef)?;
    let got = m.wait_for("[2] net-tool: received ", super::harness::BOOT * 5);
    stop.store(true, Ordering::Relaxed);
    let (pages, slowest) = asker
        .join()
        .map_err(|_| "the page loop panicked".to_string())?
        .map_err(|e| {
            let story = crate::pcap::story(&capture, 80).unwrap_or_else(|e| e);
            let lines: Vec<_> = story.lines().collect();
            let last = lines[lines.len().saturating_sub(40)..].join("\n");
            format!(
                "{e}; the page connections' last segments (NIC side):\n{last}\nlines with times:\n{}",
                timed_log(m)
            )
        })?;
    println!("  {pages} pages served during the transfer, the slowest in {slowest:.1?}");
    let got = got?;
    check(
        got == format!("[2] net-tool: received {BYTES} bytes crc32 {sent_crc:08x}"),
        || format!("the host sent {BYTES} bytes crc32 {sent_crc:08x}; the guest: {got:?}"),
    )?;
    // Restarts during the transfer (the web guest's traffic may crash
    // drvdom-net again after the sink is done and gone, and the last one
    // may come as the sink finishes, before it needs to reconnect).
    let lines = m.lines();
    let end = lines
        .iter()
        .position(|l| l.starts_with("[2] net-tool: received "))
        .unwrap_or(lines.len());
    let restarts = lines[..end]
        .iter()
        .filter(|l| l.contains("toolstack: restarting drvdom-net"))
        .count();
    let reconnects = lines[..end]
        .iter()
        .filter(|l| l.starts_with("[2] net: interface 0 reconnected to domain "))
        .count();
    check(
        restarts >= 10 && reconnects + 1 >= restarts && pages > 0,
        || {
            format!(
            "drvdom-net restarted {restarts} times, the sink reconnected {reconnects} times, {pages} pages served"
        )
        },
    )
}

/// A drvdom-net that crashes at the first frame is restarted, then given
/// up on; the guest's interface is told its backend is gone and stops
/// sending, and the rest of the machine carries on.
fn a_crash_looping_drvdom_net_is_given_up_on_and_its_guest_told(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let driver = format!("{NET_DRIVER_LINE} crash_after=1 restart_limit=2");
    let guests = [
        ("drvdom-net", driver.as_str()),
        (
            "net-tool",
            "source memory=4M vif=mac=02:00:00:00:07:01 ip=10.0.2.61/24 source=10.0.2.62:5000 bytes=1000",
        ),
        ("hello", "hello memory=512K still-here"),
    ];
    let m = super::harness::boot(
        &c.machine()
            .cmdline("ifname=dummy")
            .guests(&guests)
            .config()?,
        slot,
    )?;
    expect_line(
        m,
        "toolstack: giving up on drvdom-net (domain 1) after 3 crashes in 10 s",
    )?;
    expect_line(m, "[2] net: interface 0's backend is gone")?;
    expect_line(m, "still-here").map(|_| ())
}

/// A guest with two interfaces on one drvdom-net bounces frames between
/// them while drvdom-net crashes every 1,000 frames: each interface is told
/// of each restart on its own and follows it, and every round trip ends.
fn a_guest_with_two_interfaces_on_one_drvdom_net_keeps_both_through_crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let driver = format!("{NET_DRIVER_LINE} crash_after=1000 restart_limit=100");
    let guests = [
        ("drvdom-net", driver.as_str()),
        (
            "net-bench",
            "twovifs memory=4M vif=mac=02:00:00:00:07:01 vif=mac=02:00:00:00:07:02 between=2000",
        ),
    ];
    let m = super::harness::boot(
        &c.machine()
            .cmdline("ifname=dummy")
            .guests(&guests)
            .config()?,
        slot,
    )?;
    let done = m.wait_for(
        "[2] net-bench: 2000 round trips between my two interfaces",
        super::harness::BOOT * 3,
    )?;
    let restarts = super::harness::restarts_of(m, "drvdom-net");
    check(restarts >= 3, || {
        format!("drvdom-net restarted {restarts} times: {done}")
    })?;
    check(
        done.ends_with(&format!("restarted {restarts} and {restarts} times")),
        || format!("an interface missed a restart ({restarts} restarts): {done}"),
    )
}

/// Sends `bytes` of pseudo-random noise (from `seed`) on `conn`, then ends
/// the sending half; returns the CRC-32 of what was sent.
fn send_noise(conn: &mut std::net::TcpStream, bytes: usize, seed: u64) -> Result<u32, String> {
    let mut chunks = bytes / (1 << 16);
    send_noise_while(conn, seed, || {
        chunks = chunks.checked_sub(1)?;
        Some(())
    })
    .map(|(_, crc)| crc)
}

/// Sends 64 KiB chunks of pseudo-random noise (xorshift from `seed`) on
/// `conn` while `more` says so, then ends the sending half; returns the
/// bytes sent and their CRC-32.
pub(super) fn send_noise_while(
    conn: &mut std::net::TcpStream,
    seed: u64,
    mut more: impl FnMut() -> Option<()>,
) -> Result<(u64, u32), String> {
    let mut crc = crc32fast::Hasher::new();
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut sent = 0u64;
    while more().is_some() {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        crc.update(&buf);
        conn.write_all(&buf)
            .map_err(|e| format!("sending to the guest: {e}"))?;
        sent += buf.len() as u64;
    }
    conn.shutdown(std::net::Shutdown::Write)
        .map_err(|e| e.to_string())?;
    Ok((sent, crc.finalize()))
}

fn a_hostile_network_frontend_gets_errors_and_harms_nobody(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    a_hostile_frontend_harms_nobody(c, slot)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        a_guest_with_two_interfaces_on_one_drvdom_net_keeps_both_through_crashes,
        two_guests_sending_flat_out_share_the_nic,
        the_web_guest_serves_curl_and_nc_through_forwarded_ports,
        a_broadcast_reaches_every_other_guest_once_and_a_forged_mac_nobody,
        two_guests_talk_tcp_through_the_switch,
        two_guests_talk_tcp_through_the_switch_with_ifname_dummy,
        guests_of_a_jumbo_mtu_talk_in_frames_over_several_pages,
        sixty_four_mib_go_host_to_guest_and_back_over_tcp_intact,
        a_hostile_network_frontend_gets_errors_and_harms_nobody,
        sixty_four_mib_and_page_requests_survive_ten_drvdom_net_crashes,
        a_crash_looping_drvdom_net_is_given_up_on_and_its_guest_told,
        guests_whose_drvdom_net_restarts_before_they_connect_get_their_interfaces,
    ]
}
