//! Running a command as a person would, in a terminal: under a
//! pseudo-terminal that is its controlling terminal, with everything it
//! prints collected so a test can wait for it and keys typed into it.
//!
//! Owns: [`Terminal`]. Dropping one kills what still runs in it (the whole
//! process group), so no test leaves a QEMU behind.

use portable_pty::{native_pty_system, Child, CommandBuilder, MasterPty, PtySize};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the terminal has shown so far, and whether the command closed it.
#[derive(Default)]
struct Screen {
    bytes: Vec<u8>,
    closed: bool,
}

/// A command running in a pseudo-terminal of 40 rows by 120 columns.
pub struct Terminal {
    master: Box<dyn MasterPty + Send>,
    child: Box<dyn Child + Send + Sync>,
    keys: Box<dyn Write + Send>,
    screen: Arc<(Mutex<Screen>, Condvar)>,
    started: Instant,
}

impl Terminal {
    /// Runs `line` with `sh -c` in `dir`, as typed at a shell prompt there:
    /// the environment is this process's less what `cargo run` added for
    /// xtask itself (a user's shell has none of it), with `TERM=xterm`.
    pub fn run(line: &str, dir: &Path) -> Result<Terminal, String> {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .map_err(|e| format!("no pseudo-terminal: {e}"))?;
        let mut cmd = CommandBuilder::new("sh");
        cmd.args(["-c", line]);
        cmd.cwd(dir);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k == "CARGO" || (k.starts_with("CARGO_") && k != "CARGO_HOME") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("TERM", "xterm");
        let child = pair
            .slave
            .spawn_command(cmd)
            .map_err(|e| format!("cannot run {line:?}: {e}"))?;
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().map_err(|e| e.to_string())?;
        let keys = pair.master.take_writer().map_err(|e| e.to_string())?;
        let screen = Arc::new((Mutex::new(Screen::default()), Condvar::new()));
        let writer = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                // EIO once every process has closed the terminal.
                let n = reader.read(&mut buf).unwrap_or(0);
                let (lock, cv) = &*writer;
                let mut s = lock.lock().expect("screen lock");
                if n == 0 {
                    s.closed = true;
                } else {
                    s.bytes.extend_from_slice(&buf[..n]);
                }
                cv.notify_all();
                if n == 0 {
                    return;
                }
            }
        });
        Ok(Terminal {
            master: pair.master,
            child,
            keys,
            screen,
            started: Instant::now(),
        })
    }

    /// Everything shown so far, as text.
    pub fn shown(&self) -> String {
        let (lock, _) = &*self.screen;
        String::from_utf8_lossy(&lock.lock().expect("screen lock").bytes).into_owned()
    }

    /// Waits until the terminal shows `text` after byte `from` of what it
    /// has shown; returns the offset just past it.
    pub fn wait_for_after(
        &self,
        from: usize,
        text: &str,
        timeout: Duration,
    ) -> Result<usize, String> {
        let (lock, cv) = &*self.screen;
        let deadline = Instant::now() + timeout;
        let mut s = lock.lock().expect("screen lock");
        loop {
            let tail = s.bytes.get(from..).unwrap_or(&[]);
            if let Some(at) = find(tail, text.as_bytes()) {
                return Ok(from + at + text.len());
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                return Err(format!(
                    "{:.1} s: the terminal never showed {text:?}{}",
                    self.started.elapsed().as_secs_f64(),
                    if s.closed { " (the command ended)" } else { "" }
                ));
            }
            s = cv.wait_timeout(s, deadline - now).expect("screen lock").0;
        }
    }

    /// Waits until the terminal shows one of `texts`; which one came first.
    pub fn wait_for_first(&self, texts: &[&str], timeout: Duration) -> Result<usize, String> {
        let (lock, cv) = &*self.screen;
        let deadline = Instant::now() + timeout;
        let mut s = lock.lock().expect("screen lock");
        loop {
            let first = texts
                .iter()
                .enumerate()
                .filter_map(|(i, t)| find(&s.bytes, t.as_bytes()).map(|at| (at, i)))
                .min();
            if let Some((_, i)) = first {
                return Ok(i);
            }
            let now = Instant::now();
            if s.closed || now >= deadline {
                return Err(format!("the terminal never showed any of {texts:?}"));
            }
            s = cv.wait_timeout(s, deadline - now).expect("screen lock").0;
        }
    }

    /// Waits until the terminal shows `text` anywhere.
    pub fn wait_for(&self, text: &str, timeout: Duration) -> Result<usize, String> {
        self.wait_for_after(0, text, timeout)
    }

    /// How many bytes the terminal has shown.
    pub fn len(&self) -> usize {
        self.screen.0.lock().expect("screen lock").bytes.len()
    }

    /// Types `keys` (bytes as a keyboard sends them: `\r` for Enter).
    pub fn type_keys(&mut self, keys: &[u8]) -> Result<(), String> {
        self.keys
            .write_all(keys)
            .and_then(|_| self.keys.flush())
            .map_err(|e| format!("typing: {e}"))?;
        Ok(())
    }

    /// Whether the terminal is in its cooked mode: lines edited by the
    /// terminal and echoed (how a shell gets it back from a program).
    pub fn cooked(&self) -> Result<bool, String> {
        use nix::sys::termios::LocalFlags;
        let t = self
            .master
            .get_termios()
            .ok_or("the terminal has no termios")?;
        Ok(t.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO))
    }

    /// Waits for the command to end; its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<u32, String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.exit_code());
            }
            if Instant::now() >= deadline {
                return Err(format!("still running after {timeout:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // The shell leads the session's process group: kill all of it
            // (cargo, xtask, QEMU), then the shell.
            if let Some(pid) = self.child.process_id() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
