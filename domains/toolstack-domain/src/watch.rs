//! Watching the domains domain 0 started, for ever: the main loop.
//!
//! Owns: noticing each domain's end and applying its policy (`on_crash`,
//! `on_reboot`, `on_poweroff`: restart with backoff, destroy or keep),
//! heartbeats missed, shutdown requests ignored, powering off once asked
//! and every domain stopped; and, in between, serving the control rings,
//! the management channel and domain 0's console (`broker`, `mgmt`,
//! `viewer`, `shell`).

extern crate alloc;

use crate::start::{start_modules_with, start_one};
use crate::table::{Domains, Image, Started};
use crate::viewer::{Reply, Viewer};
use domain_config::OnEvent;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::{DomainState, ShutdownReason};
use domain_runtime::ipc_abi::shared::Virq;
use domain_runtime::{events, println, DomainId};

/// A round of the loop that took longer than this: domain 0 was busy (its
/// control rings unread) meanwhile.
const DEAF_NS: u64 = 500_000_000;

/// Starts every module's domain, then reports each one's end, for ever.
pub fn run() {
    let count = domain_runtime::modules().count();
    println!("toolstack: domain 0 up, {} boot modules", count);
    let state_port = hc::event_bind_virq(Virq::DomainState).ok();
    let me = DomainId(domain_runtime::start_info().domain_id);
    let mut viewer: Option<Viewer> = None;
    let mut started = start_modules_with(Some(&mut viewer));
    let mut mgmt = crate::mgmt::Channels::start();
    let mut shell = crate::shell::Shell::new();
    let mut all_stopped = false;
    let mut next_ring_look = 0;
    let mut again: alloc::vec::Vec<u16> = alloc::vec::Vec::new();
    // Since when domain 0 has been reading its control rings without a
    // long gap (starting domains, building a large HVM guest): heartbeats
    // sent while it was busy elsewhere could not be counted, so none is
    // judged missed over that time.
    let mut listening_since = domain_runtime::time::now_ns();
    // When it last came back from waiting: work from then on is deaf time.
    let mut awake_since = listening_since;
    loop {
        // Work that kept domain 0 from its control rings this long since it
        // last waited (a large HVM guest built, a save written) counts no
        // heartbeat missed during it. (Waiting is listening: messages wake it.)
        let now = domain_runtime::time::now_ns();
        if now.saturating_sub(awake_since) > DEAF_NS {
            listening_since = now;
        }
        Viewer::follow(&mut viewer, me, &mut started);
        mgmt.follow(&mut started);
        for i in 0..started.len() {
            if started[i].reported {
                continue;
            }
            let end = report(&mut started[i]);
            if end == End::Running {
                continue;
            }
            let dom = started[i].id;
            // Its devices are closed: console-dom prints what is left and keeps
            // the history; drvdom-blk lets go of its rings and pages.
            crate::broker::close_devices(&mut started, dom);
            if started[i].config.history_on_exit {
                crate::broker::replay_history(&mut started, dom);
            }
            if end == End::Destroyed {
                started[i].image = Image::Gone;
            } else {
                apply_policy(me, &mut started, i, end == End::Crashed);
            }
            // A backend that is not coming back: the domains it served are
            // told their devices are gone (rather than wait for ever).
            if started[i].id == dom && started[i].restart_at.is_none() {
                crate::broker::peer_gone(&mut started, dom);
            }
        }
        // Gone domains give back their control ring's port and grant.
        for s in started
            .iter_mut()
            .filter(|s| s.reported && s.control.is_some())
        {
            if hc::domain_info(s.id).is_err() {
                s.control = s.control.take().and_then(crate::control::Link::release);
            }
        }
        for s in started.iter_mut().filter(|s| !s.lingering.is_empty()) {
            s.lingering = core::mem::take(&mut s.lingering)
                .into_iter()
                .filter_map(crate::control::Link::release)
                .collect();
        }
        // A domain asked for heartbeats that missed one is hung: it is
        // crashed, so its `on_crash` policy (restart) applies.
        let now = domain_runtime::time::now_ns();
        for s in started.iter_mut().filter(|s| !s.reported) {
            let (Some(period), Some(link)) = (s.heartbeat_ns, s.control.as_ref()) else {
                continue;
            };
            let last = link.last_heartbeat.max(s.started_at).max(listening_since);
            if now.saturating_sub(last) > period {
                println!(
                    "toolstack: {} (domain {}) missed its heartbeat ({} ms); crashing it",
                    s.name,
                    s.id,
                    period / 1_000_000
                );
                let _ = hc::domain_crash(s.id);
                // Not again until its end is reported.
                s.heartbeat_ns = None;
            }
        }
        // Crashed domains whose backoff has passed start again.
        for i in 0..started.len() {
            if started[i].restart_at.is_some_and(|t| t <= now) {
                started[i].restart_at = None;
                restart(me, &mut started, i, "after its crash");
            }
        }
        if !all_stopped && started.iter().all(|s| s.reported && s.restart_at.is_none()) {
            println!("toolstack: all domains have stopped");
            all_stopped = true;
        }
        // Domains that ignored a shutdown request past its deadline are destroyed.
        let now = domain_runtime::time::now_ns();
        for s in started.iter_mut() {
            if s.shutdown_deadline.is_some_and(|d| d <= now) {
                s.shutdown_deadline = None;
                if !s.reported {
                    let _ = hc::domain_destroy(s.id);
                    println!(
                        "toolstack: domain {} ({}) ignored its shutdown request; destroyed",
                        s.id, s.name
                    );
                    s.reported = true;
                }
            }
        }
        if crate::table::power_off_requested() && started.iter().all(|s| s.reported) {
            println!("toolstack: every domain has stopped; powering off");
            // A domain that stopped may still own console lines: let them out first.
            let _ = hc::machine_power_off();
            println!("toolstack: the machine did not power off");
            crate::table::forget_power_off();
        }
        // Rings are looked at now and then, while there are any.
        let now = domain_runtime::time::now_ns();
        // (With none, every turn checks whether one has been connected.)
        if now >= next_ring_look || next_ring_look == u64::MAX {
            next_ring_look = if crate::broker::look_at_rings(&mut started, now) {
                now + crate::broker::RING_LOOK_NS
            } else {
                u64::MAX
            };
        }
        let ring_due = (next_ring_look != u64::MAX).then_some(next_ring_look);
        let console_due = mgmt.deadline();
        if let Some(next) = started
            .iter()
            .filter_map(|s| s.shutdown_deadline)
            .chain(started.iter().filter_map(|s| s.restart_at))
            .chain(started.iter().filter(|s| !s.reported).filter_map(|s| {
                let last = s.control.as_ref()?.last_heartbeat.max(s.started_at);
                Some(last.max(listening_since) + s.heartbeat_ns? + 1)
            }))
            .chain(console_due)
            .chain(ring_due)
            .min()
        {
            let _ = hc::set_timer(next);
        }
        // A control ring with messages left over from the last turn is
        // served again at once (after everything else had its turn).
        if again.is_empty() {
            hc::block();
        }
        awake_since = domain_runtime::time::now_ns();
        mgmt.on_wake(domain_runtime::time::now_ns(), &mut started, &mut viewer);
        // Serve every control ring that has something (pending bits are taken, not trusted).
        let mut ready: alloc::vec::Vec<u16> = core::mem::take(&mut again);
        events::take_all(|port| {
            if Some(port) != state_port && !ready.contains(&port) {
                ready.push(port);
            }
        });
        for port in ready {
            if mgmt.serve(port, &mut started, &mut viewer) {
                continue;
            }
            match viewer.as_mut() {
                Some(v) if v.port == port => {
                    for reply in v.replies() {
                        match reply {
                            Reply::Peek(rsp) => mgmt.on_peek(&rsp),
                            Reply::Input(bytes) => shell.input(&bytes, &mut started),
                        }
                    }
                }
                _ => {
                    if crate::broker::serve_port(&mut started, port) {
                        again.push(port);
                    }
                }
            }
        }
    }
}

/// Carries out the domain's `on_poweroff`/`on_reboot`/`on_crash` policy once it stopped.
fn apply_policy(me: DomainId, started: &mut Domains, i: usize, crashed: bool) {
    let reason = hc::domain_info(started[i].id)
        .map(|info| info.shutdown_reason)
        .unwrap_or(0);
    let rebooted = reason == ShutdownReason::Reboot as u64;
    match started[i].policy(crashed, rebooted) {
        OnEvent::Restart if crashed => {
            let now = domain_runtime::time::now_ns();
            if let Ok(info) = hc::domain_info(started[i].id) {
                let c = &info.crash;
                let mut what: heapless::String<96> = heapless::String::new();
                let ms = c.at_ns / 1_000_000;
                let _ = core::fmt::Write::write_fmt(
                    &mut what,
                    format_args!("at {}.{:03} s: ", ms / 1000, ms % 1000),
                );
                let _ = if c.vector == u64::MAX {
                    core::fmt::Write::write_fmt(&mut what, format_args!("{}", c.message()))
                } else {
                    core::fmt::Write::write_fmt(
                        &mut what,
                        format_args!("vector {} at rip {:#x}", c.vector, c.rip),
                    )
                };
                started[i].supervisor.remember(&what);
                started[i].supervisor.dma_faults += info.dma_faults;
            }
            let limit = started[i].config.restart_limit as usize;
            match started[i].supervisor.crashed(now, limit) {
                crate::supervise::Decision::RestartAt(at) => {
                    started[i].restart_at = Some(at);
                    // Until then its frontends wait; it restarts in the main loop.
                    started[i].reported = true;
                }
                crate::supervise::Decision::GiveUp => {
                    let old = started[i].id;
                    println!(
                        "toolstack: giving up on {} (domain {}) after {} crashes in {} s",
                        started[i].name,
                        old,
                        started[i].supervisor.recent(now),
                        crate::supervise::WINDOW_NS / 1_000_000_000
                    );
                    let _ = hc::domain_destroy(old);
                    started[i].image = Image::Gone;
                    crate::broker::peer_gone(started, old);
                }
            }
        }
        OnEvent::Restart => restart(me, started, i, "as it asked"),
        OnEvent::Destroy => {
            let _ = hc::domain_destroy(started[i].id);
            println!(
                "toolstack: destroyed domain {} ({}) as its policy says",
                started[i].id, started[i].name
            );
            started[i].image = Image::Gone;
        }
        // Preserved: kept listed, never started again.
        OnEvent::Preserve => started[i].image = Image::Gone,
    }
}

/// Destroys a crashed domain and starts it again from its module; its
/// frontends are told their backend restarted.
fn restart(me: DomainId, started: &mut Domains, i: usize, why: &str) {
    let old = started[i].id;
    // When it crashed (for `bench restart`: the time to service again).
    let crash = hc::domain_info(old)
        .ok()
        .filter(|info| info.state == DomainState::Crashed as u32)
        .map(|info| info.crash);
    match crash {
        Some(c) => println!(
            "toolstack: restarting {} (domain {}) {} (crashed at {} us, busy tsc {})",
            started[i].name,
            old,
            why,
            c.at_ns / 1000,
            c.at_busy_tsc
        ),
        None => println!(
            "toolstack: restarting {} (domain {}) {}",
            started[i].name, old, why
        ),
    }
    let _ = hc::domain_destroy(old);
    // The old instance's control ring: its port closed, its grant ended
    // (or kept until it can be, if the old domain is not gone yet).
    let mut lingering = core::mem::take(&mut started[i].lingering);
    if let Some(link) = started[i]
        .control
        .take()
        .and_then(crate::control::Link::release)
    {
        lingering.push(link);
    }
    let (image, config) = (started[i].image.clone(), started[i].config_to_start_again());
    let restarts = started[i].supervisor.restarts + 1;
    match start_one(me, image, config, started, restarts) {
        Some(mut new) => {
            let id = new.id;
            new.supervisor = core::mem::take(&mut started[i].supervisor);
            new.lingering = lingering;
            new.supervisor.restarts += 1;
            started[i] = new;
            crate::broker::peer_restarted(started, old, id);
        }
        None => println!("toolstack: could not restart {}", started[i].name),
    }
}

/// What has become of a domain.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    Running,
    Crashed,
    ShutDown,
    /// Destroyed (by a request, not by its own end): no policy applies.
    Destroyed,
}

/// Prints what became of a domain, once it has stopped, and marks it reported.
pub fn report(s: &mut Started) -> End {
    let info = match hc::domain_info(s.id) {
        Ok(info) => info,
        Err(domain_runtime::ipc_abi::hypercall::Error::DeadDomain) => {
            println!("toolstack: domain {} ({}) was destroyed", s.id, s.name);
            s.reported = true;
            return End::Destroyed;
        }
        Err(_) => return End::Running,
    };
    let c = &info.crash;
    if info.state == DomainState::Crashed as u32 {
        if c.vector == u64::MAX {
            println!(
                "toolstack: domain {} ({}) crashed: \"{}\"",
                s.id,
                s.name,
                c.message()
            );
        } else {
            println!(
                "toolstack: domain {} ({}) crashed: vector {} error {:#x} at rip {:#x} addr {:#x}",
                s.id, s.name, c.vector, c.error_code, c.rip, c.address
            );
        }
        s.reported = true;
        End::Crashed
    } else if info.state == DomainState::Shutdown as u32 {
        println!(
            "toolstack: domain {} ({}) shut down (reason {})",
            s.id, s.name, info.shutdown_reason
        );
        s.reported = true;
        End::ShutDown
    } else {
        End::Running
    }
}
