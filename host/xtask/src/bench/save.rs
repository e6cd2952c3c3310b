//! `cargo xtask bench save`: how long `domain save` and `domain restore`
//! take for a 64 MiB domain, through the `toolstack` library.
//!
//! Owns: booting a machine with console-dom and two 64 MiB `counter`
//! domains, one that wrote nothing of its heap and one that wrote 4 MiB of
//! it, then saving and restoring each a few times. A save file holds only
//! what a domain wrote (zero pages and read-only image pages are left out),
//! so the time goes with what it wrote, not its size; the management
//! channel (COM2) bounds both directions. Wall times under TCG.

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
    let mut mods = vec![
        Module {
            path: build::domain(&domains, "toolstack-domain"),
            cmdline: "toolstack-domain mgmt=com2".into(),
        },
        Module {
            path: build::domain(&domains, "console-dom"),
            cmdline: "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4".into(),
        },
    ];
    for (name, kib) in cases {
        mods.push(Module {
            path: counter.clone(),
            cmdline: format!("{name} memory=64M count=100000000 pace_us=100000 dirty_kib={kib}"),
        });
    }
    let iso = iso::build(&kernel, "", &mods, &dir.join("save.iso"))?;
    let sock = crate::qemu::socket_path(&dir.join("save-com2.sock"));
    let m = Config::new(&iso)
        .memory("512M")
        .com2_socket(&sock)
        .spawn()?;
    m.wait_for("[3] counter: 2", Duration::from_secs(120))?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let runs = runs();
    println!("| 64 MiB domain (wall time, TCG, median of {runs}) | file | save | restore |");
    println!("|---|---|---|---|");
    for (name, kib) in cases {
        let file = dir.join(format!("{name}.xnlsave"));
        let (mut saves, mut restores, mut size) = (Vec::new(), Vec::new(), 0);
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
        println!(
            "| wrote {kib} KiB of its heap | {} KiB | {:.2} s | {:.2} s |",
            size / 1024,
            median(saves).as_secs_f64(),
            median(restores).as_secs_f64()
        );
    }
    Ok(())
}
