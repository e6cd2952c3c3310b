//! The ACPI tables an HVM Linux guest boots with (built with rust-vmm's
//! `acpi_tables`): where its CPUs are (MADT: one local APIC per vCPU and the
//! PC's two 8259s, no I/O APIC), its power management ports (FADT: the PM1a
//! blocks the device model serves, the SCI on ISA line 9, the reset
//! register), soft off and the pvpanic device (DSDT: `\_S5`, `QEMU0001`). Linux has no MP table parser in
//! the Debian cloud kernel, so this is how it finds its CPUs.
//!
//! Pure: host-tested (checksums, lengths, where each table points).

extern crate alloc;
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace, GAS};
use acpi_tables::madt::{EnabledStatus, LocalInterruptController, ProcessorLocalApic, MADT};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::xsdt::XSDT;
use acpi_tables::{aml, Aml};
use alloc::vec::Vec;
use domain_runtime::ipc_abi::{hvm, pc};

const OEM: [u8; 6] = *b"XENOLI";
const OEM_TABLE: [u8; 8] = *b"XENOLITH";

/// Offsets of the tables from the start of the block.
const XSDT_AT: u64 = 0x40;
const FADT_AT: u64 = 0x100;
const MADT_AT: u64 = 0x300;
const DSDT_AT: u64 = 0x500;
/// The block's size (one page).
pub const SIZE: usize = 0x1000;

/// IAPC_BOOT_ARCH: no VGA, no CMOS RTC (the clock comes from kvm-clock),
/// and no 8042 keyboard controller (bit 1 clear).
const NO_VGA: u16 = 1 << 2;
const NO_CMOS_RTC: u16 = 1 << 5;
/// MADT flags: PCAT_COMPAT, the dual 8259s are there.
const PCAT_COMPAT: u32 = 1;

fn bytes(t: &dyn Aml) -> Vec<u8> {
    let mut v = Vec::new();
    t.to_aml_bytes(&mut v);
    v
}

fn checksum(table: &mut [u8]) {
    table[9] = 0;
    let sum = table.iter().fold(0u8, |a, &b| a.wrapping_add(b));
    table[9] = sum.wrapping_neg();
}

fn io(port: u16, bits: u8) -> GAS {
    let size = if bits == 16 {
        AccessSize::WordAccess
    } else {
        AccessSize::DwordAccess
    };
    GAS::new(AddressSpace::SystemIo, bits, 0, size, port as u64)
}

/// The tables, laid out for guest-physical address `base` (RSDP first).
pub fn tables(base: u64, vcpus: u32) -> Vec<u8> {
    let mut out = alloc::vec![0u8; SIZE];
    let mut put = |at: u64, b: &[u8]| out[at as usize..at as usize + b.len()].copy_from_slice(b);

    // DSDT: Name (_S5, Package () { 5, 5, 0, 0 }).
    let mut dsdt = Sdt::new(*b"DSDT", 36, 2, OEM, OEM_TABLE, 1);
    let s5 = hvm::ACPI_S5_SLP_TYP;
    let package = aml::Package::new(alloc::vec![&s5, &s5, &0u8, &0u8]);
    aml::Name::new("_S5_".into(), &package).to_aml_bytes(&mut dsdt);
    // The pvpanic device Linux's pvpanic-mmio driver binds (by its ACPI id).
    let hid: aml::AmlStr = "QEMU0001";
    let port = aml::IO::new(hvm::PVPANIC_PORT, hvm::PVPANIC_PORT, 1, 1);
    let crs = aml::ResourceTemplate::new(alloc::vec![&port]);
    let hid = aml::Name::new("_HID".into(), &hid);
    let crs = aml::Name::new("_CRS".into(), &crs);
    aml::Device::new("_SB_.PEVT".into(), alloc::vec![&hid, &crs]).to_aml_bytes(&mut dsdt);
    // The PCI root bridge: bus 0 behind configuration mechanism #1 (its
    // device model serves the ports); the I/O space around them is the
    // bus's to give out, and the MMIO window the device model serves.
    let hid = aml::Name::new("_HID".into(), &aml::EISAName::new("PNP0A03"));
    let uid = aml::Name::new("_UID".into(), &aml::ZERO);
    let buses = aml::AddressSpace::<u16>::new_bus_number(0, 0);
    let config = aml::IO::new(
        pc::PCI_CONFIG_ADDRESS,
        pc::PCI_CONFIG_ADDRESS,
        1,
        pc::PCI_CONFIG_PORTS as u8,
    );
    let below = aml::AddressSpace::<u16>::new_io(0, pc::PCI_CONFIG_ADDRESS - 1, None);
    let above = aml::AddressSpace::<u16>::new_io(
        pc::PCI_CONFIG_ADDRESS + pc::PCI_CONFIG_PORTS,
        0xffff,
        None,
    );
    // Device memory: the MMIO window, where the functions' memory BARs
    // (their MSI-X tables) are.
    let memory = aml::AddressSpace::<u64>::new_memory(
        aml::AddressSpaceCacheable::NotCacheable,
        true,
        hvm::MMIO_BASE,
        hvm::MMIO_BASE + hvm::MMIO_SIZE - 1,
        None,
    );
    let crs = aml::ResourceTemplate::new(alloc::vec![&buses, &config, &below, &above, &memory]);
    let crs = aml::Name::new("_CRS".into(), &crs);
    // Interrupt routing: INTA of each device to the ISA line its device
    // model raises (`pc::pci_intx_irq`), no link device (the 8259s'
    // lines are the GSIs).
    let routes: Vec<[u32; 4]> = (1..=pc::PCI_DEVICES)
        .map(|d| {
            [
                u32::from(d) << 16 | 0xffff,
                0,
                0,
                u32::from(pc::pci_intx_irq(d)),
            ]
        })
        .collect();
    let routes: Vec<aml::Package> = routes
        .iter()
        .map(|r| aml::Package::new(r.iter().map(|v| v as &dyn Aml).collect()))
        .collect();
    let prt = aml::Package::new(routes.iter().map(|p| p as &dyn Aml).collect());
    let prt = aml::Name::new("_PRT".into(), &prt);
    aml::Device::new("_SB_.PCI0".into(), alloc::vec![&hid, &uid, &crs, &prt])
        .to_aml_bytes(&mut dsdt);
    dsdt.update_checksum();
    put(DSDT_AT, dsdt.as_slice());

    let mut fadt = FADTBuilder::new(OEM, OEM_TABLE, 1).dsdt_64(base + DSDT_AT);
    fadt.dsdt = ((base + DSDT_AT) as u32).into();
    fadt.sci_int = (hvm::ACPI_SCI_IRQ as u16).into();
    fadt.pm1a_evt_blk = (hvm::ACPI_PM1A_EVT as u32).into();
    fadt.pm1a_cnt_blk = (hvm::ACPI_PM1A_CNT as u32).into();
    fadt.pm1_evt_len = 4;
    fadt.pm1_cnt_len = 2;
    fadt.x_pm1a_evt_blk = io(hvm::ACPI_PM1A_EVT, 32);
    fadt.x_pm1a_cnt_blk = io(hvm::ACPI_PM1A_CNT, 16);
    fadt.iapc_boot_arch = (NO_VGA | NO_CMOS_RTC).into();
    fadt.reset_reg = GAS::new(
        AddressSpace::SystemIo,
        8,
        0,
        AccessSize::ByteAccess,
        hvm::ACPI_RESET_PORT as u64,
    );
    fadt.reset_value = hvm::ACPI_RESET_VALUE;
    let fadt = fadt
        .flag(Flags::Wbinvd)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup)
        .finalize();
    put(FADT_AT, &bytes(&fadt));

    let mut madt = MADT::new(
        OEM,
        OEM_TABLE,
        1,
        LocalInterruptController::Address(0xfee0_0000),
    );
    for v in 0..vcpus.min(255) {
        madt.add_structure(ProcessorLocalApic::new(
            v as u8,
            v as u8,
            EnabledStatus::Enabled,
        ));
    }
    let mut madt = bytes(&madt);
    madt[40..44].copy_from_slice(&PCAT_COMPAT.to_le_bytes());
    checksum(&mut madt);
    put(MADT_AT, &madt);

    let mut xsdt = XSDT::new(OEM, OEM_TABLE, 1);
    xsdt.add_entry(base + FADT_AT);
    xsdt.add_entry(base + MADT_AT);
    put(XSDT_AT, &bytes(&xsdt));

    put(0, &bytes(&Rsdp::new(OEM, base + XSDT_AT)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums_to_zero(t: &[u8]) -> bool {
        t.iter().fold(0u8, |a, &b| a.wrapping_add(b)) == 0
    }

    fn table(all: &[u8], at: u64) -> &[u8] {
        let at = at as usize;
        let len = u32::from_le_bytes(all[at + 4..at + 8].try_into().unwrap()) as usize;
        &all[at..at + len]
    }

    #[test]
    fn every_table_checks_and_points_at_the_next() {
        let base = 0xe_0000;
        let t = tables(base, 3);
        assert_eq!(&t[..8], b"RSD PTR ");
        assert!(sums_to_zero(&t[..20]) && sums_to_zero(&t[..36]));
        assert_eq!(
            u64::from_le_bytes(t[24..32].try_into().unwrap()),
            base + XSDT_AT
        );
        let xsdt = table(&t, XSDT_AT);
        assert!(sums_to_zero(xsdt));
        assert_eq!(xsdt.len(), 36 + 16);
        let fadt = table(&t, FADT_AT);
        assert_eq!(&fadt[..4], b"FACP");
        assert!(sums_to_zero(fadt));
        assert_eq!(
            u16::from_le_bytes(fadt[46..48].try_into().unwrap()),
            9,
            "SCI"
        );
        assert_eq!(
            u32::from_le_bytes(fadt[64..68].try_into().unwrap()),
            0x604,
            "PM1a_CNT"
        );
        let madt = table(&t, MADT_AT);
        assert_eq!(&madt[..4], b"APIC");
        assert!(sums_to_zero(madt));
        assert_eq!(madt.len(), 44 + 3 * 8, "a local APIC per vCPU");
        assert_eq!(madt[40] & 1, 1, "PCAT_COMPAT");
        let dsdt = table(&t, DSDT_AT);
        assert!(sums_to_zero(dsdt));
        // NameOp "_S5_" PackageOp PkgLength(8) 4 elements: 5, 5, 0, 0.
        assert_eq!(
            &dsdt[36..50],
            b"\x08_S5_\x12\x08\x04\x0a\x05\x0a\x05\x00\x00"
        );
        assert!(
            dsdt.windows(8).any(|w| w == b"QEMU0001"),
            "the pvpanic device"
        );
        // The PCI root bridge: PCI0 named, EISA id PNP0A03 as a DWord, and
        // the configuration ports in its resources (an IO descriptor:
        // 0x47, decode16, 0xcf8 twice, alignment 1, length 8).
        assert!(dsdt.windows(4).any(|w| w == b"PCI0"));
        assert!(dsdt.windows(5).any(|w| w == [0x0c, 0x41, 0xd0, 0x0a, 0x03]));
        assert!(dsdt
            .windows(8)
            .any(|w| w == [0x47, 0x01, 0xf8, 0x0c, 0xf8, 0x0c, 0x01, 0x08]));
    }
}
