use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::interrupts::{set_interrupt_handler, InterruptFrame};
use crate::kernel_test;

const TEST_VECTOR: u8 = 0x40;
static HANDLER_RUNS: AtomicU64 = AtomicU64::new(0);

fn triple_rax_and_clobber_sse(frame: &mut InterruptFrame) {
    HANDLER_RUNS.fetch_add(1, Ordering::AcqRel);
    frame.rax = frame.rax.wrapping_mul(3);
    // SAFETY: sets xmm0 to all ones; the entry code saved the interrupted
    // SSE state and restores it on return, which is what is tested.
    unsafe { asm!("pcmpeqd xmm0, xmm0", out("xmm0") _, options(nomem, nostack)) };
}

kernel_test! {
    /// An interrupt reaches its installed handler, the handler can change the
    /// interrupted registers, and the interrupted SSE state survives a
    /// handler that clobbers it.
    fn handler_runs_and_state_is_restored() {
        set_interrupt_handler(TEST_VECTOR, triple_rax_and_clobber_sse);
        let runs_before = HANDLER_RUNS.load(Ordering::Acquire);
        let pattern = 0x1122_3344_5566_7788u64;
        let mut value = 14u64;
        let xmm0_after: u64;
        // SAFETY: `int 0x40` enters the kernel's own stub for vector 0x40,
        // whose handler only changes rax (declared inout) and xmm0 (declared
        // clobbered, and restored by the entry code anyway).
        unsafe {
            asm!(
                "movq xmm0, {pattern}",
                "int 0x40",
                "movq {xmm0_after}, xmm0",
                pattern = in(reg) pattern,
                xmm0_after = out(reg) xmm0_after,
                inout("rax") value,
                out("xmm0") _,
            );
        }
        assert_eq!(HANDLER_RUNS.load(Ordering::Acquire), runs_before + 1);
        assert_eq!(value, 42, "the handler's change to rax reached the interrupted code");
        assert_eq!(xmm0_after, pattern, "xmm0 was restored after the handler");
    }
}

kernel_test! {
    /// CPU exceptions belong to the kernel; installing a handler for one is refused.
    #[should_panic(expected = "vector 14 is a CPU exception")]
    fn exception_vectors_cannot_be_taken_over() {
        set_interrupt_handler(14, triple_rax_and_clobber_sse);
    }
}
