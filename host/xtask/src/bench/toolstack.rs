//! `cargo xtask bench toolstack`: what a user of the toolstack waits for.
//!
//! Owns: booting a machine with console-dom and a boot bundle, then timing
//! through the `toolstack` library (one connection, as a script would use):
//! `domain create` to the new domain's first console line on COM1, with the
//! image in the boot bundle and with an uploaded 1 MiB image; and `domain
//! list` with a few domains and with 100 more. Wall times under TCG (the
//! whole machine is emulated, so a real PC is faster); medians and minima.

use crate::iso::Module;
use crate::qemu::{Config, Machine};
use crate::{build, iso};
use std::time::{Duration, Instant};

/// Creations timed, `domain list` runs, idle domains listed (`--short`: few).
fn runs() -> usize {
    super::setup::sized(10, 2)
}
fn list_runs() -> usize {
    super::setup::sized(20, 2)
}
fn idle_domains() -> usize {
    super::setup::sized(100, 10)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Median and minimum.
fn summary(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[0])
}

/// Creates `name` and waits for its first line; returns (create call, to first line).
fn create_to_first_line(
    m: &Machine,
    client: &mut toolstack::Client,
    name: &str,
    kernel: &str,
    image: Option<&[u8]>,
) -> Result<(Duration, Duration), String> {
    let config = format!("name = \"{name}\"\nkernel = \"{kernel}\"\nmemory = 1\n");
    let t0 = m.clock();
    client
        .create(&config, image, false)
        .map_err(|e| format!("create {name}: {e}"))?;
    let created = m.clock() - t0;
    // `hello` prints its command line, which starts with its name.
    let (at, _) = m.wait_for_nth(&format!("): {name} "), 1, Duration::from_secs(60))?;
    Ok((created, at.saturating_sub(t0)))
}

pub fn run() -> Result<(), String> {
    let super::setup::Setup {
        kernel,
        domains,
        dir,
    } = super::setup::setup()?;
    let hello = build::domain(&domains, "hello");
    let survivor = build::domain(&domains, "survivor");
    let channels = super::mgmt_channels::Channels::new(&domains, &dir)?;
    let bundle = iso::bundle_with_files(
        &dir.join("toolstack-bundle.tar"),
        &[],
        &[("hello", hello.as_path()), ("survivor", survivor.as_path())],
        &channels.bundle_files,
    )?;
    let mods = [
        channels.dom0.clone(),
        Module {
            path: build::domain(&domains, "console-dom"),
            cmdline: "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4".into(),
        },
        channels.net_driver.clone(),
        Module {
            path: bundle,
            cmdline: "bundle".into(),
        },
    ];
    let iso = iso::build(&kernel, "", &mods, &dir.join("toolstack.iso"))?;
    let sock = crate::qemu::socket_path(&dir.join("toolstack-com2.sock"));
    let m = Config::new(&iso)
        .memory("512M")
        .com2_socket(&sock)
        .nic(std::slice::from_ref(&channels.forward))
        .spawn()?;
    m.wait_for(
        "toolstack: serving the management protocol on COM2",
        Duration::from_secs(60),
    )?;
    m.wait_for(&channels.ready_line(), Duration::from_secs(60))?;
    let mut client = toolstack::Client::connect(&sock).map_err(|e| e.to_string())?;
    let mut tcp = channels.connect_tcp()?;

    let mut padded = std::fs::read(&hello).map_err(|e| e.to_string())?;
    padded.resize(padded.len().max(1 << 20), 0);
    let (mut bundled, mut bundled_call) = (Vec::new(), Vec::new());
    let (mut uploaded, mut uploaded_call) = (Vec::new(), Vec::new());
    let (mut uploaded_tcp, mut uploaded_tcp_call) = (Vec::new(), Vec::new());
    for i in 0..runs() {
        let (call, line) = create_to_first_line(&m, &mut client, &format!("b{i}"), "hello", None)?;
        bundled_call.push(call);
        bundled.push(line);
        let (call, line) =
            create_to_first_line(&m, &mut client, &format!("u{i}"), "uploaded", Some(&padded))?;
        uploaded_call.push(call);
        uploaded.push(line);
        let (call, line) =
            create_to_first_line(&m, &mut tcp, &format!("t{i}"), "uploaded", Some(&padded))?;
        uploaded_tcp_call.push(call);
        uploaded_tcp.push(line);
    }

    let time_list = |client: &mut toolstack::Client| -> Result<(Duration, usize), String> {
        let mut v = Vec::new();
        let mut count = 0;
        for _ in 0..list_runs() {
            let t = Instant::now();
            count = client.list().map_err(|e| e.to_string())?.len();
            v.push(t.elapsed());
        }
        Ok((summary(v).0, count))
    };
    let (few, few_count) = time_list(&mut client)?;
    let (few_tcp, _) = time_list(&mut tcp)?;
    for i in 0..idle_domains() {
        let config =
            format!("name = \"idle{i}\"\nkernel = \"survivor\"\nmemory = 1\ncmdline = \"period_ms=600000\"\n");
        client
            .create(&config, None, false)
            .map_err(|e| format!("create idle{i}: {e}"))?;
    }
    let (many, many_count) = time_list(&mut client)?;
    let (many_tcp, _) = time_list(&mut tcp)?;

    let (b_med, b_min) = summary(bundled);
    let (bc_med, bc_min) = summary(bundled_call);
    let (runs, list_runs) = (runs(), list_runs());
    println!("| measure (wall time, TCG) | median | min |");
    println!("|---|---|---|");
    println!(
        "| create → first console line, image in the boot bundle ({runs} runs) | {} | {} |",
        ms(b_med),
        ms(b_min)
    );
    println!(
        "| … of which the create call | {} | {} |",
        ms(bc_med),
        ms(bc_min)
    );
    println!();
    println!("| measure (wall time, TCG, medians) | COM2 | TCP | COM2 / TCP |");
    println!("|---|---|---|---|");
    let row = |what: &str, com2: Duration, tcp: Duration| {
        println!(
            "| {what} | {} | {} | {:.1} |",
            ms(com2),
            ms(tcp),
            com2.as_secs_f64() / tcp.as_secs_f64().max(1e-9)
        )
    };
    row(
        &format!("create → first console line, 1 MiB image uploaded ({runs} runs)"),
        summary(uploaded).0,
        summary(uploaded_tcp).0,
    );
    row(
        "… of which upload and create call",
        summary(uploaded_call).0,
        summary(uploaded_tcp_call).0,
    );
    row(
        &format!("domain list, {few_count} domains ({list_runs} runs)"),
        few,
        few_tcp,
    );
    row(
        &format!("domain list, {many_count} domains ({list_runs} runs)"),
        many,
        many_tcp,
    );
    Ok(())
}
