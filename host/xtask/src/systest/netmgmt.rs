//! System tests of the management channel over the network: domain 0
//! serving the protocol over TCP through drvdom-net, encrypted and
//! authenticated (`ipc_abi::mgmt_net`), driven by the real `toolstack`
//! binary with `--connect tcp://` and a key file.

use super::harness::{build, check, expect_line, Ctx, Machine, BOOT, CONSOLE_DOM};
use super::harness::{tests, Test};
use crate::iso;
use crate::qemu::{free_port, Forward};
use std::path::Path;
use std::time::Duration;

/// Runs the host `toolstack` over the network; (exit code, stdout + stderr).
fn net_toolstack(port: u16, key: &Path, args: &[&str]) -> Result<(i32, String), String> {
    let connect = format!("tcp://127.0.0.1:{port}");
    super::harness::toolstack_with(
        &[
            "--connect".as_ref(),
            connect.as_ref(),
            "--key".as_ref(),
            key.as_os_str(),
        ],
        args,
    )
}

/// The names `domain list` shows.
fn names(port: u16, key: &Path) -> Result<Vec<String>, String> {
    let (code, out) = net_toolstack(port, key, &["domain", "list"])?;
    check(code == 0, || format!("list over TCP: {code} {out}"))?;
    Ok(out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect())
}

/// A connection that has done the Noise handshake as `identity`, spoken
/// by hand (to send what the `toolstack` library never would).
fn raw_session(
    port: u16,
    identity: &toolstack::network::Identity,
) -> Result<(std::net::TcpStream, snow::TransportState), String> {
    use std::io::{Read, Write};
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|x| e(&x))?;
    tcp.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|x| e(&x))?;
    let params = ipc_abi::mgmt_net::NOISE_PATTERN
        .parse()
        .map_err(|x| e(&x))?;
    let mut hs = snow::Builder::new(params)
        .local_private_key(&identity.private)
        .and_then(|b| b.build_initiator())
        .map_err(|x| e(&x))?;
    let mut buf = vec![0u8; 65535];
    let send = |tcp: &mut std::net::TcpStream, m: &[u8]| -> Result<(), String> {
        let mut framed = (m.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(m);
        tcp.write_all(&framed).map_err(|x| e(&x))
    };
    let n = hs.write_message(&[], &mut buf).map_err(|x| e(&x))?;
    send(&mut tcp, &buf[..n])?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).map_err(|x| e(&x))?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(len))];
    tcp.read_exact(&mut answer).map_err(|x| e(&x))?;
    hs.read_message(&answer, &mut buf).map_err(|x| e(&x))?;
    let n = hs.write_message(&[], &mut buf).map_err(|x| e(&x))?;
    send(&mut tcp, &buf[..n])?;
    let t = hs.into_transport_mode().map_err(|x| e(&x))?;
    Ok((tcp, t))
}

/// A `Hello` request, framed as on COM2.
fn hello_frame(seq: u32) -> Vec<u8> {
    use ipc_abi::mgmt::messages::{self, Request, KIND_REQUEST, VERSION};
    let mut payload = vec![0u8; 64];
    let n = messages::encode(&Request::Hello { version: VERSION }, &mut payload).unwrap_or(0);
    let mut frame = vec![0u8; ipc_abi::mgmt::HEADER_LEN + n];
    let header = ipc_abi::mgmt::FrameHeader {
        kind: KIND_REQUEST,
        flags: 0,
        seq,
    };
    let len = ipc_abi::mgmt::encode(header, &payload[..n], &mut frame).unwrap_or(0);
    frame.truncate(len);
    frame
}

/// Whether the machine closed `tcp` (rather than answer) within 20 s.
fn closed(tcp: &mut std::net::TcpStream) -> bool {
    let mut b = [0u8; 256];
    loop {
        match std::io::Read::read(tcp, &mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// A replayed message, a changed one, silence and garbage instead of a
/// handshake each end their connection, and nothing else: a client beside
/// them is served throughout.
fn wrong_and_replayed_messages(port: u16, keys: &crate::mgmt_keys::Keys) -> Result<(), String> {
    use std::io::Write;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let mut bystander = toolstack::Client::connect_tcp(&format!("127.0.0.1:{port}"), &keys.client)
        .map_err(|x| e(&x))?;
    let framed = |m: &[u8]| {
        let mut f = (m.len() as u16).to_be_bytes().to_vec();
        f.extend_from_slice(m);
        f
    };
    for what in ["replayed", "changed"] {
        let (mut tcp, mut t) = raw_session(port, &keys.client)?;
        let mut buf = vec![0u8; 65535];
        let n = t
            .write_message(&hello_frame(1), &mut buf)
            .map_err(|x| e(&x))?;
        let mut message = buf[..n].to_vec();
        if what == "replayed" {
            tcp.write_all(&framed(&message)).map_err(|x| e(&x))?;
            // Its answer comes (the first time the message counts).
            let mut len = [0u8; 2];
            std::io::Read::read_exact(&mut tcp, &mut len).map_err(|x| e(&x))?;
        } else {
            message[n / 2] ^= 1;
        }
        tcp.write_all(&framed(&message)).map_err(|x| e(&x))?;
        check(closed(&mut tcp), || {
            format!("a {what} message did not end its connection")
        })?;
        bystander
            .list()
            .map_err(|x| format!("beside a {what} message: {x}"))?;
    }
    // A connection that never says anything is dropped after 10 s.
    let mut idle = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|x| e(&x))?;
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|x| e(&x))?;
    let t = std::time::Instant::now();
    check(closed(&mut idle), || "an idle connection was kept".into())?;
    check(t.elapsed() >= Duration::from_secs(9), || {
        format!("an idle connection was dropped after {:?}", t.elapsed())
    })?;
    let mut garbage = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|x| e(&x))?;
    garbage
        .set_read_timeout(Some(Duration::from_secs(20)))
        .map_err(|x| e(&x))?;
    garbage.write_all(b"\x00\x05hello").map_err(|x| e(&x))?;
    check(closed(&mut garbage), || {
        "garbage did not end its connection".into()
    })?;
    bystander
        .list()
        .map_err(|x| format!("beside garbage: {x}"))?;
    Ok(())
}

/// Boots a machine whose domain 0 serves the protocol on COM2 and over TCP
/// (a free host port forwarded to it), with drvdom-net, console-dom and a
/// counting guest; returns the machine, COM2's socket and the host port.
fn boot_networked<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    keys: &crate::mgmt_keys::Keys,
) -> Result<(&'m mut Machine, std::path::PathBuf, u16), String> {
    let bundle = iso::bundle_with_files(&c.path("bundle.tar"), &[], &[], &keys.bundle_files())?;
    let port = free_port()?;
    let endpoint = iso::MGMT_ENDPOINT;
    let forward = Forward {
        udp: false,
        host_port: port,
        guest: endpoint.address.map(|b| b.to_string()).join("."),
        guest_port: endpoint.port,
    };
    let dom0 = format!("toolstack-domain mgmt=com2 {endpoint}");
    let guests = [
        CONSOLE_DOM,
        ("drvdom-net", iso::NET_DRIVER_LINE),
        ("counter", "counter count=1000000 pace_us=20000"),
    ];
    let (m, sock) = c
        .machine()
        .dom0(("toolstack-domain", &dom0))
        .guests(&guests)
        .bundle(bundle)
        .qemu(move |q| q.nic(&[forward]))
        .boot_managed(slot)?;
    m.wait_for(
        &format!(
            "toolstack: serving the management protocol on 10.0.2.9 port {}",
            endpoint.port
        ),
        BOOT,
    )?;
    Ok((m, sock, port))
}

/// Over TCP, through the real binary: `list`, `create` with an uploaded
/// image, `console`, `save` and `restore` work as on COM2; a client whose
/// key is not authorised gets a refusal (logged once however often it
/// tries) and the others are served; a replayed or changed message,
/// silence or garbage ends only its own connection; 20 clients at once each get correct
/// answers; a client killed mid-upload leaves no half-created domain; and
/// after drvdom-net crashes and is restarted, clients connect again.
fn the_management_protocol_runs_over_tcp_for_authorised_clients(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let keys = crate::mgmt_keys::ensure(&c.dir)?;
    let key = keys.client_file.clone();
    let (m, sock, port) = boot_networked(c, slot, &keys)?;
    expect_line(m, "[3] counter: 5")?;

    // list, create with an upload, console.
    let listed = names(port, &key)?;
    check(
        ["drvdom-net", "console-dom", "counter"]
            .iter()
            .all(|n| listed.iter().any(|l| l == n)),
        || format!("list over TCP: {listed:?}"),
    )?;
    let dir = c.path("up");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let mut image = std::fs::read(build::domain(&c.domains, "hello")).map_err(|e| e.to_string())?;
    image.resize(image.len().max(1 << 20), 0);
    std::fs::write(dir.join("big"), &image).map_err(|e| e.to_string())?;
    let cfg = dir.join("big.cfg");
    std::fs::write(&cfg, "name = \"big\"\nkernel = \"big\"\nmemory = 4\n")
        .map_err(|e| e.to_string())?;
    let cfg_path = cfg.to_str().unwrap_or("");
    let (code, out) = net_toolstack(port, &key, &["domain", "create", cfg_path])?;
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("created domain "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|_| code == 0)
        .ok_or_else(|| format!("create over TCP: {code} {out}"))?;
    expect_line(m, &format!("[{id}] hello from domain {id} (4096 KiB): big"))?;
    let (code, out) = net_toolstack(port, &key, &["domain", "console", "counter", "--no-follow"])?;
    check(code == 0 && out.contains("counter: 5\n"), || {
        format!("console over TCP: {code} {out}")
    })?;

    // save and restore: the counter counts on from where it was.
    let file = c.path("counter.xnlsave");
    let path = file.to_str().unwrap_or("");
    let (code, out) = net_toolstack(port, &key, &["domain", "save", "counter", path])?;
    check(code == 0 && out.contains("saved counter"), || {
        format!("save over TCP: {code} {out}")
    })?;
    let (code, out) = net_toolstack(port, &key, &["domain", "restore", path])?;
    let restored = out
        .lines()
        .find_map(|l| l.strip_prefix("restored domain "))
        .and_then(|n| n.trim().parse::<u32>().ok())
        .filter(|_| code == 0)
        .ok_or_else(|| format!("restore over TCP: {code} {out}"))?;
    m.wait_for(&format!("[{restored}] counter: "), BOOT)?;

    // An unauthorised client: refused, twice, logged once; others served.
    let stranger = c.path("stranger.key");
    let (code, out) =
        super::harness::toolstack(&sock, &["keygen", stranger.to_str().unwrap_or("")])?;
    check(code == 0, || format!("keygen: {code} {out}"))?;
    for attempt in 0..2 {
        let (code, out) = net_toolstack(port, &stranger, &["domain", "list"])?;
        check(code == 3 && out.contains("authorized_keys"), || {
            format!("an unauthorised client (attempt {attempt}): {code} {out}")
        })?;
    }
    let refused = |m: &Machine| {
        m.lines()
            .iter()
            .filter(|l| l.contains("refused a management client"))
            .count()
    };
    m.wait_for("refused a management client from 10.0.2.2", BOOT)?;
    names(port, &key)?;
    check(refused(m) == 1, || {
        format!("{} refusals logged for one key", refused(m))
    })?;

    wrong_and_replayed_messages(port, &keys)?;

    // A key file pinning another machine's key refuses this machine.
    let (_, other_machine) = toolstack::network::generate_keypair();
    let pinned_elsewhere = toolstack::network::Identity {
        private: keys.client.private,
        host: Some(other_machine),
    };
    match toolstack::Client::connect_tcp(&format!("127.0.0.1:{port}"), &pinned_elsewhere) {
        Err(toolstack::Error::Connect(m)) if m.contains("not the one this key file expects") => {}
        Err(e) => return Err(format!("a wrongly pinned machine: {e}")),
        Ok(_) => return Err("a client pinning another machine's key was connected".into()),
    }

    // 20 clients at once, each listing a few times.
    let expected = names(port, &key)?;
    let identity = keys.client.clone();
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let identity = identity.clone();
                let expected = expected.clone();
                s.spawn(move || -> Result<(), String> {
                    let address = format!("127.0.0.1:{port}");
                    let mut client = toolstack::Client::connect_tcp(&address, &identity)
                        .map_err(|e| format!("client {i}: {e}"))?;
                    for round in 0..3 {
                        let got: Vec<String> = client
                            .list()
                            .map_err(|e| format!("client {i} round {round}: {e}"))?
                            .into_iter()
                            .map(|d| d.name)
                            .collect();
                        check(got == expected, || {
                            format!("client {i} round {round}: {got:?}, not {expected:?}")
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a client panicked".into())))
            .collect()
    });
    for r in results {
        r?;
    }

    // A client killed mid-upload: no half-created domain. The real command
    // in a terminal, as a person runs it, killed once its progress bar
    // shows the upload under way (the largest image a domain may have).
    let mut big = image.clone();
    big.resize(ipc_abi::mgmt::MAX_IMAGE, 0);
    std::fs::write(dir.join("huge"), &big).map_err(|e| e.to_string())?;
    let huge_cfg = dir.join("huge.cfg");
    std::fs::write(
        &huge_cfg,
        "name = \"huge\"\nkernel = \"huge\"\nmemory = 24\n",
    )
    .map_err(|e| e.to_string())?;
    let line = format!(
        "{} --connect tcp://127.0.0.1:{port} --key {} domain create {}",
        build::target_dir().join("debug/toolstack").display(),
        key.display(),
        huge_cfg.display()
    );
    let terminal = crate::pty::Terminal::run(&line, &dir)?;
    terminal.wait_for("uploading [", Duration::from_secs(60))?;
    let shown = terminal.shown();
    drop(terminal);
    check(!shown.contains("100%"), || {
        format!("the 16 MiB upload was over before it could be interrupted: {shown:?}")
    })?;
    let after = names(port, &key)?;
    check(!after.iter().any(|n| n == "huge"), || {
        format!("a killed upload left a domain: {after:?}")
    })?;

    // drvdom-net crashes and is restarted: domain 0 reconnects its
    // interface and clients are served again.
    let (code, out) = super::harness::toolstack(&sock, &["domain", "crash", "drvdom-net"])?;
    check(code == 0, || format!("crash drvdom-net: {code} {out}"))?;
    expect_line(m, "toolstack: restarting drvdom-net")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match names(port, &key) {
            Ok(n) if n.iter().any(|x| x == "drvdom-net") => break,
            other if std::time::Instant::now() > deadline => {
                return Err(format!(
                    "no answer over TCP after drvdom-net's restart: {other:?}"
                ));
            }
            _ => std::thread::sleep(Duration::from_millis(500)),
        }
    }
    Ok(())
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![the_management_protocol_runs_over_tcp_for_authorised_clients,]
}
