//! `cargo xtask bench restart`: for each driver domain, how long its guest
//! waits when it crashes and the toolstack restarts it, and what the guest
//! sent again. Each driver is made to crash after a fixed amount of work
//! while a guest keeps it busy. The kernel stamps the crash (`CrashRecord`:
//! ns since boot and busy TSC ticks, the kernel's idle time taken out), the
//! toolstack prints it as it restarts the driver, and the guest's frontend
//! notes its first answer from the new instance (`gaps.rs`) on the same two
//! clocks. The first restart is taken (it has no backoff). Run twice: under
//! TCG for the wall time, under `-icount` for the instructions (busy ticks
//! there are instructions retired, every domain and the kernel counted).
//! - drvdom-blk crashes after 300 requests while a guest reads its disk
//!   three times (requests sent again: as the guest reported);
//! - drvdom-net crashes after 2,000 frames while two guests bounce frames
//!   one at a time (frames sent again: lost in flight, resent after 1 ms);
//! - console-dom crashes after 300 lines while a guest prints 1,000
//!   (writes sent again: those it had not answered).

use crate::iso::{Module, NET_DRIVER_LINE};
use crate::qemu::{Config, Machine};
use crate::{build, host_tools, iso};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(300);

/// One driver's scenario: its guests and how to read the figures.
struct Scenario {
    driver: &'static str,
    guests: Vec<(&'static str, String)>,
    /// The guest's line that ends with when service resumed (`µs/busy-tsc` each).
    resumed_marker: &'static str,
    /// Reads the number of requests sent again from the transcript.
    resent: fn(&Machine) -> f64,
    disk: bool,
    cmdline: &'static str,
}

/// The number just before `word` in `line`.
fn number_before(line: &str, word: &str) -> Option<f64> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let i = words.iter().position(|w| *w == word)?;
    words.get(i.checked_sub(1)?)?.parse().ok()
}

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            driver: "drvdom-blk",
            guests: vec![
                (
                    "drvdom-blk",
                    "drvdom-blk memory=2M pci=00:04.0 dma=512 vdisk=all=all on_crash=restart restart_limit=1000 crash_after=300".into(),
                ),
                ("disk-tool", "reader memory=4M sum repeat=3 gaps disk=all,xvda,r".into()),
            ],
            resumed_marker: "disk-tool: resumed at",
            resent: |m| {
                let per: Vec<f64> = m
                    .lines()
                    .iter()
                    .filter(|l| l.contains("block: disk 0 reconnected"))
                    .filter_map(|l| number_before(l, "requests"))
                    .collect();
                per.first().copied().unwrap_or(f64::NAN)
            },
            disk: true,
            cmdline: "",
        },
        Scenario {
            driver: "drvdom-net",
            guests: vec![
                ("drvdom-net", format!("{NET_DRIVER_LINE} restart_limit=1000 crash_after=2000")),
                ("net-bench", "rx memory=2M vif=mac=02:00:00:00:05:05 echo".into()),
                (
                    "net-bench",
                    "tx memory=2M vif=mac=02:00:00:00:05:06 ping=1500 to=02:00:00:00:05:05".into(),
                ),
            ],
            resumed_marker: "net-bench: 1500 round trips",
            resent: |m| {
                m.lines()
                    .iter()
                    .find(|l| l.contains("frames sent again"))
                    .and_then(|l| number_before(l, "frames"))
                    .unwrap_or(f64::NAN)
            },
            disk: false,
            cmdline: "ifname=dummy",
        },
        Scenario {
            driver: "console-dom",
            guests: vec![
                (
                    "console-dom",
                    "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 on_crash=restart restart_limit=1000 crash_after=300".into(),
                ),
                ("counter", "counter count=1000 gaps".into()),
            ],
            resumed_marker: "writes sent again; resumed at",
            resent: |m| {
                m.lines()
                    .iter()
                    .find(|l| l.contains("writes sent again"))
                    .and_then(|l| number_before(l, "writes"))
                    .unwrap_or(f64::NAN)
            },
            disk: false,
            cmdline: "",
        },
    ]
}

/// Boots a scenario; returns the first restart's time from the crash to
/// service again (µs, busy ticks) and what was sent again.
fn measure(s: &Scenario, icount: bool, dir: &Path) -> Result<(f64, f64, f64), String> {
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    let mut mods = vec![Module {
        path: build::domain(&domains, "toolstack-domain"),
        cmdline: "toolstack-domain".into(),
    }];
    for (bin, line) in &s.guests {
        mods.push(Module {
            path: build::domain(&domains, bin),
            cmdline: line.clone(),
        });
    }
    let iso = iso::build(&kernel, s.cmdline, &mods, &dir.join("restart.iso"))?;
    let mut config = Config::new(&iso);
    if s.disk {
        let image = dir.join("restart.img");
        std::fs::write(&image, vec![0u8; 16 << 20]).map_err(|e| e.to_string())?;
        config = config.disk(&image);
    }
    if icount {
        config = config.icount();
    }
    let m = config.spawn()?;
    let line = m.wait_for(s.resumed_marker, WAIT);
    if std::env::var_os("RESTARTBENCH_LOG").is_some() {
        for (at, l) in m.timed_lines() {
            eprintln!("{:9.3} {l}", at.as_secs_f64() * 1000.0);
        }
    }
    let line = line?;
    let crash = m
        .lines()
        .iter()
        .find_map(|l| {
            let at = l.split("(crashed at ").nth(1)?;
            let us: f64 = at.split_whitespace().next()?.parse().ok()?;
            let busy: f64 = at
                .split("busy tsc ")
                .nth(1)?
                .trim_end_matches(')')
                .parse()
                .ok()?;
            Some((us, busy))
        })
        .ok_or_else(|| format!("{}: no crash time from the toolstack", s.driver))?;
    let (us, busy) = line
        .split(':')
        .next_back()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| {
            let (us, busy) = w.split_once('/')?;
            Some((us.parse::<f64>().ok()?, busy.parse::<f64>().ok()?))
        })
        .next()
        .ok_or_else(|| format!("{}: the guest saw no restart: {line:?}", s.driver))?;
    Ok((us - crash.0, busy - crash.1, (s.resent)(&m)))
}

pub fn run() -> Result<(), String> {
    host_tools::ensure()?;
    let dir = build::target_dir().join("bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    println!("| driver | crash to service again, first restart, ms (TCG, wall) | instructions in between, millions (-icount) | requests sent again | aim (issue 24) |");
    println!("|---|---|---|---|---|");
    // `RESTARTBENCH_ONLY=drvdom-net` measures one driver; `RESTARTBENCH_LOG=1`
    // prints each boot's serial lines, with the ms since QEMU started at which
    // the host read each.
    let only = std::env::var("RESTARTBENCH_ONLY").ok();
    for s in scenarios()
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| s.driver == o))
    {
        let (wall_us, _, resent) = measure(&s, false, &dir)?;
        let (_, instructions, _) = measure(&s, true, &dir)?;
        let aim = if s.driver == "drvdom-blk" {
            "≤ 10 ms"
        } else {
            ""
        };
        println!(
            "| {} | {:.1} | {:.2} | {} | {aim} |",
            s.driver,
            wall_us / 1000.0,
            instructions / 1e6,
            resent
        );
    }
    Ok(())
}
