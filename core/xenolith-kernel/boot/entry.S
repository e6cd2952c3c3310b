// Xenolith 32-bit multiboot2 entry: checks the CPU, builds boot page tables,
// enters long mode and jumps to the higher-half Rust kernel (`kernel_entry`).
//
// Boot page tables (in .bss.page_tables, zeroed by GRUB):
//   PML4[0]   -> identity map of 0..1 GiB (only needed for the jump; dropped later)
//   PML4[256] -> physical memory 0..4 GiB at PHYS_OFFSET (the boot physmap)
//   PML4[511] -> PDPT[510] -> 0..1 GiB at KERNEL_VMA (the kernel image)
// all with 2 MiB pages. Rust replaces them with W^X tables early in boot.

.set KERNEL_VMA,        0xffffffff80000000
.set MB2_MAGIC,         0xe85250d6
.set MB2_BOOT_MAGIC,    0x36d76289
.set MB2_HEADER_LEN,    mb2_header_end - mb2_header_start

.section .multiboot2, "a"
.balign 8
mb2_header_start:
    .long MB2_MAGIC
    .long 0                                 // architecture: i386 (protected mode)
    .long MB2_HEADER_LEN
    .long 0x100000000 - (MB2_MAGIC + MB2_HEADER_LEN)
    // end tag
    .short 0
    .short 0
    .long 8
mb2_header_end:

.section .boot.text, "ax"
.code32
.global _start32
_start32:
    cli
    cld
    mov edi, eax                            // multiboot2 magic (kept for Rust)
    mov esi, ebx                            // boot information, physical
    mov esp, offset boot_stack_top - KERNEL_VMA

    cmp edi, MB2_BOOT_MAGIC
    jne .Lno_multiboot

    // Long mode and NX are required.
    mov eax, 0x80000000
    cpuid
    cmp eax, 0x80000001
    jb .Lno_long_mode
    mov eax, 0x80000001
    cpuid
    test edx, 1 << 29
    jz .Lno_long_mode
    test edx, 1 << 20
    jz .Lno_long_mode

    // PD entries: 4 PDs x 512 entries of 2 MiB, mapping 0..4 GiB.
    mov ecx, 0
    mov edx, offset boot_pd - KERNEL_VMA
.Lfill_pd:
    mov eax, ecx
    shl eax, 21
    or eax, 0x83                            // present, writable, 2 MiB
    mov [edx + ecx * 8], eax
    mov eax, ecx
    shr eax, 11                             // high dword of (ecx << 21)
    mov [edx + ecx * 8 + 4], eax
    inc ecx
    cmp ecx, 2048
    jne .Lfill_pd

    // Physmap PDPT: 4 entries, one per PD.
    mov edx, offset boot_pdpt_phys - KERNEL_VMA
    mov eax, offset boot_pd - KERNEL_VMA
    or eax, 0x3
    mov ecx, 0
.Lfill_pdpt:
    mov [edx + ecx * 8], eax
    add eax, 4096
    inc ecx
    cmp ecx, 4
    jne .Lfill_pdpt

    // Identity and kernel PDPTs both use the first PD (0..1 GiB).
    mov eax, offset boot_pd - KERNEL_VMA
    or eax, 0x3
    mov edx, offset boot_pdpt_low - KERNEL_VMA
    mov [edx], eax
    mov edx, offset boot_pdpt_high - KERNEL_VMA
    mov [edx + 510 * 8], eax

    mov edx, offset boot_pml4 - KERNEL_VMA
    mov eax, offset boot_pdpt_low - KERNEL_VMA
    or eax, 0x3
    mov [edx], eax
    mov eax, offset boot_pdpt_phys - KERNEL_VMA
    or eax, 0x3
    mov [edx + 256 * 8], eax
    mov eax, offset boot_pdpt_high - KERNEL_VMA
    or eax, 0x3
    mov [edx + 511 * 8], eax

    mov cr3, edx
    mov eax, cr4
    or eax, 1 << 5                          // PAE
    mov cr4, eax
    mov ecx, 0xc0000080                     // EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)            // LME, NXE
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1       // PG, WP, PE
    mov cr0, eax

    lgdt [boot_gdt_ptr]
    mov eax, offset .Llong_mode
    push 0x08
    push eax
    retf                                    // far return into the 64-bit code segment

.Lno_multiboot:
    mov esi, offset msg_no_multiboot
    jmp .Lfail
.Lno_long_mode:
    mov esi, offset msg_no_long_mode
.Lfail:
    // Print the message on COM1 (polled) and halt.
    mov dx, 0x3fd
.Lwait:
    in al, dx
    test al, 0x20
    jz .Lwait
    lodsb
    test al, al
    jz .Lhalt
    mov dx, 0x3f8
    out dx, al
    mov dx, 0x3fd
    jmp .Lwait
.Lhalt:
    hlt
    jmp .Lhalt

.code64
.Llong_mode:
    xor eax, eax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov fs, ax
    mov gs, ax
    movabs rax, offset kernel_entry_high
    jmp rax

.section .boot.rodata, "a"
.balign 8
boot_gdt:
    .quad 0
    .quad 0x00209a0000000000                // 64-bit code, ring 0
boot_gdt_ptr:
    .short boot_gdt_ptr - boot_gdt - 1
    .long boot_gdt
msg_no_multiboot:
    .asciz "xenolith: not loaded by a multiboot2 loader\r\n"
msg_no_long_mode:
    .asciz "xenolith: this CPU lacks long mode or NX\r\n"

.section .text
.global kernel_entry_high
kernel_entry_high:
    movabs rsp, offset boot_stack_top
    xor ebp, ebp
    // edi = magic, esi = boot information (physical), as kernel_entry expects
    call kernel_entry
    ud2

.section .bss.page_tables, "aw", @nobits
.balign 4096
boot_pml4:      .skip 4096
boot_pdpt_low:  .skip 4096
boot_pdpt_phys: .skip 4096
boot_pdpt_high: .skip 4096
boot_pd:        .skip 4096 * 4

// Kernel stacks, each with an unmapped guard page below it (the kernel's own
// page tables leave the guard pages out, so an overflow faults instead of
// corrupting the neighbour). IST stacks serve #DF, NMI and #MC.
.section .bss.stacks, "aw", @nobits
.balign 4096
.global stack_guard_boot, boot_stack_top
.global stack_guard_df, ist_df_top
.global stack_guard_nmi, ist_nmi_top
.global stack_guard_mc, ist_mc_top
stack_guard_boot: .skip 4096
    .skip 32 * 4096
boot_stack_top:
stack_guard_df:   .skip 4096
    .skip 4 * 4096
ist_df_top:
stack_guard_nmi:  .skip 4096
    .skip 4 * 4096
ist_nmi_top:
stack_guard_mc:   .skip 4096
    .skip 4 * 4096
ist_mc_top:
