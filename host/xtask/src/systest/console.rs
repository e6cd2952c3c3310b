//! System tests of consoles seen through the toolstack: `toolstack domain
//! console` (history, live output, input, Ctrl-]), `domain create -c`, and
//! the console shell of domain 0.

use super::harness::{boot, tests, Test, CONSOLE_DOM};
use super::harness::{build, check, expect_line, toolstack, Ctx, Machine, BOOT};
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A running `toolstack` command whose output is read line by line.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Session {
    fn start(sock: &Path, args: &[&str]) -> Result<Session, String> {
        let mut child = Command::new(build::target_dir().join("debug/toolstack"))
            .arg("--connect")
            .arg(sock)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run toolstack: {e}"))?;
        let (tx, lines) = mpsc::channel();
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Session {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        })
    }

    fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin is closed")?;
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("typing into toolstack: {e}"))
    }

    /// Waits for an output line containing `marker`.
    fn expect(&mut self, marker: &str) -> Result<(), String> {
        if self.seen.iter().any(|l| l.contains(marker)) {
            return Ok(());
        }
        let deadline = Instant::now() + BOOT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(marker);
                    self.seen.push(line);
                    if hit {
                        return Ok(());
                    }
                }
                Err(_) => break,
            }
        }
        Err(format!(
            "toolstack never printed {marker:?}; it printed:\n{}",
            self.seen.join("\n")
        ))
    }

    /// Waits for the command to end by itself; its exit code and whole output.
    fn finish(mut self) -> Result<(i32, String), String> {
        let deadline = Instant::now() + BOOT;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                // The reader threads end with the pipes.
                while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(2)) {
                    self.seen.push(line);
                }
                return Ok((status.code().unwrap_or(-1), self.seen.join("\n")));
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(format!(
                    "toolstack did not end; it printed:\n{}",
                    self.seen.join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `domain console`: history first, then live output; input reaches the
/// domain; Ctrl-] leaves; a stopped domain's console ends by itself.
fn domain_console_shows_history_then_live_output_and_takes_input(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c
        .machine()
        .guests(&[CONSOLE_DOM, ("echo", "echo")])
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    expect_line(m, "[2] echo: ready (ring true)")?;
    let (code, out) = toolstack(&sock, &["domain", "console", "echo", "--no-follow"])?;
    check(code == 0 && out.contains("echo: ready (ring true)"), || {
        format!("history: {code} {out}")
    })?;
    let mut s = Session::start(&sock, &["domain", "console", "echo"])?;
    s.expect("echo: ready (ring true)")?;
    s.send(b"typed from the host\n")?;
    s.expect("echo: typed from the host")?;
    // What the console shows is what the machine's console printed.
    expect_line(m, "[2] echo: typed from the host")?;
    s.send(b"\x1d")?;
    let (code, out) = s.finish()?;
    check(
        code == 0 && out.contains("left the console of domain 2"),
        || format!("Ctrl-] did not leave cleanly: {code} {out}"),
    )?;
    // A destroyed domain's history stays readable, and its console then ends.
    let (code, out) = toolstack(&sock, &["domain", "destroy", "echo"])?;
    check(code == 0, || format!("destroy: {code} {out}"))?;
    let s = Session::start(&sock, &["domain", "console", "2"])?;
    let (code, out) = s.finish()?;
    check(
        code == 0
            && out.contains("echo: typed from the host")
            && out.contains("its console is closed"),
        || format!("console of a destroyed domain: {code} {out}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "console", "9", "--no-follow"])?;
    check(code == 1 && out.contains("has no console"), || {
        format!("console of no domain: {code} {out}")
    })
}

/// `domain create -c`: the new domain's console from its first line, ending
/// when the domain stops.
fn create_attached_shows_the_new_domains_console_until_it_stops(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let (m, sock) = c.machine().guests(&[CONSOLE_DOM]).boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let dir = c.path("attached");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    std::fs::copy(build::domain(&c.domains, "hello"), dir.join("hello"))
        .map_err(|e| e.to_string())?;
    let cfg = dir.join("greeter.cfg");
    std::fs::write(
        &cfg,
        "name = \"greeter\"\nkernel = \"hello\"\nmemory = 2\ncmdline = \"attached\"\n",
    )
    .map_err(|e| e.to_string())?;
    let s = Session::start(
        &sock,
        &["domain", "create", "-c", cfg.to_str().unwrap_or("")],
    )?;
    let (code, out) = s.finish()?;
    check(
        code == 0
            && out.contains("created domain 2")
            && out.contains("hello from domain 2 (2048 KiB): greeter")
            && out.contains("its console is closed"),
        || format!("create -c: {code} {out}"),
    )
}

/// The console shell: domain 0 has the input focus at boot; its verbs work
/// and a wrong line gets a clear error; Ctrl-A three times moves on.
fn the_console_shell_of_domain_0_has_the_focus_at_boot_and_runs_verbs(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("survivor", "survivor")];
    let mut modules = c.with_domains(&guests);
    modules[0].cmdline = "toolstack-domain".into();
    let config = c.qemu(&c.iso("", &modules)?).com1_input();
    let m = super::harness::boot(&config, slot)?;
    expect_line(m, "[2] survivor: heartbeat 1")?;
    m.com1_send(b"list\r")?;
    expect_line(m, "toolstack> list")?;
    let row = expect_line(m, "   2 survivor ")?;
    check(row.contains("running"), || format!("list row: {row}"))?;
    m.com1_send(b"pause survivor\r")?;
    expect_line(m, "toolstack> pause survivor")?;
    expect_line(m, "toolstack> ok")?;
    m.com1_send(b"info 2\r")?;
    let info = expect_line(m, "domain 2 (survivor): paused")?;
    check(info.contains("KiB"), || format!("info: {info}"))?;
    m.com1_send(b"launch everything\r")?;
    expect_line(m, "toolstack> error: cannot do \"launch everything\"")?;
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 2")?;
    Ok(())
}

/// Three hundred short-lived domains one after another: each gets its
/// console (console-dom reuses the window slots of closed consoles, domain
/// 0 forgets domains that are gone once its table is full).
fn three_hundred_short_lived_domains_each_get_a_console(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    const COUNT: usize = 300;
    // Domain 0 remembers gone domains until its table (127) is full, so
    // its heap only settles after that.
    const WARM_UP: usize = 150;
    let hello = build::domain(&c.domains, "hello");
    let tar = crate::iso::bundle(&c.path("bundle.tar"), &[], &[("hello", hello.as_path())])?;
    let (m, sock) = c
        .machine()
        .guests(&[CONSOLE_DOM])
        .bundle(tar)
        .boot_managed(slot)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let heap = |client: &mut toolstack::Client| {
        client
            .host_info()
            .map(|h| h.toolstack_heap_kib)
            .map_err(|e| e.to_string())
    };
    let mut heap_after_warm_up = 0;
    for i in 1..=COUNT {
        let config = format!("name = \"h{i}\"\nkernel = \"hello\"\nmemory = 1\n");
        client
            .create(&config, None, false)
            .map_err(|e| format!("create h{i}: {e}"))?;
        // One at a time, so at most a few are alive at once.
        m.wait_for(&format!("): h{i} "), BOOT)?;
        if i == WARM_UP {
            m.wait_for_nth("disconnected its console", WARM_UP, BOOT)?;
            heap_after_warm_up = heap(&mut client)?;
        }
    }
    // Each greeting went through a console ring, which was closed after it.
    m.wait_for_nth("disconnected its console", COUNT, BOOT)?;
    // Domain 0 keeps nothing of a domain it forgot: once its table is
    // full, 150 more domains leave its heap as it was, give or take
    // allocator slack (a 4 KiB ring page kept per domain would be 600 KiB).
    let heap_at_end = heap(&mut client)?;
    println!("domain 0 heap: {heap_after_warm_up} KiB after {WARM_UP} domains, {heap_at_end} KiB after {COUNT}");
    check(heap_at_end <= heap_after_warm_up + 16, || {
        format!("domain 0's heap grew from {heap_after_warm_up} KiB to {heap_at_end} KiB over {} domains", COUNT - WARM_UP)
    })?;
    let refused: Vec<String> = m
        .lines()
        .into_iter()
        .filter(|l| {
            l.contains("cannot serve")
                || l.contains("cannot create")
                || l.contains("no control ring")
        })
        .collect();
    check(refused.is_empty(), || format!("refusals: {refused:?}"))?;
    let closed = m
        .lines()
        .iter()
        .filter(|l| l.contains("disconnected its console"))
        .count();
    check(closed == COUNT, || {
        format!("{closed} of {COUNT} consoles served and closed")
    })
}

fn console_dom_takes_com1_over_and_relays_every_line(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("hello", "hello forge"), ("chatty", "chatty")];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    not_forged(m, "[2] hello: ")?;
    let (took, _) = m.wait_for_nth("console: domain 1 takes COM1 over", 1, BOOT)?;
    // Kernel-log lines (domain 0 prints with the debug hypercall) still reach
    // COM1, through console-dom: this one can only come after it took over.
    let (relayed, _) = m.wait_for_nth(
        "[0] toolstack: domain 1 serves device 1:0 of domain 3",
        1,
        BOOT,
    )?;
    check(relayed >= took, || {
        "the kernel log line came before the takeover".into()
    })?;
    expect_line(m, "[2] hello from domain 2")?;
    // Through its ring the chatty domain is slowed, never cut: lines 1..=5000 all arrive, whole.
    m.wait_for("[3] chatty: line 5000", Duration::from_secs(120))?;
    let numbers: Vec<u64> = m
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("[3] chatty: line "))
        .filter_map(|n| n.parse().ok())
        .take(5000)
        .collect();
    check(numbers == (1..=5000).collect::<Vec<u64>>(), || {
        format!(
            "chatty lines missing or out of order ({} seen)",
            numbers.len()
        )
    })?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("dropped") || l.contains("lost")),
        || "a line was dropped".into(),
    )
}

fn two_domains_print_10000_lines_each_through_console_rings(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("counter", "a"), ("counter", "b")];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    expect_line(m, "[2] counter: ring true")?;
    expect_line(m, "[3] counter: ring true")?;
    m.wait_for("[2] counter: 10000", Duration::from_secs(120))?;
    m.wait_for("[3] counter: 10000", Duration::from_secs(120))?;
    for dom in [2, 3] {
        let prefix = format!("[{dom}] counter: ");
        let numbers: Vec<u64> = m
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| rest.parse().ok())
            .collect();
        check(numbers == (1..=10_000).collect::<Vec<u64>>(), || {
            format!(
                "domain {dom}: {} lines, first gaps or disorder near {:?}",
                numbers.len(),
                numbers.windows(2).find(|w| w[1] != w[0] + 1)
            )
        })?;
    }
    let broken = m
        .lines()
        .iter()
        .filter(|l| {
            l.contains("counter:")
                && !l.starts_with("[2] counter: ")
                && !l.starts_with("[3] counter: ")
        })
        .count();
    check(broken == 0, || {
        format!("{broken} lines broken or misattributed")
    })
}

fn a_flooding_console_does_not_hold_up_a_10ms_heartbeat(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [
        CONSOLE_DOM,
        ("survivor", "beat period_ms=10"),
        ("chatty", "chatty"),
    ];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    m.wait_for("[3] chatty: line 6000", Duration::from_secs(120))?;
    let lines = m.lines();
    let at = |n: u64| {
        lines
            .iter()
            .position(|l| l == &format!("[3] chatty: line {n}"))
    };
    let (from, to) = (
        at(1000).ok_or("no line 1000")?,
        at(6000).ok_or("no line 6000")?,
    );
    let beats = lines[from..to]
        .iter()
        .filter(|l| l.starts_with("[2] survivor: heartbeat"))
        .count();
    check(beats >= 3, || {
        format!("only {beats} heartbeats while 5000 flood lines went by")
    })
}

fn an_unfinished_line_is_printed_after_a_short_delay(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("partial", "partial")];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    // The domain prints "no newline yet" without a newline, then waits 2 s.
    let (printed, _) = m.wait_for_nth("[2] no newline yet", 1, BOOT)?;
    let (done, _) = m.wait_for_nth("[2] partial: done", 1, BOOT)?;
    check(printed < done, || {
        "the unfinished line waited for the next one".into()
    })
}

fn input_reaches_the_focused_domain_and_ctrl_a_moves_the_focus(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("echo", "first"), ("echo", "second")];
    let m = boot(&c.machine().guests(&guests).config()?.com1_input(), slot)?;
    expect_line(m, "[2] echo: ready (ring true)")?;
    expect_line(m, "[3] echo: ready (ring true)")?;
    expect_line(m, "serves device 1:0 of domain 3")?;
    // Domain 0's shell has the focus at boot; the escape moves it on.
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 2")?;
    m.com1_send(b"hello one\n")?;
    expect_line(m, "[2] echo: hello one")?;
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 3")?;
    m.com1_send(b"hello two\n")?;
    expect_line(m, "[3] echo: hello two")?;
    check(
        !m.lines()
            .iter()
            .any(|l| l == "[2] echo: hello two" || l == "[3] echo: hello one"),
        || "input reached the wrong domain".into(),
    )
}

fn a_domain_that_exits_at_once_keeps_its_console_history(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("hello", "hello history_on_exit")];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    // The toolstack asks for the replay only once the domain has stopped
    // (its own line about that may reach COM1 a little before or after).
    expect_line(m, "toolstack: domain 2 (hello) shut down")?;
    let (start, _) = m.wait_for_nth("console-dom: history of domain 2:", 1, BOOT)?;
    // The greeting is printed live once, and once more from the history.
    let (again, _) = m.wait_for_nth("[2] hello from domain 2", 2, BOOT)?;
    check(again >= start, || {
        "the second greeting is not the replay".into()
    })?;
    let end = expect_line(m, "console-dom: end of history of domain 2")?;
    check(end.contains("0 older bytes cut"), || end.clone())
}

fn a_frontend_disconnects_and_the_backend_is_told(
    c: &Ctx,
    slot: &mut Option<Machine>,
) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("quitter", "quitter")];
    let m = boot(&c.machine().guests(&guests).config()?, slot)?;
    expect_line(m, "[2] quitter: before (ring true)")?;
    expect_line(m, "console-dom: domain 2 disconnected its console")?;
    expect_line(m, "[2] quitter: after Ok(()) (ring false)")?;
    Ok(())
}

/// The line `start` + a forging text (`hello forge`, `hostile`) comes out
/// with its carriage return and escapes made `?`: one line, the domain's.
pub(super) fn not_forged(m: &Machine, start: &str) -> Result<(), String> {
    let want = format!("{start}forged?[0] toolstack: I am domain 0?[2J?]0;owned?");
    let line = m.wait_for(start, BOOT)?;
    check(line == want, || {
        format!("the forging line came out as {line:?}")
    })?;
    check(
        !m.lines().iter().any(|l| {
            l.starts_with("[0] toolstack: I am") || (l.contains("owned") && l.contains('\x1b'))
        }),
        || "a domain's escape sequence or forged line reached the console".into(),
    )
}

/// This file's tests, each named as its function.
pub(super) fn tests() -> Vec<Test> {
    tests![
        console_dom_takes_com1_over_and_relays_every_line,
        two_domains_print_10000_lines_each_through_console_rings,
        a_flooding_console_does_not_hold_up_a_10ms_heartbeat,
        an_unfinished_line_is_printed_after_a_short_delay,
        input_reaches_the_focused_domain_and_ctrl_a_moves_the_focus,
        a_domain_that_exits_at_once_keeps_its_console_history,
        a_frontend_disconnects_and_the_backend_is_told,
        domain_console_shows_history_then_live_output_and_takes_input,
        create_attached_shows_the_new_domains_console_until_it_stops,
        the_console_shell_of_domain_0_has_the_focus_at_boot_and_runs_verbs,
        three_hundred_short_lived_domains_each_get_a_console,
    ]
}
