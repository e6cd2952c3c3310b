//! `cargo xtask bench net`: the network path through drvdom-net, with the
//! NIC's own figure measured inside drvdom-net in the same run (ratios, as
//! these machines are noisy): raw frames out of the NIC from drvdom-net
//! itself and from a guest through its ring; TCP host to guest, guest to
//! host (both also with a Linux guest booted by QEMU itself, what a user
//! would run instead) and guest to guest (MTU 1500, 4082: frames of a
//! page, and 16370: frames of four pages, a chain of ring slots each);
//! UDP request/response with the
//! web guest's echo; and, under
//! `-icount`, instructions per 1,514-byte frame from guest to guest
//! through the switch and out of the NIC (raw and from a guest). `NETBENCH_LOG=1` prints the serial lines of that
//! last boot and of each boot sending frames out of the NIC (to see why a
//! figure moved); `NETBENCH_G2G=MTU` measures
//! guest to guest alone (`NETBENCH_ICOUNT=1`: under -icount);
//! `NETBENCH_NIC=1` the instructions a frame out of the NIC alone
//! (`NETBENCH_NIC=wall`: its wall figures alone, the median of seven boots).
//! `NETBENCH_PROFILE=FILE` logs two seconds of the blocks QEMU runs in
//! those (with `XTASK_QEMU_ARGS=-singlestep`: every instruction).

use super::guest_tcp;
use crate::iso::{Module, NET_DRIVER_LINE};
use crate::qemu::{free_port, Config, Forward, Machine};
use crate::{build, host_tools, iso, linux_guest};
use std::io::Write;
use std::time::{Duration, Instant};

/// Frames each side sends, bytes over TCP, UDP round trips (`--short`: few).
fn frames() -> u64 {
    super::setup::sized(100_000, 500)
}
fn tcp_bytes() -> usize {
    super::setup::sized(32 << 20, 1 << 20)
}
fn udp_rounds() -> u32 {
    super::setup::sized(2_000, 100)
}
const WAIT: Duration = Duration::from_secs(600);

/// The number before `unit` in a line (a word's trailing `;` or `,` aside:
/// `net-bench` ends its figures with `tsc;`).
fn before(line: &str, unit: &str) -> Result<f64, String> {
    let words: Vec<&str> = line
        .split_whitespace()
        .map(|w| w.trim_end_matches([';', ',']))
        .collect();
    let i = words
        .iter()
        .position(|w| *w == unit)
        .ok_or_else(|| format!("no {unit} in {line:?}"))?;
    words
        .get(i.wrapping_sub(1))
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| format!("no number before {unit} in {line:?}"))
}

/// `None`: QEMU's `pc` machine; `Some(on)`: q35 with its IOMMU, which
/// the kernel uses (`on`) or not (`iommu=off`).
type Iommu = Option<bool>;

fn boot(
    guests: &[(&str, String)],
    forwards: Option<&[Forward]>,
    icount: bool,
    cmdline: &str,
    iommu: Iommu,
) -> Result<Machine, String> {
    let cmdline = match iommu {
        Some(false) => format!("{cmdline} iommu=off"),
        _ => cmdline.to_string(),
    };
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut mods = vec![Module {
        path: build::domain(&domains, "toolstack-domain"),
        cmdline: "toolstack-domain".into(),
    }];
    for (bin, line) in guests {
        mods.push(Module {
            path: build::domain(&domains, bin),
            cmdline: line.clone(),
        });
    }
    let iso = iso::build(&kernel, &cmdline, &mods, &dir.join("net.iso"))?;
    let mut config = Config::new(&iso);
    if iommu.is_some() {
        config = config.iommu();
    }
    if let Some(f) = forwards {
        config = config.nic(f);
    }
    if icount {
        config = config.icount();
    }
    if std::env::var_os("NETBENCH_PROFILE").is_some() {
        config = config.monitor_socket(&dir.join("net-monitor.sock"));
    }
    config.spawn()
}

/// Frames out of the NIC over several boots (one boot's ratio moves by
/// half from one to the next on these machines): the medians of raw and
/// guest MiB/s, of their ratio and of notifications per frame, and the
/// ratios' lowest and highest.
struct FramesOut {
    raw: f64,
    guest: f64,
    ratio: f64,
    low: f64,
    high: f64,
    notes: f64,
}

/// Boots [`FramesOut`] takes (`--short`: one).
fn frames_boots() -> usize {
    super::setup::sized(7, 1)
}

fn frames_out_median(iommu: Iommu) -> Result<FramesOut, String> {
    let boots = (0..frames_boots())
        .map(|_| frames_out(iommu))
        .collect::<Result<Vec<_>, _>>()?;
    let of = |f: fn(&(f64, f64, f64)) -> f64| super::setup::spread(boots.iter().map(f));
    let ratio = of(|b| b.1 / b.0);
    Ok(FramesOut {
        raw: of(|b| b.0).median,
        guest: of(|b| b.1).median,
        ratio: ratio.median,
        low: ratio.low,
        high: ratio.high,
        notes: of(|b| b.2).median,
    })
}

/// Frames out of the NIC, one boot: (raw MiB/s, guest MiB/s, notifications per frame).
fn frames_out(iommu: Iommu) -> Result<(f64, f64, f64), String> {
    let (raw, guest) = frames_out_lines(iommu, false)?;
    let mibps = |line: &str| -> Result<f64, String> {
        Ok((frames() as f64 * 1514.0 / (1 << 20) as f64) / (before(line, "ns")? / 1e9))
    };
    Ok((
        mibps(&raw)?,
        mibps(&guest)?,
        before(&guest, "notifications")? / frames() as f64,
    ))
}

/// The same under `-icount`: instructions per frame out of the NIC, every
/// domain and the kernel counted (raw, from a guest). QEMU's own work for
/// the NIC takes no guest time there, so this is what our path costs, and
/// it is the same in every run (the wall figures above move by 2x).
fn frames_out_instructions() -> Result<(f64, f64), String> {
    let (raw, guest) = frames_out_lines(None, true)?;
    let n = frames() as f64;
    Ok((before(&raw, "tsc")? / n, before(&guest, "tsc")? / n))
}

/// Boots drvdom-net's raw sender and then the guest's: their lines.
fn frames_out_lines(iommu: Iommu, icount: bool) -> Result<(String, String), String> {
    let guests = [
        (
            "drvdom-net",
            format!("{NET_DRIVER_LINE} bench_raw frames={}", frames()),
        ),
        (
            "net-bench",
            format!(
                "tx memory=2M vif=mac=02:00:00:00:05:01 send={} to=52:55:0a:00:02:02",
                frames()
            ),
        ),
    ];
    let m = boot(&guests, Some(&[]), icount, "", iommu)?;
    let raw = m.wait_for("drvdom-net: raw sent", WAIT)?;
    if let Ok(log) = std::env::var("NETBENCH_PROFILE") {
        super::setup::exec_log(&m, "drvdom-net: raw sent", 1, &log)?;
    }
    let guest = m.wait_for("net-bench: sent", WAIT)?;
    if std::env::var_os("NETBENCH_LOG").is_some() {
        for l in m.lines() {
            println!("{l}");
        }
    }
    Ok((raw, guest))
}

/// What a guest on the user network measured from the host.
struct HostAndGuest {
    /// TCP host to guest and guest to host, MiB/s, timed by the host
    /// (connection to the guest's count; connection to its close).
    to_guest: f64,
    from_guest: f64,
    /// UDP round trips a second with the web guest's echo, and how many
    /// were lost.
    udp_rate: f64,
    lost: u32,
}

/// TCP both ways between the host and Rust guests, and UDP round trips
/// with the web guest.
fn host_and_guest(iommu: Iommu) -> Result<HostAndGuest, String> {
    let tcp = free_port()?;
    let udp = free_port()?;
    let forwards = [
        Forward {
            udp: false,
            host_port: tcp,
            guest: "10.0.2.31".into(),
            guest_port: 5001,
        },
        Forward {
            udp: true,
            host_port: udp,
            guest: "10.0.2.15".into(),
            guest_port: 7,
        },
    ];
    // The source guest connects to the host (10.0.2.2 is the host's
    // loopback through QEMU's user network) as soon as it runs.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let back = listener.local_addr().map_err(|e| e.to_string())?.port();
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE.to_string()),
        (
            "net-tool",
            "sink memory=4M vif=mac=02:00:00:00:05:02 ip=10.0.2.31/24 gw=10.0.2.2 sink=5001"
                .to_string(),
        ),
        (
            "net-tool",
            format!(
                "source memory=4M vif=mac=02:00:00:00:05:07 ip=10.0.2.32/24 gw=10.0.2.2 source=10.0.2.2:{back} bytes={}",
                tcp_bytes()
            ),
        ),
        (
            "web",
            "web memory=4M vif=mac=00:16:3e:00:00:80 ip=10.0.2.15/24 gw=10.0.2.2".to_string(),
        ),
    ];
    let m = boot(&guests, Some(&forwards), false, "", iommu)?;
    let mib = tcp_bytes() as f64 / (1 << 20) as f64;
    // Guest to host first: the source sends at once.
    let from_guest = mib / source_to_host(&listener)?.as_secs_f64();
    m.wait_for("net-tool: listening on port 5001", WAIT)?;
    m.wait_for("web: serving http", WAIT)?;
    let began = Instant::now();
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", tcp)).map_err(|e| e.to_string())?;
    let buf = vec![0x5au8; 1 << 16];
    for _ in 0..tcp_bytes() / buf.len() {
        conn.write_all(&buf).map_err(|e| e.to_string())?;
    }
    drop(conn);
    m.wait_for("net-tool: receiving took", WAIT)?;
    let to_guest = mib / began.elapsed().as_secs_f64();
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.connect(("127.0.0.1", udp))
        .map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut lost = 0;
    let mut back = [0u8; 128];
    let start = Instant::now();
    for i in 0..udp_rounds() {
        let msg = format!("request {i:08}");
        sock.send(msg.as_bytes()).map_err(|e| e.to_string())?;
        match sock.recv(&mut back) {
            Ok(n) if &back[..n] == msg.as_bytes() => {}
            _ => lost += 1,
        }
    }
    let udp_rate = f64::from(udp_rounds() - lost) / start.elapsed().as_secs_f64();
    Ok(HostAndGuest {
        to_guest,
        from_guest,
        udp_rate,
        lost,
    })
}

/// Takes the source guest's connection (waiting at most `WAIT` for it)
/// and reads it to its close, which must bring `tcp_bytes()`; the time
/// from the connection to the close.
fn source_to_host(listener: &std::net::TcpListener) -> Result<Duration, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let began = Instant::now();
    let conn = loop {
        match listener.accept() {
            Ok((conn, _)) => break conn,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if began.elapsed() > WAIT {
                    return Err(format!("the source guest did not connect in {WAIT:?}"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("the source guest's connection: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    guest_tcp::read_to_close(conn, tcp_bytes())
}

/// The same TCP transfers with a Linux guest booted directly by QEMU
/// (what a user would run instead: QEMU's own virtio-net-pci, the same
/// user network), through `xenolith-io`'s servers: (to guest, from guest)
/// in MiB/s.
fn linux_direct() -> Result<(f64, f64), String> {
    let linux = linux_guest::guest()?;
    let ports = [free_port()?, free_port()?, free_port()?];
    let append = format!(
        "console=ttyS0 quiet xenolith_ip=10.0.2.15/24 xenolith_netbench={}",
        tcp_bytes()
    );
    // The ISO is not booted (QEMU loads Linux itself); it names the machine.
    let iso = build::target_dir().join("bench/net.iso");
    let m = Config::new(&iso)
        .memory("512M")
        .nic(&guest_tcp::forwards(ports, "10.0.2.15"))
        .direct_linux(&linux.kernel, &linux.initrd, &append)
        .spawn()?;
    for port in guest_tcp::GUEST_PORTS {
        m.wait_for(&guest_tcp::listening(port), WAIT)?;
    }
    let mib = tcp_bytes() as f64 / (1 << 20) as f64;
    let to = guest_tcp::to_guest(ports[0], tcp_bytes()).map_err(|e| format!("Linux: {e}"))?;
    let from = guest_tcp::from_guest(ports[1], tcp_bytes()).map_err(|e| format!("Linux: {e}"))?;
    Ok((mib / to.as_secs_f64(), mib / from.as_secs_f64()))
}

/// TCP between two guests through the switch, both of MTU `mtu`: MiB/s.
/// `check`: each end's check of the bytes (`crc32`, or `stream`: the
/// sink compares each byte with the known stream the source sends).
fn guest_to_guest(mtu: u16, check: &str) -> Result<f64, String> {
    guest_to_guest_on(mtu, check, false)
}

/// [`guest_to_guest`], under -icount if `icount` (then the guests' clock
/// counts instructions, and idle waits as they jump: MiB per second of
/// that clock, the same on a loaded machine as on a quiet one).
fn guest_to_guest_on(mtu: u16, check: &str, icount: bool) -> Result<f64, String> {
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE.to_string()),
        ("net-tool", format!("sink memory=4M vif=mac=02:00:00:00:05:03,mtu={mtu} ip=10.0.2.21/24 sink=5000 check={check}")),
        (
            "net-tool",
            format!("source memory=4M vif=mac=02:00:00:00:05:04,mtu={mtu} ip=10.0.2.22/24 source=10.0.2.21:5000 bytes={} check={check}", tcp_bytes()),
        ),
    ];
    let m = boot(&guests, None, icount, "ifname=dummy", None)?;
    if let Ok(log) = std::env::var("NETBENCH_PROFILE") {
        super::setup::exec_log(&m, "net-tool: listening on port", 3, &log)?;
    }
    let got = m.wait_for("net-tool: received ", WAIT)?;
    let sent = m.wait_for("net-tool: sent ", WAIT)?;
    let intact = if check == "stream" {
        got.ends_with(&format!(
            "received {} bytes, every one the stream's",
            tcp_bytes()
        ))
    } else {
        got.split("bytes").nth(1) == sent.split("bytes").nth(1)
    };
    if !intact {
        return Err(format!("guest to guest: {got:?} after {sent:?}"));
    }
    let took = m.wait_for("net-tool: receiving took", WAIT)?;
    if std::env::var_os("NETBENCH_LOG").is_some() {
        for l in m.lines().iter().filter(|l| l.contains("net-tool: ")) {
            eprintln!("{l}");
        }
    }
    Ok((tcp_bytes() as f64 / (1 << 20) as f64) / (before(&took, "ns")? / 1e9))
}

/// Under -icount, one frame at a time from guest to guest and back through
/// the switch: instructions per frame (every domain counted).
fn icount_per_frame() -> Result<f64, String> {
    let n = 2_000;
    let guests = [
        ("drvdom-net", NET_DRIVER_LINE.to_string()),
        (
            "net-bench",
            "rx memory=2M vif=mac=02:00:00:00:05:05 echo".to_string(),
        ),
        (
            "net-bench",
            format!("tx memory=2M vif=mac=02:00:00:00:05:06 ping={n} to=02:00:00:00:05:05"),
        ),
    ];
    let m = boot(&guests, None, true, "ifname=dummy", None)?;
    let line = m.wait_for("net-bench: 2000 round trips", WAIT)?;
    if std::env::var_os("NETBENCH_LOG").is_some() {
        for l in m.lines() {
            eprintln!("{l}");
        }
    }
    Ok(before(&line, "tsc")? / (2.0 * n as f64))
}

pub fn run() -> Result<(), String> {
    host_tools::ensure()?;
    // `NETBENCH_G2G=MTU` measures TCP guest to guest at that MTU alone
    // (stream check), three times: for trying a change to that path; with
    // `NETBENCH_ICOUNT=1` under -icount, where the figure does not move
    // with the machine's load.
    if let Some(mtu) = std::env::var("NETBENCH_G2G")
        .ok()
        .and_then(|m| m.parse().ok())
    {
        let icount = std::env::var_os("NETBENCH_ICOUNT").is_some();
        let unit = if icount {
            "MiB per 10^9 instructions"
        } else {
            "MiB/s"
        };
        for _ in 0..3 {
            println!(
                "guest to guest, MTU {mtu}: {:.1} {unit}",
                guest_to_guest_on(mtu, "stream", icount)?
            );
        }
        return Ok(());
    }
    // `NETBENCH_NIC=wall`: frames out of the NIC on the wall alone (raw
    // and from a guest side by side in each boot), the median of seven.
    if std::env::var("NETBENCH_NIC").is_ok_and(|v| v == "wall") {
        let f = frames_out_median(None)?;
        println!(
            "frames out of the NIC, MiB/s, median of {} boots: raw {:.1}, from a guest {:.1} ({:.2}, {:.2}-{:.2}), {:.3} notifications a frame",
            frames_boots(),
            f.raw,
            f.guest,
            f.ratio,
            f.low,
            f.high,
            f.notes
        );
        return Ok(());
    }
    // `NETBENCH_NIC=1`: frames out of the NIC under -icount alone.
    if std::env::var_os("NETBENCH_NIC").is_some() {
        let (raw, guest) = frames_out_instructions()?;
        println!(
            "frames out of the NIC, instructions a frame: raw {raw:.0}, from a guest {guest:.0}"
        );
        return Ok(());
    }
    let frames = frames_out_median(None)?;
    let (raw, guest, notes) = (frames.raw, frames.guest, frames.notes);
    let host = host_and_guest(None)?;
    let (linux_in, linux_out) = linux_direct()?;
    let g2g_wire = guest_to_guest(1500, "crc32")?;
    let g2g_crc = guest_to_guest(4082, "crc32")?;
    let g2g = guest_to_guest(4082, "stream")?;
    let g2g_chained = guest_to_guest(16370, "stream")?;
    let instr = icount_per_frame()?;
    let (raw_instr, guest_instr) = frames_out_instructions()?;
    println!("| what (TCG) | figure | against the NIC raw | aim (issue 24) |");
    println!("|---|---|---|---|");
    println!(
        "| 1,514-byte frames out of the NIC, sent by drvdom-net itself (MiB/s) | {raw:.1} | 1.00 | |"
    );
    println!(
        "| the same frames from a guest through its ring and the switch (MiB/s; ratio: median of {} boots, lowest-highest) | {guest:.1} | {:.2} ({:.2}-{:.2}) | ≥ 0.8 of raw |",
        frames_boots(),
        frames.ratio,
        frames.low,
        frames.high
    );
    println!("| instructions per frame out of the NIC, drvdom-net itself / from a guest (-icount, every domain) | {raw_instr:.0} / {guest_instr:.0} | {:.2} | |", raw_instr / guest_instr);
    println!("| notifications per frame, guest transmit ring | {notes:.3} | | |");
    println!(
        "| TCP host to guest, {} MiB, timed by the host (MiB/s) | {:.1} | {:.2} | ≥ 1.0 of a Linux guest's (below) |",
        tcp_bytes() >> 20,
        host.to_guest,
        host.to_guest / raw
    );
    println!(
        "| TCP guest to guest through the switch, {} MiB, MTU 1500, CRC-32 at each end (MiB/s) | {g2g_wire:.1} | {:.2} | |",
        tcp_bytes() >> 20,
        g2g_wire / raw
    );
    println!(
        "| the same, both guests of MTU 4082 (frames of a page) (MiB/s) | {g2g_crc:.1} | {:.2} | |",
        g2g_crc / raw
    );
    println!(
        "| the same, each byte checked against a known stream instead of a CRC (MiB/s) | {g2g:.1} | {:.2} | |",
        g2g / raw
    );
    println!(
        "| the same, both guests of MTU 16370 (frames of four pages, chains of ring slots) (MiB/s) | {g2g_chained:.1} | {:.2} | ≥ 150 MiB/s |",
        g2g_chained / raw
    );
    println!(
        "| UDP request/response with the web guest's echo (round trips/s; {} lost of {}) | {:.0} | | |",
        host.lost,
        udp_rounds(),
        host.udp_rate
    );
    println!("| instructions per 1,514-byte frame, guest to guest through the switch, one at a time (-icount, every domain) | {instr:.0} | | |");
    println!();
    println!(
        "| TCP, {} MiB, timed by the host (MiB/s) | a Rust guest through drvdom-net | a Linux guest booted by QEMU itself (its own virtio-net) | Xenolith / Linux | aim (issue 24) |",
        tcp_bytes() >> 20
    );
    println!("|---|---|---|---|---|");
    for (way, rust, linux) in [
        ("host to guest", host.to_guest, linux_in),
        ("guest to host", host.from_guest, linux_out),
    ] {
        println!(
            "| {way} | {rust:.1} | {linux:.1} | {:.2} | ≥ 1.0 |",
            rust / linux
        );
    }
    // The cost of DMA isolation: the same on q35, the IOMMU unused and used.
    let (off_raw, off_guest, _) = frames_out(Some(false))?;
    let (on_raw, on_guest, _) = frames_out(Some(true))?;
    let off_tcp = host_and_guest(Some(false))?.to_guest;
    let on_tcp = host_and_guest(Some(true))?.to_guest;
    println!();
    println!("| q35 (TCG) | iommu=off | IOMMU on | on / off |");
    println!("|---|---|---|---|");
    for (what, off, on) in [
        (
            "1,514-byte frames out of the NIC, drvdom-net itself (MiB/s)",
            off_raw,
            on_raw,
        ),
        ("the same frames from a guest (MiB/s)", off_guest, on_guest),
        ("TCP host to guest (MiB/s)", off_tcp, on_tcp),
    ] {
        println!("| {what} | {off:.1} | {on:.1} | {:.2} |", on / off);
    }
    Ok(())
}
