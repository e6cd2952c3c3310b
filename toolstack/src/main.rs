//! Domain 0, the control domain: starts a domain for every boot module it was
//! given and reports what becomes of each.
//!
//! Module command line: `NAME [mem=KiB] [weight=N] [cap=PERCENT] [evtchn=PEER] [args...]`.
//! The whole line is the new domain's command line. `evtchn=PEER` asks domain
//! 0 to connect the domain to the earlier-started domain `PEER` by an event
//! channel: it allocates a port in PEER for the new domain and appends
//! `peer=ID peer_port=P` to the new domain's command line. (The real toolstack,
//! with configuration files and the management protocol, is issue 5.)

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

mod start;

domain_runtime::entry!(run);

fn run(_start: &'static domain_runtime::StartInfo) {
    start::run();
}
