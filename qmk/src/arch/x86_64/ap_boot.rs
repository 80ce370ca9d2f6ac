//! Starting the application processors (APs): INIT-SIPI-SIPI and the
//! real-mode trampoline.
//!
//! A start-up IPI starts an AP in 16-bit real mode at `vector * 4096`, so
//! the trampoline below is copied to [`TRAMPOLINE_ADDRESS`] (a page below
//! 1 MiB that the frame allocator never hands out). It loads its own GDT,
//! enters 32-bit protected mode, turns on the same features as the
//! bootstrap CPU's PVH entry (PAE, global pages, SSE, long mode, NX, WP),
//! loads the kernel's page tables, enters 64-bit mode and jumps to
//! [`qmk_ap_entry`] on the stack the bootstrap CPU prepared. The page is
//! identity-mapped while APs start, because the instruction after the one
//! that turns paging on is fetched through the kernel's tables.
//!
//! APs are started one at a time: each reads the parameter block (stack,
//! CPU index) and signals online before the next is started, so one
//! trampoline page and one parameter block suffice.
//!
//! All addresses inside the trampoline are written as
//! `label - qmk_ap_trampoline_start + TRAMPOLINE_ADDRESS`: constants the
//! assembler computes, valid at the copy's location.

use core::sync::atomic::{AtomicBool, Ordering};

use ::x86_64::registers::control::Cr3;
use ::x86_64::structures::paging::PageTableFlags;
use ::x86_64::{PhysAddr, VirtAddr};

use super::{paging, stacks, PhysFrame};

/// Physical (and, while APs start, virtual) address of the trampoline.
pub const TRAMPOLINE_ADDRESS: u64 = 0x8000;
/// Pages of each AP's boot stack (later its idle thread's stack).
const AP_STACK_PAGES: u64 = 16;

core::arch::global_asm!(
    r#"
    .section .rodata.ap_trampoline, "a"
    .balign 4096
    .global qmk_ap_trampoline_start
    .global qmk_ap_trampoline_end
    .global qmk_ap_parameters
    .set BASE, 0x8000
    .code16
qmk_ap_trampoline_start:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_gdt_pointer - qmk_ap_trampoline_start)
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmpl $0x08, $(ap_protected_mode - qmk_ap_trampoline_start + BASE)

    .code32
ap_protected_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    /* CR4: PAE (5), PGE (7), OSFXSR (9), OSXMMEXCPT (10). */
    movl %cr4, %eax
    orl $((1 << 5) | (1 << 7) | (1 << 9) | (1 << 10)), %eax
    movl %eax, %cr4
    movl (ap_cr3 - qmk_ap_trampoline_start + BASE), %eax
    movl %eax, %cr3
    /* EFER: long mode (8), no-execute (11). */
    movl $0xc0000080, %ecx
    rdmsr
    orl $((1 << 8) | (1 << 11)), %eax
    wrmsr
    /* CR0: clear EM (2); set MP (1), WP (16), PG (31). */
    movl %cr0, %eax
    andl $~(1 << 2), %eax
    orl $((1 << 1) | (1 << 16) | (1 << 31)), %eax
    movl %eax, %cr0
    ljmpl $0x18, $(ap_long_mode - qmk_ap_trampoline_start + BASE)

    .code64
ap_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq (ap_stack_top - qmk_ap_trampoline_start + BASE), %rsp
    movq (ap_cpu_index - qmk_ap_trampoline_start + BASE), %rdi
    movq (ap_entry - qmk_ap_trampoline_start + BASE), %rax
    xorl %ebp, %ebp
    callq *%rax                 /* a call: Rust expects rsp = 8 (mod 16) on entry */
1:  hlt
    jmp 1b

    .balign 8
ap_gdt:
    .quad 0                         /* null */
    .quad 0x00cf9a000000ffff        /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
    .quad 0x00af9a000000ffff        /* 0x18: 64-bit code */
ap_gdt_pointer:
    .word 4 * 8 - 1
    .long ap_gdt - qmk_ap_trampoline_start + BASE

    .balign 8
qmk_ap_parameters:
ap_cr3:         .quad 0
ap_stack_top:   .quad 0
ap_cpu_index:   .quad 0
ap_entry:       .quad 0
qmk_ap_trampoline_end:
"#,
    options(att_syntax)
);

extern "C" {
    static qmk_ap_trampoline_start: u8;
    static qmk_ap_trampoline_end: u8;
    static qmk_ap_parameters: u8;
}

/// The parameter block at the end of the trampoline, as the assembly lays it out.
#[repr(C)]
struct ApParameters {
    cr3: u64,
    stack_top: u64,
    cpu_index: u64,
    entry: u64,
}

/// Set by the AP that is starting once it no longer needs the trampoline.
static AP_STARTED: AtomicBool = AtomicBool::new(false);

/// What went wrong starting an AP.
#[derive(Debug)]
pub enum ApStartError {
    Stack(paging::MapError),
    Timeout { apic_id: u32 },
}

impl core::fmt::Display for ApStartError {
    fn fmt(&self, formatter: &mut core::fmt::Formatter) -> core::fmt::Result {
        match self {
            Self::Stack(error) => write!(formatter, "no stack for an AP: {error}"),
            Self::Timeout { apic_id } => write!(
                formatter,
                "the CPU with APIC id {apic_id} did not start within a second of its start-up IPIs"
            ),
        }
    }
}

/// Copies the trampoline to low memory and identity-maps its page.
pub fn install_trampoline() -> Result<(), paging::MapError> {
    let (start, length) = trampoline_bytes();
    assert!(
        length <= paging::PAGE_SIZE as usize,
        "the AP trampoline ({length} bytes) must fit one page"
    );
    let destination = paging::direct_map_address(PhysAddr::new(TRAMPOLINE_ADDRESS))
        .expect("low memory is always direct-mapped");
    // SAFETY: the source is the trampoline in .rodata (`length` bytes); the
    // destination is the low page at TRAMPOLINE_ADDRESS, which the frame
    // allocator never hands out (memory below 1 MiB is reserved) and no
    // kernel data lives in; the regions do not overlap.
    unsafe {
        core::ptr::copy_nonoverlapping(start, destination.as_mut_ptr::<u8>(), length);
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(TRAMPOLINE_ADDRESS));
    // Executable and writable: the APs run it and nothing else uses it.
    paging::map_page(
        VirtAddr::new(TRAMPOLINE_ADDRESS),
        frame,
        PageTableFlags::WRITABLE,
    )
}

/// Removes the trampoline's identity mapping once every AP is up.
pub fn remove_trampoline() {
    // Every AP has left the trampoline (each signalled before the next
    // started); stale translations of it are harmless and the shootdown in
    // `unmap_page` removes them anyway.
    let _ = paging::unmap_page(VirtAddr::new(TRAMPOLINE_ADDRESS));
}

fn trampoline_bytes() -> (*const u8, usize) {
    let start = &raw const qmk_ap_trampoline_start;
    let end = &raw const qmk_ap_trampoline_end;
    (start, end as usize - start as usize)
}

/// Starts the AP with `apic_id` as CPU `cpu_index` and waits until it runs
/// Rust code on its own stack.
pub fn start_ap(apic_id: u32, cpu_index: usize) -> Result<(), ApStartError> {
    let stack = stacks::allocate_stack(AP_STACK_PAGES).map_err(ApStartError::Stack)?;
    let (start, _) = trampoline_bytes();
    let parameters_offset = (&raw const qmk_ap_parameters) as usize - start as usize;
    let parameters: *mut ApParameters =
        (paging::direct_map_address(PhysAddr::new(TRAMPOLINE_ADDRESS))
            .expect("low memory is always direct-mapped")
            + parameters_offset as u64)
            .as_mut_ptr();
    let (root, _) = Cr3::read();
    // SAFETY: `parameters` points at the parameter block inside the copied
    // trampoline (8-byte aligned, in the reserved low page); no AP is
    // reading it now (the previous one signalled before we got here).
    unsafe {
        parameters.write_volatile(ApParameters {
            cr3: root.start_address().as_u64(),
            stack_top: stack.top.as_u64(),
            cpu_index: cpu_index as u64,
            entry: qmk_ap_entry as *const () as u64,
        });
    }
    AP_STARTED.store(false, Ordering::Release);

    // The MP specification's sequence: INIT, 10 ms, SIPI, 200 µs, SIPI.
    super::apic::send_init(apic_id);
    super::tsc::delay_us(10_000);
    let trampoline_page = (TRAMPOLINE_ADDRESS / paging::PAGE_SIZE) as u8;
    super::apic::send_startup(apic_id, trampoline_page);
    super::tsc::delay_us(200);
    if !AP_STARTED.load(Ordering::Acquire) {
        super::apic::send_startup(apic_id, trampoline_page);
    }
    let deadline = super::tsc::read() + super::tsc::hz();
    while !AP_STARTED.load(Ordering::Acquire) {
        if super::tsc::read() > deadline {
            return Err(ApStartError::Timeout { apic_id });
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// The first Rust code on an AP: long mode, kernel page tables, its own
/// boot stack; interrupts off, GS not yet set.
extern "C" fn qmk_ap_entry(cpu_index: u64) -> ! {
    let cpu_index = cpu_index as usize;
    // SAFETY: the bootstrap CPU gave this AP a fresh index (it starts APs
    // one at a time with increasing indices); nothing on this CPU has read
    // per-CPU data yet.
    unsafe { crate::cpu::install_this_cpu(cpu_index) };
    AP_STARTED.store(true, Ordering::Release);
    super::cpu_tables::init_application_cpu();
    super::interrupts::load_on_this_cpu();
    super::pat::program_this_cpu();
    crate::smp::application_cpu_main(cpu_index)
}
