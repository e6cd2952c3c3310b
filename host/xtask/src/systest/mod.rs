//! The system tests: boot the real ISO in QEMU and check what a user sees.
//!
//! Owns: the list of boot scenarios and the runner that executes them (two at
//! a time), prints each result with the serial log of any failure, and ends
//! `cargo xtask test` with the one line `N passed, M failed`.

mod block;
mod campaign;
mod console;
mod console_restart;
mod debug;
mod hcfuzz;
mod hostile_rings;
mod net;
mod readme;
mod save;
mod smp;
mod top;
mod trace;
mod upload;
mod watchdog;

use crate::iso::{self, Module};
use crate::qemu::{Config, Machine};
use crate::{build, checks, host_tools, Accel};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// How long the suite fuzzes each target.
const FUZZ_SECONDS: u64 = 10;

/// Long enough for a TCG boot on a loaded CI machine; a healthy boot takes about a second.
const BOOT: Duration = Duration::from_secs(60);

/// One prepared test: its own directory, and the kernel to boot.
pub struct Ctx {
    dir: PathBuf,
    kernel: PathBuf,
    domains: PathBuf,
    accel: Accel,
}

impl Ctx {
    fn iso(&self, cmdline: &str, modules: &[Module]) -> Result<PathBuf, String> {
        iso::build(&self.kernel, cmdline, modules, &self.dir.join("boot.iso"))
    }

    /// Builds an ISO with `cmdline` and returns a QEMU configuration for it.
    fn config(&self, cmdline: &str) -> Result<Config, String> {
        Ok(Config::new(&self.iso(cmdline, &[])?).accel(self.accel))
    }

    /// Boot modules: domain 0 first, then `(binary, command line)` each.
    fn with_domains(&self, guests: &[(&str, &str)]) -> Vec<Module> {
        let mut v = vec![Module {
            path: build::domain(&self.domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        }];
        for (bin, line) in guests {
            v.push(Module {
                path: build::domain(&self.domains, bin),
                cmdline: (*line).into(),
            });
        }
        v
    }

    /// Builds an ISO with domain 0 and `guests`, and a QEMU configuration for it.
    fn system(&self, cmdline: &str, guests: &[(&str, &str)]) -> Result<Config, String> {
        Ok(Config::new(&self.iso(cmdline, &self.with_domains(guests))?).accel(self.accel))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A Unix socket path for this test (short enough for `sun_path`).
    fn socket(&self, name: &str) -> PathBuf {
        crate::qemu::socket_path(&self.path(name))
    }
}

type Case = fn(&Ctx, &mut Option<Machine>) -> Result<(), String>;

/// A system test: its name (a sentence saying what it shows), its body, and
/// what it needs of the host.
struct Test {
    name: &'static str,
    run: Case,
    /// It measures how guests share a resource flat out: it runs by itself,
    /// after the others (beside another machine on the host's two cores a
    /// guest can see a share it never had alone).
    alone: bool,
}

impl Test {
    fn new(name: &'static str, run: Case) -> Test {
        Test {
            name,
            run,
            alone: false,
        }
    }

    fn alone(name: &'static str, run: Case) -> Test {
        Test {
            alone: true,
            ..Test::new(name, run)
        }
    }
}

fn cases() -> Vec<Test> {
    vec![
        Test::new("default_boot_prints_banner_and_cmdline", default_boot),
        Test::new(
            "every_seed_option_is_in_the_effective_settings",
            seed_options,
        ),
        Test::new(
            "unknown_and_malformed_options_warn_and_boot_goes_on",
            bad_options,
        ),
        Test::new(
            "noreboot_panic_halts_with_the_message",
            noreboot_panic_halts,
        ),
        Test::new(
            "four_domains_pinned_to_four_cpus_run_there_and_move_when_repinned",
            smp::pinned_domains_run_where_they_are_pinned,
        ),
        Test::new(
            "two_domains_on_two_cpus_ping_pong_10000_times",
            smp::ping_pong_across_cpus,
        ),
        Test::new(
            "a_domain_moved_between_cpus_never_reads_a_replaced_mapping",
            smp::a_domain_moved_between_cpus_never_reads_a_replaced_mapping,
        ),
        Test::new(
            "a_read_through_a_page_another_vcpu_unmapped_always_faults",
            smp::a_read_through_a_page_another_vcpu_unmapped_always_faults,
        ),
        Test::new(
            "a_domain_with_two_busy_vcpus_is_paused_crashed_and_destroyed_cleanly",
            smp::a_domain_with_two_busy_vcpus_is_paused_crashed_and_destroyed_cleanly,
        ),
        Test::new(
            "unpinned_spinners_spread_over_idle_cpus",
            smp::unpinned_spinners_spread_over_idle_cpus,
        ),
        Test::new(
            "a_domain_destroyed_while_running_elsewhere_is_gone_when_destroy_returns",
            smp::a_domain_destroyed_while_running_elsewhere_is_gone_when_destroy_returns,
        ),
        Test::new(
            "a_saved_guest_restored_counts_on",
            save::a_saved_guest_restored_counts_on,
        ),
        Test::new(
            "a_guest_with_two_vcpus_is_saved_and_both_go_on",
            save::a_guest_with_two_vcpus_is_saved_and_both_go_on,
        ),
        Test::new(
            "a_domain_that_never_waits_is_not_saved_and_runs_on",
            save::a_domain_that_never_waits_is_not_saved_and_runs_on,
        ),
        Test::new(
            "a_restored_guest_keeps_using_its_disk",
            save::a_restored_guest_keeps_using_its_disk,
        ),
        Test::new(
            "the_watchdog_catches_a_cpu_stuck_with_interrupts_off",
            watchdog::watchdog_catches_a_stuck_cpu,
        ),
        Test::new("panic_without_noreboot_resets_the_machine", panic_resets),
        Test::new("page_fault_is_reported_with_registers", page_fault_report),
        Test::new(
            "stack_overflow_hits_the_guard_page_and_double_faults_on_ist",
            stack_overflow,
        ),
        Test::new("memory_64m", |c, m| {
            memory_total(c, m, "64M", 64 << 20, false)
        }),
        Test::new("memory_2g", |c, m| memory_total(c, m, "2G", 2 << 30, false)),
        Test::new("memory_3_5g_with_a_hole_below_4g", |c, m| {
            memory_total(c, m, "3584M", 3584 << 20, true)
        }),
        Test::new("dom0_mem_larger_than_ram_is_clamped", dom0_mem_clamped),
        Test::new("smp_2_boots_and_madt_lists_both_cpus", smp2),
        Test::new("nosmp_and_noht_limit_eligible_cpus", nosmp_noht),
        Test::new("modules_are_listed_with_their_command_lines", modules),
        Test::new(
            "console_com2h_sends_output_to_com2_with_top_bit_set",
            console_com2,
        ),
        Test::new("poweroff_ends_qemu_cleanly", poweroff),
        Test::new("dom0_starts_a_guest_that_prints_and_powers_off", dom0_hello),
        Test::new(
            "two_domains_ping_pong_10000_times_over_an_event_channel",
            ping_pong,
        ),
        Test::new("each_forbidden_act_crashes_only_its_domain", isolation),
        Test::new(
            "weights_1_and_2_share_the_cpu_1_to_2_and_a_sleeper_wakes_on_time",
            fair_share,
        ),
        Test::new("grants_share_map_revoke_and_survive_either_death", grants),
        Test::new("a_thousand_domains_come_and_go_without_leaks", churn),
        Test::new("hostile_hypercalls_from_a_guest_get_errors", |c, m| {
            hostile(c, m, false)
        }),
        Test::new("hostile_hypercalls_from_domain_0_get_errors", |c, m| {
            hostile(c, m, true)
        }),
        Test::new(
            "a_driver_domain_gets_its_irq_and_ports_and_nothing_else",
            irq_driver,
        ),
        Test::new(
            "device_memory_reaches_the_device_and_never_ram",
            device_memory,
        ),
        Test::new("lifecycle_log_names_images_entry_pause_unpause", lifecycle),
        Test::new("every_domain_gets_a_control_ring_to_domain_0", control_ring),
        Test::new(
            "a_burst_of_control_messages_is_answered_whole",
            control_burst,
        ),
        Test::new(
            "a_domain_flooding_its_control_ring_cannot_hold_domain_0",
            control_flood,
        ),
        Test::new(
            "console_dom_takes_com1_over_and_relays_every_line",
            console_dom_relay,
        ),
        Test::new(
            "two_domains_print_10000_lines_each_through_console_rings",
            console_rings,
        ),
        Test::new(
            "a_flooding_console_does_not_hold_up_a_10ms_heartbeat",
            flood_and_heartbeat,
        ),
        Test::new(
            "an_unfinished_line_is_printed_after_a_short_delay",
            partial_line,
        ),
        Test::new(
            "input_reaches_the_focused_domain_and_ctrl_a_moves_the_focus",
            console_input,
        ),
        Test::new(
            "a_domain_that_exits_at_once_keeps_its_console_history",
            console_history,
        ),
        Test::new(
            "a_frontend_disconnects_and_the_backend_is_told",
            console_disconnect,
        ),
        Test::new(
            "two_guests_lose_no_line_and_repeat_none_while_console_dom_crashes",
            console_restart::lines_survive_crashes,
        ),
        Test::new(
            "a_hung_console_dom_is_restarted_by_heartbeat",
            console_restart::hung_console_dom_is_restarted,
        ),
        Test::new(
            "a_console_dom_given_up_on_hands_output_to_the_kernel",
            console_restart::given_up_console_falls_back_to_the_kernel,
        ),
        Test::new(
            "boot_bundle_auto_configs_start_in_order_and_bad_ones_start_nothing",
            boot_bundle,
        ),
        Test::new(
            "the_toolstack_command_lists_and_controls_domains_over_com2",
            toolstack_command,
        ),
        Test::new(
            "policies_destroy_or_preserve_and_info_shows_the_crash",
            policies_and_info,
        ),
        Test::new(
            "shutdown_stops_a_willing_domain_and_destroys_one_that_ignores_it",
            shutdown_requests,
        ),
        Test::new(
            "host_shutdown_stops_every_domain_then_powers_off",
            host_shutdown,
        ),
        Test::new("a_chatty_domain_is_rate_limited_and_starves_no_one", chatty),
        Test::new(
            "a_serial_line_that_stops_taking_bytes_stops_nothing_else",
            congested_line,
        ),
        Test::new(
            "fifty_domains_are_created_listed_and_shut_down_together",
            fifty_domains,
        ),
        Test::new(
            "clients_gone_mid_upload_or_mid_frame_or_two_at_once_disturb_nothing",
            abandoned_clients,
        ),
        Test::new(
            "domain_console_shows_history_then_live_output_and_takes_input",
            console::domain_console,
        ),
        Test::new(
            "create_attached_shows_the_new_domains_console_until_it_stops",
            console::create_attached,
        ),
        Test::new(
            "the_console_shell_of_domain_0_has_the_focus_at_boot_and_runs_verbs",
            console::console_shell,
        ),
        Test::new("top_shows_every_domain_and_its_share_of_the_cpu", top::top),
        Test::new(
            "drvdom_blk_drives_the_virtio_disk_and_nobody_else_reaches_it",
            block::drvdom_blk_reads_the_disk,
        ),
        Test::new(
            "a_guest_reads_the_whole_disk_and_its_sha256_is_the_hosts",
            block::guest_reads_the_whole_disk,
        ),
        Test::new(
            "two_guests_write_neighbouring_slices_and_the_host_finds_exactly_that",
            block::guests_write_their_own_slices,
        ),
        Test::new(
            "a_discard_reaches_the_image_file_as_a_hole",
            block::a_discard_punches_a_hole_in_the_image,
        ),
        Test::new(
            "a_guest_flooding_its_ring_cannot_starve_another",
            block::a_busy_guest_cannot_starve_another,
        ),
        Test::new(
            "a_hostile_block_frontend_gets_errors_and_harms_nobody",
            block::a_hostile_frontend_harms_nobody,
        ),
        Test::new(
            "a_guest_carries_on_while_drvdom_blk_crashes_and_is_restarted",
            block::a_guest_carries_on_while_drvdom_blk_crashes,
        ),
        Test::new(
            "a_crash_looping_drvdom_blk_is_given_up_on_and_its_guest_told",
            block::a_crash_looping_driver_is_given_up_on,
        ),
        Test::new(
            "toolstack_domain_crash_restarts_a_driver_and_its_guest_carries_on",
            block::toolstack_domain_crash_restarts_a_driver,
        ),
        Test::new(
            "a_hung_drvdom_blk_is_found_by_its_heartbeat_and_restarted",
            block::a_hung_driver_is_found_by_its_heartbeat,
        ),
        Test::new(
            "sixty_four_mib_of_records_survive_twenty_random_drvdom_blk_crashes",
            block::records_survive_twenty_random_crashes,
        ),
        Test::new(
            "a_guest_with_two_disks_from_one_drvdom_blk_keeps_both_through_crashes",
            block::two_disks_from_one_backend_both_follow_restarts,
        ),
        Test::new(
            "a_guest_with_two_interfaces_on_one_drvdom_net_keeps_both_through_crashes",
            net::two_interfaces_both_follow_restarts,
        ),
        Test::new(
            "debug_keys_dump_kernel_state_and_refuse_unknown_keys",
            debug::debug_keys_dump_kernel_state,
        ),
        Test::new(
            "ring_list_shows_a_busy_block_ring_advancing",
            debug::ring_list_shows_a_busy_block_ring,
        ),
        Test::new(
            "ring_list_flags_a_ring_whose_backend_stopped_answering",
            debug::ring_list_flags_a_stalled_backend,
        ),
        Test::new(
            "ring_dump_decodes_a_request_a_guest_parked",
            debug::ring_dump_decodes_a_parked_request,
        ),
        Test::new(
            "ring_dump_shows_a_response_the_frontend_left_unread",
            debug::ring_dump_shows_an_unread_response,
        ),
        Test::new(
            "looking_at_network_rings_while_guests_talk_changes_no_byte",
            debug::looking_at_net_rings_changes_no_byte,
        ),
        Test::new(
            "host_trace_shows_a_ping_pong_as_hypercalls_sends_wakes_and_switches",
            trace::ping_pong_in_the_trace,
        ),
        Test::new(
            "tracing_off_costs_no_instructions_on_the_event_path",
            trace::tracing_off_costs_nothing,
        ),
        Test::new(
            "the_kv_store_guest_keeps_its_data_across_restart_and_reboot",
            block::kv_store_survives_restart_and_reboot,
        ),
        Test::new(
            "the_kv_store_guest_takes_commands_at_its_console",
            block::kv_store_console,
        ),
        Test::new(
            "the_web_guest_serves_curl_and_nc_through_forwarded_ports",
            net::web_guest_serves_the_host,
        ),
        Test::new(
            "a_broadcast_reaches_every_other_guest_once_and_a_forged_mac_nobody",
            net::broadcast_once_and_no_spoofing,
        ),
        Test::new(
            "two_guests_talk_tcp_through_the_switch",
            net::guests_talk_tcp_beside_the_nic,
        ),
        Test::new(
            "two_guests_talk_tcp_through_the_switch_with_ifname_dummy",
            net::guests_talk_tcp_without_a_nic,
        ),
        Test::new(
            "sixty_four_mib_go_host_to_guest_and_back_over_tcp_intact",
            net::sixty_four_mib_each_way,
        ),
        Test::new(
            "a_hostile_network_frontend_gets_errors_and_harms_nobody",
            net::a_hostile_frontend_harms_nobody,
        ),
        Test::alone(
            "two_guests_sending_flat_out_share_the_nic",
            net::two_busy_guests_share_the_nic,
        ),
        Test::new(
            "fifty_random_driver_crashes_lose_nothing",
            campaign::fifty_random_driver_crashes_lose_nothing,
        ),
        Test::new(
            "hypercall_sequences_from_a_hostile_guest_harm_nobody",
            hcfuzz::hypercall_sequences_from_a_hostile_guest_harm_nobody,
        ),
        Test::new(
            "read_only_rings_are_refused_and_no_backend_falls",
            hostile_rings::read_only_rings_are_refused_and_no_backend_falls,
        ),
        Test::new(
            "cargo_xtask_run_boots_the_machine_on_this_terminal",
            readme::cargo_xtask_run_boots_the_machine_on_this_terminal,
        ),
        Test::new(
            "every_cargo_xtask_example_in_the_readme_works",
            readme::every_cargo_xtask_example_in_the_readme_works,
        ),
        Test::new(
            "sixty_four_mib_and_page_requests_survive_ten_drvdom_net_crashes",
            net::a_transfer_survives_drvdom_net_crashes,
        ),
        Test::new(
            "a_crash_looping_drvdom_net_is_given_up_on_and_its_guest_told",
            net::a_crash_looping_drvdom_net_is_given_up_on,
        ),
        Test::new(
            "three_hundred_short_lived_domains_each_get_a_console",
            console::many_short_lived,
        ),
        Test::new(
            "a_large_upload_shows_a_progress_bar_on_a_terminal",
            upload::progress_bar,
        ),
    ]
}

/// Runs everything `cargo xtask test` runs; `only` narrows it to matching system tests.
pub fn run_all(only: Option<&str>, accel: Accel) -> Result<(), String> {
    host_tools::ensure()?;
    let (mut passed, mut failed) = (0usize, 0usize);
    if only.is_none() {
        for (name, check) in [
            ("fmt", checks::fmt as fn() -> Result<(), String>),
            ("clippy", checks::clippy),
            ("doc paths", checks::doc_paths),
        ] {
            match check() {
                Ok(()) => passed += 1,
                Err(e) => {
                    println!("check {name} ... FAILED: {e}");
                    failed += 1;
                }
            }
        }
        match checks::unit_tests() {
            Ok((p, f)) => {
                passed += p;
                failed += f;
            }
            Err(e) => {
                println!("unit tests ... FAILED: {e}");
                failed += 1;
            }
        }
        // Every fuzz target, briefly (`cargo xtask fuzz TARGET` runs longer).
        let (p, f) = crate::fuzz::smoke(FUZZ_SECONDS);
        passed += p;
        failed += f;
    }
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    build::toolstack_command()?;
    let selected: Vec<_> = cases()
        .into_iter()
        .filter(|t| only.is_none_or(|o| t.name.contains(o)))
        .collect();
    println!("xtask: {} system tests (QEMU, {accel:?})", selected.len());
    // Tests that need the host to themselves run last, one at a time.
    let (alone, shared): (Vec<_>, Vec<_>) = selected.into_iter().partition(|t| t.alone);
    let results = Mutex::new((0usize, 0usize));
    let record = |ok: bool| {
        let mut r = results.lock().expect("results lock");
        if ok {
            r.0 += 1;
        } else {
            r.1 += 1;
        }
    };
    let queue = Mutex::new(shared.into_iter());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let next = queue.lock().expect("queue lock").next();
                let Some(t) = next else { return };
                record(run_case(t.name, t.run, &kernel, &domains, accel));
            });
        }
    });
    for t in alone {
        record(run_case(t.name, t.run, &kernel, &domains, accel));
    }
    let (p, f) = *results.lock().expect("results lock");
    passed += p;
    failed += f;
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        Ok(())
    } else {
        Err(format!("{failed} failed"))
    }
}

/// `cargo xtask campaign crashes --count N --seed S`: the driver-crash
/// campaign at length; prints its report.
pub fn crash_campaign(seed: u64, count: u64) -> Result<(), String> {
    standalone("campaign-crashes", |ctx, machine| {
        campaign::crashes(ctx, machine, seed, count)
    })
}

/// Prepares what a system test has, outside the suite, and runs `f`.
fn standalone(
    name: &str,
    f: impl FnOnce(&Ctx, &mut Option<Machine>) -> Result<String, String>,
) -> Result<(), String> {
    host_tools::ensure()?;
    let kernel = build::kernel()?;
    let domains = build::domains()?;
    build::toolstack_command()?;
    let dir = build::target_dir().join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let ctx = Ctx {
        dir,
        kernel,
        domains,
        accel: Accel::Tcg,
    };
    let mut machine = None;
    let outcome = f(&ctx, &mut machine);
    // The whole serial log, kept for reading after a long run.
    if let Some(m) = machine.as_ref() {
        let path = ctx.path("serial.log");
        if std::fs::write(&path, m.transcript()).is_ok() {
            println!("xtask: the serial log is in {}", path.display());
        }
    }
    match outcome {
        Ok(report) => {
            println!("{report}");
            Ok(())
        }
        Err(e) => {
            let log = machine
                .as_ref()
                .map(Machine::transcript)
                .unwrap_or_default();
            Err(format!("{e}\n--- serial log ---\n{log}"))
        }
    }
}

/// `cargo xtask fuzz hypercalls --seed S --calls N`: one long run of the
/// in-QEMU hypercall fuzzer, with the suite's checks; prints its report.
pub fn hypercall_campaign(seed: u64, calls: u64) -> Result<(), String> {
    standalone("fuzz-hypercalls", |ctx, machine| {
        hcfuzz::campaign(ctx, machine, seed, calls)
    })
}

fn run_case(name: &str, case: Case, kernel: &Path, domains: &Path, accel: Accel) -> bool {
    let dir = build::target_dir().join("systest").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        println!(
            "test {name} ... FAILED: cannot create {}: {e}",
            dir.display()
        );
        return false;
    }
    let ctx = Ctx {
        dir,
        kernel: kernel.to_path_buf(),
        domains: domains.to_path_buf(),
        accel,
    };
    let mut machine = None;
    let result = case(&ctx, &mut machine);
    match result {
        Ok(()) => {
            println!("test {name} ... ok");
            true
        }
        Err(e) => {
            let log = machine
                .as_ref()
                .map(Machine::transcript)
                .unwrap_or_default();
            println!("test {name} ... FAILED: {e}\n--- serial log of {name} ---\n{log}\n--- end of {name} ---");
            false
        }
    }
}

/// Starts `config`, keeping the machine in `slot` so its log is reported on failure.
fn boot<'m>(config: &Config, slot: &'m mut Option<Machine>) -> Result<&'m mut Machine, String> {
    Ok(slot.insert(config.spawn()?))
}

/// Boots domain 0 serving the management protocol on COM2 (a Unix socket in
/// the test's directory), then `guests` as `(binary, command line)`, then a
/// boot bundle if one is given.
fn boot_managed<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    guests: &[(&str, &str)],
    bundle: Option<PathBuf>,
) -> Result<(&'m mut Machine, PathBuf), String> {
    boot_managed_with(c, slot, guests, bundle, |config| config)
}

/// [`boot_managed`] with a last word on the QEMU configuration (a disk, say).
fn boot_managed_with<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    guests: &[(&str, &str)],
    bundle: Option<PathBuf>,
    tweak: impl FnOnce(Config) -> Config,
) -> Result<(&'m mut Machine, PathBuf), String> {
    boot_managed_on(c, slot, "", guests, bundle, tweak)
}

/// [`boot_managed_with`] with a kernel command line.
fn boot_managed_on<'m>(
    c: &Ctx,
    slot: &'m mut Option<Machine>,
    cmdline: &str,
    guests: &[(&str, &str)],
    bundle: Option<PathBuf>,
    tweak: impl FnOnce(Config) -> Config,
) -> Result<(&'m mut Machine, PathBuf), String> {
    let sock = c.socket("com2.sock");
    let mut mods = c.with_domains(guests);
    mods[0].cmdline = "toolstack-domain mgmt=com2".into();
    mods.extend(bundle.map(|path| Module {
        path,
        cmdline: "bundle".into(),
    }));
    let config = Config::new(&c.iso(cmdline, &mods)?)
        .accel(c.accel)
        .com2_socket(&sock);
    let m = boot(&tweak(config), slot)?;
    // Bytes sent to COM2 before domain 0 set its UART up are lost (the
    // FIFO is reset): a request then went unanswered for 20 s, as when a
    // test pinned a domain the moment it printed, before this line.
    m.wait_for("toolstack: serving the management protocol on COM2", BOOT)?;
    Ok((m, sock))
}

/// How many times the toolstack has restarted the domain named `name` so far.
fn restarts_of(m: &Machine, name: &str) -> usize {
    let marker = format!("toolstack: restarting {name} ");
    m.lines().iter().filter(|l| l.contains(&marker)).count()
}

fn expect_line(m: &Machine, marker: &str) -> Result<String, String> {
    m.wait_for(marker, BOOT)
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(what())
    }
}

fn default_boot(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("")?, slot)?;
    let banner = expect_line(m, "Xenolith ")?;
    check(banner.contains("loaded by GRUB"), || {
        format!("banner does not name GRUB: {banner}")
    })?;
    let line = expect_line(m, "cmdline: ")?;
    check(
        line.contains("dom0_mem=65536K")
            && line.contains("com1=115200,8n1,0x3f8,4")
            && line.contains("console=com1,vga")
            && line.contains("noreboot=off"),
        || format!("unexpected defaults: {line}"),
    )?;
    expect_line(m, "paging: text")?;
    let apic = expect_line(m, "apic: ")?;
    check(apic.contains("timer periodic at 100 Hz"), || {
        format!("no timer: {apic}")
    })?;
    expect_line(m, "xenolith: ready")?;
    check(!m.lines().iter().any(|l| l.starts_with("warning:")), || {
        "a clean command line gave warnings".into()
    })
}

fn seed_options(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let cmd = "dom0_mem=32M com1=9600,8n1,0x3f8,4 com2=57600,7e2 console=com1,vga noreboot \
               nosmp noacpi ignorebiostables watchdog noht ifname=dummy tbuf_size=4";
    let m = boot(&c.config(cmd)?, slot)?;
    let line = expect_line(m, "cmdline: ")?;
    for want in [
        "dom0_mem=32768K",
        "com1=9600,8n1,0x3f8,4",
        "com2=57600,7e2,0x2f8,3",
        "console=com1,vga",
        "noreboot=on",
        "nosmp=on",
        "noacpi=on",
        "ignorebiostables=on",
        "watchdog=on",
        "noht=on",
        "ifname=dummy",
        "tbuf_size=4",
    ] {
        check(line.contains(want), || {
            format!("{want} missing from {line}")
        })?;
    }
    expect_line(m, "acpi: disabled by ignorebiostables")?;
    expect_line(m, "warning: watchdog: no I/O APIC to deliver its NMI; off")?;
    expect_line(m, "net: ifname=dummy")?;
    expect_line(m, "trace: 4 pages per cpu")?;
    expect_line(m, "dom0: 32768K set aside")?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn bad_options(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let cmd = "frobnicate com1=fast dom0_mem=-5 tbuf_size=999999999999 console=lpt1";
    let m = boot(&c.config(cmd)?, slot)?;
    expect_line(m, "warning: unknown option 'frobnicate' ignored")?;
    expect_line(
        m,
        "warning: malformed com1='fast', using 115200,8n1,0x3f8,4",
    )?;
    expect_line(m, "warning: malformed dom0_mem='-5'")?;
    expect_line(m, "warning: malformed tbuf_size='999999999999', using 0")?;
    expect_line(m, "warning: malformed console='lpt1'")?;
    let line = expect_line(m, "cmdline: ")?;
    check(
        line.contains("dom0_mem=65536K") && line.contains("tbuf_size=0"),
        || format!("defaults not used: {line}"),
    )?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn noreboot_panic_halts(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let sock = c.socket("monitor.sock");
    let m = boot(
        &c.config("noreboot ktest=panic")?.monitor_socket(&sock),
        slot,
    )?;
    let panic = expect_line(m, "PANIC at ")?;
    check(
        panic.contains("kernel/src/boot.rs:") && panic.ends_with("ktest=panic requested"),
        || format!("panic line lacks file, line or message: {panic}"),
    )?;
    expect_line(m, "noreboot: halted")?;
    // The CPU must come to a halt with interrupts off (it may still be writing
    // the line's last byte when we look), and the machine must not reset.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let regs = loop {
        let regs = m.monitor("info registers")?;
        if regs.contains("HLT=1") || std::time::Instant::now() > deadline {
            break regs;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    check(regs.contains("HLT=1"), || {
        format!("CPU not halted:\n{regs}")
    })?;
    let eflags = regs
        .split("RFL=")
        .nth(1)
        .and_then(|s| u64::from_str_radix(&s[..8], 16).ok())
        .ok_or_else(|| format!("no RFL in:\n{regs}"))?;
    check(eflags & (1 << 9) == 0, || {
        format!("interrupts still enabled: RFL={eflags:#x}")
    })?;
    check(m.is_running(), || "QEMU exited".into())?;
    let banners = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("Xenolith "))
        .count();
    check(banners == 1, || {
        format!("machine rebooted: {banners} banners")
    })
}

fn panic_resets(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("ktest=panic")?, slot)?;
    expect_line(m, "PANIC at ")?;
    expect_line(m, "rebooting")?;
    expect_line(m, "reset: via")?;
    // The proof of a reset: the firmware and GRUB run again and the kernel boots a second time.
    m.wait_for_nth("Xenolith ", 2, BOOT)?;
    Ok(())
}

fn page_fault_report(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("noreboot ktest=pagefault")?, slot)?;
    let ex = expect_line(m, "exception: ")?;
    check(
        ex.contains("#PF page fault (vector 14)")
            && ex.contains("error=0x0")
            && ex.contains("cr2=0x7fffdead0000")
            && ex.contains("rip=0xffffffff8"),
        || format!("bad report: {ex}"),
    )?;
    expect_line(m, "  rax=")?;
    expect_line(m, "  r13=")?;
    expect_line(m, "PANIC at ")?;
    expect_line(m, "noreboot: halted")?;
    Ok(())
}

/// The boot CPU's stack, and an application processor's, overflow into
/// their guard pages: a double fault on the IST stack, reported (an AP's
/// stack had no guard: it ran down through the physmap over other frames).
fn stack_overflow(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("noreboot ktest=stackoverflow")?, slot)?;
    let ex = expect_line(m, "exception: ")?;
    check(ex.contains("#DF double fault (vector 8)"), || {
        format!("expected a double fault: {ex}")
    })?;
    expect_line(m, "noreboot: halted")?;
    let m = boot(&c.config("noreboot ktest=stackoverflow_ap")?.smp(2), slot)?;
    expect_line(m, "ktest: CPU 1 overflows its kernel stack")?;
    let ex = expect_line(m, "exception: ")?;
    check(ex.contains("#DF double fault (vector 8)"), || {
        format!("expected a double fault on CPU 1: {ex}")
    })?;
    expect_line(m, "PANIC at ")?;
    Ok(())
}

fn parse_kib(line: &str, after: &str) -> Option<u64> {
    line.split(after)
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn memory_total(
    c: &Ctx,
    slot: &mut Option<Machine>,
    qemu_mem: &str,
    bytes: u64,
    above_4g: bool,
) -> Result<(), String> {
    let m = boot(&c.config("")?.memory(qemu_mem), slot)?;
    let line = expect_line(m, "memory: usable ")?;
    let kib = parse_kib(&line, "usable ").ok_or_else(|| format!("no total in {line}"))?;
    let want = bytes / 1024;
    // Firmware keeps a little: the EBDA, the BIOS area and its ACPI tables; never more than 2 MiB here.
    check(kib <= want && kib + 2048 >= want, || {
        format!("usable {kib} KiB, expected just under {want} KiB: {line}")
    })?;
    let top = line
        .split("top of RAM 0x")
        .nth(1)
        .and_then(|s| {
            u64::from_str_radix(
                s.trim_end_matches(|c: char| !c.is_ascii_hexdigit())
                    .split(';')
                    .next()?,
                16,
            )
            .ok()
        })
        .ok_or_else(|| format!("no top of RAM in {line}"))?;
    check((top > 1 << 32) == above_4g, || {
        format!("top of RAM {top:#x}, above 4 GiB expected: {above_4g}")
    })?;
    let paging = expect_line(m, "paging: ")?;
    let physmap =
        parse_kib(&paging, "physmap ").ok_or_else(|| format!("no physmap size in {paging}"))?;
    check(physmap << 20 >= bytes, || {
        format!("physmap {physmap} MiB does not cover {qemu_mem}")
    })?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn dom0_mem_clamped(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("dom0_mem=1G")?.memory("64M"), slot)?;
    expect_line(m, "warning: dom0_mem=1048576K exceeds available memory")?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn smp2(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("")?.smp(2), slot)?;
    let acpi = expect_line(m, "acpi: MADT")?;
    check(acpi.contains("MADT 2 cpus, 1 I/O APICs"), || {
        format!("unexpected MADT: {acpi}")
    })?;
    expect_line(m, "cpus: 2 found, 2 eligible")?;
    expect_line(
        m,
        "smp: 2 CPUs running (the boot CPU and 1 of 1 application processors)",
    )?;
    expect_line(m, "xenolith: ready")?;
    let m = boot(&c.config("")?.smp(4), slot)?;
    expect_line(
        m,
        "smp: 4 CPUs running (the boot CPU and 3 of 3 application processors)",
    )?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn nosmp_noht(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    {
        let m = boot(&c.config("nosmp")?.smp(2), slot)?;
        expect_line(m, "cpus: 2 found, 1 eligible, nosmp")?;
        expect_line(m, "smp: 1 CPU running")?;
    }
    {
        let m = boot(
            &c.config("noht")?.smp_spec("4,sockets=1,cores=2,threads=2"),
            slot,
        )?;
        expect_line(m, "cpus: 4 found, 2 eligible, noht")?;
        expect_line(
            m,
            "smp: 2 CPUs running (the boot CPU and 1 of 1 application processors)",
        )?;
    }
    let m = boot(
        &c.config("noht")?.smp_spec("2,sockets=1,cores=1,threads=2"),
        slot,
    )?;
    expect_line(m, "cpus: 2 found, 1 eligible, noht")?;
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn modules(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let a = c.path("first-domain");
    let b = c.path("second-domain");
    std::fs::write(&a, vec![0xa5u8; 10_000]).map_err(|e| e.to_string())?;
    std::fs::write(&b, b"hello").map_err(|e| e.to_string())?;
    let mods = [
        Module {
            path: a,
            cmdline: "console-dom role=console".into(),
        },
        Module {
            path: b,
            cmdline: "guest name=b".into(),
        },
    ];
    let iso = c.iso("", &mods)?;
    let m = boot(&Config::new(&iso).accel(c.accel), slot)?;
    let l1 = expect_line(m, "console-dom role=console")?;
    let l2 = expect_line(m, "guest name=b")?;
    for (line, len) in [(l1, 10_000u64), (l2, 5)] {
        let range = line.split_whitespace().nth(1).ok_or("no range")?;
        let (s, e) = range.split_once('-').ok_or("bad range")?;
        let s = u64::from_str_radix(s.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
        let e = u64::from_str_radix(e.trim_start_matches("0x"), 16).map_err(|e| e.to_string())?;
        check(e - s == len, || {
            format!("module range {range} is not {len} bytes")
        })?;
    }
    expect_line(m, "xenolith: ready")?;
    Ok(())
}

fn console_com2(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let com2 = c.path("com2.log");
    let m = boot(
        &c.config("console=com2H ktest=poweroff")?.com2_file(&com2),
        slot,
    )?;
    let status = m.wait_exit(BOOT)?;
    check(status.success(), || format!("QEMU exited with {status}"))?;
    let raw = std::fs::read(&com2).map_err(|e| format!("cannot read COM2 output: {e}"))?;
    check(!raw.is_empty() && raw.iter().all(|b| b & 0x80 != 0), || {
        "COM2 bytes lack the top bit".into()
    })?;
    let text: String = raw.iter().map(|b| (b & 0x7f) as char).collect();
    check(
        text.contains("xenolith: ready") && text.contains("console=com2H"),
        || format!("COM2 got: {text}"),
    )?;
    check(
        m.lines().iter().all(|l| !l.contains("xenolith: ready")),
        || "COM1 was written although not a console".into(),
    )
}

fn poweroff(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(&c.config("ktest=poweroff")?, slot)?;
    expect_line(m, "poweroff: ACPI S5")?;
    let status = m.wait_exit(BOOT)?;
    check(status.success(), || format!("QEMU exited with {status}"))
}

fn dom0_hello(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &c.system("", &[("hello", "hello memory=512K greeting=hi")])?,
        slot,
    )?;
    expect_line(m, "dom0: domain 0 started from module 1")?;
    expect_line(m, "[0] toolstack: domain 0 up, 1 boot modules")?;
    expect_line(m, "[0] toolstack: started hello as domain 1 (512 KiB)")?;
    let hello = expect_line(m, "[1] hello from domain 1")?;
    check(hello.contains("(512 KiB): hello greeting=hi self="), || {
        format!("unexpected greeting: {hello}")
    })?;
    expect_line(m, "[0] toolstack: domain 1 (hello) shut down (reason 0)")?;
    expect_line(m, "[0] toolstack: all domains have stopped")?;
    Ok(())
}

/// Boots with `dom0` (binary, command line) as domain 0 and `guests` after it.
fn custom_dom0(c: &Ctx, dom0: (&str, &str), guests: &[(&str, &str)]) -> Result<Config, String> {
    let mut mods = vec![Module {
        path: build::domain(&c.domains, dom0.0),
        cmdline: dom0.1.into(),
    }];
    for (bin, line) in guests {
        mods.push(Module {
            path: build::domain(&c.domains, bin),
            cmdline: (*line).into(),
        });
    }
    Ok(Config::new(&c.iso("", &mods)?).accel(c.accel))
}

/// The number right after `key` in `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = line.split(key).nth(1)?;
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn ping_pong(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        ("pingpong", "pong rounds=10000"),
        ("pingpong", "ping evtchn=pong rounds=10000"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    expect_line(m, "[2] pingpong: 10000 round trips done")?;
    expect_line(m, "[1] pingpong: answered 10000 pings")?;
    expect_line(m, "toolstack: all domains have stopped")?;
    Ok(())
}

fn isolation(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    // (fault, what domain 0 must report)
    let faults: [(&str, &str); 12] = [
        ("read_kernel", "vector 14 error 0x5 at rip"),
        ("read_kernel_image", "vector 14 error 0x5 at rip"),
        ("read_other", "vector 14 error 0x4 at rip"),
        ("write_code", "vector 14 error 0x7 at rip"),
        ("exec_data", "vector 14 error 0x15 at rip"),
        ("cli", "vector 13 error 0x0"),
        ("hlt", "vector 13 error 0x0"),
        ("mov_cr3", "vector 13 error 0x0"),
        ("wrmsr", "vector 13 error 0x0"),
        ("port_io", "vector 13 error 0x0"),
        ("ud2", "vector 6 error 0x0"),
        (
            "panic",
            "crashed: \"deliberate panic for the test at domains/test-domains/src/faults.rs:",
        ),
    ];
    let lines: Vec<String> = faults
        .iter()
        .map(|(f, _)| format!("{f} fault={f} memory=512K"))
        .collect();
    let mut guests: Vec<(&str, &str)> = vec![("survivor", "survivor memory=512K")];
    guests.extend(lines.iter().map(|l| ("crasher", l.as_str())));
    let m = boot(&c.system("", &guests)?, slot)?;
    let mut last = Duration::ZERO;
    for (i, (fault, want)) in faults.iter().enumerate() {
        let id = i + 2;
        let (at, line) = m.wait_for_nth(
            &format!("toolstack: domain {id} ({fault}) crashed"),
            1,
            BOOT,
        )?;
        check(line.contains(want), || {
            format!("{fault}: expected {want:?} in {line}")
        })?;
        last = last.max(at);
    }
    for (fault, addr) in [
        ("read_kernel", "addr 0xffff800000100000"),
        ("read_kernel_image", "addr 0xffffffff80201000"),
        ("read_other", "addr 0x700000000000"),
    ] {
        let line = expect_line(m, &format!("({fault}) crashed: vector"))?;
        check(line.contains(addr), || {
            format!("{fault}: expected {addr} in {line}")
        })?;
    }
    // The survivor keeps its heartbeat after the last crash.
    let beats_then = m
        .lines()
        .iter()
        .filter(|l| l.contains("survivor: heartbeat"))
        .count();
    let (at, _) = m.wait_for_nth("[1] survivor: heartbeat", beats_then + 2, BOOT)?;
    check(at > last, || "no heartbeat after the last crash".into())?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("did not fault") || l.starts_with("PANIC")),
        || "a fault did not happen or the kernel panicked".into(),
    )
}

fn fair_share(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        ("spinner", "light weight=1 seconds=2"),
        ("spinner", "heavy weight=2 seconds=2"),
        ("sleeper", "sleeper sleeps=40"),
    ];
    // Virtual time counts instructions here, so a busy host cannot make a wake-up look late.
    // One CPU: shares are divided per CPU (two would give each spinner one).
    let m = boot(&c.system("", &guests)?.icount().smp(1), slot)?;
    let sleeper = expect_line(m, "[3] sleeper: 40 sleeps, worst wake-up")?;
    let late_us = number_after(&sleeper, "worst wake-up ").ok_or("no lateness")?;
    check(late_us <= 10_000, || {
        format!("a wake-up came {late_us} us late, more than one 10 ms tick")
    })?;
    let light =
        number_after(&expect_line(m, "[1] spinner: ")?, "spinner: ").ok_or("no count")? as f64;
    let heavy =
        number_after(&expect_line(m, "[2] spinner: ")?, "spinner: ").ok_or("no count")? as f64;
    let ratio = heavy / light;
    check((ratio - 2.0).abs() <= 0.2, || {
        format!("weight 2 got {ratio:.3} times the CPU of weight 1 (want 2 within 10%)")
    })
}

fn grants(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &custom_dom0(
            c,
            ("test-dom0", "test-dom0 scenario=grants"),
            &[("grant-peer", "grant-peer")],
        )?,
        slot,
    )?;
    expect_line(
        m,
        "grant-peer: mapped ref 0 at 0x700000000000, pattern 0xfeedf00d",
    )?;
    expect_line(m, "grant-peer: foreign ref: Err(BadGrant)")?;
    expect_line(m, "grant-peer: revoked ref: Err(BadGrant)")?;
    expect_line(
        m,
        "grants: mapper wrote back 0xfeed0ff2 (expected 0xfeed0ff2)",
    )?;
    expect_line(m, "grants: end while mapped: Err(GrantInUse)")?;
    expect_line(m, "grants: end after the mapper died: Ok(())")?;
    expect_line(
        m,
        "grants: mapped the granter's page at 0x700000005000: 0x5eedcafe",
    )?;
    expect_line(
        m,
        "grants: unmap one of two mappings of a dead granter's page: Ok(())",
    )?;
    expect_line(m, "grants: after the granter died the page still reads 0x5eedcafe 0x123456789abcdef; copy through its id: Err(DeadDomain)")?;
    expect_line(m, "grants: unmap after the granter died: Ok(())")?;
    let stats = expect_line(m, "grants: stats before")?;
    check(stats.ends_with("equal=true"), || {
        format!("resources leaked: {stats}")
    })?;
    expect_line(m, "test-dom0: scenario done")?;
    Ok(())
}

fn churn(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &custom_dom0(
            c,
            ("test-dom0", "test-dom0 scenario=churn count=1000"),
            &[("hello", "hello")],
        )?,
        slot,
    )?;
    expect_line(m, "churn: info of a destroyed domain: Err(DeadDomain)")?;
    m.wait_for(
        "churn: 1000 domains created and destroyed",
        Duration::from_secs(300),
    )?;
    let eq = expect_line(m, "churn: equal=")?;
    check(eq.ends_with("equal=true"), || {
        format!(
            "{eq}\n{}",
            m.lines()
                .iter()
                .filter(|l| l.contains("churn:"))
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        )
    })?;
    let hellos = m
        .lines()
        .iter()
        .filter(|l| l.contains("hello from domain"))
        .count();
    check(hellos == 10, || {
        format!("{hellos} of the 10 unpaused domains said hello")
    })
}

fn hostile(c: &Ctx, slot: &mut Option<Machine>, as_dom0: bool) -> Result<(), String> {
    let (config, prefix) = if as_dom0 {
        (custom_dom0(c, ("hostile", "hostile"), &[])?, "[0]")
    } else {
        (c.system("", &[("hostile", "hostile")])?, "[1]")
    };
    let m = boot(&config, slot)?;
    not_forged(m, &format!("{prefix} hostile: "))?;
    let (_, summary) = m.wait_for_nth(&format!("{prefix} hostile: "), 2, BOOT)?;
    check(summary.contains(" calls, "), || {
        format!("unexpected summary: {summary}")
    })?;
    let checks = expect_line(m, &format!("{prefix} hostile: targeted checks passed"))?;
    check(checks.ends_with("passed 27/27"), || checks.clone())?;
    expect_line(m, &format!("{prefix} hostile: kernel still answers: Ok(0)"))?;
    if !as_dom0 {
        expect_line(m, "toolstack: domain 1 (hostile) shut down")?;
    }
    check(
        !m.lines()
            .iter()
            .any(|l| l.starts_with("PANIC") || l.starts_with("exception:")),
        || "the kernel faulted".into(),
    )
}

fn irq_driver(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let sock = c.socket("com2.sock");
    let guests = [("irq-serial", "serial ioports=0x2f8-0x2ff irqs=3")];
    let m = boot(&c.system("", &guests)?.com2_socket(&sock), slot)?;
    // Connect first: QEMU drops what arrives before a client is there.
    m.com2_send(b"")?;
    expect_line(m, "[1] irq-serial: ready on IRQ 3")?;
    m.com2_send(b"hello\n")?;
    expect_line(m, "[1] irq-serial: received \"hello\"")?;
    // A second line proves the acknowledgement unmasked the IRQ.
    m.com2_send(b"again\n")?;
    expect_line(m, "[1] irq-serial: received \"again\"")?;
    m.com2_send(b"forbidden\n")?;
    let crash = expect_line(m, "toolstack: domain 1 (serial) crashed")?;
    check(crash.contains("vector 13"), || {
        format!("expected #GP for port 0x60: {crash}")
    })
}

fn device_memory(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let sock = c.socket("monitor.sock");
    let guests = [
        ("vga-writer", "vga iomem=0xb8,1 text=XENOLITH"),
        ("vga-writer", "thief iomem=0x200,1"),
        // Device memory above RAM (nothing there: reads as all ones).
        ("vga-writer", "pointer iomem=0x40000,1"),
        // The local APIC and the keyboard controller (0x64: reset) are the kernel's.
        ("vga-writer", "apic iomem=0xfee00,1"),
        ("vga-writer", "resetter ioports=0x60-0x64"),
    ];
    // The kernel keeps off the VGA screen so only the domain writes it.
    let m = boot(
        &c.system("console=com1", &guests)?.monitor_socket(&sock),
        slot,
    )?;
    expect_line(m, "[1] vga-writer: wrote \"XENOLITH\", read back 0x1f58")?;
    expect_line(
        m,
        "toolstack: cannot give thief its hardware: permission denied",
    )?;
    expect_line(
        m,
        "vga-writer: ConsoleWrite from device memory: Err(BadAddress)",
    )?;
    expect_line(
        m,
        "toolstack: cannot give apic its hardware: permission denied",
    )?;
    expect_line(
        m,
        "toolstack: cannot give resetter its hardware: permission denied",
    )?;
    expect_line(
        m,
        "vga-writer: DomainInfo into device memory: Err(BadAddress)",
    )?;
    let mem = m.monitor("xp /8xh 0xb8000")?;
    for want in [
        "0x1f58", "0x1f45", "0x1f4e", "0x1f4f", "0x1f4c", "0x1f49", "0x1f54", "0x1f48",
    ] {
        check(mem.contains(want), || {
            format!("VGA memory lacks {want}:\n{mem}")
        })?;
    }
    Ok(())
}

fn lifecycle(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let dom0 = ("test-dom0", "test-dom0 scenario=lifecycle");
    let m = boot(
        &custom_dom0(c, dom0, &[("hello", "hello"), ("survivor", "survivor")])?,
        slot,
    )?;
    expect_line(
        m,
        "[0] lifecycle: kernel log has the banner: true, the cmdline: true",
    )?;
    expect_line(
        m,
        "[0] lifecycle: a second domain named dup: Err(NameTaken)",
    )?;
    expect_line(m, "[0] lifecycle: truncated image: Err(BadImage)")?;
    expect_line(m, "image refused: truncated")?;
    expect_line(m, "[0] lifecycle: refusal logged: true")?;
    expect_line(m, "[0] lifecycle: start before any image: Err(DomainState)")?;
    expect_line(m, "[0] lifecycle: bad entry: state 3 vector 14 rip 0x10")?;
    expect_line(
        m,
        "[0] lifecycle: paused for 500 ms: no heartbeat true, no CPU time true",
    )?;
    expect_line(m, "[0] lifecycle: unpaused: the heartbeat is back")?;
    expect_line(m, "[0] test-dom0: scenario done")?;
    Ok(())
}

fn chatty(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [("survivor", "survivor"), ("chatty", "chatty")];
    let m = boot(&c.system("", &guests)?, slot)?;
    let dropped = expect_line(m, "lines dropped by the rate limit")?;
    check(dropped.starts_with("[2] ("), || {
        format!("unexpected: {dropped}")
    })?;
    // The survivor keeps its 100 ms heartbeat while the chatty one floods.
    let beats = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("[1] survivor: heartbeat"))
        .count();
    m.wait_for_nth("[1] survivor: heartbeat", beats + 3, BOOT)?;
    Ok(())
}

/// COM2's far end stops reading (a FIFO nobody reads: QEMU's UART then
/// stays full, as on a line slower than what is sent) while a domain prints
/// as fast as the rate limit allows through the kernel, which writes its
/// log on COM1 and COM2 (`console=com1,com2L`). The kernel waits for COM2 a
/// bounded time once and then drops what it would send there: another
/// domain's heartbeat goes on on COM1 long after COM2 is full (the kernel
/// waited for the UART under its lock for ever, and the machine stopped).
fn congested_line(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let fifo = c.path("com2");
    for end in ["in", "out"] {
        let path = c.path(&format!("com2.{end}"));
        let _ = std::fs::remove_file(&path);
        let made = std::process::Command::new("mkfifo")
            .arg(&path)
            .status()
            .map_err(|e| format!("mkfifo: {e}"))?;
        check(made.success(), || format!("mkfifo {}", path.display()))?;
    }
    let guests = [("survivor", "survivor"), ("chatty", "chatty")];
    let config = c.system("console=com1,com2L", &guests)?.com2_pipe(&fifo);
    let m = boot(&config, slot)?;
    expect_line(m, "lines dropped by the rate limit")?;
    // The pipe's 64 KiB fill in about four seconds of flooding.
    expect_line(
        m,
        "console: COM2 takes no bytes; what it misses is dropped until it does",
    )?;
    // Then ten more seconds of heartbeats (one each 100 ms).
    let before = m
        .lines()
        .iter()
        .filter(|l| l.starts_with("[1] survivor: heartbeat"))
        .count();
    m.wait_for_nth("[1] survivor: heartbeat", before + 100, BOOT)?;
    Ok(())
}

fn control_ring(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &c.system("", &[("control-client", "client beats=5")])?,
        slot,
    )?;
    expect_line(m, "[0] toolstack: domain 1 connected its control ring")?;
    expect_line(
        m,
        "[1] control-client: 5 of 5 heartbeats answered OK (connected: true)",
    )?;
    expect_line(
        m,
        "[1] control-client: a malformed message is answered Ok(1) (Invalid is 1)",
    )?;
    expect_line(m, "toolstack: domain 1 (client) shut down")?;
    Ok(())
}

/// Twelve messages for the broker (more than one batch of eight, fewer
/// than the runtime's inbox of sixteen answers) posted at once, without waiting:
/// every one is answered (a ninth in one batch was answered `Unsupported`).
fn control_burst(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let m = boot(
        &c.system("", &[("control-client", "client burst=12")])?,
        slot,
    )?;
    expect_line(
        m,
        "[1] control-client: burst of 12: 12 answered NoDevice, 0 otherwise, 0 unanswered",
    )
    .map(drop)
}

/// A domain keeps its control ring full from another CPU: domain 0 still
/// answers the host at once, and console-dom, watched for heartbeats every
/// second, is not taken for hung.
fn control_flood(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4 heartbeat=1000",
        ),
        ("control-client", "flooder flood cpus=1"),
    ];
    let (m, sock) = boot_managed_with(c, slot, &guests, None, |config| config.smp(2))?;
    expect_line(m, "[2] control-client: flooding the control ring")?;
    // It has been at it a while.
    m.wait_for_nth("[2] control-client: ", 3, BOOT)?;
    for _ in 0..5 {
        let asked = std::time::Instant::now();
        let (code, out) = toolstack(&sock, &["domain", "list"])?;
        let took = asked.elapsed();
        check(code == 0 && out.contains("flooder"), || {
            format!("domain list under the flood: {code} {out}")
        })?;
        check(took < Duration::from_secs(3), || {
            format!("domain list took {took:?} under the flood")
        })?;
    }
    check(
        !m.lines().iter().any(|l| l.contains("missed its heartbeat")),
        || "a domain was taken for hung while another flooded domain 0".into(),
    )
}

/// The line `start` + a forging text (`hello forge`, `hostile`) comes out
/// with its carriage return and escapes made `?`: one line, the domain's.
fn not_forged(m: &Machine, start: &str) -> Result<(), String> {
    let want = format!("{start}forged?[0] toolstack: I am domain 0?[2J?]0;owned?");
    let line = m.wait_for(start, BOOT)?;
    check(line == want, || {
        format!("the forging line came out as {line:?}")
    })?;
    check(
        !m.lines().iter().any(|l| {
            l.starts_with("[0] toolstack: I am") || (l.contains("owned") && l.contains('\x1b'))
        }),
        || "a domain's escape sequence or forged line reached the console".into(),
    )
}

fn console_dom_relay(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("hello", "hello forge"),
        ("chatty", "chatty"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    not_forged(m, "[2] hello: ")?;
    let (took, _) = m.wait_for_nth("console: domain 1 takes COM1 over", 1, BOOT)?;
    // Kernel-log lines (domain 0 prints with the debug hypercall) still reach
    // COM1, through console-dom: this one can only come after it took over.
    let (relayed, _) = m.wait_for_nth(
        "[0] toolstack: domain 1 serves device 1:0 of domain 3",
        1,
        BOOT,
    )?;
    check(relayed >= took, || {
        "the kernel log line came before the takeover".into()
    })?;
    expect_line(m, "[2] hello from domain 2")?;
    // Through its ring the chatty domain is slowed, never cut: lines 1..=5000 all arrive, whole.
    m.wait_for("[3] chatty: line 5000", Duration::from_secs(120))?;
    let numbers: Vec<u64> = m
        .lines()
        .iter()
        .filter_map(|l| l.strip_prefix("[3] chatty: line "))
        .filter_map(|n| n.parse().ok())
        .take(5000)
        .collect();
    check(numbers == (1..=5000).collect::<Vec<u64>>(), || {
        format!(
            "chatty lines missing or out of order ({} seen)",
            numbers.len()
        )
    })?;
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("dropped") || l.contains("lost")),
        || "a line was dropped".into(),
    )
}

fn console_rings(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("counter", "a"),
        ("counter", "b"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    expect_line(m, "[2] counter: ring true")?;
    expect_line(m, "[3] counter: ring true")?;
    m.wait_for("[2] counter: 10000", Duration::from_secs(120))?;
    m.wait_for("[3] counter: 10000", Duration::from_secs(120))?;
    for dom in [2, 3] {
        let prefix = format!("[{dom}] counter: ");
        let numbers: Vec<u64> = m
            .lines()
            .iter()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|rest| rest.parse().ok())
            .collect();
        check(numbers == (1..=10_000).collect::<Vec<u64>>(), || {
            format!(
                "domain {dom}: {} lines, first gaps or disorder near {:?}",
                numbers.len(),
                numbers.windows(2).find(|w| w[1] != w[0] + 1)
            )
        })?;
    }
    let broken = m
        .lines()
        .iter()
        .filter(|l| {
            l.contains("counter:")
                && !l.starts_with("[2] counter: ")
                && !l.starts_with("[3] counter: ")
        })
        .count();
    check(broken == 0, || {
        format!("{broken} lines broken or misattributed")
    })
}

fn flood_and_heartbeat(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("survivor", "beat period_ms=10"),
        ("chatty", "chatty"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    m.wait_for("[3] chatty: line 6000", Duration::from_secs(120))?;
    let lines = m.lines();
    let at = |n: u64| {
        lines
            .iter()
            .position(|l| l == &format!("[3] chatty: line {n}"))
    };
    let (from, to) = (
        at(1000).ok_or("no line 1000")?,
        at(6000).ok_or("no line 6000")?,
    );
    let beats = lines[from..to]
        .iter()
        .filter(|l| l.starts_with("[2] survivor: heartbeat"))
        .count();
    check(beats >= 3, || {
        format!("only {beats} heartbeats while 5000 flood lines went by")
    })
}

fn partial_line(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("partial", "partial"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    // The domain prints "no newline yet" without a newline, then waits 2 s.
    let (printed, _) = m.wait_for_nth("[2] no newline yet", 1, BOOT)?;
    let (done, _) = m.wait_for_nth("[2] partial: done", 1, BOOT)?;
    check(printed < done, || {
        "the unfinished line waited for the next one".into()
    })
}

fn console_input(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("echo", "first"),
        ("echo", "second"),
    ];
    let m = boot(&c.system("", &guests)?.com1_input(), slot)?;
    expect_line(m, "[2] echo: ready (ring true)")?;
    expect_line(m, "[3] echo: ready (ring true)")?;
    expect_line(m, "serves device 1:0 of domain 3")?;
    // Domain 0's shell has the focus at boot; the escape moves it on.
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 2")?;
    m.com1_send(b"hello one\n")?;
    expect_line(m, "[2] echo: hello one")?;
    m.com1_send(b"\x01\x01\x01")?;
    expect_line(m, "console-dom: input now goes to domain 3")?;
    m.com1_send(b"hello two\n")?;
    expect_line(m, "[3] echo: hello two")?;
    check(
        !m.lines()
            .iter()
            .any(|l| l == "[2] echo: hello two" || l == "[3] echo: hello one"),
        || "input reached the wrong domain".into(),
    )
}

fn console_history(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("hello", "hello history_on_exit"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    // The toolstack asks for the replay only once the domain has stopped
    // (its own line about that may reach COM1 a little before or after).
    expect_line(m, "toolstack: domain 2 (hello) shut down")?;
    let (start, _) = m.wait_for_nth("console-dom: history of domain 2:", 1, BOOT)?;
    // The greeting is printed live once, and once more from the history.
    let (again, _) = m.wait_for_nth("[2] hello from domain 2", 2, BOOT)?;
    check(again >= start, || {
        "the second greeting is not the replay".into()
    })?;
    let end = expect_line(m, "console-dom: end of history of domain 2")?;
    check(end.contains("0 older bytes cut"), || end.clone())
}

fn console_disconnect(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let guests = [
        (
            "console-dom",
            "console-dom role=console memory=4M ioports=0x3f8-0x3ff irqs=4",
        ),
        ("quitter", "quitter"),
    ];
    let m = boot(&c.system("", &guests)?, slot)?;
    expect_line(m, "[2] quitter: before (ring true)")?;
    expect_line(m, "console-dom: domain 2 disconnected its console")?;
    expect_line(m, "[2] quitter: after Ok(()) (ring false)")?;
    Ok(())
}

fn boot_bundle(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let hello = build::domain(&c.domains, "hello");
    let auto = [
        ("20-second.cfg", "name = \"second\"\nkernel = \"hello\"\nmemory = 1\n"),
        ("10-first.cfg", "name = \"first\"\nkernel = \"hello\"\nmemory = 1\ncmdline = \"from=bundle\"\ncolour = \"blue\"\n"),
        ("30-bad.cfg", "name = \"bad\"\nkernel = \"hello\"\nmemory = 0\n"),
        ("40-nokernel.cfg", "name = \"nok\"\nkernel = \"missing\"\n"),
        ("50-syntax.cfg", "name = \"broken\n"),
    ];
    let tar = iso::bundle(&c.path("bundle.tar"), &auto, &[("hello", &hello)])?;
    let mods = [
        Module {
            path: build::domain(&c.domains, "toolstack-domain"),
            cmdline: "toolstack-domain".into(),
        },
        Module {
            path: tar,
            cmdline: "bundle".into(),
        },
    ];
    let m = boot(&Config::new(&c.iso("", &mods)?).accel(c.accel), slot)?;
    let (first, _) = m.wait_for_nth("toolstack: started first as domain", 1, BOOT)?;
    let (second, _) = m.wait_for_nth("toolstack: started second as domain", 1, BOOT)?;
    check(first < second, || {
        "auto/ configurations did not start in name order".into()
    })?;
    expect_line(
        m,
        "toolstack: warning: auto/10-first.cfg:5: colour: unknown key, ignored",
    )?;
    expect_line(m, "toolstack: auto/30-bad.cfg:3: memory: 0 is out of range")?;
    expect_line(
        m,
        "toolstack: auto/40-nokernel.cfg: kernel: no image named missing in the boot bundle",
    )?;
    expect_line(
        m,
        "toolstack: auto/50-syntax.cfg:1: name: unterminated string",
    )?;
    let hello = expect_line(m, "hello from domain 1")?;
    check(hello.contains("from=bundle"), || {
        format!("the configuration's cmdline is missing: {hello}")
    })?;
    expect_line(m, "toolstack: all domains have stopped")?;
    let started = m
        .lines()
        .iter()
        .filter(|l| l.contains("toolstack: started "))
        .count();
    check(started == 2, || {
        format!("{started} domains started; only the two good configurations may start")
    })
}

/// Runs the host `toolstack` command; returns (exit code, stdout + stderr).
/// The kernel's free memory in KiB, as `toolstack host info` reports it.
fn free_kib(sock: &Path) -> Result<u64, String> {
    let (code, out) = toolstack(sock, &["host", "info"])?;
    out.lines()
        .find_map(|l| l.strip_prefix("free:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .filter(|_| code == 0)
        .ok_or_else(|| format!("host info: {code} {out}"))
}

fn toolstack(sock: &Path, args: &[&str]) -> Result<(i32, String), String> {
    let out = std::process::Command::new(build::target_dir().join("debug/toolstack"))
        .arg("--connect")
        .arg(sock)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run toolstack: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

fn toolstack_command(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let (m, sock) = boot_managed(c, slot, &[("survivor", "survivor")], None)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    expect_line(m, "[1] survivor: heartbeat 1")?;
    let (code, list) = toolstack(&sock, &["domain", "list"])?;
    check(
        code == 0
            && list.contains("survivor")
            && list.contains("running")
            && list.contains("toolstack-domain"),
        || format!("list: {code} {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "pause", "1"])?;
    check(code == 0, || format!("pause: {code} {out}"))?;
    let (_, list) = toolstack(&sock, &["domain", "list", "--json"])?;
    check(
        list.contains("\"name\":\"survivor\",\"state\":\"paused\""),
        || format!("not paused: {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "unpause", "1"])?;
    check(code == 0, || format!("unpause: {code} {out}"))?;
    // Garbage on the channel changes nothing: the next request is served.
    {
        let mut s = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        std::io::Write::write_all(&mut s, b"XNM1\x01garbage that is not a frame \x00\xff\xfe")
            .map_err(|e| e.to_string())?;
    }
    let (code, info) = toolstack(&sock, &["host", "info"])?;
    check(code == 0 && info.contains("domains:   2"), || {
        format!("host info: {code} {info}")
    })?;
    let (code, out) = toolstack(&sock, &["domain", "pause", "42"])?;
    check(code == 1 && out.contains("no such domain"), || {
        format!("pause 42: {code} {out}")
    })?;
    // Create from a file, the image uploaded from beside it.
    let image = std::fs::read(build::domain(&c.domains, "survivor")).map_err(|e| e.to_string())?;
    std::fs::write(c.path("survivor"), &image).map_err(|e| e.to_string())?;
    std::fs::write(c.path("trunc"), &image[..100]).map_err(|e| e.to_string())?;
    let cfg = c.path("made.cfg");
    std::fs::write(&cfg, "name = \"made\"\nkernel = \"survivor\"\nmemory = 1\n")
        .map_err(|e| e.to_string())?;
    let before = toolstack(&sock, &["domain", "list"])?.1;
    let (code, out) = toolstack(
        &sock,
        &[
            "domain",
            "create",
            cfg.to_str().unwrap_or(""),
            "cmdline=period_ms=50",
        ],
    )?;
    check(code == 0 && out.starts_with("created domain "), || {
        format!("create: {code} {out}")
    })?;
    let id: u32 = out
        .trim()
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or("no id")?;
    expect_line(m, &format!("[{id}] survivor: heartbeat 1"))?;
    // Bad input: refused with a clear error, and nothing changes.
    let free = |sock: &Path| -> Result<String, String> {
        let (_, info) = toolstack(sock, &["host", "info"])?;
        info.lines()
            .find(|l| l.starts_with("free:"))
            .map(str::to_string)
            .ok_or_else(|| format!("no free line in host info: {info}"))
    };
    let free_before = free(&sock)?;
    std::fs::write(
        c.path("zero.cfg"),
        "name = \"zero\"\nkernel = \"survivor\"\nmemory = 0\n",
    )
    .map_err(|e| e.to_string())?;
    let zero = c.path("zero.cfg");
    let (code, out) = toolstack(&sock, &["domain", "create", zero.to_str().unwrap_or("")])?;
    check(
        code == 2 && out.contains("zero.cfg:3: memory: 0 is out of range"),
        || format!("memory = 0: {code} {out}"),
    )?;
    std::fs::write(
        c.path("trunc.cfg"),
        "name = \"trunc\"\nkernel = \"trunc\"\nmemory = 1\n",
    )
    .map_err(|e| e.to_string())?;
    let trunc = c.path("trunc.cfg");
    let (code, out) = toolstack(&sock, &["domain", "create", trunc.to_str().unwrap_or("")])?;
    check(code == 1 && out.contains("could not be created"), || {
        format!("truncated image: {code} {out}")
    })?;
    expect_line(m, "image refused: truncated")?;
    let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
    check(code == 1 && out.contains("could not be created"), || {
        format!("duplicate name: {code} {out}")
    })?;
    let bad = |name: &str, text: &str| -> Result<(i32, String), String> {
        let path = c.path(name);
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        toolstack(&sock, &["domain", "create", path.to_str().unwrap_or("")])
    };
    let (code, out) = bad(
        "huge.cfg",
        "name = \"huge\"\nkernel = \"survivor\"\nmemory = 16384\n",
    )?;
    check(code == 1 && out.contains("could not be created"), || {
        format!("more memory than is free: {code} {out}")
    })?;
    let (code, out) = bad("syntax.cfg", "name = \"broken\nkernel = \"survivor\"\n")?;
    check(
        code == 2 && out.contains("syntax.cfg:1: name: unterminated string"),
        || format!("syntax error: {code} {out}"),
    )?;
    let (code, out) = bad(
        "unknown.cfg",
        "name = \"odd\"\nkernel = \"missing-image\"\nmemroy = 4\n",
    )?;
    check(
        code != 0 && out.contains("unknown.cfg:3: memroy: unknown key, ignored"),
        || format!("unknown key: {code} {out}"),
    )?;
    let free_after = free(&sock)?;
    check(free_after == free_before, || {
        format!("failed creations changed free memory: {free_before} / {free_after}")
    })?;
    let after = toolstack(&sock, &["domain", "list"])?.1;
    check(after.lines().count() == before.lines().count() + 1, || {
        format!("bad creations changed the list:\n{before}\n{after}")
    })?;
    let (code, dmesg) = toolstack(&sock, &["host", "dmesg"])?;
    check(
        code == 0 && dmesg.contains("toolstack: serving the management protocol"),
        || format!("dmesg: {code} {dmesg}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "destroy", "1"])?;
    check(code == 0, || format!("destroy: {code} {out}"))?;
    let (_, list) = toolstack(&sock, &["domain", "list"])?;
    check(!list.contains("survivor"), || {
        format!("destroyed domain still listed: {list}")
    })?;
    let (code, out) = toolstack(Path::new("/nonexistent.sock"), &["domain", "list"])?;
    check(code == 3 && out.contains("cannot connect"), || {
        format!("no machine: {code} {out}")
    })
}

fn policies_and_info(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let auto = [
        ("10-keep.cfg", "name = \"keep\"\nkernel = \"crasher\"\nmemory = 1\ncmdline = \"fault=ud2\"\non_crash = \"preserve\"\n"),
        ("20-gone.cfg", "name = \"gone\"\nkernel = \"hello\"\nmemory = 1\non_poweroff = \"destroy\"\n"),
    ];
    let images = [
        ("crasher", build::domain(&c.domains, "crasher")),
        ("hello", build::domain(&c.domains, "hello")),
    ];
    let images: Vec<(&str, &Path)> = images.iter().map(|(n, p)| (*n, p.as_path())).collect();
    let tar = iso::bundle(&c.path("bundle.tar"), &auto, &images)?;
    let (m, sock) = boot_managed(c, slot, &[], Some(tar))?;
    expect_line(m, "toolstack: domain 1 (keep) crashed: vector 6")?;
    expect_line(m, "toolstack: destroyed domain 2 (gone) as its policy says")?;
    let (code, info) = toolstack(&sock, &["domain", "info", "keep"])?;
    check(
        code == 0
            && info.contains("state:   crashed")
            && info.contains("crash:   vector 6 error 0x0 at rip 0x4"),
        || format!("info keep: {code} {info}"),
    )?;
    let (code, list) = toolstack(&sock, &["domain", "list"])?;
    check(
        code == 0 && list.contains("keep") && !list.contains("gone"),
        || format!("list: {code} {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "info", "gone"])?;
    check(code == 1 && out.contains("no domain named gone"), || {
        format!("info gone: {code} {out}")
    })
}

fn shutdown_requests(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let (m, sock) = boot_managed(
        c,
        slot,
        &[
            ("survivor", "willing"),
            ("spinner", "stubborn seconds=600"),
            ("survivor", "bystander"),
        ],
        None,
    )?;
    expect_line(m, "[3] survivor: heartbeat 1")?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "willing", "--wait"])?;
    check(code == 0 && out.contains("is shutdown"), || {
        format!("shutdown willing: {code} {out}")
    })?;
    expect_line(m, "toolstack: domain 1 (willing) shut down (reason 0)")?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "stubborn", "--wait"])?;
    check(code == 0 && out.contains("is destroyed"), || {
        format!("shutdown stubborn: {code} {out}")
    })?;
    expect_line(
        m,
        "toolstack: domain 2 (stubborn) ignored its shutdown request; destroyed",
    )?;
    // `--all` reaches only the domains still running: here just the bystander.
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "--all", "--wait"])?;
    check(code == 0 && out.trim() == "domain 3 is shutdown", || {
        format!("shutdown --all: {code} {out}")
    })?;
    expect_line(m, "toolstack: domain 3 (bystander) shut down (reason 0)")?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown"])?;
    check(code != 0 && out.contains("<DOMAIN>"), || {
        format!("shutdown without a domain: {code} {out}")
    })
}

fn host_shutdown(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    let (m, sock) = boot_managed(
        c,
        slot,
        &[
            ("survivor", "one"),
            ("survivor", "two"),
            ("spinner", "stubborn seconds=600"),
        ],
        None,
    )?;
    expect_line(m, "[2] survivor: heartbeat 1")?;
    let (code, out) = toolstack(&sock, &["host", "shutdown"])?;
    check(code == 0, || format!("host shutdown: {code} {out}"))?;
    expect_line(m, "toolstack: domain 1 (one) shut down (reason 0)")?;
    expect_line(m, "toolstack: domain 2 (two) shut down (reason 0)")?;
    expect_line(
        m,
        "toolstack: domain 3 (stubborn) ignored its shutdown request; destroyed",
    )?;
    expect_line(m, "toolstack: every domain has stopped; powering off")?;
    let status = m.wait_exit(BOOT)?;
    check(status.success(), || format!("QEMU exited with {status}"))
}

fn fifty_domains(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    const COUNT: usize = 50;
    let survivor = build::domain(&c.domains, "survivor");
    let tar = iso::bundle(
        &c.path("bundle.tar"),
        &[],
        &[("survivor", survivor.as_path())],
    )?;
    let (m, sock) = boot_managed(c, slot, &[], Some(tar))?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    // The configurations name the bundle's image: nothing is uploaded.
    let dir = c.path("many");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for i in 1..=COUNT {
        let cfg = dir.join(format!("g{i}.cfg"));
        let text = format!(
            "name = \"g{i}\"\nkernel = \"survivor\"\nmemory = 1\ncmdline = \"period_ms=5000\"\n"
        );
        std::fs::write(&cfg, text).map_err(|e| e.to_string())?;
        let (code, out) = toolstack(&sock, &["domain", "create", cfg.to_str().unwrap_or("")])?;
        check(
            code == 0 && out.trim() == format!("created domain {i}"),
            || format!("create g{i}: {code} {out}"),
        )?;
    }
    let (code, list) = toolstack(&sock, &["domain", "list", "--json"])?;
    let running = list.matches("\"state\":\"running\"").count();
    check(code == 0 && running == COUNT + 1, || {
        format!(
            "{running} running (want {} with domain 0): {list}",
            COUNT + 1
        )
    })?;
    check(
        (1..=COUNT).all(|i| list.contains(&format!("\"name\":\"g{i}\""))),
        || format!("a domain is missing from the list: {list}"),
    )?;
    let (code, out) = toolstack(&sock, &["domain", "shutdown", "--all", "--wait"])?;
    // Each obeyed (the toolstack logs a clean shutdown) and then, as a
    // created domain's default `on_poweroff` says, was destroyed.
    let stopped = out.lines().filter(|l| l.starts_with("domain ")).count();
    check(code == 0 && stopped == COUNT, || {
        format!("shutdown --all: {code} {stopped} stopped: {out}")
    })?;
    for i in 1..=COUNT {
        expect_line(
            m,
            &format!("toolstack: domain {i} (g{i}) shut down (reason 0)"),
        )?;
    }
    check(
        !m.lines()
            .iter()
            .any(|l| l.contains("ignored its shutdown request")),
        || "a domain had to be destroyed".into(),
    )?;
    let (code, list) = toolstack(&sock, &["domain", "list", "--json"])?;
    check(
        code == 0 && list.matches("\"state\":\"running\"").count() == 1,
        || format!("still running after shutdown --all: {list}"),
    )
}

fn abandoned_clients(c: &Ctx, slot: &mut Option<Machine>) -> Result<(), String> {
    use toolstack::Client;
    let (m, sock) = boot_managed(c, slot, &[], None)?;
    expect_line(m, "toolstack: serving the management protocol on COM2")?;
    let err = |e: toolstack::Error| e.to_string();
    // What a user would compare: who exists, in what state, and free memory.
    type Snapshot = (Vec<(u32, String, String, u64)>, u64);
    let snapshot = |client: &mut Client| -> Result<Snapshot, String> {
        let list = client.list().map_err(err)?;
        let list = list
            .into_iter()
            .map(|d| (d.id, d.name, d.state, d.memory_kib))
            .collect();
        Ok((list, client.host_info().map_err(err)?.free_kib))
    };
    let before = snapshot(&mut Client::connect(&sock).map_err(err)?)?;
    let image = std::fs::read(build::domain(&c.domains, "survivor")).map_err(|e| e.to_string())?;
    let config = "name = \"late\"\nkernel = \"survivor\"\nmemory = 1\n";
    // A client that goes away after the first piece of its image.
    {
        let mut a = Client::connect(&sock).map_err(err)?;
        a.create_begin(config, image.len(), false).map_err(err)?;
        a.upload(0, &image[..8192]).map_err(err)?;
    }
    // One that goes away in the middle of a frame promising 16 KiB.
    let half_len = 20 + 100;
    {
        let mut raw = std::os::unix::net::UnixStream::connect(&sock).map_err(|e| e.to_string())?;
        let mut half = Vec::from(*b"XNM1\x01\x01\x00\x00\x07\x00\x00\x00");
        half.extend_from_slice(&16384u32.to_le_bytes());
        half.extend_from_slice(&[0u8; 4 + 100]);
        std::io::Write::write_all(&mut raw, &half).map_err(|e| e.to_string())?;
        // Stay connected long enough for the machine to take every byte (QEMU
        // drops what it has not read when a client leaves); nothing may answer.
        raw.set_read_timeout(Some(Duration::from_millis(1500)))
            .map_err(|e| e.to_string())?;
        let mut answer = [0u8; 64];
        let got = std::io::Read::read(&mut raw, &mut answer);
        check(
            matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
            || format!("a half frame was answered: {got:?}"),
        )?;
    }
    // The next client is served, sees exactly what was there before, and
    // cannot continue the abandoned upload.
    let mut b = Client::connect(&sock).map_err(err)?;
    expect_line(
        m,
        &format!(
            "toolstack: dropped {} bytes of a management frame its client never finished",
            half_len
        ),
    )?;
    let after = snapshot(&mut b)?;
    check(after == before, || {
        format!("abandoned clients changed the machine:\n{before:?}\n{after:?}")
    })?;
    let late = b.upload(8192, &image[8192..16384]);
    check(matches!(late, Err(toolstack::Error::Refused(_))), || {
        format!("the abandoned upload could be continued: {late:?}")
    })?;
    let id = b.create(config, Some(&image), false).map_err(err)?;
    expect_line(m, &format!("[{}] survivor: heartbeat 1", id & 0xffff))?;
    // Two clients at once: the second waits its turn (QEMU serves one
    // connection on COM2 at a time) and both see the same, whole answers.
    let seen_by_b = snapshot(&mut b)?;
    let second = std::thread::spawn({
        let sock = sock.clone();
        move || -> Result<Vec<String>, String> {
            let mut c = Client::connect(&sock).map_err(|e| e.to_string())?;
            let list = c.list().map_err(|e| e.to_string())?;
            Ok(list.into_iter().map(|d| d.name).collect())
        }
    });
    for _ in 0..3 {
        check(snapshot(&mut b)?.0 == seen_by_b.0, || {
            "the first client's answers changed while a second waited".into()
        })?;
    }
    drop(b);
    let names = second
        .join()
        .map_err(|_| "the second client panicked".to_string())??;
    check(
        names.iter().any(|n| n == "late") && names.len() == seen_by_b.0.len(),
        || format!("the second client saw {names:?}"),
    )
}
