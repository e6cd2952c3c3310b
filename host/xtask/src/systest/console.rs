//! System tests of consoles seen through the toolstack: `toolstack domain
//! console` (history, live output, input, Ctrl-]), `domain create -c`, and
//! the console shell of domain 0.

use super::{boot_managed, build, check, expect_line, toolstack, Ctx, Machine, BOOT};
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

const CONSOLE_DOM: (&str, &str) = (
    "console-dom",
    "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
);

/// `domain console`: history first, then live output; input reaches the
/// domain; Ctrl-] leaves; a stopped domain's console ends by itself.
pub fn domain_console(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let (m, sock) = boot_managed(c, slot, &[CONSOLE_DOM, ("echo", "echo")], None)?;
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
pub fn create_attached(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let (m, sock) = boot_managed(c, slot, &[CONSOLE_DOM], None)?;
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
pub fn console_shell(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [CONSOLE_DOM, ("survivor", "survivor")];
    let mut modules = c.with_domains(&guests);
    modules[0].cmdline = "toolstack-domain".into();
    let config = super::Config::new(&c.iso("", &modules)?)
        .accel(c.accel)
        .com1_input();
    let m = super::boot(&config, slot)?;
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
pub fn many_short_lived(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    const COUNT: usize = 300;
    // Domain 0 remembers gone domains until its table (127) is full, so
    // its heap only settles after that.
    const WARM_UP: usize = 150;
    let hello = build::domain(&c.domains, "hello");
    let tar = crate::iso::bundle(&c.path("bundle.tar"), &[], &[("hello", hello.as_path())])?;
    let (m, sock) = boot_managed(c, slot, &[CONSOLE_DOM], Some(tar))?;
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
