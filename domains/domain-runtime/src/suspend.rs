//! Suspend and resume: how a domain is saved to a file and restored.
//!
//! Owns: obeying the control domain's `SuspendRequest` (the `Suspend`
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

/// How many times this domain has been restored (0: never).
pub fn epoch() -> u32 {
    crate::epoch::get()
}

/// Suspends this domain for the control domain to save, and returns once it
/// runs again: as itself (the save was kept or cancelled) or as a restored
/// copy (then its control ring is connected again first).
pub fn suspend_now() {
    // Lines written so far reach console-dom before the snapshot, unless the
    // console is busy on this path (they are replayed after a restore anyway).
    crate::console::try_flush();
    if let Ok(1) = crate::hypercall::suspend() {
        crate::epoch::advance();
        crate::control::reconnect();
    }
}
