//! The PVH entry: from QEMU's 32-bit protected mode to Rust in long mode.
//!
//! QEMU's `-kernel` loads an ELF64 at its physical addresses and, when the
//! image carries a Xen `PHYS32_ENTRY` note, enters it in 32-bit protected
//! mode with paging off and `ebx` = physical address of the PVH start info.
//! The assembly below then:
//! 1. switches to the boot stack and records the start-info address;
//! 2. enables SSE (CR0.MP=1, CR0.EM=0, CR4.OSFXSR, CR4.OSXMMEXCPT) — the
//!    prebuilt `core` uses SSE, so this must precede any Rust code;
//! 3. builds boot page tables that map the first GiB twice, identity (the
//!    kernel runs there) and at the direct-map base (so the kernel can build
//!    its own tables through direct-map addresses before switching to them);
//! 4. turns on long mode (EFER.LME), no-execute support (EFER.NXE), global
//!    pages and paging, loads a 64-bit GDT and far-jumps to 64-bit code;
//! 5. calls [`bsp_entry`] with the start-info address.
//!
//! AT&T syntax: LLVM assembles 32-bit code in it more reliably.

use crate::boot_info::BootInfo;
use crate::static_storage::StaticStorage;

core::arch::global_asm!(
    r#"
    /* Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (type 18): the 32-bit entry. */
    .section .note.Xen, "a", @note
    .balign 4
    .long 4                 /* name size: "Xen\0" */
    .long 4                 /* descriptor size: a 32-bit address */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .long pvh_entry32
    .balign 4

    .section .bss.boot_page_tables, "aw", @nobits
    .balign 4096
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096

    .section .data.boot, "aw"
    .balign 8
pvh_start_info_paddr: .long 0

    .section .rodata.boot_gdt, "a"
    .balign 16
boot_gdt:
    .quad 0                         /* null */
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit kernel code */
    .quad 0x00cf92000000ffff        /* 0x10: kernel data */
boot_gdt_end:
boot_gdt_pointer:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .text.boot32, "ax"
    .code32
    .global pvh_entry32
pvh_entry32:
    cli
    cld
    movl $qmk_boot_stack_top, %esp
    movl %ebx, pvh_start_info_paddr

    /* SSE before any Rust code: CR0.EM=0, CR0.MP=1; CR4.OSFXSR|OSXMMEXCPT.
       Also CR4.PAE (long mode needs it) and CR4.PGE (global pages). */
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $(1 << 1), %eax
    movl %eax, %cr0
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4

    /* Boot page tables: PML4[0] and PML4[256] (the direct-map base,
       0xffff800000000000) -> one PDPT -> one PD of 512 2 MiB pages. */
    movl $boot_pdpt, %eax
    orl $0x3, %eax                  /* present, writable */
    movl %eax, boot_pml4
    movl %eax, boot_pml4 + 256 * 8
    movl $boot_pd, %eax
    orl $0x3, %eax
    movl %eax, boot_pdpt
    xorl %ecx, %ecx
1:
    movl %ecx, %eax
    shll $21, %eax
    orl $0x83, %eax                 /* present, writable, 2 MiB page */
    movl %eax, boot_pd(, %ecx, 8)
    movl $0, boot_pd + 4(, %ecx, 8)
    incl %ecx
    cmpl $512, %ecx
    jne 1b
    movl $boot_pml4, %eax
    movl %eax, %cr3

    /* EFER: long mode enable (bit 8), no-execute enable (bit 11). */
    movl $0xc0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr

    /* Paging on (PG, bit 31) with write protection in ring 0 (WP, bit 16). */
    movl %cr0, %eax
    orl $((1 << 31) | (1 << 16)), %eax
    movl %eax, %cr0

    lgdt boot_gdt_pointer
    ljmpl $0x08, $long_mode_entry

    .code64
long_mode_entry:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $qmk_boot_stack_top, %rsp
    xorl %ebp, %ebp
    movl pvh_start_info_paddr, %edi
    call qmk_x86_64_bsp_entry
2:
    cli
    hlt
    jmp 2b
"#,
    options(att_syntax)
);

/// Boot facts, copied out of the loader's memory before it is unmapped.
static BOOT_INFO: StaticStorage<BootInfo> = StaticStorage::new(BootInfo::empty());

/// The first Rust code, on the bootstrap CPU, on the boot stack, with SSE on
/// and the boot page tables active.
#[no_mangle]
extern "C" fn qmk_x86_64_bsp_entry(start_info_paddr: u32) -> ! {
    // SAFETY: this is the bootstrap CPU (index 0), and nothing has used
    // per-CPU data yet: the console's lock is the first user.
    unsafe { crate::cpu::install_this_cpu(0) };
    crate::console::init();
    super::cpu_tables::init_bootstrap_cpu();
    super::interrupts::init_bootstrap_cpu();
    super::pat::program_this_cpu();

    let boot_info = BOOT_INFO.claim("boot info");
    // SAFETY: `start_info_paddr` is what QEMU's PVH loader passed in ebx,
    // the physical address of its start info; the boot page tables map the
    // first GiB at the direct-map base, where `pvh` reads it.
    if let Err(error) = unsafe { super::pvh::read_start_info(start_info_paddr, boot_info) } {
        crate::println!("qmk: error: cannot read the PVH start info: {error}");
        crate::qemu::exit(crate::qemu::RunOutcome::Failure);
    }
    crate::kernel_main(boot_info)
}
