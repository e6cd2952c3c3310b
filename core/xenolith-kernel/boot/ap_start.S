// Application processor start-up: real mode -> protected mode -> long mode,
// then a jump to `ap_main` in the higher half.
//
// Linked into its own rodata section and copied by the kernel to the page at
// 0x8000 before each INIT-SIPI-SIPI; the start-up IPI makes an AP begin at
// its first byte in real mode. The copy runs at 0x8000, so every address
// below is 0x8000 plus a fixed offset (`.org` keeps the layout honest). The
// kernel fills the four boot words for each AP:
//
//   offset  0: jump over the data
//   offset  8: GDT (null, 32-bit code 0x08, data 0x10, 64-bit code 0x18)
//   offset 40: GDT pointer
//   offset 48: CR3 (below 4 GiB), 56: stack top, 64: entry, 72: CPU number
//   offset 80: code

.section .rodata.ap_trampoline, "a"
.balign 4096
.global ap_trampoline_start, ap_trampoline_end

.code16
ap_trampoline_start:
    jmp ap_real_mode

.org 8
    .quad 0
    .quad 0x00cf9a000000ffff
    .quad 0x00cf92000000ffff
    .quad 0x00209a0000000000
.org 40
    .short 31
    .long 0x8000 + 8
.org 48
    .quad 0, 0, 0, 0

.org 80
ap_real_mode:
    cli
    cld
    xor ax, ax
    mov ds, ax
    mov es, ax
    mov ss, ax
    lgdt [0x8000 + 40]
    mov eax, cr0
    or eax, 1                               // PE
    mov cr0, eax
    // ljmp 0x08:ap_protected (a 32-bit offset from 16-bit code)
    .byte 0x66, 0xea
    .long 0x8000 + (ap_protected - ap_trampoline_start)
    .short 0x08

.code32
ap_protected:
    mov ax, 0x10
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov eax, cr4
    or eax, 1 << 5                          // PAE
    mov cr4, eax
    mov eax, [0x8000 + 48]
    mov cr3, eax
    mov ecx, 0xc0000080                     // EFER
    rdmsr
    or eax, (1 << 8) | (1 << 11)            // LME, NXE
    wrmsr
    mov eax, cr0
    or eax, (1 << 31) | (1 << 16) | 1       // PG, WP, PE
    mov cr0, eax
    // ljmp 0x18:ap_long
    .byte 0xea
    .long 0x8000 + (ap_long - ap_trampoline_start)
    .short 0x18

.code64
ap_long:
    xor eax, eax
    mov ds, ax
    mov es, ax
    mov ss, ax
    mov ebx, 0x8000 + 48
    mov rsp, [rbx + 8]
    mov rax, [rbx + 16]
    mov rdi, [rbx + 24]
    xor ebp, ebp
    jmp rax
ap_trampoline_end:

// Whatever assembly the crate puts after this file goes to code again.
.section .text
