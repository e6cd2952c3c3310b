//! A device model for hostile and exact tests of `HvmGrant`: started by
//! domain 0 in the real device model's place (the test's bundle names it
//! `device-model`), it grants pages of its guest's memory to itself and
//! reads them through its window, and tries what it must not be let do,
//! one result a line; then it answers the guest's port I/O as an empty bus
//! so the guest runs on, keeping one page mapped, which must outlive the
//! guest until it unmaps it.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![forbid(unsafe_code)]

extern crate alloc;
use alloc::boxed::Box;
use core::sync::atomic::Ordering;
use domain_runtime::grant::Mapping;
use domain_runtime::hypercall as hc;
use domain_runtime::ipc_abi::domain::DomainId;
use domain_runtime::ipc_abi::hvm::{
    IoPage, ANSWERED, ELF_CMDLINE_GPA, FLOATING, POSTED, SHARED_GPA,
};
use domain_runtime::ipc_abi::{launch, shared::Virq};
use domain_runtime::{events, println};

domain_runtime::entry!(run);

fn run(start: &'static domain_runtime::StartInfo) {
    let Some(guest) = domain_runtime::option(launch::HVM_GUEST)
        .and_then(|v| v.parse().ok())
        .map(DomainId)
    else {
        return println!("dm-probe: no guest");
    };
    let me = DomainId(start.domain_id);
    // Before it serves the guest, it is nobody's device model.
    println!(
        "dm-probe: grant before serving: {:?}",
        hc::hvm_grant(guest, ELF_CMDLINE_GPA, me, true)
    );
    let port = hc::event_bind_virq(Virq::DeviceModel).expect("bind the device-model VIRQ");
    let page: Box<IoPage> = Box::default();
    if let Err(e) = hc::hvm_serve(guest, &*page as *const IoPage as u64) {
        return println!("dm-probe: cannot serve: {}", e);
    }
    // The page domain 0 wrote the guest's command line into, read through
    // a grant to itself.
    match hc::hvm_grant(guest, ELF_CMDLINE_GPA, me, true) {
        Ok(gref) => {
            let mapping = Mapping::map(guest, gref, 0).expect("map the guest's page");
            let mut text = [0u8; 64];
            mapping.read_bytes(0, &mut text);
            let end = text.iter().position(|&b| b == 0).unwrap_or(text.len());
            println!(
                "dm-probe: the guest's page at {:#x} reads {:?}",
                ELF_CMDLINE_GPA,
                core::str::from_utf8(&text[..end]).unwrap_or("(not UTF-8)")
            );
            println!(
                "dm-probe: end while mapped: {:?}",
                hc::hvm_grant_end(guest, gref)
            );
            let _ = mapping.unmap();
            println!("dm-probe: end: {:?}", hc::hvm_grant_end(guest, gref));
            println!("dm-probe: end again: {:?}", hc::hvm_grant_end(guest, gref));
        }
        Err(e) => println!("dm-probe: grant of the command line page: {}", e),
    }
    let tries: [(&str, u64, DomainId); 5] = [
        ("outside its memory", 1 << 39, me),
        ("of the kernel-shared pages", SHARED_GPA, me),
        ("not page-aligned", ELF_CMDLINE_GPA + 8, me),
        ("to the guest itself", ELF_CMDLINE_GPA, guest),
        ("to nobody", ELF_CMDLINE_GPA, DomainId(0xfff0)),
    ];
    for (what, gpa, to) in tries {
        println!(
            "dm-probe: grant {}: {:?}",
            what,
            hc::hvm_grant(guest, gpa, to, false)
        );
    }
    println!(
        "dm-probe: grant of another domain's page: {:?}",
        hc::hvm_grant(me, 0, me, true)
    );
    // One page stays mapped: it must outlive its guest until unmapped.
    let kept = hc::hvm_grant(guest, ELF_CMDLINE_GPA, me, true)
        .and_then(|gref| Mapping::map(guest, gref, 1));
    println!("dm-probe: done");
    loop {
        events::take(port);
        if page.guest_gone.load(Ordering::Acquire) != 0 {
            println!("dm-probe: the guest is gone");
            if let Ok(m) = kept {
                let mut text = [0u8; 8];
                m.read_bytes(0, &mut text);
                println!(
                    "dm-probe: its page still reads {:?}; unmapped: {:?}",
                    core::str::from_utf8(&text).unwrap_or("(not UTF-8)"),
                    m.unmap()
                );
            }
            return;
        }
        for (vcpu, slot) in page.slots.iter().enumerate() {
            if slot.state.load(Ordering::Acquire) == POSTED {
                slot.data.store(u64::from(FLOATING), Ordering::Relaxed);
                slot.state.store(ANSWERED, Ordering::Release);
                let _ = hc::hvm_io_done(guest, vcpu as u32);
            }
        }
        events::block_for(&[port]);
    }
}
