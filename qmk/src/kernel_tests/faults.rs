use crate::arch::fault_probe::probe_read_u8;
use crate::arch::stacks;
use crate::fault_expectation::expect_page_fault;
use crate::kernel_test;

kernel_test! {
    /// The guard page below the boot stack (on which this test runs) is
    /// unmapped, so a stack overflow faults instead of corrupting memory.
    fn boot_stack_guard_page_faults() {
        let guard = stacks::boot_stack().guard_page;
        let last_guard_byte = guard + 4095u64;
        let fault = expect_page_fault(guard..guard + 4096u64, || {
            // SAFETY: the guard page is unmapped (the claim under test).
            let _ = unsafe { probe_read_u8(last_guard_byte) };
        });
        assert_eq!(fault.address, last_guard_byte);
        // The first byte of the stack proper is mapped.
        // SAFETY: the lowest byte of the boot stack is ordinary RAM; nothing
        // holds a reference to it (the stack is nowhere near that deep).
        assert!(unsafe { probe_read_u8(guard + 4096u64) }.is_ok());
    }
}

kernel_test! {
    /// An expectation that is not met (the access did not fault) fails.
    #[should_panic(expected = "but the access completed without one")]
    fn unmet_fault_expectation_fails() {
        static READABLE: u8 = 1;
        let address = crate::arch::VirtAddr::from_ptr(&READABLE);
        expect_page_fault(address..address + 1u64, || {
            // SAFETY: a byte of .rodata; reading it has no side effects.
            let _ = unsafe { probe_read_u8(address) };
        });
    }
}

kernel_test! {
    /// A test that panics with the expected message passes (and the panic
    /// message reaches the harness intact, with formatted values).
    #[should_panic(expected = "deliberate panic with value 42")]
    fn expected_panic_passes() {
        let value = core::hint::black_box(42);
        panic!("deliberate panic with value {value}");
    }
}

kernel_test! {
    /// A stack from `allocate_stack` is mapped and writable from its lowest to
    /// its highest byte, and the page below it faults.
    fn allocated_stack_has_a_guard_page() {
        let stack = stacks::allocate_stack(4).unwrap();
        assert_eq!(stack.top - stack.guard_page, 5 * 4096);
        let lowest = stack.guard_page + 4096u64;
        let highest = stack.top - 1u64;
        for address in [lowest, highest] {
            // SAFETY: the stack was just mapped for this test and is unused.
            unsafe { crate::arch::fault_probe::probe_write_u8(address, 0x5a).unwrap() };
            // SAFETY: as above.
            assert_eq!(unsafe { probe_read_u8(address) }, Ok(0x5a));
        }
        let below = stack.guard_page + 4095u64;
        expect_page_fault(stack.guard_page..lowest, || {
            // SAFETY: the guard page is unmapped (the claim under test).
            let _ = unsafe { crate::arch::fault_probe::probe_write_u8(below, 1) };
        });
    }
}
