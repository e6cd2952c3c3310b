//! System tests of `toolstack domain save` and `domain restore`.

use super::harness::{check, expect_line, toolstack, Ctx, Machine};
use super::harness::{tests, Test, CONSOLE_DOM};

/// The numbers domain `dom` printed as `[dom] counter: N`, in order, from
/// COM1's line `from` on (a restored domain may get the slot, so the
/// console prefix, of the one it replaces: callers start after what the
/// saved one printed).
fn counts(m: &Machine, dom: u32, from: usize) -> Vec<u64> {
    let prefix = format!("[{dom}] counter: ");
    let lines = m.lines();
    lines[from.min(lines.len())..]
        .iter()
        .filter_map(|l| l.split_once(&prefix).map(|(_, n)| n.trim().parse().ok()))
        .flatten()
        .collect()
}

/// The id `toolstack` printed after `restored domain `.
fn restored_id(out: &str) -> Option<u32> {
    out.lines()
        .find_map(|l| l.strip_prefix("restored domain "))
        .and_then(|n| n.trim().parse().ok())
}

fn names(sock: &std::path::Path) -> Result<String, String> {
    let (code, list) = toolstack(sock, &["domain", "list"])?;
    check(code == 0, || format!("domain list: {code} {list}"))?;
    Ok(list)
}

/// A guest counting in memory (one line every 20 ms) is saved to a file on
/// the host and destroyed; restored from the file, it counts on from the
/// saved count, every number once, under its new id, and its console
/// history holds what it printed before the save. A truncated, a
/// corrupted and a foreign file are refused with a clear message and
/// create nothing. Saved with `--keep`, it stays paused (a restore beside
/// it is refused, as its name is taken) and, unpaused, counts on as itself.
/// It has 16 MiB, of which it wrote 64 KiB: the save passes over thousands
/// of zero pages (more than one `DomainPageRead` scans) to reach its stack,
/// and the restored copy's memory sums as the original's did.
fn a_saved_guest_restored_counts_on(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        CONSOLE_DOM,
        (
            "counter",
            "counter memory=16M dirty_kib=64 count=100000 pace_us=20000",
        ),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config)
        .boot_managed(slot)?;
    let summed = expect_line(m, "[2] counter: memory ")?;
    let sum_of = |line: &str| {
        line.split("counter: memory ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .map(str::to_string)
    };
    let sum = sum_of(&summed).ok_or_else(|| format!("no sum in {summed:?}"))?;
    let file = c.path("counter.xnlsave");
    let path = file.to_str().unwrap_or("");
    let (code, out) = toolstack(&sock, &["domain", "save", "counter", path])?;
    check(
        code == 0 && out.contains("saved counter (domain 2)"),
        || format!("save: {code} {out}"),
    )?;
    expect_line(m, "toolstack: domain 2 saved; destroying it")?;
    check(
        names(&sock)?.lines().all(|l| !l.contains("counter")),
        || "the saved domain still runs".into(),
    )?;

    // Bad files: refused, nothing created.
    let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
    let bad = c.path("bad.xnlsave");
    let bad_path = bad.to_str().unwrap_or("");
    let mut flipped = bytes.clone();
    let at = flipped.len() / 2;
    flipped[at] ^= 0x40;
    let image =
        std::fs::read(crate::build::domain(&c.domains, "counter")).map_err(|e| e.to_string())?;
    for (what, content, message) in [
        ("truncated", &bytes[..bytes.len() * 2 / 3], "truncated"),
        ("corrupted", &flipped[..], "corrupted"),
        ("foreign", &image[..], "not a Xenolith save file"),
    ] {
        std::fs::write(&bad, content).map_err(|e| e.to_string())?;
        let (code, out) = toolstack(&sock, &["domain", "restore", bad_path])?;
        check(code != 0 && out.contains(message), || {
            format!("restore of a {what} file: {code} {out}")
        })?;
    }
    // A well-formed file asking for hardware: domain 0 refuses it (the
    // host only checks the format), and nothing is left of the attempt.
    std::fs::write(&bad, hardware_file(&bytes)?).map_err(|e| e.to_string())?;
    let (code, out) = toolstack(&sock, &["domain", "restore", bad_path])?;
    check(code != 0 && out.contains("holding hardware"), || {
        format!("restore of a file asking for I/O ports: {code} {out}")
    })?;
    check(
        names(&sock)?.lines().all(|l| !l.contains("counter")),
        || "a bad file created a domain".into(),
    )?;

    // What it printed before the save, read only now: console-dom may put
    // its last lines out a moment after the save ended.
    let before = counts(m, 2, 0);
    let last = *before.last().ok_or("no count before the save")?;
    // From here on a counter line is the restored domain's (which may
    // print before domain 0's line saying it was restored: it runs once
    // unpaused).
    let seen = m.lines().len();
    let (code, out) = toolstack(&sock, &["domain", "restore", path])?;
    let id = restored_id(&out)
        .filter(|_| code == 0)
        .ok_or_else(|| format!("restore: {code} {out}"))?;
    expect_line(m, &format!("[{id}] counter: {}", last + 20))?;
    let resummed = expect_line(m, &format!("[{id}] counter: memory "))?;
    check(sum_of(&resummed).as_deref() == Some(sum.as_str()), || {
        format!("its memory summed {sum} before the save; restored: {resummed:?}")
    })?;
    let after = counts(m, id, seen);
    let expected: Vec<u64> = (last + 1..=last + 20).collect();
    check(after.get(..20) == Some(&expected[..]), || {
        format!(
            "after the restore it counted {:?}, before it stopped at {last}",
            &after[..after.len().min(25)]
        )
    })?;
    // Its console history carried over: the restored domain's console shows
    // what it printed before the save too (`--no-follow` ends once caught
    // up, though the domain goes on printing).
    let (code, out) = toolstack(
        &sock,
        &["domain", "console", &id.to_string(), "--no-follow"],
    )?;
    let printed = |n: u64| out.lines().any(|l| l.trim_end() == format!("counter: {n}"));
    check(
        code == 0 && printed(1) && printed(last) && printed(last + 1),
        || {
            format!(
                "console history after the restore: {code} {}",
                &out[..out.len().min(400)]
            )
        },
    )?;
    check(before.windows(2).all(|w| w[1] == w[0] + 1), || {
        "a count was lost before the save".into()
    })?;

    // --keep: left paused; a restore beside it is refused; unpaused, it counts on.
    let (code, out) = toolstack(&sock, &["domain", "save", "--keep", "counter", path])?;
    check(code == 0 && out.contains("kept paused"), || {
        format!("save --keep: {code} {out}")
    })?;
    let list = names(&sock)?;
    check(
        list.lines()
            .any(|l| l.contains("counter") && l.contains("paused")),
        || format!("not left paused: {list}"),
    )?;
    let kept = *counts(m, id, seen).last().ok_or("no count")?;
    let (code, out) = toolstack(&sock, &["domain", "restore", path])?;
    check(code != 0, || {
        format!("a restore beside the kept domain: {code} {out}")
    })?;
    check(
        names(&sock)?
            .lines()
            .filter(|l| l.contains("counter"))
            .count()
            == 1,
        || "a refused restore left a domain".into(),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "unpause", "counter"])?;
    check(code == 0, || format!("unpause: {code} {out}"))?;
    expect_line(m, &format!("[{id}] counter: {}", kept + 5))?;
    Ok(())
}

/// What vCPU 1 of a `counter helper` in domain `dom` counted, line by
/// line, from COM1's line `from` on (as [`counts`]).
fn helper_counts(m: &Machine, dom: u32, from: usize) -> Vec<u64> {
    let prefix = format!("[{dom}] counter: helper ");
    let lines = m.lines();
    lines[from.min(lines.len())..]
        .iter()
        .filter_map(|l| l.split_once(&prefix))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// A guest with two vCPUs (vCPU 1 counting in memory on its own) is saved
/// and restored: both vCPUs' registers travel, and in the copy vCPU 0
/// counts on from the saved count while vCPU 1 goes on from where it was
/// stopped (its count keeps rising from at least what was printed before).
fn a_guest_with_two_vcpus_is_saved_and_both_go_on(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        CONSOLE_DOM,
        (
            "counter",
            "counter count=100000 pace_us=20000 vcpus=2 helper",
        ),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.smp(2))
        .boot_managed(slot)?;
    expect_line(m, "[2] counter: helper")?;
    let (code, list) = toolstack(&sock, &["domain", "vcpu-list", "counter"])?;
    let vcpus = list.lines().filter(|l| l.starts_with("counter ")).count();
    check(code == 0 && vcpus == 2, || {
        format!("vcpu-list: {code} {list}")
    })?;
    let file = c.path("two-vcpus.xnlsave");
    let path = file.to_str().unwrap_or("");
    let (code, out) = toolstack(&sock, &["domain", "save", "counter", path])?;
    check(code == 0, || format!("save: {code} {out}"))?;
    expect_line(m, "toolstack: domain 2 saved; destroying it")?;
    // Gone, and what it printed last put out (console-dom may write its
    // last lines a moment after the save ended) before it is read.
    check(
        names(&sock)?.lines().all(|l| !l.contains("counter")),
        || "the saved domain still runs".into(),
    )?;
    let last = *counts(m, 2, 0).last().ok_or("no count before the save")?;
    let helped = *helper_counts(m, 2, 0).last().ok_or("no helper count")?;
    // From here on a counter line is the restored domain's.
    let seen = m.lines().len();
    let (code, out) = toolstack(&sock, &["domain", "restore", path])?;
    let id = restored_id(&out)
        .filter(|_| code == 0)
        .ok_or_else(|| format!("restore: {code} {out}"))?;
    expect_line(m, &format!("[{id}] counter: {}", last + 30))?;
    let after = counts(m, id, seen);
    let expected: Vec<u64> = (last + 1..=last + 30).collect();
    let helper = helper_counts(m, id, seen);
    check(
        after.get(..30) == Some(&expected[..])
            && helper.len() >= 2
            && helper[0] >= helped
            && helper.windows(2).all(|w| w[1] > w[0]),
        || {
            format!(
                "before: count {last}, helper {helped}; after: {:?}, helper {helper:?}",
                &after[..after.len().min(35)]
            )
        },
    )
}

/// A guest writing and reading its disk through drvdom-blk every 20 ms is
/// saved and restored: its disk reconnects (as after a drvdom-blk restart)
/// and its writes and reads go on and come back right.
fn a_restored_guest_keeps_using_its_disk(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let image = c.path("disk.img");
    super::block::disk_image(&image)?;
    let guests = [
        CONSOLE_DOM,
        ("drvdom-blk", super::block::SERVING),
        ("disk-tool", "cycler cycles=100000 disk=right,xvda,w"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config.disk(&image))
        .boot_managed(slot)?;
    expect_line(m, "[3] disk-tool: cycle 5 ok")?;
    let file = c.path("cycler.xnlsave");
    let path = file.to_str().unwrap_or("");
    let (code, out) = toolstack(&sock, &["domain", "save", "cycler", path])?;
    check(code == 0 && out.contains("2 devices"), || {
        format!("save: {code} {out}")
    })?;
    let last = m
        .lines()
        .iter()
        .rev()
        .find_map(|l| {
            l.split_once("[3] disk-tool: cycle ")
                .map(|(_, r)| r.to_string())
        })
        .ok_or("no cycle before the save")?;
    let n: u64 = last
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("bad cycle line")?;
    let (code, out) = toolstack(&sock, &["domain", "restore", path])?;
    let id = restored_id(&out)
        .filter(|_| code == 0)
        .ok_or_else(|| format!("restore: {code} {out}"))?;
    expect_line(m, &format!("[{id}] block: disk 0 reconnected to domain 2"))?;
    for k in n + 1..=n + 5 {
        expect_line(m, &format!("[{id}] disk-tool: cycle {k} ok"))?;
    }
    check(!m.lines().iter().any(|l| l.contains("FAILED")), || {
        "a cycle failed".into()
    })
}

/// `saved` with its configuration line given COM1's I/O ports: a file in
/// the right format that no toolstack domain may restore.
fn hardware_file(saved: &[u8]) -> Result<Vec<u8>, String> {
    use ipc_abi::save::{self, Record};
    let mut rest = save::check_file_header(saved).map_err(|e| e.to_string())?;
    let mut out = save::file_header().to_vec();
    let mut buf = vec![0u8; save::RECORD_HEADER_LEN + save::RECORD_MAX];
    while !rest.is_empty() {
        let (record, after) = save::next_record(rest).map_err(|e| e.to_string())?;
        let line;
        let record = match record {
            Record::Header {
                name,
                memory_kib,
                vcpus,
                line: l,
                image_len,
                domain,
                boot,
            } => {
                line = format!("{l} ioports=0x3f8-0x3ff");
                Record::Header {
                    name,
                    memory_kib,
                    vcpus,
                    line: &line,
                    image_len,
                    domain,
                    boot,
                }
            }
            other => other,
        };
        let n = save::encode(&record, &mut buf).ok_or("cannot encode")?;
        out.extend_from_slice(&buf[..n]);
        rest = after;
    }
    Ok(out)
}

/// A domain that never waits through the runtime cannot suspend: its save
/// is refused after 5 s with a clear message, no file is left, and it runs
/// on untouched (when it finally waits, at its end, and suspends late, it
/// is let go on and shuts down as it would have).
fn a_domain_that_never_waits_is_not_saved_and_runs_on(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        CONSOLE_DOM,
        ("spinner", "spinner seconds=10 then_sleep_ms=100"),
    ];
    let (m, sock) = c
        .machine()
        .guests(&guests)
        .qemu(|config| config)
        .boot_managed(slot)?;
    expect_line(m, "toolstack: domain 1 serves device 1:0 of domain 2")?;
    let file = c.path("spinner.xnlsave");
    let path = file.to_str().unwrap_or("");
    let (code, out) = toolstack(&sock, &["domain", "save", "spinner", path])?;
    check(
        code == 1 && out.contains("did not suspend within 5 s"),
        || format!("save of a domain that never waits: {code} {out}"),
    )?;
    check(
        !file.exists() && !file.with_extension("partial").exists(),
        || "a refused save left a file".into(),
    )?;
    expect_line(m, "[2] spinner: ")?;
    // Its sleep obeys the request still pending: it suspends, and is let go on.
    expect_line(m, "[2] spinner: slept 100 ms")?;
    expect_line(m, "toolstack: domain 2 (spinner) shut down (reason 0)")?;
    Ok(())
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        a_saved_guest_restored_counts_on,
        a_guest_with_two_vcpus_is_saved_and_both_go_on,
        a_domain_that_never_waits_is_not_saved_and_runs_on,
        a_restored_guest_keeps_using_its_disk,
    ]
}
