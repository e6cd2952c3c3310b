//! The commands the README gives a user, run exactly as written, in a
//! terminal, from the workspace root: `cargo xtask run` with a person's
//! whole session at the machine, then every other `cargo xtask run` and
//! `cargo xtask image` example in the README with what its options promise.
//!
//! Owns: reading the examples out of `README.md` and knowing what each
//! option should show, so the README cannot drift from what works; an
//! example whose option this file does not know fails the test.

use super::harness::{check, Ctx};
use super::harness::{tests, Test};
use crate::build;
use crate::pty::Terminal;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A full boot under TCG on a loaded two-core machine, with every domain of
/// `cargo xtask run` up (a quiet one takes about ten seconds; `cargo xtask
/// test` has built everything before).
const UP: Duration = Duration::from_secs(180);
/// How long a user waits for an answer at the console.
const ANSWER: Duration = Duration::from_secs(30);

/// Ctrl-A X: QEMU's key for quitting, on its multiplexed terminal.
const QUIT: &[u8] = b"\x01x";

/// Every `cargo xtask run` uses the same host ports, socket and disk, as a
/// user's would: these tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn my_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The README's examples that start with `cargo xtask run` or `cargo xtask
/// image`: inline code and lines of shell blocks (less their `#` comments).
pub fn examples(readme: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut in_block = false;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block;
            continue;
        }
        let candidates: Vec<&str> = if in_block {
            vec![line.split(" #").next().unwrap_or("")]
        } else {
            line.split('`').skip(1).step_by(2).collect()
        };
        for c in candidates {
            let c = c.trim();
            if (c.starts_with("cargo xtask run") || c.starts_with("cargo xtask image"))
                && !found.iter().any(|f| f == c)
            {
                found.push(c.to_string());
            }
        }
    }
    found
}

/// What the `cmdline:` line shows for an option a README example passes.
fn effective(option: &str) -> Result<String, String> {
    let (key, value) = option.split_once('=').unwrap_or((option, ""));
    Ok(match (key, value) {
        ("noreboot" | "nosmp" | "noht" | "noacpi" | "watchdog", "") => format!("{key}=on"),
        ("dom0_mem", v) => {
            let (n, unit) = v.split_at(v.len() - 1);
            let n: u64 = n.parse().map_err(|_| format!("dom0_mem={v}?"))?;
            let kib = match unit {
                "M" => n * 1024,
                "G" => n * 1024 * 1024,
                "K" => n,
                _ => return Err(format!("dom0_mem={v}: unit?")),
            };
            format!("dom0_mem={kib}K")
        }
        ("tbuf_size" | "console" | "ifname", v) => format!("{key}={v}"),
        ("com1" | "com2", v) if v.split(',').count() == 4 => format!("{key}={v}"),
        _ => {
            return Err(format!(
                "the README passes {option:?}; say in systest/readme.rs what it shows"
            ))
        }
    })
}

/// A person's session with `cargo xtask run`, the README's first command:
/// the banner and every boot domain's lines with their `[domid]` prefixes
/// on the terminal, `list` typed at domain 0's console shell, the host
/// `toolstack` against the socket it printed, the web guest's page and UDP
/// echo at the addresses it printed, idle domains that stay idle, then
/// Ctrl-A X: QEMU has exited and the terminal is cooked again.
fn cargo_xtask_run_boots_the_machine_on_this_terminal(
    _c: &Ctx,
    _slot: &mut Option<crate::qemu::Machine>,
) -> Result<(), String> {
    let _turn = my_turn();
    let root = build::root();
    let mut t = Terminal::run("cargo xtask run", &root)?;
    session(&mut t, &root).map_err(|e| with_screen(&t, e))
}

fn session(t: &mut Terminal, root: &Path) -> Result<(), String> {
    let manage = hint(t, "xtask: management channel on ")?;
    let manage = manage
        .split_once(": ")
        .map(|(_, command)| command.to_string())
        .ok_or_else(|| format!("no command in the management hint {manage:?}"))?;
    // (The hint is the rest of the line after its marker: the command.)
    let network = hint(
        t,
        "xtask: management over the network, once drvdom-net runs: ",
    )?;
    let curl_cmd = hint_command(t, "(try curl ")?;
    let linux_curl = hint_command(t, "(try curl http://127.0.0.1:8081")?;
    let nc_cmd = hint_command(t, "(try echo ")?;
    // The machine, not QEMU's monitor, has the terminal.
    let first = t.wait_for_first(&["loaded by GRUB", "(qemu)"], UP)?;
    check(first == 0, || {
        "the terminal shows QEMU's monitor, not the machine's COM1".into()
    })?;
    let mut ids = Vec::new();
    for (who, says) in [
        ("domain 0", "toolstack:"),
        ("console-dom", "console-dom: COM1 is mine"),
        ("drvdom-blk", "drvdom-blk: serving kv"),
        ("drvdom-net", "drvdom-net: virtio-net at 00:05.0"),
        (
            "domain 0's network channel",
            "toolstack: serving the management protocol on 10.0.2.9 port 7070",
        ),
        ("hello", "greeting=from-the-boot-bundle"),
        ("kv", "kv: ready, "),
        ("web", "web: serving http on 10.0.2.15:80"),
        ("linux", "xenolith-linux: /init running on "),
        ("linux", "xenolith-linux: /dev/vda is mounted on /data"),
        ("linux", "xenolith-linux: httpd serves port 80"),
    ] {
        t.wait_for(says, UP)?;
        let id = prefix_of(&t.shown(), says)
            .ok_or_else(|| format!("{who}'s line {says:?} has no [domid] prefix"))?;
        ids.push((who, id));
    }
    check(ids[0].1 == 0, || {
        format!("domain 0 printed as [{}]", ids[0].1)
    })?;
    // QEMU put the terminal in raw mode for the guest (so getting it back
    // cooked at the end means something).
    check(!t.cooked()?, || {
        "the terminal is still cooked under QEMU".into()
    })?;

    // Domain 0's console shell has the keyboard first.
    let from = t.len();
    t.type_keys(b"list\r")?;
    let header = t.wait_for_after(from, "ID NAME", ANSWER)?;
    for name in ["drvdom-blk", "drvdom-net", "kv", "web", "linux"] {
        t.wait_for_after(header, &format!(" {name} "), ANSWER)?;
    }

    // Ctrl-A three times, again and again, as the README says (each typed
    // twice: QEMU's own Ctrl-A passes one on for two): kv takes `put` and
    // `get`, Linux's shell runs `uname -a`.
    let id_of = |who: &str| ids.iter().find(|(w, _)| *w == who).map(|&(_, id)| id);
    let (kv, linux) = (id_of("kv"), id_of("linux"));
    let mut answered = Vec::new();
    for _ in 0..16 {
        let from = t.len();
        t.type_keys(b"\x01\x01\x01\x01\x01\x01")?;
        let at = t.wait_for_after(from, "input now goes to domain ", ANSWER)?;
        // The number may not have come yet: its line's end is waited for.
        let deadline = std::time::Instant::now() + ANSWER;
        let rest = loop {
            let shown = t.shown();
            let rest = shown.get(at..).unwrap_or("");
            if let Some(end) = rest.find(['\r', '\n']) {
                break rest[..end].to_string();
            }
            if std::time::Instant::now() > deadline {
                return Err(format!("the focus line never ended: {rest:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let focus: Option<u32> = rest.trim().parse().ok();
        if focus.is_some() && focus == kv {
            let from = t.len();
            t.type_keys(b"put colour blue\r")?;
            t.wait_for_after(from, "kv: put colour", ANSWER)?;
            t.type_keys(b"get colour\r")?;
            t.wait_for_after(from, "kv: colour = blue", ANSWER)?;
            answered.push("kv");
        }
        if focus.is_some() && focus == linux {
            let from = t.len();
            t.type_keys(b"uname -a\r")?;
            let id = linux.unwrap_or(0);
            t.wait_for_after(from, &format!("[{id}] Linux "), ANSWER)?;
            answered.push("linux");
            break;
        }
    }
    check(answered == ["kv", "linux"], || {
        format!("Ctrl-A three times reached and was answered by {answered:?}")
    })?;

    // The host command as printed, over COM2 and over the network, then as
    // the README shows it (hello has said its greeting and powered off by now).
    for command in [
        manage.as_str(),
        network.as_str(),
        "cargo run -p toolstack -- domain list",
    ] {
        let listing = shell(command, root)?;
        for name in [
            "console-dom",
            "drvdom-blk",
            "drvdom-net",
            "kv",
            "web",
            "linux",
        ] {
            check(listing.contains(name), || {
                format!("`{command}` does not list {name}:\n{listing}")
            })?;
        }
    }
    idle_domains_stay_idle(&manage, root)?;
    // The machine is q35 behind its IOMMU, as the command says.
    let host = shell("cargo run -p toolstack -- host info", root)?;
    check(host.contains("dma:       on (Intel VT-d)"), || {
        format!("`toolstack host info` on `cargo xtask run`'s machine:\n{host}")
    })?;
    // After ten idle seconds every ring is healthy: requests a backend
    // holds by design (kv's console input read, web's receive buffers)
    // are not a stuck backend.
    let rings = shell("cargo run -p toolstack -- ring list", root)?;
    check(
        rings.contains("healthy") && !rings.contains("stuck") && rings.contains("net-rx"),
        || format!("`ring list` on an idle machine:\n{rings}"),
    )?;
    let page = shell(&curl_cmd, root)?;
    check(page.contains("requests served: "), || {
        format!("`{curl_cmd}` got {page:?}")
    })?;
    // Linux's page, through drvdom-net, shows its disk from drvdom-blk.
    let page = shell(&linux_curl, root)?;
    check(
        page.contains("in a Xenolith HVM domain") && page.contains("/data"),
        || format!("`{linux_curl}` got {page:?}"),
    )?;
    let echo = shell(&nc_cmd, root)?;
    check(echo == "hi\n", || format!("`{nc_cmd}` got {echo:?}"))?;

    t.type_keys(QUIT)?;
    let code = t.wait_exit(Duration::from_secs(30))?;
    check(code == 0, || format!("cargo xtask run exited with {code}"))?;
    check(t.cooked()?, || {
        "QEMU left the terminal raw (no echo, no line editing)".into()
    })
}

/// Over ten seconds in which nobody talks to the machine, no domain's CPU
/// time grows by more than 2% of the time (an idle domain blocks; one that
/// polls takes a host CPU from everything else). Domain 0 may use 5%: it
/// looks at every ring four times a second by design, and serves the
/// `domain list` that measures (CPU time is reported in 10 ms units, and a
/// loaded host stretches guest work).
fn idle_domains_stay_idle(list_command: &str, root: &Path) -> Result<(), String> {
    const WINDOW: Duration = Duration::from_secs(10);
    let before = cpu_seconds(&shell(list_command, root)?);
    std::thread::sleep(WINDOW);
    let after = cpu_seconds(&shell(list_command, root)?);
    let mut busy = Vec::new();
    for (name, was) in &before {
        let Some((_, now)) = after.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let used = now - was;
        let share = if name == "toolstack-domain" {
            0.05
        } else {
            0.02
        };
        if used > share * WINDOW.as_secs_f64() {
            busy.push(format!("{name} used {used:.2} s"));
        }
    }
    check(before.len() >= 5, || format!("domain list gave {before:?}"))?;
    check(busy.is_empty(), || {
        format!(
            "idle domains used CPU in {} s: {}",
            WINDOW.as_secs(),
            busy.join(", ")
        )
    })
}

/// `(name, TIME(s))` of each row of `toolstack domain list`.
fn cpu_seconds(listing: &str) -> Vec<(String, f64)> {
    let mut lines = listing.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let Some(col) = header.iter().position(|h| h.starts_with("TIME")) else {
        return Vec::new();
    };
    lines
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            Some((cells.get(1)?.to_string(), cells.get(col)?.parse().ok()?))
        })
        .collect()
}

/// Every other `cargo xtask run` and `cargo xtask image` example in the
/// README, run as written: each boots, and shows what its options promise.
fn every_cargo_xtask_example_in_the_readme_works(
    _c: &Ctx,
    _slot: &mut Option<crate::qemu::Machine>,
) -> Result<(), String> {
    let _turn = my_turn();
    let root = build::root();
    let readme = std::fs::read_to_string(root.join("README.md")).map_err(|e| e.to_string())?;
    let all = examples(&readme);
    check(all.iter().any(|e| e == "cargo xtask run"), || {
        format!("the README does not show `cargo xtask run` (found {all:?})")
    })?;
    let mut tried = 0;
    for example in all.iter().filter(|e| *e != "cargo xtask run") {
        let words = shell_words::split(example).map_err(|e| format!("{example}: {e}"))?;
        let result = if words[2] == "image" {
            image_example(example, &words[3..], &root)
        } else {
            run_example(example, &words[3..], &root)
        };
        result.map_err(|e| format!("README example `{example}`: {e}"))?;
        tried += 1;
    }
    check(tried >= 4, || {
        format!("only {tried} README examples besides the bare run: {all:?}")
    })
}

fn run_example(example: &str, args: &[String], root: &Path) -> Result<(), String> {
    let mut wants: Vec<(&str, String)> = Vec::new();
    let mut disk = None;
    let mut pairs = args.chunks(2);
    for pair in &mut pairs {
        let [flag, value] = pair else {
            return Err(format!("{pair:?}: a flag without a value"));
        };
        match flag.as_str() {
            "--cmdline" => {
                for option in value.split_whitespace() {
                    wants.push(("cmdline: ", effective(option)?));
                }
            }
            "--memory" => wants.push(("memory: usable ", value.clone())),
            "--smp" => wants.push(("smp: ", format!("smp: {value} CPUs running"))),
            "--accel" => check(value == "tcg", || {
                format!("--accel {value}: the suite runs where only TCG is sure to be")
            })?,
            "--disk" => {
                let path = root.join(value);
                let _ = std::fs::remove_file(&path);
                disk = Some((value.clone(), path));
            }
            other => return Err(format!("the test does not know what {other} should show")),
        }
    }
    let mut t = Terminal::run(example, root)?;
    let outcome = (|| {
        if let Some((as_given, _)) = &disk {
            t.wait_for(
                &format!("xtask: disk {as_given} is the virtio-blk disk"),
                UP,
            )?;
        }
        t.wait_for("xenolith: ready", UP)?;
        for (line, want) in &wants {
            let text = whole_line(&t, line)?;
            match *line {
                "memory: usable " => check(usable_matches(&text, want), || {
                    format!("--memory {want}: {text}")
                })?,
                _ => check(text.contains(want.as_str()), || {
                    format!("{want} not in {text:?}")
                })?,
            }
        }
        t.wait_for("kv: ready, ", UP)?;
        t.wait_for("web: serving http", UP)?;
        if let Some((_, path)) = &disk {
            let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            check(len == 64 << 20, || {
                format!("{} holds {len} bytes", path.display())
            })?;
        }
        t.type_keys(QUIT)?;
        let code = t.wait_exit(Duration::from_secs(30))?;
        check(code == 0, || format!("exited with {code}"))?;
        check(t.cooked()?, || "the terminal was left raw".into())
    })()
    .map_err(|e| with_screen(&t, e));
    if let Some((_, path)) = disk {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// Whether `memory: usable N KiB ...` is just under `want` (QEMU's syntax).
fn usable_matches(line: &str, want: &str) -> bool {
    let (n, unit) = want.split_at(want.len() - 1);
    let Ok(n) = n.parse::<u64>() else {
        return false;
    };
    let want_kib = match unit {
        "M" => n << 10,
        "G" => n << 20,
        _ => return false,
    };
    super::boot::parse_kib(line, "usable ")
        .is_some_and(|kib| kib <= want_kib && kib + 2048 >= want_kib)
}

fn image_example(example: &str, args: &[String], root: &Path) -> Result<(), String> {
    let mut out = None;
    let mut wants = Vec::new();
    for pair in args.chunks(2) {
        match pair {
            [flag, value] if flag == "--out" => out = Some(value.clone()),
            [flag, value] if flag == "--cmdline" => {
                for option in value.split_whitespace() {
                    wants.push(effective(option)?);
                }
            }
            other => return Err(format!("the test does not know {other:?}")),
        }
    }
    let as_given = out.ok_or("no --out")?;
    let out = root.join(&as_given);
    let _ = std::fs::remove_file(&out);
    let said = shell(example, root)?;
    check(said.contains(&format!("xtask: wrote {as_given}")), || {
        format!("it said {said:?}")
    })?;
    let outcome = (|| {
        let m = crate::qemu::Config::new(&out).spawn()?;
        let line = m.wait_for("cmdline: ", super::harness::BOOT)?;
        for want in &wants {
            check(line.contains(want.as_str()), || {
                format!("{want} not in {line}")
            })?;
        }
        m.wait_for("xenolith: ready", super::harness::BOOT)
            .map(drop)
    })();
    let _ = std::fs::remove_file(&out);
    outcome
}

/// The rest of the line the terminal shows starting with `start`.
fn hint(t: &Terminal, start: &str) -> Result<String, String> {
    let end = t.wait_for(start, UP)?;
    t.wait_for_after(end, "\n", UP)?;
    let shown = t.shown();
    Ok(shown[end..]
        .lines()
        .next()
        .unwrap_or("")
        .trim_end()
        .to_string())
}

/// The first whole line the terminal shows containing `text`.
fn whole_line(t: &Terminal, text: &str) -> Result<String, String> {
    let end = t.wait_for(text, UP)?;
    t.wait_for_after(end, "\n", UP)?;
    line_with(&t.shown(), text).ok_or_else(|| format!("no line with {text:?}"))
}

/// The command inside a hint `... (try COMMAND)`.
fn hint_command(t: &Terminal, marker: &str) -> Result<String, String> {
    let rest = hint(t, marker)?;
    let word = marker.trim_start_matches("(try ");
    Ok(format!("{word}{}", rest.trim_end_matches(')')))
}

/// The domain id in the `[N]` prefix of the first line containing `text`.
fn prefix_of(shown: &str, text: &str) -> Option<u32> {
    let line = line_with(shown, text)?;
    let rest = line.trim_start().strip_prefix('[')?;
    rest.split(']').next()?.parse().ok()
}

/// The first whole line of `shown` that contains `text`.
fn line_with(shown: &str, text: &str) -> Option<String> {
    shown
        .split(['\n', '\r'])
        .find(|l| l.contains(text))
        .map(str::to_string)
}

/// Runs `command` with `sh -c` in `dir` (another terminal of the user's);
/// its standard output, or why it failed.
fn shell(command: &str, dir: &Path) -> Result<String, String> {
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(dir)
        .env_remove("CARGO")
        .output()
        .map_err(|e| format!("`{command}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{command}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `error` with the last of what the terminal showed.
fn with_screen(t: &Terminal, error: String) -> String {
    let shown = t.shown();
    let tail: String = shown
        .chars()
        .rev()
        .take(6000)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("{error}\n--- the terminal showed (last 6000 characters) ---\n{tail}")
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        cargo_xtask_run_boots_the_machine_on_this_terminal,
        every_cargo_xtask_example_in_the_readme_works,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_come_from_shell_blocks_and_inline_code_once_each() {
        let readme = "```sh\ncargo xtask run     # boot\ncargo xtask test\n```\n\
                      Try `cargo xtask run --smp 2` or `cargo xtask image --out a.iso`;\n\
                      `cargo xtask run` again.\n";
        assert_eq!(
            examples(readme),
            [
                "cargo xtask run",
                "cargo xtask run --smp 2",
                "cargo xtask image --out a.iso"
            ]
        );
    }

    #[test]
    fn options_map_to_what_the_kernel_prints() {
        assert_eq!(effective("dom0_mem=128M").unwrap(), "dom0_mem=131072K");
        assert_eq!(effective("noreboot").unwrap(), "noreboot=on");
        assert_eq!(effective("tbuf_size=16").unwrap(), "tbuf_size=16");
        assert!(effective("frobnicate").is_err());
    }

    #[test]
    fn cpu_time_is_read_from_domain_list() {
        let listing = "ID   NAME      STATE   MEM(KiB) VCPUS    TIME(s) RESTARTS\n\
                       0    toolstack running   131072     1       0.20        0\n\
                       6    web       running     4096     1      12.50        0\n";
        assert_eq!(
            cpu_seconds(listing),
            [("toolstack".to_string(), 0.2), ("web".to_string(), 12.5)]
        );
    }

    #[test]
    fn prefixes_and_memory_are_read_from_terminal_lines() {
        let shown = "boot\r\n[3] drvdom-blk: serving kv\r\n";
        assert_eq!(prefix_of(shown, "serving kv"), Some(3));
        assert!(usable_matches("memory: usable 2096000 KiB", "2G"));
        assert!(!usable_matches("memory: usable 1000000 KiB", "2G"));
    }
}
