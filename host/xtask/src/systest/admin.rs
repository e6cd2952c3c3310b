//! System tests of the administrator's verbs beyond the lifecycle
//! (`domain rename`, `sched-credit`, `dump-core`, `mem-set`, the device
//! verbs), through the real `toolstack` binary on a running machine.

use super::harness::{check, expect_line, tests, toolstack, toolstack_json, Ctx, Machine, Test};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Each domain's CPU time in ticks, by name, from `domain list --json`.
fn cpu_ticks(sock: &Path) -> Result<HashMap<String, u64>, String> {
    let (code, out) = toolstack(sock, &["domain", "list", "--json"])?;
    let list: Vec<serde_json::Value> = serde_json::from_str(out.trim())
        .map_err(|e| format!("domain list --json ({code}): {e}: {out}"))?;
    Ok(list
        .iter()
        .filter_map(|d| Some((d["name"].as_str()?.to_string(), d["cpu_ticks"].as_u64()?)))
        .collect())
}

/// The CPU ticks each of `a` and `b` got over `span` of the clock.
pub(super) fn ticks_over(
    sock: &Path,
    a: &str,
    b: &str,
    span: Duration,
) -> Result<(u64, u64), String> {
    let before = cpu_ticks(sock)?;
    let start = Instant::now();
    while start.elapsed() < span {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = cpu_ticks(sock)?;
    let delta = |n: &str| -> Result<u64, String> {
        let (x, y) = (before.get(n), after.get(n));
        x.zip(y)
            .map(|(x, y)| y.saturating_sub(*x))
            .ok_or_else(|| format!("{n} is missing from domain list: {after:?}"))
    };
    Ok((delta(a)?, delta(b)?))
}

/// Two spinners on one CPU: `sched-credit` shows the default weight, a
/// weight of 128 against 256 gives a third of the CPU instead of half, a
/// cap of 10 holds a spinner near a tenth, and values out of range change
/// nothing. Then `rename`: later commands know the domain only by its new
/// name, and a taken or malformed name is refused.
fn sched_credit_and_rename_change_a_running_domain(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        ("spinner", "light seconds=100000"),
        ("spinner", "heavy seconds=100000"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|q| q.smp(1))
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let (code, out) = toolstack(&sock, &["domain", "sched-credit"])?;
    check(
        code == 0
            && out
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["light", "1", "256", "0"]),
        || format!("sched-credit: {code} {out}"),
    )?;
    let (code, out) = toolstack(
        &sock,
        &["domain", "sched-credit", "light", "--weight", "128"],
    )?;
    check(code == 0, || {
        format!("sched-credit light --weight 128: {code} {out}")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "sched-credit", "light", "--json"])?;
    let shown: serde_json::Value =
        serde_json::from_str(out.trim()).map_err(|e| format!("{e}: {out}"))?;
    check(
        code == 0 && shown[0]["weight"] == 128 && shown[0]["cap"] == 0,
        || format!("sched-credit light --json: {code} {out}"),
    )?;
    let (light, heavy) = ticks_over(&sock, "light", "heavy", Duration::from_secs(4))?;
    let ratio = heavy as f64 / light.max(1) as f64;
    check((1.6..=2.5).contains(&ratio), || {
        format!("weight 256 got {heavy} ticks, weight 128 {light}: {ratio:.2}, want 2")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "sched-credit", "heavy", "-c", "10"])?;
    check(code == 0, || {
        format!("sched-credit heavy -c 10: {code} {out}")
    })?;
    let (light, heavy) = ticks_over(&sock, "light", "heavy", Duration::from_secs(4))?;
    let share = heavy as f64 / (light + heavy).max(1) as f64;
    check(share <= 0.15, || {
        format!(
            "capped at 10%, heavy got {heavy} ticks against light's {light} ({:.0}%)",
            share * 100.0
        )
    })?;
    for bad in [
        &["light", "--weight", "0"][..],
        &["light", "--cap", "101"],
        &["--weight", "5"],
    ] {
        let args: Vec<&str> = ["domain", "sched-credit"]
            .iter()
            .chain(bad)
            .copied()
            .collect();
        let (code, out) = toolstack(&sock, &args)?;
        check(code != 0 && out.contains("refused"), || {
            format!("{args:?}: {code} {out}")
        })?;
    }
    let (_, out) = toolstack(&sock, &["domain", "sched-credit", "light", "--json"])?;
    check(out.contains("\"weight\":128,\"cap\":0"), || {
        format!("a refused change changed something: {out}")
    })?;

    let (code, out) = toolstack(&sock, &["domain", "rename", "light", "feather"])?;
    check(code == 0, || format!("rename light feather: {code} {out}"))?;
    expect_line(m, "domain 1 (light) is now named feather")?;
    let (code, out) = toolstack(&sock, &["domain", "info", "feather"])?;
    check(code == 0 && out.contains("name:    feather"), || {
        format!("info feather: {code} {out}")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "info", "light"])?;
    check(code == 1 && out.contains("no domain named light"), || {
        format!("info light: {code} {out}")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "rename", "feather", "heavy"])?;
    check(
        code != 0 && out.contains("another domain is named heavy"),
        || format!("rename to a taken name: {code} {out}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "rename", "feather", "two words"])?;
    check(code != 0 && out.contains("printable ASCII"), || {
        format!("rename to a malformed name: {code} {out}")
    })?;
    let (_, list) = toolstack(&sock, &["domain", "list"])?;
    check(
        list.contains("feather") && !list.contains("light") && list.contains("heavy"),
        || format!("list after the renames: {list}"),
    )
}

/// `domain dump-core` of a running spinner: the file is an ELF core that
/// `gdb`, given the domain's image, opens with its name, its registers
/// and its memory (the bytes at its RIP and its stack read, and its frame
/// is named from the image's symbols); the domain runs on afterwards.
fn dump_core_writes_a_core_gdb_opens_and_the_domain_runs_on(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[("spinner", "spinner seconds=100000")])
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let core = c.path("spinner.core");
    let (code, out) = toolstack(
        &sock,
        &[
            "domain",
            "dump-core",
            "spinner",
            core.to_str().unwrap_or(""),
        ],
    )?;
    check(
        code == 0 && out.contains("dumped spinner (domain 1) to") && out.contains("1 vCPUs"),
        || format!("dump-core: {code} {out}"),
    )?;
    expect_line(m, "toolstack: domain 1 dumped")?;
    let before = cpu_ticks(&sock)?.get("spinner").copied().unwrap_or(0);
    let image = super::harness::build::domain(&c.domains, "spinner");
    let gdb = std::process::Command::new("gdb")
        .args(["-batch", "-nx"])
        .args(["-ex", "info registers rip rsp"])
        .args(["-ex", "bt 1"])
        .args(["-ex", "x/4xb $pc"])
        .args(["-ex", "x/2gx $sp"])
        .arg(&image)
        .arg(&core)
        .output()
        .map_err(|e| format!("gdb: {e}"))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&gdb.stdout),
        String::from_utf8_lossy(&gdb.stderr)
    );
    check(
        said.contains("Core was generated by `spinner")
            && said.contains("#0  ")
            && said.contains(" in ")
            && said.lines().any(|l| l.starts_with("rip "))
            && said
                .lines()
                .any(|l| l.starts_with("0x") && l.contains(":\t0x"))
            && !said.contains("Cannot access memory"),
        || format!("gdb on the core: {said}"),
    )?;
    // It runs on: its CPU time grows.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = cpu_ticks(&sock)?.get("spinner").copied().unwrap_or(0);
        if now > before + 10 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the spinner did not run on after the dump ({before} -> {now} ticks)"
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A domain's `memory_kib` and `max_kib`, from `domain info --json`.
fn memory_of(sock: &Path, name: &str) -> Result<(u64, u64), String> {
    let v = toolstack_json(sock, &["domain", "info", name, "--json"])?;
    Ok((
        v["memory_kib"].as_u64().unwrap_or(0),
        v["max_kib"].as_u64().unwrap_or(0),
    ))
}

/// The machine's free memory in KiB, from `host info`.
fn free_kib(sock: &Path) -> Result<u64, String> {
    let (_, info) = toolstack(sock, &["host", "info"])?;
    info.lines()
        .find_map(|l| l.strip_prefix("free:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no free: line in host info: {info}"))
}

/// `domain mem-set` shrinks and grows a running domain that checks every
/// word of its data meanwhile (created with `maxmem` above `memory`, so
/// it starts ballooned down); the machine gets back exactly what was
/// given; above the maximum (and after `mem-max` lowers it) is refused;
/// a domain that never waits through the runtime gets the timeout answer
/// and keeps its memory.
fn mem_set_shrinks_and_grows_a_running_domain_and_a_stubborn_one_times_out(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[
            (
                "balloon-check",
                "balloon-check memory=2M maxmem=4M data_kib=256",
            ),
            ("spinner", "stubborn memory=2M seconds=100000"),
        ])
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    expect_line(
        m,
        "[1] balloon-check: holding 2048 KiB, balloon 2048 KiB, data intact",
    )?;
    check(memory_of(&sock, "balloon-check")? == (2048, 4096), || {
        "created with maxmem 4M and memory 2M, it should hold 2048 of 4096 KiB".into()
    })?;
    let free_before = free_kib(&sock)?;
    for (size, kib) in [("1m", 1024), ("3072k", 3072), ("4", 4096), ("2m", 2048)] {
        let (code, out) = toolstack(&sock, &["domain", "mem-set", "balloon-check", size])?;
        check(code == 0, || format!("mem-set {size}: {code} {out}"))?;
        check(memory_of(&sock, "balloon-check")?.0 == kib, || {
            format!("after mem-set {size} it does not hold {kib} KiB")
        })?;
        expect_line(
            m,
            &format!(
                "[1] balloon-check: holding {kib} KiB, balloon {} KiB, data intact",
                4096 - kib
            ),
        )?;
    }
    // Back at 2 MiB: the machine has exactly what it had (at 2 MiB too).
    let free_after = free_kib(&sock)?;
    check(free_after == free_before, || {
        format!("free memory was {free_before} KiB at 2 MiB, is {free_after} KiB at 2 MiB again")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "mem-set", "balloon-check", "5m"])?;
    check(
        code != 0 && out.contains("outside what it may hold"),
        || format!("mem-set above the maximum: {code} {out}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "mem-max", "balloon-check", "3m"])?;
    check(code == 0, || format!("mem-max 3m: {code} {out}"))?;
    let (code, out) = toolstack(&sock, &["domain", "mem-set", "balloon-check", "4m"])?;
    check(code != 0 && out.contains("3072 KiB"), || {
        format!("mem-set above the lowered maximum: {code} {out}")
    })?;
    check(memory_of(&sock, "balloon-check")? == (2048, 3072), || {
        "refused changes changed something".into()
    })?;
    let (code, out) = toolstack(
        &sock,
        &["domain", "mem-set", "stubborn", "1m", "--timeout", "3"],
    )?;
    check(
        code != 0 && out.contains("holds 2048 KiB after 3 s") && out.contains("did not give back"),
        || format!("mem-set of a domain that never waits: {code} {out}"),
    )?;
    check(memory_of(&sock, "stubborn")?.0 == 2048, || {
        "the stubborn domain's memory changed".into()
    })
}

/// What hotplug-check writes to sector `n` of its disk `device`.
fn written_sector(device: u32, n: u64) -> Vec<u8> {
    (0..32u32)
        .flat_map(|row| {
            let mut r = n.to_le_bytes().to_vec();
            r.extend(device.to_le_bytes());
            r.extend(row.to_le_bytes());
            r
        })
        .collect()
}

/// The number of answered writes in hotplug-check's line about a detached disk.
fn answered_writes(line: &str) -> Result<u64, String> {
    line.split(" after ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no count in {line:?}"))
}

/// Whether the image holds each of `count` answered writes of disk
/// `device`, whose virtual disk starts at sector `start`.
fn writes_on_image(image: &Path, start: u64, device: u32, count: u64) -> Result<(), String> {
    let bytes = std::fs::read(image).map_err(|e| format!("{}: {e}", image.display()))?;
    for n in 0..count {
        let at = ((start + n) * 512) as usize;
        check(
            bytes.get(at..at + 512) == Some(&written_sector(device, n)[..]),
            || format!("disk {device}'s answered write {n} (of {count}) is not on the image"),
        )?;
    }
    Ok(())
}

/// `domain block-attach`/`block-detach` and `network-attach`/`network-
/// detach` through the real binary, on a guest that writes its own disk
/// all along: an attached disk appears in the guest (its program is told)
/// and is written; its detach fails what was waiting and every later
/// request, and every write it answered is on the host's image; a disk
/// attached read-only refuses writes; an attached interface's frames reach
/// another guest through the switch, and after its detach nothing more
/// goes out. Refused requests (a taken name or MAC, a virtual disk nobody
/// serves, a malformed entry, a driver domain) change nothing.
fn devices_attach_to_and_detach_from_a_running_guest_while_it_writes(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    super::block::disk_image(&image)?;
    let guests = [
        (
            "drvdom-blk",
            "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=own=0+16384 vdisk=extra=16384+4096",
        ),
        ("drvdom-net", crate::iso::NET_DRIVER_LINE),
        (
            "net-tool",
            "listener memory=2M vif=mac=02:00:00:00:00:01 listen",
        ),
        ("hotplug-check", "hotplug-check memory=4M disk=own,xvda,w"),
    ];
    let (m, sock) = c
        .machine()
        .cmdline("ifname=dummy")
        .guests(&guests)
        .qemu(|q| q.disk(&image))
        .boot_managed(slot)?;
    expect_line(m, "[4] hotplug-check: ready with 1 disk(s)")?;
    let run = |args: &[&str]| toolstack(&sock, args);
    let devices = |kind: &str| -> Result<Vec<serde_json::Value>, String> {
        let list = toolstack_json(&sock, &["domain", kind, "hotplug-check", "--json"])?;
        Ok(list.as_array().cloned().unwrap_or_default())
    };

    let (code, out) = run(&["domain", "block-attach", "hotplug-check", "extra,xvdb,w"])?;
    check(code == 0, || format!("block-attach: {code} {out}"))?;
    expect_line(m, "[4] hotplug-check: disk 1 connected, 4096 sectors")?;
    let disks = devices("block-list")?;
    check(
        disks.len() == 2
            && disks[1]["name"] == "xvdb"
            && disks[1]["target"] == "extra"
            && disks[1]["mode"] == "w"
            && disks[1]["connected"] == true,
        || format!("block-list after the attach: {disks:?}"),
    )?;
    for (args, why) in [
        (
            ["block-attach", "hotplug-check", "extra,xvdb,w"],
            "it already has xvdb",
        ),
        (
            ["block-attach", "hotplug-check", "nosuch,xvdc,w"],
            "no block driver domain serves a virtual disk named nosuch",
        ),
        (
            ["block-attach", "hotplug-check", "extra,sda,w"],
            "a disk is TARGET,VDEV,MODE",
        ),
        (
            ["block-attach", "drvdom-blk", "extra,xvdc,w"],
            "a driver domain's",
        ),
        (
            ["block-detach", "hotplug-check", "xvdz"],
            "it has no disk xvdz",
        ),
        (
            ["network-attach", "hotplug-check", "mac=02:00:00:00:00:01"],
            "02:00:00:00:00:01 is another interface's MAC",
        ),
        (
            ["network-attach", "hotplug-check", "mac=03:00:00:00:00:07"],
            "a unicast MAC",
        ),
        (
            [
                "network-attach",
                "hotplug-check",
                "mac=02:00:00:00:00:08,mtu=20000",
            ],
            "mtu=N (68 to 16370",
        ),
        (
            ["network-detach", "hotplug-check", "02:00:00:00:00:01"],
            "it has no interface 02:00:00:00:00:01",
        ),
    ] {
        let mut full = vec!["domain"];
        full.extend(args);
        let (code, out) = run(&full)?;
        check(code != 0 && out.contains(why), || {
            format!("{args:?} should be refused with {why:?}: {code} {out}")
        })?;
    }
    check(devices("block-list")?.len() == 2, || {
        "a refused request changed the disks".into()
    })?;
    check(devices("network-list")?.is_empty(), || {
        "a refused request gave an interface".into()
    })?;

    // It writes xvdb meanwhile; the detach comes while it does.
    let (code, out) = run(&["domain", "block-detach", "hotplug-check", "xvdb"])?;
    check(code == 0, || format!("block-detach: {code} {out}"))?;
    let gone = expect_line(m, "[4] hotplug-check: disk 1 detached after ")?;
    check(gone.ends_with("a write now: Err(Detached)"), || {
        format!("after the detach: {gone}")
    })?;
    let written = answered_writes(&gone)?;
    check(written > 0, || {
        format!("no write to xvdb was answered: {gone}")
    })?;
    writes_on_image(&image, 16384, 1, written)?;
    let disks = devices("block-list")?;
    check(disks.len() == 1 && disks[0]["name"] == "xvda", || {
        format!("block-list after the detach: {disks:?}")
    })?;

    // Attached again, read-only: connected, and its writes refused.
    let (code, out) = run(&["domain", "block-attach", "hotplug-check", "extra,xvdb,r"])?;
    check(code == 0, || format!("block-attach r: {code} {out}"))?;
    let refused = expect_line(m, "[4] hotplug-check: disk 1 write 0 failed: ")?;
    check(refused.ends_with("Unsupported"), || {
        format!("a write to the read-only disk: {refused}")
    })?;

    // An interface, with an MTU as a vif entry gives one: its frame
    // reaches the listener through the switch, and the guest and
    // drvdom-net both have its MTU.
    let (code, out) = run(&[
        "domain",
        "network-attach",
        "hotplug-check",
        "mac=02:00:00:00:00:10,mtu=4082",
    ])?;
    check(code == 0, || format!("network-attach: {code} {out}"))?;
    expect_line(
        m,
        "[4] hotplug-check: interface 0 connected as 02:00:00:00:00:10; MTU 4082; sent attached: Ok(())",
    )?;
    expect_line(
        m,
        "[2] drvdom-net: domain 4 vif 0 joins the switch as 02:00:00:00:00:10 with MTU 4082",
    )?;
    expect_line(m, "[3] net-tool: frame from 02:00:00:00:00:10: attached")?;
    let vifs = devices("network-list")?;
    check(
        vifs.len() == 1
            && vifs[0]["name"] == "02:00:00:00:00:10"
            && vifs[0]["connected"] == true
            && vifs[0]["mtu"] == 4082,
        || format!("network-list after the attach: {vifs:?}"),
    )?;
    let (code, out) = run(&[
        "domain",
        "network-detach",
        "hotplug-check",
        "02:00:00:00:00:10",
    ])?;
    check(code == 0, || format!("network-detach: {code} {out}"))?;
    let gone = expect_line(m, "[4] hotplug-check: interface 0 detached")?;
    check(gone.contains("sending now: Err("), || {
        format!("a send after the detach: {gone}")
    })?;
    check(devices("network-list")?.is_empty(), || {
        "network-list after the detach".into()
    })?;
    // A second interface (its MAC made from the name) gets through; the
    // detached one's last frame, sent before it, never did.
    let (code, out) = run(&["domain", "network-attach", "hotplug-check"])?;
    check(code == 0, || {
        format!("network-attach (no MAC): {code} {out}")
    })?;
    let second = expect_line(m, "[4] hotplug-check: interface 1 connected as ")?;
    check(second.contains("; MTU 1500; "), || {
        format!("an interface attached without an MTU: {second}")
    })?;
    let mac = second
        .split(" as ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or("?")
        .to_string();
    expect_line(m, &format!("[3] net-tool: frame from {mac}: attached"))?;
    check(
        !m.lines().iter().any(|l| l.contains("after-detach")),
        || "a frame went out after its interface was detached".into(),
    )?;

    // Its own disk was written all along: every answered write is there.
    let (code, out) = run(&["domain", "block-detach", "hotplug-check", "xvda"])?;
    check(code == 0, || format!("block-detach xvda: {code} {out}"))?;
    let own = expect_line(m, "[4] hotplug-check: disk 0 detached after ")?;
    let written_own = answered_writes(&own)?;
    check(written_own > written, || {
        format!("xvda took {written_own} writes, fewer than xvdb's {written}: {own}")
    })?;
    writes_on_image(&image, 0, 0, written_own)
}

/// A domain whose balloon gave memory back is saved and restored: the
/// restored domain holds what it held (not every page of its heap, as it
/// did before the fix), with its data intact, and its balloon takes every
/// page back when asked (the pages it held are its own again).
fn a_ballooned_domain_restores_holding_what_it_held(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[(
            "balloon-check",
            "balloon-check memory=2M maxmem=4M data_kib=256",
        )])
        .boot_managed(slot)?;
    expect_line(
        m,
        "[1] balloon-check: holding 2048 KiB, balloon 2048 KiB, data intact",
    )?;
    let (code, out) = toolstack(&sock, &["domain", "mem-set", "balloon-check", "1m"])?;
    check(code == 0, || format!("mem-set 1m: {code} {out}"))?;
    let file = c.path("ballooned.xnlsave");
    let path = file.to_str().unwrap_or("");
    let (code, out) = toolstack(&sock, &["domain", "save", "balloon-check", path])?;
    check(code == 0, || format!("save: {code} {out}"))?;
    let (code, out) = toolstack(&sock, &["domain", "restore", path])?;
    check(code == 0, || format!("restore: {code} {out}"))?;
    // Created with room for its maximum, it gives back at once what its
    // balloon held when saved.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = memory_of(&sock, "balloon-check")?;
        if now == (1024, 4096) {
            break;
        }
        check(Instant::now() < deadline, || {
            format!("the restored domain holds {now:?} KiB (now, most), not 1024 of 4096")
        })?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out) = toolstack(&sock, &["domain", "mem-set", "balloon-check", "4m"])?;
    check(code == 0, || {
        format!("mem-set 4m after the restore: {code} {out}")
    })?;
    // Restored as domain 1 again (a new generation); it said the same
    // once at boot, before its balloon first inflated.
    m.wait_for_nth(
        "[1] balloon-check: holding 4096 KiB, balloon 0 KiB, data intact",
        2,
        Duration::from_secs(60),
    )
    .map(drop)
}

/// Each vCPU's state of domain `name`, in order, from `vcpu-list --json`.
fn vcpu_states(sock: &Path, name: &str) -> Result<Vec<String>, String> {
    let records = toolstack_json(sock, &["domain", "vcpu-list", name, "--json"])?;
    Ok(records
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v["state"].as_str().unwrap_or("?").to_string())
        .collect())
}

/// `domain vcpu-set` through the real binary: a four-vCPU domain taken
/// down to two (vCPUs 2 and 3 are down in `vcpu-list`), up to three
/// (vCPU 2 runs again), refusals outside 1 to its `vcpus` change nothing,
/// and a domain whose program never looks gets the timeout answer.
fn vcpu_set_takes_vcpus_offline_and_online_and_a_stubborn_domain_times_out(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[
            ("vcpu-check", "vcpu-check memory=2M vcpus=4"),
            (
                "spinner",
                "stubborn memory=2M vcpus=2 helpers=1 seconds=100000",
            ),
        ])
        .qemu(|q| q.smp(2))
        .boot_managed(slot)?;
    expect_line(m, "[1] vcpu-check: 4 vCPUs online")?;
    expect_line(m, "[2] spinner: vCPU 1 up")?;
    let up = |n: usize| {
        (0..4)
            .map(|i| if i < n { "up" } else { "down" }.to_string())
            .collect::<Vec<_>>()
    };
    let seen = |states: Vec<String>| {
        states
            .into_iter()
            .map(|s| if s == "down" { s } else { "up".into() })
            .collect::<Vec<_>>()
    };
    check(seen(vcpu_states(&sock, "vcpu-check")?) == up(4), || {
        "all four vCPUs should be up at first".into()
    })?;
    for n in [2usize, 3, 1, 4] {
        let (code, out) = toolstack(&sock, &["domain", "vcpu-set", "vcpu-check", &n.to_string()])?;
        check(code == 0, || format!("vcpu-set {n}: {code} {out}"))?;
        let states = vcpu_states(&sock, "vcpu-check")?;
        check(seen(states.clone()) == up(n), || {
            format!("after vcpu-set {n}: {states:?}")
        })?;
        expect_line(m, &format!("[1] vcpu-check: asked for {n} vCPUs"))?;
    }
    for n in ["0", "5"] {
        let (code, out) = toolstack(&sock, &["domain", "vcpu-set", "vcpu-check", n])?;
        check(code != 0 && out.contains("1 to 4 vCPUs"), || {
            format!("vcpu-set {n} should be refused: {code} {out}")
        })?;
    }
    check(seen(vcpu_states(&sock, "vcpu-check")?) == up(4), || {
        "a refused vcpu-set changed something".into()
    })?;
    let (code, out) = toolstack(
        &sock,
        &["domain", "vcpu-set", "stubborn", "1", "--timeout", "2"],
    )?;
    check(
        code != 0 && out.contains("has 2 vCPUs online after 2 s"),
        || format!("vcpu-set of a domain that never looks: {code} {out}"),
    )
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        sched_credit_and_rename_change_a_running_domain,
        dump_core_writes_a_core_gdb_opens_and_the_domain_runs_on,
        mem_set_shrinks_and_grows_a_running_domain_and_a_stubborn_one_times_out,
        devices_attach_to_and_detach_from_a_running_guest_while_it_writes,
        vcpu_set_takes_vcpus_offline_and_online_and_a_stubborn_domain_times_out,
        a_ballooned_domain_restores_holding_what_it_held,
    ]
}
