//! Suspend and resume: how a domain is saved to a file and restored.
//!
//! Owns: obeying the control domain's `SuspendRequest`, `BalloonTarget` and `ShutdownRequest` (the `Suspend`
//! hypercall, from inside the runtime's waits, so no runtime lock is held)
//! and what happens when `Suspend` returns in a restored copy: the copy
//! has this domain's memory and registers but none of its kernel handles
//! (event ports, grants, grant-window mappings). The runtime then counts a
//! new *epoch*, connects the control ring named by the new command line,
//! and every device frontend, on its next use, treats its old ports and
//! grants as foreign (it neither closes nor ends them: those numbers may
//! already name new handles), waits for the control domain's news of its
//! backend and reconnects as after a backend restart, replaying what was
//! not answered.

/// Suspends this domain for the control domain to save, and returns once it
/// runs again: as itself (the save was kept or cancelled) or as a restored
/// copy (then its control ring is connected again first).
pub fn suspend_now() {
    // Lines written so far reach console-dom before the snapshot, unless the
    // console is busy on this path (they are replayed after a restore anyway).
    crate::console::try_flush();
    if let Ok(1) = crate::hypercall::suspend() {
        crate::epoch::advance();
        crate::balloon::after_restore();
        if let Err(e) = crate::control::reconnect() {
            crate::println!(
                "runtime: cannot connect the control ring after a restore: {}",
                e
            );
        }
    }
}

/// What a domain does instead of powering off when the control domain asks
/// it to shut down (`reboot` when asked to reboot): set by a domain that
/// must pass the request on (the HVM device model presses its guest's
/// power button). Without one, the domain powers off (or reboots) itself.
static SHUTDOWN_HANDLER: spin::Once<fn(bool)> = spin::Once::new();

/// Sets [`SHUTDOWN_HANDLER`] (once).
pub fn on_shutdown_request(handler: fn(bool)) {
    SHUTDOWN_HANDLER.call_once(|| handler);
}

/// Obeys a suspend or shutdown request from the control domain, if one
/// came: the domain suspends to be saved (`suspend_now`), or powers off
/// (or reboots) cleanly. The runtime calls this whenever a
/// domain waits, so a domain that waits through the runtime obeys.
pub fn obey() {
    if crate::control::port().is_none() {
        // No control ring: no request can come.
        return;
    }
    // Nothing came since the last look: nothing to obey (this runs at every
    // wait; the look cost a tenth of a guest's instructions a disk read).
    static SEEN: crate::control::Seen = crate::control::Seen::new();
    if !SEEN.anything_new() {
        return;
    }
    if crate::control::take_news(|m| {
        m.check() == Some(crate::ipc_abi::proto::control::ControlOp::SuspendRequest)
    })
    .is_some()
    {
        suspend_now();
    }
    // Devices attached or detached: kept for the program (and its
    // frontends) out of the inbox, which stays free for other news.
    crate::hotplug::refresh();
    // The latest memory target counts (older ones are dropped with it).
    let mut target = None;
    while let Some(m) = crate::control::take_news(|m| {
        m.check() == Some(crate::ipc_abi::proto::control::ControlOp::BalloonTarget)
    }) {
        target = Some(m.index);
    }
    if let Some(kib) = target {
        crate::balloon::set_target(u64::from(kib));
    }
    if let Some(m) = crate::control::take_news(|m| {
        m.check() == Some(crate::ipc_abi::proto::control::ControlOp::ShutdownRequest)
    }) {
        if let Some(handler) = SHUTDOWN_HANDLER.get() {
            return handler(m.index == 1);
        }
        let reason = if m.index == 1 {
            crate::ipc_abi::domain::ShutdownReason::Reboot
        } else {
            crate::ipc_abi::domain::ShutdownReason::PowerOff
        };
        // Let console-dom print what we wrote, unless we are inside the console
        // code ourselves (then the lines are replayed or printed as they are).
        crate::console::try_flush();
        crate::hypercall::shutdown(reason, b"");
    }
}

/// What every wait does (`events::Waiting`, which `entry!` sets once the
/// control ring is connected): takes what came on the control ring and
/// obeys what the control domain asked.
pub fn serve_while_waiting(waiting_on: Option<u16>) {
    crate::control::absorb(waiting_on);
    obey();
}
