//! System tests of a Linux guest's network: a virtio-net function of its
//! device model, served by drvdom-net like a Rust guest's interface,
//! through its restarts.

use super::harness::*;
use super::linux::linux_bundle;
use crate::iso::NET_DRIVER_LINE;
use crate::qemu::{free_port, Forward};
use std::io::{Read, Write};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(240);
/// Linux's address on QEMU's user network (where the host port goes).
const LINUX_IP: &str = "10.0.2.15";

/// Types `command` at Linux's console (domain `id`) and waits for the
/// line it prints that starts with `marker`.
fn ask(
    m: &Machine,
    sock: &std::path::Path,
    id: u32,
    command: &str,
    marker: &str,
) -> Result<String, String> {
    let mut client = toolstack::Client::connect(sock).map_err(|e| e.to_string())?;
    client
        .console_write(id, format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    m.wait_for(&format!("[{}] {marker}", id & 0xffff), LONG)
}

/// Boots drvdom-net (QEMU's NIC, `forwards`), the domains of `guests`,
/// and a Linux guest with one interface, its address set and a shell
/// ready; returns its domain id.
fn boot_with_interface<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    guests: &[(&str, &str)],
    forwards: Vec<Forward>,
) -> Result<(&'m mut Machine, std::path::PathBuf, u32), String> {
    let tar = linux_bundle(c, &[("linux", "vif = [\"mac=00:16:3e:00:00:10\"]\n")])?;
    let mut all = vec![CONSOLE_DOM, ("drvdom-net", NET_DRIVER_LINE)];
    all.extend_from_slice(guests);
    let (m, sock) = c
        .machine()
        .guests(&all)
        .bundle(tar)
        .qemu(move |q| q.memory("1G").nic(&forwards))
        .boot_managed(slot)?;
    m.wait_for("xenolith-linux: 6*7 is 42", LONG)?;
    let linux = toolstack::Client::connect(&sock)
        .and_then(|mut c| c.resolve("linux"))
        .map_err(|e| e.to_string())?;
    ask(
        m,
        &sock,
        linux,
        &format!(
            "ip link set eth0 up && ip addr add {LINUX_IP}/24 dev eth0 && \
             ip route add default via 10.0.2.2 && echo eth0 $(cat /sys/class/net/eth0/address)"
        ),
        "eth0 ",
    )
    .and_then(|l| {
        check(l.ends_with("eth0 00:16:3e:00:00:10"), || {
            format!("Linux's interface: {l}")
        })
    })?;
    Ok((m, sock, linux))
}

/// The host sends 64 MiB through a forwarded port to an echo server in
/// Linux and reads them back while drvdom-net is crashed three times: the
/// same bytes come back.
fn linux_echoes_64_mib_to_the_host_through_three_drvdom_net_crashes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let port = free_port()?;
    let forwards = vec![Forward {
        udp: false,
        host_port: port,
        guest: LINUX_IP.into(),
        guest_port: 5000,
    }];
    let (m, sock, linux) = boot_with_interface(c, slot, &[], forwards)?;
    ask(
        m,
        &sock,
        linux,
        "(nc -ll -p 5000 -e cat &) ; echo echo server up",
        "echo server up",
    )?;
    let mut stream = connect_and_echo(port)?;
    const TOTAL: usize = 64 << 20;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> Result<u32, String> {
        let mut crc = crc32fast::Hasher::new();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut chunk = vec![0u8; 64 << 10];
        for _ in 0..TOTAL / chunk.len() {
            for b in chunk.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            crc.update(&chunk);
            writer
                .write_all(&chunk)
                .map_err(|e| format!("sending: {e}"))?;
        }
        Ok(crc.finalize())
    });
    let mut crc = crc32fast::Hasher::new();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 << 10];
    let mut crashes = 0usize;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    while got < TOTAL {
        let n = stream
            .read(&mut buf)
            .map_err(|e| format!("after {got} bytes: {e}"))?;
        check(n > 0, || format!("the echo ended after {got} bytes"))?;
        crc.update(&buf[..n]);
        got += n;
        // A crash at 1/4, 2/4 and 3/4 of the way.
        if crashes < 3 && got >= (crashes + 1) * TOTAL / 4 {
            let (code, out) = toolstack(&sock, &["domain", "crash", "drvdom-net"])?;
            check(code == 0, || format!("domain crash: {code} {out}"))?;
            crashes += 1;
        }
    }
    let sent = sender.join().map_err(|_| "the sender panicked")??;
    check(crc.finalize() == sent, || {
        "the bytes that came back are not the bytes sent".into()
    })?;
    let restarts = restarts_of(m, "drvdom-net");
    check(restarts >= 3, || {
        format!("{restarts} restarts of drvdom-net")
    })?;
    let follows = m
        .lines()
        .iter()
        .filter(|l| l.contains("net: interface 0 reconnected to domain"))
        .count();
    check(follows >= 3, || {
        format!("the device model followed {follows} restarts")
    })
}

/// Connects to the forwarded port once Linux's echo server answers.
fn connect_and_echo(port: u16) -> Result<std::net::TcpStream, String> {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            let mut back = [0u8; 5];
            if s.write_all(b"ping\n").is_ok()
                && s.read_exact(&mut back).is_ok()
                && &back == b"ping\n"
            {
                return Ok(s);
            }
        }
        if std::time::Instant::now() > deadline {
            return Err("Linux's echo server never answered".into());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Linux sends 4 MiB over TCP to a Rust guest through drvdom-net's
/// switch: the Rust guest counts the same bytes and CRC-32. Then Linux
/// forges its MAC, and drvdom-net drops what it sends.
fn linux_and_a_rust_guest_talk_tcp_through_the_switch(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let sink = (
        "net-tool",
        "sink memory=4M vif=mac=02:00:00:00:01:01 ip=10.0.2.21/24 sink=5000",
    );
    let (m, sock, linux) = boot_with_interface(c, slot, &[sink], Vec::new())?;
    let sent = ask(
        m,
        &sock,
        linux,
        "head -c 4194304 /dev/urandom > /tx && nc 10.0.2.21 5000 < /tx && echo sent $(wc -c < /tx) bytes crc32 $(crc32 /tx)",
        "sent ",
    )?;
    let got = m.wait_for("net-tool: received ", LONG)?;
    // drvdom-net's anti-spoofing holds for Linux's frames: from a MAC
    // that is not its interface's, nothing gets out.
    ask(
        m,
        &sock,
        linux,
        "ip link set eth0 address 02:00:00:00:00:66 && ping -c 2 -W 1 10.0.2.21; echo forged done",
        "forged done",
    )?;
    expect_line(
        m,
        "sent from 02:00:00:00:00:66, not its 00:16:3e:00:00:10: dropped",
    )?;
    let tail = |l: &str| {
        l.split("bytes crc32 ")
            .nth(1)
            .map(|s| s.split_whitespace().next().unwrap_or("").to_owned())
    };
    check(
        sent.contains("sent 4194304 bytes")
            && got.contains("received 4194304 bytes")
            && tail(&sent) == tail(&got),
        || format!("Linux {sent:?}, the Rust guest {got:?}"),
    )
}

pub(super) fn tests() -> Vec<Test> {
    tests![
        linux_echoes_64_mib_to_the_host_through_three_drvdom_net_crashes,
        linux_and_a_rust_guest_talk_tcp_through_the_switch,
    ]
}
