//! The ELF core file `domain dump-core` writes: what `gdb` and other
//! debuggers open as a post-mortem of an x86-64 process.
//!
//! Owns: the layout (ELF header; a note segment with one `NT_PRPSINFO`
//! naming the domain and one `NT_PRSTATUS` per vCPU holding its registers
//! in the order of Linux's `user_regs_struct`; one loadable segment per run
//! of contiguous pages at their addresses in the domain). Pure: built from
//! the registers and pages a save stream carries, host-tested.

/// One vCPU's registers, in `VcpuContext::to_words` order (rax, rbx, rcx,
/// rdx, rsi, rdi, rbp, rsp, r8 to r15, rip, rflags).
pub type Registers = [u64; 18];

const PAGE: u64 = 4096;
const EHDR: usize = 64;
const PHDR: usize = 56;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const NT_PRSTATUS: u32 = 1;
const NT_PRPSINFO: u32 = 3;
/// `struct elf_prstatus` and `struct elf_prpsinfo` on x86-64.
const PRSTATUS_LEN: usize = 336;
const PRSTATUS_REGS: usize = 112;
const PRPSINFO_LEN: usize = 136;

/// The core file of a domain named `name` with these vCPUs' registers
/// and these pages (`(address, bytes)`, any order, 4096 bytes each).
pub fn build(name: &str, vcpus: &[Registers], pages: &[(u64, &[u8])]) -> Vec<u8> {
    let mut sorted: Vec<&(u64, &[u8])> = pages.iter().collect();
    sorted.sort_by_key(|p| p.0);
    // Runs of contiguous pages: (first address, pages).
    let mut runs: Vec<(u64, Vec<&[u8]>)> = Vec::new();
    for &&(va, data) in &sorted {
        match runs.last_mut() {
            Some((start, run)) if *start + run.len() as u64 * PAGE == va => run.push(data),
            _ => runs.push((va, vec![data])),
        }
    }
    let notes = notes(name, vcpus);
    let headers = EHDR + PHDR * (1 + runs.len());
    let notes_at = headers;
    let mut data_at = (notes_at + notes.len()).next_multiple_of(PAGE as usize);

    let mut out = Vec::new();
    elf_header(&mut out, 1 + runs.len() as u16);
    program_header(&mut out, PT_NOTE, 0, notes_at, 0, notes.len(), 4);
    let mut loads = Vec::new();
    for (va, run) in &runs {
        let len = run.len() * PAGE as usize;
        program_header(&mut out, PT_LOAD, 7, data_at, *va, len, PAGE);
        loads.push(data_at);
        data_at += len;
    }
    out.extend_from_slice(&notes);
    for ((_, run), at) in runs.iter().zip(loads) {
        out.resize(at, 0);
        for page in run {
            let mut p = page.to_vec();
            p.resize(PAGE as usize, 0);
            out.extend_from_slice(&p);
        }
    }
    out
}

fn elf_header(out: &mut Vec<u8>, phnum: u16) {
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    out.extend_from_slice(&0u64.to_le_bytes()); // entry
    out.extend_from_slice(&(EHDR as u64).to_le_bytes()); // phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&(EHDR as u16).to_le_bytes());
    out.extend_from_slice(&(PHDR as u16).to_le_bytes());
    out.extend_from_slice(&phnum.to_le_bytes());
    out.extend_from_slice(&[0; 6]); // no section headers
}

fn program_header(
    out: &mut Vec<u8>,
    kind: u32,
    flags: u32,
    offset: usize,
    va: u64,
    len: usize,
    align: u64,
) {
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    out.extend_from_slice(&(offset as u64).to_le_bytes());
    out.extend_from_slice(&va.to_le_bytes());
    out.extend_from_slice(&va.to_le_bytes()); // paddr: the same address
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&(len as u64).to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
}

/// The note segment: the domain's name, then each vCPU's registers.
fn notes(name: &str, vcpus: &[Registers]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut info = [0u8; PRPSINFO_LEN];
    let fname = &name.as_bytes()[..name.len().min(15)];
    info[40..40 + fname.len()].copy_from_slice(fname);
    let args = &name.as_bytes()[..name.len().min(79)];
    info[56..56 + args.len()].copy_from_slice(args);
    note(&mut out, NT_PRPSINFO, &info);
    for (i, r) in vcpus.iter().enumerate() {
        let mut status = [0u8; PRSTATUS_LEN];
        // The vCPU as a thread: pid i + 1.
        status[32..36].copy_from_slice(&(i as u32 + 1).to_le_bytes());
        let [rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags] =
            *r;
        // user_regs_struct: r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx
        // rdx rsi rdi orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs.
        let regs = [
            r15,
            r14,
            r13,
            r12,
            rbp,
            rbx,
            r11,
            r10,
            r9,
            r8,
            rax,
            rcx,
            rdx,
            rsi,
            rdi,
            u64::MAX,
            rip,
            0,
            rflags,
            rsp,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        for (k, v) in regs.iter().enumerate() {
            let at = PRSTATUS_REGS + 8 * k;
            status[at..at + 8].copy_from_slice(&v.to_le_bytes());
        }
        note(&mut out, NT_PRSTATUS, &status);
    }
    out
}

fn note(out: &mut Vec<u8>, kind: u32, desc: &[u8]) {
    out.extend_from_slice(&5u32.to_le_bytes());
    out.extend_from_slice(&(desc.len() as u32).to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(b"CORE\0\0\0\0");
    out.extend_from_slice(desc);
    out.resize(out.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::read::elf::{ElfFile64, ProgramHeader};
    use object::Endianness;

    #[test]
    fn pages_land_at_their_addresses_and_each_vcpu_has_its_registers() {
        let a = vec![0xaa; 4096];
        let b = vec![0xbb; 4096];
        let c = vec![0xcc; 4096];
        let mut regs = [0u64; 18];
        regs[16] = 0x40_1234; // rip
        regs[7] = 0x7fff_f000; // rsp
        let file = build(
            "spinner",
            &[regs, [1; 18]],
            &[(0x2000, &c), (0x0, &a), (0x1000, &b)],
        );
        let elf = ElfFile64::<Endianness>::parse(&*file).unwrap();
        let e = Endianness::Little;
        let headers = elf.elf_program_headers();
        // One note segment, one run of three contiguous pages.
        assert_eq!(headers.len(), 2);
        let load = &headers[1];
        assert_eq!(load.p_type(e), PT_LOAD);
        assert_eq!(load.p_vaddr(e), 0);
        assert_eq!(load.p_filesz(e), 3 * 4096);
        let data = load.data(e, &*file).unwrap();
        assert_eq!((data[0], data[4096], data[8192]), (0xaa, 0xbb, 0xcc));
        let notes: Vec<_> = headers[0]
            .notes(e, &*file)
            .unwrap()
            .unwrap()
            .map(|n| n.unwrap())
            .map(|n| (n.n_type(e), n.name().to_vec(), n.desc().to_vec()))
            .collect();
        assert_eq!(notes.len(), 3);
        assert_eq!((notes[0].0, &notes[0].1[..]), (NT_PRPSINFO, &b"CORE"[..]));
        assert_eq!(&notes[0].2[40..47], b"spinner");
        let status = &notes[1].2;
        assert_eq!(notes[1].0, NT_PRSTATUS);
        let reg =
            |k: usize| u64::from_le_bytes(status[112 + 8 * k..120 + 8 * k].try_into().unwrap());
        assert_eq!((reg(16), reg(19)), (0x40_1234, 0x7fff_f000));
        assert_eq!(notes[2].2[32], 2, "the second vCPU is thread 2");
    }

    #[test]
    fn separate_runs_become_separate_segments() {
        let p = vec![1; 4096];
        let file = build("x", &[[0; 18]], &[(0x1000, &p), (0x9000, &p)]);
        let elf = ElfFile64::<Endianness>::parse(&*file).unwrap();
        let e = Endianness::Little;
        let loads: Vec<u64> = elf.elf_program_headers()[1..]
            .iter()
            .map(|h| h.p_vaddr(e))
            .collect();
        assert_eq!(loads, [0x1000, 0x9000]);
    }
}
