//! The entry: from QEMU's `-kernel` hand-over to Rust at EL1.
//!
//! QEMU loads the ELF at its physical addresses and starts the first CPU at
//! `_start` with the MMU and caches off, at EL1 (or at EL2 with
//! `-M virt,virtualization=on`; at EL3 only with `secure=on`, which qmk
//! does not support). The other CPUs stay powered off until PSCI `CPU_ON`
//! starts them at `qmk_secondary_entry` (see `smp_boot`). The assembly below,
//! on every CPU:
//! 1. masks every exception (DAIF) and, when entered at EL2, drops to EL1:
//!    EL1 runs AArch64 (HCR_EL2.RW), may use the physical counter and timer
//!    (CNTHCTL_EL2), sees no virtual counter offset, reaches the GIC CPU
//!    interface through system registers (ICC_SRE_EL2), and sees the real
//!    MPIDR (VMPIDR_EL2);
//! 2. enables FP/SIMD (CPACR_EL1.FPEN): the prebuilt `core` uses the vector
//!    registers, so this must precede any Rust code;
//! 3. runs the kernel on SP_EL0 ("EL1t") and keeps SP_EL1 for exceptions:
//!    every exception switches to this CPU's exception stack, like an x86
//!    IST stack, so nothing of a thread stays on a per-CPU stack and a
//!    thread switch is a swap of the saved frame;
//! 4. (bootstrap CPU) zeroes `.bss` and calls [`boot_cpu_entry`] with the
//!    device-tree address QEMU left in x0 (0 for an ELF image: see
//!    `firmware::device_tree_address`).

use super::stacks;

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mov x19, x0                         /* the device tree, if the loader passed it */
    adrp x20, qmk_boot_stack_top
    add x20, x20, :lo12:qmk_boot_stack_top
    adrp x22, qmk_boot_exception_stack_top
    add x22, x22, :lo12:qmk_boot_exception_stack_top
    mov x21, #0                         /* the bootstrap CPU */
    b qmk_cpu_entry

    /* PSCI CPU_ON target: x0 = the context id, the address of this CPU's
       start block: [stack top, exception stack top, argument]. */
    .global qmk_secondary_entry
qmk_secondary_entry:
    ldr x20, [x0, #0]
    ldr x22, [x0, #8]
    ldr x19, [x0, #16]
    mov x21, #1
    b qmk_cpu_entry

qmk_cpu_entry:
    msr daifset, #0xf
    mrs x1, CurrentEL
    lsr x1, x1, #2
    cmp x1, #2
    b.ne 1f

    /* At EL2: set up what EL1 needs, then drop to EL1h with DAIF masked. */
    mov x1, #(1 << 31)                  /* HCR_EL2.RW: EL1 is AArch64; no traps */
    msr hcr_el2, x1
    mov x1, #3                          /* CNTHCTL_EL2.EL1PCTEN | EL1PCEN */
    msr cnthctl_el2, x1
    msr cntvoff_el2, xzr
    mrs x1, S3_4_C12_C9_5               /* ICC_SRE_EL2 */
    mov x2, #0x9                        /* SRE | Enable: EL1 may use ICC_SRE_EL1 */
    orr x1, x1, x2
    msr S3_4_C12_C9_5, x1
    mrs x1, midr_el1
    msr vpidr_el2, x1
    mrs x1, mpidr_el1
    msr vmpidr_el2, x1
    movz x1, #0x0800                    /* SCTLR_EL1: RES1 bits only, MMU off */
    movk x1, #0x30d0, lsl #16
    msr sctlr_el1, x1
    mov x1, #0x3c5                      /* SPSR: EL1h, D, A, I, F masked */
    msr spsr_el2, x1
    adr x1, 1f
    msr elr_el2, x1
    isb
    eret

1:  /* At EL1. */
    mov x1, #(3 << 20)                  /* CPACR_EL1.FPEN: no FP/SIMD traps */
    msr cpacr_el1, x1
    isb
    mov sp, x22                         /* SP_EL1: the exception stack */
    msr sp_el0, x20
    msr spsel, #0                       /* the kernel runs on SP_EL0 */
    cbnz x21, 3f

    adrp x1, __bss_start
    add x1, x1, :lo12:__bss_start
    adrp x2, __bss_end
    add x2, x2, :lo12:__bss_end
2:  cmp x1, x2
    b.hs 4f
    str xzr, [x1], #8
    b 2b
4:  mov x0, x19
    bl qmk_aarch64_boot_cpu_entry
    b 5f

3:  mov x0, x19
    bl qmk_aarch64_secondary_cpu_entry
5:  wfe
    b 5b

    .section .bss.qmk_boot_stacks, "aw", @nobits
    .balign 4096
    .global qmk_boot_stack_guard
qmk_boot_stack_guard:                   /* left unmapped by `paging::init` */
    .skip 4096
qmk_boot_stack_bottom:
    .skip {boot_stack_size}
    .global qmk_boot_stack_top
qmk_boot_stack_top:
    .skip {exception_stack_size}
    .global qmk_boot_exception_stack_top
qmk_boot_exception_stack_top:
"#,
    boot_stack_size = const stacks::BOOT_STACK_SIZE,
    exception_stack_size = const stacks::EXCEPTION_STACK_SIZE,
);

/// The first Rust code on the bootstrap CPU: on the boot stack (SP_EL0),
/// FP/SIMD on, MMU off, every exception masked.
/// What the device tree says, in the kernel core's form.
static BOOT_INFO: crate::static_storage::StaticStorage<crate::boot_info::BootInfo> =
    crate::static_storage::StaticStorage::new(crate::boot_info::BootInfo::empty());

/// The first Rust code on the bootstrap CPU: on the boot stack (SP_EL0),
/// FP/SIMD on, MMU off, every exception masked. Per-CPU data, exception
/// vectors and the console, then the device tree, then the kernel core
/// (which turns the MMU on in `memory::init`).
///
/// Until then data accesses are Device-nGnRnE (MMU off): an unaligned access
/// faults and caches are off. The code before `paging::init` (boot options,
/// the frame allocator's set-up) makes only aligned accesses today.
/// TODO(issue 13): turn the MMU on with a boot-time identity map before
/// `kernel_main`, so that no Rust code depends on that.
#[no_mangle]
extern "C" fn qmk_aarch64_boot_cpu_entry(device_tree_from_x0: u64) -> ! {
    // SAFETY: CPU 0's block, for the bootstrap CPU; nothing has read
    // per-CPU data yet.
    unsafe { crate::cpu::install_this_cpu(0) };
    super::exceptions::install_on_this_cpu();
    crate::console::init();
    let boot_info = BOOT_INFO.claim("boot info");
    // SAFETY: x0 as QEMU left it; the MMU is off (RAM is read in place).
    match unsafe { super::firmware::read_device_tree(device_tree_from_x0, boot_info) } {
        Ok(machine) => {
            super::firmware::record_machine(machine);
        }
        Err(error) => {
            crate::println!("qmk: error: {error}");
            crate::qemu::exit(crate::qemu::RunOutcome::Failure);
        }
    }
    crate::kernel_main(boot_info)
}
