//! `cargo xtask bench save`: how long `domain save` and `domain restore`
//! take for a 64 MiB domain, through the `toolstack` library.
//!
//! Owns: booting a machine with console-dom and two 64 MiB `counter`
//! domains, one that wrote nothing of its heap and one that wrote 4 MiB of
//! it, then saving and restoring each a few times. A save file holds only
//! what a domain wrote (zero pages and read-only image pages are left out),
//! so the time goes with what it wrote, not its size. Each is measured
//! over COM2 and over the network (TCP through drvdom-net) in one run,
//! side by side. Wall times under TCG.

use super::setup::median;
use crate::iso::Module;
use crate::qemu::Config;
use crate::{build, iso};
use std::time::{Duration, Instant};

/// Saves and restores of each domain (`--short`: one).
fn runs() -> usize {
    super::setup::sized(3, 1)
}

pub fn run() -> Result<(), String> {
    let super::setup::Setup {
        kernel,
        domains,
        dir,
    } = super::setup::setup()?;
    let counter = build::domain(&domains, "counter");
    let cases = [("dirty", 4096u64), ("clean", 0)];
    let channels = super::mgmt_channels::Channels::new(&domains, &dir)?;
    let bundle = iso::bundle_with_files(
        &dir.join("save-bundle.tar"),
        &[],
        &[],
        &channels.bundle_files,
    )?;
    let mut mods = vec![
        channels.dom0.clone(),
        Module {
            path: build::domain(&domains, "console-dom"),
            cmdline: "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4".into(),
        },
        channels.net_driver.clone(),
    ];
    for (name, kib) in cases {
        mods.push(Module {
            path: counter.clone(),
            cmdline: format!("{name} memory=64M count=100000000 pace_us=100000 dirty_kib={kib}"),
        });
    }
    mods.push(Module {
        path: bundle,
        cmdline: "bundle".into(),
    });
    let iso = iso::build(&kernel, "", &mods, &dir.join("save.iso"))?;
    let sock = crate::qemu::socket_path(&dir.join("save-com2.sock"));
    let m = Config::new(&iso)
        .memory("512M")
        .com2_socket(&sock)
        .nic(std::slice::from_ref(&channels.forward))
        .spawn()?;
    m.wait_for("[4] counter: 2", Duration::from_secs(120))?;
    m.wait_for(&channels.ready_line(), Duration::from_secs(60))?;
    let mut com2 = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let mut tcp = channels.connect_tcp()?;
    let runs = runs();
    println!("| 64 MiB domain (wall time, TCG, median of {runs}) | file | save COM2 | save TCP | ratio | restore COM2 | restore TCP | ratio |");
    println!("|---|---|---|---|---|---|---|---|");
    for (name, kib) in cases {
        let file = dir.join(format!("{name}.xnlsave"));
        let mut size = 0;
        let mut times = |client: &mut toolstack::Client| -> Result<(Duration, Duration), String> {
            let (mut saves, mut restores) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let id = client.resolve(name).map_err(|e| e.to_string())?;
                let t = Instant::now();
                let saved = client
                    .save(id, &file, false, |_, _| {})
                    .map_err(|e| format!("save {name}: {e}"))?;
                saves.push(t.elapsed());
                size = saved.bytes;
                let t = Instant::now();
                client
                    .restore(&file, false, |_, _| {})
                    .map_err(|e| format!("restore {name}: {e}"))?;
                restores.push(t.elapsed());
            }
            Ok((median(saves), median(restores)))
        };
        // A bench that stops says where its machine was.
        let last_lines = |e: String| {
            let lines = m.lines();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            format!("{e}\n--- the machine's last lines ---\n{tail}")
        };
        let (save_com2, restore_com2) =
            times(&mut com2).map_err(|e| last_lines(format!("COM2: {e}")))?;
        let (save_tcp, restore_tcp) =
            times(&mut tcp).map_err(|e| last_lines(format!("TCP: {e}")))?;
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-9);
        println!(
            "| wrote {kib} KiB of its heap | {} KiB | {:.2} s | {:.2} s | {:.1} | {:.2} s | {:.2} s | {:.1} |",
            size / 1024,
            save_com2.as_secs_f64(),
            save_tcp.as_secs_f64(),
            ratio(save_com2, save_tcp),
            restore_com2.as_secs_f64(),
            restore_tcp.as_secs_f64(),
            ratio(restore_com2, restore_tcp),
        );
    }
    Ok(())
}
