//! System tests of the network driver domain: drvdom-net drives the virtio
//! NIC on QEMU's user network and switches frames for guests; a user on the
//! host reaches the example web guest with `curl` and `nc -u` through
//! forwarded ports.

use super::{check, expect_line, Ctx, Machine};
use crate::iso::{NET_DRIVER_LINE, WEB_GUEST_IP};
use crate::qemu::{free_port, Forward};
use std::io::Write;
use std::process::{Command, Stdio};

/// The web guest's module line: its MAC and a static address.
fn web_line(name: &str, mac: &str, ip: &str) -> String {
    format!("{name} mem=4096 vif={mac} ip={ip}/24 gw=10.0.2.2")
}

/// `curl` on the host; the body, or why it failed.
pub fn curl(port: u16) -> Result<String, String> {
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "30"])
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

/// The web guest serves its page to `curl` and echoes `nc -u`, through
/// drvdom-net, the NIC and QEMU's forwarded ports; the count goes up.
pub fn web_guest_serves_the_host(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let http = free_port()?;
    let udp = free_port()?;
    let forwards = [
        Forward {
            udp: false,
            host_port: http,
            guest: WEB_GUEST_IP.into(),
            guest_port: 80,
        },
        Forward {
            udp: true,
            host_port: udp,
            guest: WEB_GUEST_IP.into(),
            guest_port: 7,
        },
    ];
    let web = web_line("web", "00:16:3e:00:00:80", WEB_GUEST_IP);
    let guests = [("drvdom-net", NET_DRIVER_LINE), ("web", web.as_str())];
    let m = super::boot(&c.system("", &guests)?.nic(&forwards), slot)?;
    expect_line(m, "[1] drvdom-net: virtio-net at 00:05.0 (auto), MAC ")?;
    expect_line(
        m,
        "[1] drvdom-net: domain 2 vif 0 joins the switch as 00:16:3e:00:00:80",
    )?;
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
