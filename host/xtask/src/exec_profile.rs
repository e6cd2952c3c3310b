//! `cargo xtask profile LOG`: where the instructions of a QEMU exec log
//! went, by binary and function.
//!
//! Owns: reading a log of `log exec,nochain` taken with `-singlestep`
//! (one line per instruction run: `bench net`'s `NETBENCH_PROFILE`),
//! telling which binary each instruction belongs to, and the table.
//! Kernel addresses are the kernel's. Every domain links at the same
//! address, so a user address alone does not say whose it is: each run of
//! user addresses between two kernel entries is given to the one binary
//! that has an instruction starting at every address of the run (from
//! `objdump -d`); a run no binary or several binaries explain is counted
//! as such. An instruction run in an HVM guest (QEMU's flags say SVM's
//! guest mode) is the guest's, whatever its address. Symbols come from `nm`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Addresses from here up are the kernel's.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;
/// QEMU's `HF_GUEST_MASK` in a block's flags: the CPU is in an SVM guest.
const SVM_GUEST: u32 = 1 << 21;
/// What stands for an instruction an HVM guest ran (no domain's address).
const HVM: u64 = u64::MAX;

/// A binary's instruction starts and its functions (address, name), sorted.
struct Binary {
    name: String,
    starts: HashSet<u64>,
    functions: Vec<(u64, String)>,
}

impl Binary {
    fn load(name: &str, elf: &Path) -> Result<Binary, String> {
        let starts = instruction_starts(elf, &[])?.into_iter().collect();
        let functions = elf_tool("nm", &["-n", "-C", "--defined-only"], elf)?
            .lines()
            .filter_map(|l| {
                let mut p = l.splitn(3, ' ');
                let addr = u64::from_str_radix(p.next()?, 16).ok()?;
                let kind = p.next()?;
                let name = p.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, tidy(name)))
            })
            .collect();
        Ok(Binary {
            name: name.into(),
            starts,
            functions,
        })
    }

    fn function(&self, pc: u64) -> &str {
        match self.functions.partition_point(|(a, _)| *a <= pc) {
            0 => "?",
            i => &self.functions[i - 1].1,
        }
    }
}

/// What `tool` (`objdump`, `nm`) prints about `elf` with `args`.
pub fn elf_tool(tool: &str, args: &[&str], elf: &Path) -> Result<String, String> {
    let out = Command::new(tool)
        .args(args)
        .arg(elf)
        .output()
        .map_err(|e| format!("{tool}: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Where each instruction `objdump -d` decodes in `elf` starts, in order
/// (`args`: more of objdump's options, such as an address range).
pub fn instruction_starts(elf: &Path, args: &[&str]) -> Result<Vec<u64>, String> {
    let mut all = vec!["-d", "--no-show-raw-insn"];
    all.extend_from_slice(args);
    Ok(elf_tool("objdump", &all, elf)?
        .lines()
        .filter_map(|l| {
            let (addr, rest) = l.trim_start().split_once(':')?;
            rest.starts_with('\t')
                .then(|| u64::from_str_radix(addr, 16).ok())?
        })
        .collect())
}

/// A demangled name without its hash suffix.
fn tidy(name: &str) -> String {
    match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 => head.to_string(),
        _ => name.to_string(),
    }
}

/// The instruction addresses of an exec log, in order ([`HVM`] for an
/// instruction an HVM guest ran).
fn addresses(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| {
            // "Trace 0: 0x7f... [cs_base/pc/flags/cflags] symbol"
            let mut fields = l.split_once('[')?.1.split('/');
            let pc = u64::from_str_radix(fields.nth(1)?, 16).ok()?;
            let flags = u32::from_str_radix(fields.next()?, 16).ok()?;
            Some(if flags & SVM_GUEST != 0 { HVM } else { pc })
        })
        .collect()
}

/// Which binary ran each address: the kernel's half by address, each run
/// of user addresses by the one binary with an instruction at all of them.
fn owners<'a>(pcs: &[u64], users: &'a [Binary]) -> Vec<Option<&'a Binary>> {
    let mut owner = vec![None; pcs.len()];
    let mut i = 0;
    while i < pcs.len() {
        if pcs[i] >= KERNEL_HALF {
            i += 1;
            continue;
        }
        let end = (i..pcs.len())
            .find(|&j| pcs[j] >= KERNEL_HALF)
            .unwrap_or(pcs.len());
        let run = &pcs[i..end];
        let mut fits = users
            .iter()
            .filter(|b| run.iter().all(|pc| b.starts.contains(pc)));
        if let (Some(b), None) = (fits.next(), fits.next()) {
            owner[i..end].fill(Some(b));
        }
        i = end;
    }
    owner
}

/// Why the log cannot be of the binaries built now, if it cannot: more
/// than 1% of the kernel's instructions at addresses where the kernel has
/// no instruction, or more than 5% of the domains' in runs no binary
/// explains (a log of the same build has none of either).
fn not_this_build(pcs: &[u64], owner: &[Option<&Binary>], kernel: &Binary) -> Option<String> {
    let (mut kernel_run, mut kernel_odd, mut user_run, mut user_odd) = (0u64, 0u64, 0u64, 0u64);
    for (&pc, o) in pcs.iter().zip(owner) {
        if pc == HVM {
            continue;
        }
        if pc >= KERNEL_HALF {
            kernel_run += 1;
            kernel_odd += u64::from(!kernel.starts.contains(&pc));
        } else {
            user_run += 1;
            user_odd += u64::from(o.is_none());
        }
    }
    if kernel_odd * 100 > kernel_run {
        return Some(format!(
            "{kernel_odd} of its {kernel_run} kernel instructions are where the kernel built now has none"
        ));
    }
    (user_odd * 20 > user_run).then(|| {
        format!("{user_odd} of its {user_run} domain instructions fit no domain built now")
    })
}

/// Prints where the log's instructions went: by binary, then the functions
/// that took the most.
pub fn report(log: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let pcs = addresses(&text);
    if pcs.is_empty() {
        return Err(format!("{}: no executed blocks in it", log.display()));
    }
    let kernel = Binary::load("kernel", &crate::build::kernel()?)?;
    let dir = crate::build::domains()?;
    let mut users = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| e.to_string())? {
        let path: PathBuf = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_file() && !name.contains('.') && !name.starts_with("lib") {
            users.push(Binary::load(name, &path)?);
        }
    }
    let owner = owners(&pcs, &users);
    if let Some(why) = not_this_build(&pcs, &owner, &kernel) {
        return Err(format!(
            "{}: {why}: the log was taken from another build than the one here (build the log's commit, or take the log again)",
            log.display()
        ));
    }
    let mut by_binary: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_function: HashMap<(&str, &str), u64> = HashMap::new();
    for (&pc, o) in pcs.iter().zip(&owner) {
        let (binary, function) = match (pc >= KERNEL_HALF, o) {
            _ if pc == HVM => ("an HVM guest", "?"),
            (true, _) => ("kernel", kernel.function(pc)),
            (false, Some(b)) => (b.name.as_str(), b.function(pc)),
            (false, None) => ("(a domain, not told apart)", "?"),
        };
        *by_binary.entry(binary).or_default() += 1;
        *by_function.entry((binary, function)).or_default() += 1;
    }
    let total = pcs.len() as f64;
    let share = |n: u64| 100.0 * n as f64 / total;
    println!("{} instructions", pcs.len());
    println!("| binary | instructions | share |");
    println!("|---|---|---|");
    let mut binaries: Vec<_> = by_binary.into_iter().collect();
    binaries.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    for (b, n) in binaries {
        println!("| {b} | {n} | {:.1}% |", share(n));
    }
    println!();
    println!("| binary | function | instructions | share |");
    println!("|---|---|---|---|");
    let mut functions: Vec<_> = by_function.into_iter().collect();
    functions.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
    for ((b, f), n) in functions.into_iter().take(60) {
        let f: String = f.chars().take(100).collect();
        println!("| {b} | `{f}` | {n} | {:.1}% |", share(n));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(name: &str, starts: &[u64]) -> Binary {
        Binary {
            name: name.into(),
            starts: starts.iter().copied().collect(),
            functions: vec![(0x1000, "f".into())],
        }
    }

    #[test]
    fn a_run_of_user_addresses_goes_to_the_one_binary_that_explains_it() {
        let k = KERNEL_HALF + 5;
        let users = [
            binary("a", &[0x10, 0x12, 0x20]),
            binary("b", &[0x10, 0x11, 0x20]),
        ];
        let pcs = [0x10, 0x12, k, 0x10, 0x11, k, 0x10, 0x20, k, 0x99];
        let names: Vec<Option<&str>> = owners(&pcs, &users)
            .iter()
            .map(|o| o.map(|b| b.name.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                Some("a"),
                Some("a"),
                None,
                Some("b"),
                Some("b"),
                None,
                // Both have 0x10 and 0x20: not told apart.
                None,
                None,
                None,
                // Neither has 0x99.
                None
            ]
        );
    }

    #[test]
    fn a_log_of_another_build_is_told_apart_from_one_of_this_build() {
        let k = KERNEL_HALF;
        let kernel = binary("kernel", &[k, k + 3, k + 7]);
        let users = [binary("a", &[0x10, 0x12])];
        let this_build = [k, k + 3, 0x10, 0x12, k + 7, HVM, HVM];
        let owner = owners(&this_build, &users);
        assert_eq!(not_this_build(&this_build, &owner, &kernel), None);
        // A kernel instruction in the middle of one of the kernel's.
        let mut kernel_moved = this_build.to_vec();
        kernel_moved[1] = k + 4;
        let owner = owners(&kernel_moved, &users);
        let why = not_this_build(&kernel_moved, &owner, &kernel).unwrap_or_default();
        assert!(why.contains("1 of its 3 kernel instructions"), "{why}");
        // A domain's instructions no binary has.
        let user_moved = [k, 0x10, 0x13, k + 3];
        let owner = owners(&user_moved, &users);
        let why = not_this_build(&user_moved, &owner, &kernel).unwrap_or_default();
        assert!(why.contains("2 of its 2 domain instructions"), "{why}");
    }

    #[test]
    fn log_lines_give_their_pc_and_names_lose_their_hash() {
        let log = "Trace 0: 0x7f53 [0000000000000000/ffffffff8023338e/00d0c2b0/ff020201] \n\
                   junk\nTrace 0: 0x7f54 [0000000000000000/0000000000413b25/00d0c2b0/ff020201] f\n\
                   Trace 0: 0x7f55 [0000000000000000/ffffffff81000000/00f0c2b0/ff020201] \n";
        assert_eq!(addresses(log), [0xffff_ffff_8023_338e, 0x41_3b25, HVM]);
        assert_eq!(
            tidy("core::fmt::write::h0123456789abcdef"),
            "core::fmt::write"
        );
        assert_eq!(tidy("memcpy"), "memcpy");
    }
}
