//! System tests of domain 0 and the host `toolstack` command: the boot
//! bundle, the management protocol, policies, shutdown, many domains,
//! clients that leave half-way.

use super::harness::*;
use crate::iso::{self, Module};
use std::path::Path;
use std::time::Duration;

fn boot_bundle_auto_configs_start_in_order_and_bad_ones_start_nothing(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let hello = build::domain(&c.domains, "hello");
    let auto = [
        ("20-second.cfg", "name = \"second\"\nkernel = \"hello\"\nmemory = 1\n"),
        ("10-first.cfg", "name = \"first\"\nkernel = \"hello\"\nmemory = 1\ncmdline = \"from=bundle\"\ncolour = \"blue\"\n"),
        ("30-bad.cfg", "name = \"bad\"\nkernel = \"hello\"\nmemory = 0\n"),
        ("40-nokernel.cfg", "name = \"nok\"\nkernel = \"missing\"\n"),
        ("50-syntax.cfg", "name = \"broken\n"),
    ];
    let tar = iso::bundle(&c.path("bundle.tar"), &auto, &[("hello", &hello)])?;
    let mods = [
        Module {
            path: build::domain(&c.domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        },
        Module {
            path: tar,
            cmdline: "bundle".into(),
        },
    ];
    let m = boot(&c.qemu(&c.iso("", &mods)?), slot)?;
    let (first, _) = m.wait_for_nth("toolstack: started first as domain", 1, BOOT)?;
    let (second, _) = m.wait_for_nth("toolstack: started second as domain", 1, BOOT)?;
    check(first < second, || {
        "auto/ configurations did not start in name order".into()
    })?;
    expect_line(
        m,
        "toolstack: warning: auto/10-first.cfg:5: colour: unknown key, ignored",
    )?;
    expect_line(m, "toolstack: auto/30-bad.cfg:3: memory: 0 is out of range")?;
    expect_line(
        m,
        "toolstack: auto/40-nokernel.cfg: kernel: no image named missing in the boot bundle",
    )?;
    expect_line(
        m,
        "toolstack: auto/50-syntax.cfg:1: name: unterminated string",
    )?;
    let hello = expect_line(m, "hello from domain 1")?;
    check(hello.contains("from=bundle"), || {
        format!("the configuration's cmdline is missing: {hello}")
    })?;
    expect_line(m, "toolstack: all domains have stopped")?;
    let started = m
        .lines()
        .iter()
        .filter(|l| l.contains("toolstack: started "))
        .count();
    check(started == 2, || {
        format!("{started} domains started; only the two good configurations may start")
    })
}

fn toolstack_command(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[("survivor", "survivor")])
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    expect_line(m, "[1] survivor: heartbeat 1")?;
    let (code, list) = toolstack(&sock, &["domain", "list"])?;
    check(
        code == 0
            && list.contains("survivor")
            && list.contains("running")
            && list.contains("toolstack-domain"),
        || format!("list: {code} {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "pause", "1"])?;
    check(code == 0, || format!("pause: {code} {out}"))?;
    let (_, list) = toolstack(&sock, &["domain", "list", "--json"])?;
    check(
        list.contains("\"name\":\"survivor\",\"state\":\"paused\""),
        || format!("not paused: {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "unpause", "1"])?;
    check(code == 0, || format!("unpause: {code} {out}"))?;
    // Garbage on the channel changes nothing: the next request is served.
    {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut s, b"XNM1\x01garbage that is not a frame \x00\xff\xfe")
            .map_err(|e| e.to_string())?;
    }
    let (code, info) = toolstack(&sock, &["host", "info"])?;
    check(code == 0 && info.contains("domains:   2"), || {
        format!("host info: {code} {info}")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "pause", "42"])?;
    check(code == 1 && out.contains("no such domain"), || {
        format!("pause 42: {code} {out}")
    })?;
    // Create from a file, the image uploaded from beside it.
    let image = std::fs::read(build::domain(&c.domains, "survivor")).map_err(|e| e.to_string())?;
    std::fs::write(c.path("survivor"), &image).map_err(|e| e.to_string())?;
    std::fs::write(c.path("trunc"), &image[..100]).map_err(|e| e.to_string())?;
    let cfg = c.path("made.cfg");
    std::fs::write(&cfg, "name = \"made\"\nkernel = \"survivor\"\nmemory = 1\n")
        .map_err(|e| e.to_string())?;
    let before = toolstack(&sock, &["domain", "list"])?.1;
    let (code, out) = toolstack(
        &sock,
        &[
            "domain",
            "create",
            cfg.to_str().unwrap_or(""),
            "cmdline=period_ms=50",
        ],
    )?;
    check(code == 0 && out.starts_with("created domain "), || {
        format!("create: {code} {out}")
    })?;
    let id: u32 = out
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("no id")?;
    expect_line(m, &format!("[{id}] survivor: heartbeat 1"))?;
    // Bad input: refused with a clear error, and nothing changes.
    let free = |sock: &Path| -> Result<String, String> {
        let (_, info) = toolstack(sock, &["host", "info"])?;
        info.lines()
            .find(|l| l.starts_with("free:"))
            .map(str::to_string)
            .ok_or_else(|| format!("no free line in host info: {info}"))
    };
    let free_before = free(&sock)?;
    std::fs::write(
        c.path("zero.cfg"),
        "name = \"zero\"\nkernel = \"survivor\"\nmemory = 0\n",
    )
    .map_err(|e| e.to_string())?;
    let zero = c.path("zero.cfg");
    let (code, out) = toolstack(&sock, &["domain", "create", zero.to_str().unwrap_or("")])?;
    check(
        code == 2 && out.contains("zero.cfg:3: memory: 0 is out of range"),
        || format!("memory = 0: {code} {out}"),
    )?;
    std::fs::write(
        c.path("trunc.cfg"),
        "name = \"trunc\"\nkernel = \"trunc\"\nmemory = 1\n",
    )
    .map_err(|e| e.to_string())?;
    let trunc = c.path("trunc.cfg");
    let (code, out) = toolstack(&sock, &["domain", "create", trunc.to_str().unwrap_or("")])?;
    check(code == 1 && out.contains("could not be created"), || {
        format!("truncated image: {code} {out}")
    })?;
    expect_line(m, "image refused: truncated")?;
    let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 1 && out.contains("could not be created"), || {
        format!("duplicate name: {code} {out}")
    })?;
    let bad = |name: &str, text: &str| -> Result<(i32, String), String> {
        let path = c.path(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        toolstack(&sock, &["domain", "create", path.to_str().unwrap_or("")])
    };
    let (code, out) = bad(
        "huge.cfg",
        "name = \"huge\"\nkernel = \"survivor\"\nmemory = 16384\n",
    )?;
    check(code == 1 && out.contains("could not be created"), || {
        format!("more memory than is free: {code} {out}")
    })?;
    let (code, out) = bad("syntax.cfg", "name = \"broken\nkernel = \"survivor\"\n")?;
    check(
        code == 2 && out.contains("syntax.cfg:1: name: unterminated string"),
        || format!("syntax error: {code} {out}"),
    )?;
    let (code, out) = bad(
        "unknown.cfg",
        "name = \"odd\"\nkernel = \"missing-image\"\nmemroy = 4\n",
    )?;
    check(
        code != 0 && out.contains("unknown.cfg:3: memroy: unknown key, ignored"),
        || format!("unknown key: {code} {out}"),
    )?;
    let free_after = free(&sock)?;
    check(free_after == free_before, || {
        format!("failed creations changed free memory: {free_before} / {free_after}")
    })?;
    let after = toolstack(&sock, &["domain", "list"])?.1;
    check(after.lines().count() == before.lines().count() + 1, || {
        format!("bad creations changed the list:\n{before}\n{after}")
    })?;
    let (code, dmesg) = toolstack(&sock, &["host", "dmesg"])?;
    check(
        code == 0 && dmesg.contains("toolstack: serving the management protocol"),
        || format!("dmesg: {code} {dmesg}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "destroy", "1"])?;
    check(code == 0, || format!("destroy: {code} {out}"))?;
    let (_, list) = toolstack(&sock, &["domain", "list"])?;
    check(!list.contains("survivor"), || {
        format!("destroyed domain still listed: {list}")
    })?;
    let (code, out) = toolstack(Path::new("/nonexistent.sock"), &["domain", "list"])?;
    check(code == 3 && out.contains("cannot connect"), || {
        format!("no machine: {code} {out}")
    })
}

fn policies_destroy_or_preserve_and_info_shows_the_crash(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let auto = [
        ("10-keep.cfg", "name = \"keep\"\nkernel = \"crasher\"\nmemory = 1\ncmdline = \"fault=ud2\"\non_crash = \"preserve\"\n"),
        ("20-gone.cfg", "name = \"gone\"\nkernel = \"hello\"\nmemory = 1\non_poweroff = \"destroy\"\n"),
        ("30-quoted.cfg", "name = \"quoted\"\nkernel = \"crasher\"\nmemory = 1\ncmdline = \"fault=panic_quoted\"\non_crash = \"preserve\"\n"),
    ];
    let images = [
        ("crasher", build::domain(&c.domains, "crasher")),
        ("hello", build::domain(&c.domains, "hello")),
    ];
    let images: Vec<(&str, &Path)> = images.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let tar = iso::bundle(&c.path("bundle.tar"), &auto, &images)?;
    let (m, sock) = c.machine().guests(&[]).bundle(tar).boot_managed(slot)?;
    expect_line(m, "toolstack: domain 1 (keep) crashed: vector 6")?;
    expect_line(m, "toolstack: destroyed domain 2 (gone) as its policy says")?;
    let (code, info) = toolstack(&sock, &["domain", "info", "keep"])?;
    check(
        code == 0
            && info.contains("state:   crashed")
            && info.contains("crash:   vector 6 error 0x0 at rip 0x4"),
        || format!("info keep: {code} {info}"),
    )?;
    let (code, list) = toolstack(&sock, &["domain", "list"])?;
    check(
        code == 0 && list.contains("keep") && !list.contains("gone"),
        || format!("list: {code} {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "info", "gone"])?;
    check(code == 1 && out.contains("no domain named gone"), || {
        format!("info gone: {code} {out}")
    })?;
    json_keeps_any_string_whole(m, &sock)
}

/// `--json` records are made by a JSON library: a crash message with
/// quotes, a backslash, a tab, a newline, an escape sequence and DEL
/// comes back whole from `domain info --json`, and `domain list --json`
/// and `vcpu-list --json` parse as JSON.
fn json_keeps_any_string_whole(m: &mut Machine, sock: &Path) -> Result<(), String> {
    expect_line(m, "toolstack: domain 3 (quoted) crashed")?;
    let said = "said \"no\" \\ then\tleft\nfor \u{1b}[31mred\u{7f} at ";
    let (code, out) = toolstack(sock, &["domain", "info", "quoted", "--json"])?;
    let info: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("domain info --json is not JSON ({e}): {out:?}"))?;
    let crash = info["crash"].as_str().unwrap_or_default();
    check(
        code == 0
            && info["state"] == "crashed"
            && crash.starts_with(&format!("its own report: {said}")),
        || format!("domain info --json: {code} {info}"),
    )?;
    let (code, out) = toolstack(sock, &["host", "info", "--json"])?;
    let host: serde_json::Value = serde_json::from_str(out.trim())
        .map_err(|e| format!("host info --json is not JSON ({e}): {out:?}"))?;
    check(
        code == 0 && host["domains"].as_u64().is_some() && host["version"].is_string(),
        || format!("host info --json: {code} {out}"),
    )?;
    for args in [
        &["domain", "list", "--json"][..],
        &["domain", "vcpu-list", "--json"],
    ] {
        let (code, out) = toolstack(sock, args)?;
        let records: Vec<serde_json::Value> = serde_json::from_str(out.trim())
            .map_err(|e| format!("{args:?} is not a JSON array ({e}): {out:?}"))?;
        check(
            code == 0 && records.iter().any(|r| r["name"] == "quoted"),
            || format!("{args:?}: {code} {out}"),
        )?;
    }
    Ok(())
}

fn shutdown_stops_a_willing_domain_and_destroys_one_that_ignores_it(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[
            ("survivor", "willing"),
            ("spinner", "stubborn seconds=600"),
            ("survivor", "bystander"),
        ])
        .boot_managed(slot)?;
    expect_line(m, "[3] survivor: heartbeat 1")?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "willing", "--wait"])?;
    check(code == 0 && out.contains("is shutdown"), || {
        format!("shutdown willing: {code} {out}")
    })?;
    expect_line(m, "toolstack: domain 1 (willing) shut down (reason 0)")?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "stubborn", "--wait"])?;
    check(code == 0 && out.contains("is destroyed"), || {
        format!("shutdown stubborn: {code} {out}")
    })?;
    expect_line(
        m,
        "toolstack: domain 2 (stubborn) ignored its shutdown request; destroyed",
    )?;
    // `--all` reaches only the domains still running: here just the bystander.
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "--all", "--wait"])?;
    check(code == 0 && out.trim() == "domain 3 is shutdown", || {
        format!("shutdown --all: {code} {out}")
    })?;
    expect_line(m, "toolstack: domain 3 (bystander) shut down (reason 0)")?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown"])?;
    check(code != 0 && out.contains("<DOMAIN>"), || {
        format!("shutdown without a domain: {code} {out}")
    })
}

fn host_shutdown_stops_every_domain_then_powers_off(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[
            ("survivor", "one"),
            ("survivor", "two"),
            ("spinner", "stubborn seconds=600"),
        ])
        .boot_managed(slot)?;
    expect_line(m, "[2] survivor: heartbeat 1")?;
    let (code, out) = toolstack(&sock, &["host", "shutdown"])?;
    check(code == 0, || format!("host shutdown: {code} {out}"))?;
    expect_line(m, "toolstack: domain 1 (one) shut down (reason 0)")?;
    expect_line(m, "toolstack: domain 2 (two) shut down (reason 0)")?;
    expect_line(
        m,
        "toolstack: domain 3 (stubborn) ignored its shutdown request; destroyed",
    )?;
    expect_line(m, "toolstack: every domain has stopped; powering off")?;
    let status = m.wait_exit(BOOT)?;
    check(status.success(), || format!("QEMU exited with {status}"))
}

fn fifty_domains_are_created_listed_and_shut_down_together(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    const COUNT: usize = 50;
    let survivor = build::domain(&c.domains, "survivor");
    let tar = iso::bundle(
        &c.path("bundle.tar"),
        &[],
        &[("survivor", survivor.as_path())],
    )?;
    let (m, sock) = c.machine().guests(&[]).bundle(tar).boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    // The configurations name the bundle's image: nothing is uploaded.
    let dir = c.path("many");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for i in 1..=COUNT {
        let cfg = dir.join(format!("g{i}.cfg"));
        let text = format!(
            "name = \"g{i}\"\nkernel = \"survivor\"\nmemory = 1\ncmdline = \"period_ms=5000\"\n"
        );
        std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
        let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
        check(
            code == 0 && out.trim() == format!("created domain {i}"),
            || format!("create g{i}: {code} {out}"),
        )?;
    }
    let (code, list) = toolstack(&sock, &["domain", "list", "--json"])?;
    let running = list.matches("\"state\":\"running\"").count();
    check(code == 0 && running == COUNT + 1, || {
        format!(
            "{running} running (want {} with domain 0): {list}",
            COUNT + 1
        )
    })?;
    check(
        (1..=COUNT).all(|i| list.contains(&format!("\"name\":\"g{i}\""))),
        || format!("a domain is missing from the list: {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "--all", "--wait"])?;
    // Each obeyed (the toolstack logs a clean shutdown) and then, as a
    // created domain's default `on_poweroff` says, was destroyed.
    let stopped = out.lines().filter(|l| l.starts_with("domain ")).count();
    check(code == 0 && stopped == COUNT, || {
        format!("shutdown --all: {code} {stopped} stopped: {out}")
    })?;
    for i in 1..=COUNT {
        expect_line(
            m,
            &format!("toolstack: domain {i} (g{i}) shut down (reason 0)"),
        )?;
    }
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("ignored its shutdown request")),
        || "a domain had to be destroyed".into(),
    )?;
    let (code, list) = toolstack(&sock, &["domain", "list", "--json"])?;
    check(
        code == 0 && list.matches("\"state\":\"running\"").count() == 1,
        || format!("still running after shutdown --all: {list}"),
    )?;
    kernel_stacks_kept_a_quarter_free(m, &sock)
}

/// After fifty domains were created and destroyed (the kernel's deepest
/// paths: a domain's 20 KiB record goes through them): every CPU's kernel
/// stack kept at least a quarter of itself never used (debug key `k`).
fn kernel_stacks_kept_a_quarter_free(m: &mut Machine, sock: &Path) -> Result<(), String> {
    let (code, out) = toolstack(sock, &["host", "debug-keys", "k"])?;
    check(code == 0, || format!("debug-keys k: {code} {out}"))?;
    expect_line(m, "debug-keys 'k': CPU 0 kernel stack: deepest use ")?;
    let lines: Vec<String> = m
        .lines()
        .iter()
        .filter(|l| l.contains("debug-keys 'k': CPU "))
        .cloned()
        .collect();
    for line in lines {
        let used = number_after(&line, "deepest use ").ok_or("no figure")?;
        let size = number_after(&line, " KiB of ").ok_or("no size")?;
        check(used > 0 && used * 4 <= size * 3, || {
            format!("a kernel stack came within a quarter of its end: {line}")
        })?;
    }
    Ok(())
}

fn clients_gone_mid_upload_or_mid_frame_or_two_at_once_disturb_nothing(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    use toolstack::Client;
    let (m, sock) = c.machine().guests(&[]).boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let err = |e: toolstack::Error| e.to_string();
    // What a user would compare: who exists, in what state, and free memory.
    type Snapshot = (Vec<(u32, String, String, u64)>, u64);
    let snapshot = |client: &mut Client| -> Result<Snapshot, String> {
        let list = client.list().map_err(err)?;
        let list = list
            .into_iter()
            .map(|d| (d.id, d.name, d.state, d.memory_kib))
            .collect();
        Ok((list, client.host_info().map_err(err)?.free_kib))
    };
    let before = snapshot(&mut Client::connect(&sock).map_err(err)?)?;
    let image = std::fs::read(build::domain(&c.domains, "survivor")).map_err(|e| e.to_string())?;
    let config = "name = \"late\"\nkernel = \"survivor\"\nmemory = 1\n";
    // A client that goes away after the first piece of its image.
    {
        let mut a = Client::connect(&sock).map_err(err)?;
        a.create_begin(config, image.len(), false).map_err(err)?;
        a.upload(0, &image[..8192]).map_err(err)?;
    }
    // One that goes away in the middle of a frame promising 16 KiB.
    let half_len = 20 + 100;
    {
        let mut raw = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        let mut half = Vec::from(*b"XNM1\x01\x01\x00\x00\x07\x00\x00\x00");
        half.extend_from_slice(&16384u32.to_le_bytes());
        half.extend_from_slice(&[0u8; 4 + 100]);
        std::io::Write::write_all(&mut raw, &half).map_err(|e| e.to_string())?;
        // Stay connected long enough for the machine to take every byte (QEMU
        // drops what it has not read when a client leaves); nothing may answer.
        raw.set_read_timeout(Some(Duration::from_millis(1500)))
            .map_err(|e| e.to_string())?;
        let mut answer = [0u8; 64];
        let got = std::io::Read::read(&mut raw, &mut answer);
        check(
            matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            || format!("a half frame was answered: {got:?}"),
        )?;
    }
    // The next client is served, sees exactly what was there before, and
    // cannot continue the abandoned upload.
    let mut b = Client::connect(&sock).map_err(err)?;
    expect_line(
        m,
        &format!(
            "toolstack: dropped {} bytes of a management frame its client never finished",
            half_len
        ),
    )?;
    let after = snapshot(&mut b)?;
    check(after == before, || {
        format!("abandoned clients changed the machine:\n{before:?}\n{after:?}")
    })?;
    let late = b.upload(8192, &image[8192..16384]);
    check(matches!(late, Err(toolstack::Error::Refused(_))), || {
        format!("the abandoned upload could be continued: {late:?}")
    })?;
    let id = b.create(config, Some(&image), false).map_err(err)?;
    expect_line(m, &format!("[{}] survivor: heartbeat 1", id & 0xffff))?;
    // Two clients at once: the second waits its turn (QEMU serves one
    // connection on COM2 at a time) and both see the same, whole answers.
    let seen_by_b = snapshot(&mut b)?;
    let second = std::thread::spawn({
        let sock = sock.clone();
        move || -> Result<Vec<String>, String> {
            let mut c = Client::connect(&sock).map_err(|e| e.to_string())?;
            let list = c.list().map_err(|e| e.to_string())?;
            Ok(list.into_iter().map(|d| d.name).collect())
        }
    });
    for _ in 0..3 {
        check(snapshot(&mut b)?.0 == seen_by_b.0, || {
            "the first client's answers changed while a second waited".into()
        })?;
    }
    drop(b);
    let names = second
        .join()
        .map_err(|_| "the second client panicked".to_string())??;
    check(
        names.iter().any(|n| n == "late") && names.len() == seen_by_b.0.len(),
        || format!("the second client saw {names:?}"),
    )
}

fn the_toolstack_command_lists_and_controls_domains_over_com2(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    toolstack_command(c, slot)
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        boot_bundle_auto_configs_start_in_order_and_bad_ones_start_nothing,
        the_toolstack_command_lists_and_controls_domains_over_com2,
        policies_destroy_or_preserve_and_info_shows_the_crash,
        shutdown_stops_a_willing_domain_and_destroys_one_that_ignores_it,
        host_shutdown_stops_every_domain_then_powers_off,
        fifty_domains_are_created_listed_and_shut_down_together,
        clients_gone_mid_upload_or_mid_frame_or_two_at_once_disturb_nothing,
    ]
}
