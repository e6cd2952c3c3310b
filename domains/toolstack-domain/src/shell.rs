//! The console shell: the everyday verbs for a person at the machine, as
//! in dom0 (give domain 0 the input focus with the console escape, Ctrl-A
//! three times; it has it at boot).
//!
//! Owns: collecting typed bytes into lines (backspace edits, other control
//! bytes are ignored, an over-long line is refused whole) and carrying out
//! each line through `ops.rs`, printing the result. Domains are named by
//! number or name; configurations come from the boot bundle.

extern crate alloc;
use crate::ops;
use crate::table::Domains;
use domain_runtime::hypercall as hc;
use domain_runtime::println;

/// Longest command line.
const LINE_MAX: usize = 128;

/// The shell's unfinished line.
pub struct Shell {
    line: heapless::String<LINE_MAX>,
    /// The line grew too long: the rest of it is ignored.
    overflow: bool,
}

impl Default for Shell {
    fn default() -> Self {
        Self::new()
    }
}

const HELP: &str = "commands: list | info D | pause D | unpause D | destroy D | \
shutdown D | reboot D | create FILE [-p] | host | host-shutdown | help \
(D: a domain's number or name; FILE: a configuration in the boot bundle)";

impl Shell {
    pub const fn new() -> Shell {
        Shell {
            line: heapless::String::new(),
            overflow: false,
        }
    }

    /// Takes typed bytes; runs each complete line.
    pub fn input(&mut self, bytes: &[u8], started: &mut Domains) {
        for &b in bytes {
            match b {
                b'\r' | b'\n' => {
                    let line = core::mem::take(&mut self.line);
                    if core::mem::take(&mut self.overflow) {
                        println!("toolstack> line longer than {} bytes ignored", LINE_MAX);
                    } else if !line.trim().is_empty() {
                        println!("toolstack> {}", line.trim());
                        run(line.trim(), started);
                    }
                }
                0x08 | 0x7f => {
                    self.line.pop();
                }
                b if b.is_ascii_graphic() || b == b' ' => {
                    self.overflow |= self.line.push(b as char).is_err();
                }
                _ => {}
            }
        }
    }
}

/// Carries out one command line.
fn run(line: &str, started: &mut Domains) {
    let mut words = line.split_whitespace();
    let verb = words.next().unwrap_or("");
    let arg = words.next();
    let domain = || arg.and_then(|w| ops::find_word(started, w));
    let result: Result<(), alloc::string::String> = match (verb, arg) {
        ("help", _) => {
            println!("{}", HELP);
            Ok(())
        }
        ("list", _) => {
            println!("  ID NAME             STATE      MEM(KiB)  CPU(ticks)");
            for info in ops::live(started) {
                println!(
                    "{:>4} {:<16} {:<10} {:>8} {:>11}",
                    info.id.index(),
                    ops::name(&info),
                    ops::state_name(info.state),
                    info.memory_kib,
                    info.cpu_ticks
                );
            }
            Ok(())
        }
        ("host", _) => {
            let stats = hc::kernel_stats().unwrap_or_default();
            println!(
                "xenolith {}: {} domains, {} KiB free",
                env!("CARGO_PKG_VERSION"),
                stats.live_domains,
                stats.free_frames * 4
            );
            Ok(())
        }
        ("host-shutdown", _) => {
            ops::host_shutdown(started);
            Ok(())
        }
        ("create", Some(file)) => create(started, file, words.next() == Some("-p")),
        ("info", Some(_)) => match domain().and_then(|id| hc::domain_info(id).ok()) {
            Some(info) => {
                let c = &info.crash;
                println!(
                    "domain {} ({}): {}, {} KiB, {} ticks",
                    info.id,
                    ops::name(&info),
                    ops::state_name(info.state),
                    info.memory_kib,
                    info.cpu_ticks
                );
                if info.state == domain_runtime::ipc_abi::domain::DomainState::Crashed as u32 {
                    println!(
                        "crash: vector {} error {:#x} rip {:#x} address {:#x} \"{}\"",
                        c.vector,
                        c.error_code,
                        c.rip,
                        c.address,
                        c.message()
                    );
                }
                Ok(())
            }
            None => Err("no such domain".into()),
        },
        ("pause" | "unpause" | "destroy" | "shutdown" | "reboot", Some(_)) => match domain() {
            None => Err("no such domain".into()),
            Some(id) => match verb {
                "pause" => ops::control(started, id.0, hc::domain_pause),
                "unpause" => ops::control(started, id.0, hc::domain_unpause),
                "destroy" => ops::control(started, id.0, hc::domain_destroy),
                _ => ops::shutdown(started, id.0, verb == "reboot").map_err(Into::into),
            },
        },
        _ => Err(alloc::format!("cannot do \"{}\"; {}", line, HELP)),
    };
    match result {
        Ok(()) => println!("toolstack> ok"),
        Err(e) => println!("toolstack> error: {}", e),
    }
}

/// `create FILE`: a configuration from the boot bundle, its image from there too.
fn create(started: &mut Domains, file: &str, paused: bool) -> Result<(), alloc::string::String> {
    let text = crate::bundle::find()
        .and_then(|b| crate::bundle::file(b, file))
        .ok_or("no such file in the boot bundle")?;
    let text = core::str::from_utf8(text).map_err(|_| "the file is not UTF-8")?;
    let id = ops::create(started, file, text, None, paused)?;
    println!("toolstack> created domain {}", id);
    Ok(())
}
