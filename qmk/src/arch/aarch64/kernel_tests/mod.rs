//! Kernel tests of aarch64-only facts the arch-neutral suite
//! (`crate::kernel_tests`) cannot state: the exception level, the device
//! tree's description, every listed CPU started, and MAIR_EL1/TCR_EL1 as
//! quickmap's aarch64 backend requires. Their names start with
//! `arch::aarch64::kernel_tests::`.
//!
//! TODO(issue 13): counterparts of x86_64's own tests: that a handler's
//! change to the saved registers reaches the interrupted code and that the
//! FP/SIMD registers survive a handler (x86_64 raises `int 0x40`; here an
//! `svc` with another immediate would do), and that exceptions cannot be
//! taken over by `set_interrupt_handler`.

use aarch64_cpu::registers::{CurrentEL, Readable, MAIR_EL1, TCR_EL1};

use super::{firmware, smp_boot};
use crate::kernel_test;

kernel_test! {
    /// The kernel runs at EL1 (`boot` drops from EL2 when QEMU enters there).
    fn runs_at_el1() {
        let level = CurrentEL.read(CurrentEL::EL);
        assert_eq!(
            level, 1,
            "the kernel must run at EL1 (dropped from EL2 if entered there), but runs at EL{level}"
        );
    }
}

kernel_test! {
    /// The device tree named CPUs, a GICv3 and a PSCI conduit.
    fn device_tree_describes_the_machine() {
        let machine = firmware::machine();
        assert!(machine.cpu_count >= 1, "the device tree lists no CPU");
        assert_ne!(machine.gic_distributor, 0, "no GIC distributor address");
        assert_ne!(machine.gic_redistributors, 0, "no GIC redistributor address");
        assert!(
            machine.device_tree.start < machine.device_tree.end,
            "the device tree's own range is empty: {:#x?}",
            machine.device_tree
        );
    }
}

kernel_test! {
    /// Every CPU the device tree lists came online (up to the static stacks'
    /// limit), each with the hardware id of its MPIDR.
    fn every_listed_cpu_is_online() {
        let listed = firmware::machine().cpu_count;
        let expected = listed.min(smp_boot::MAX_STARTED_CPUS);
        assert_eq!(
            crate::cpu::cpu_count(),
            expected,
            "{listed} CPUs in the device tree, so {expected} must be online"
        );
    }
}

kernel_test! {
    /// MAIR_EL1 holds quickmap's attribute bytes and TCR_EL1 the 4 KiB TTBR1
    /// granule with inner-shareable write-back walks (`Aarch64Mmu::new`'s
    /// third promise), on this CPU.
    fn mair_and_tcr_are_what_quickmap_expects() {
        let mair = MAIR_EL1.get();
        assert!(
            quickmap::arch::aarch64::mair_is_compatible(mair),
            "MAIR_EL1 {mair:#018x} does not give quickmap's indices their types (expected {:#018x})",
            quickmap::arch::aarch64::MAIR_EL1_VALUE
        );
        assert!(
            TCR_EL1.matches_all(
                TCR_EL1::TG1::KiB_4
                    + TCR_EL1::SH1::Inner
                    + TCR_EL1::IRGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
                    + TCR_EL1::ORGN1::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            ),
            "TCR_EL1 {:#x}: TTBR1 walks must use 4 KiB pages and be inner-shareable write-back",
            TCR_EL1.get()
        );
    }
}
