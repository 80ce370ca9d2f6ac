//! Exception entry: the vector table, the saved context, and reports of
//! exceptions the kernel cannot handle (ESR and FAR decoded).
//!
//! Every exception is taken on this CPU's exception stack (SP_EL1; the
//! kernel runs on SP_EL0, see `boot`). The entry code saves the complete
//! interrupted context there — x0–x30, SP_EL0, ELR, SPSR, plus ESR and FAR
//! for the report, and the FP/SIMD registers, which the prebuilt `core`
//! uses anywhere — calls [`qmk_exception_dispatch`], and restores the
//! (possibly modified) context with `eret`. A handler that changes the saved
//! context changes what resumes: the fault probe's landing pad, and (with
//! the scheduler) the next thread.

use core::fmt;

use aarch64_cpu::registers::{Writeable, VBAR_EL1};

use super::{fault_probe, qemu_exit};

/// Size of [`InterruptFrame`] as the entry code lays it out.
const FRAME_SIZE: usize = 304;
/// Size of [`FpState`].
const FP_STATE_SIZE: usize = 528;
/// What the entry code reserves on the exception stack.
pub const SAVED_CONTEXT_SIZE: usize = FRAME_SIZE + FP_STATE_SIZE;

const _: () = assert!(core::mem::size_of::<InterruptFrame>() == FRAME_SIZE);
const _: () = assert!(core::mem::size_of::<FpState>() == FP_STATE_SIZE);
const _: () = assert!(SAVED_CONTEXT_SIZE.is_multiple_of(16));

core::arch::global_asm!(
    r#"
    .macro qmk_vector kind
    .balign 0x80
    sub sp, sp, #{saved_context_size}
    stp x0, x1, [sp, #0]
    mov x0, #\kind
    b qmk_exception_common
    .endm

    .section .text.qmk_vectors, "ax"
    .balign 0x800
    .global qmk_exception_vectors
qmk_exception_vectors:
    /* Current EL with SP_EL0 (the kernel's normal state). */
    qmk_vector 0
    qmk_vector 1
    qmk_vector 2
    qmk_vector 3
    /* Current EL with SP_EL1 (inside an exception handler). */
    qmk_vector 4
    qmk_vector 5
    qmk_vector 6
    qmk_vector 7
    /* Lower EL, AArch64 and AArch32: qmk has no lower EL; reported. */
    qmk_vector 8
    qmk_vector 9
    qmk_vector 10
    qmk_vector 11
    qmk_vector 12
    qmk_vector 13
    qmk_vector 14
    qmk_vector 15

qmk_exception_common:
    stp x2, x3, [sp, #16]
    stp x4, x5, [sp, #32]
    stp x6, x7, [sp, #48]
    stp x8, x9, [sp, #64]
    stp x10, x11, [sp, #80]
    stp x12, x13, [sp, #96]
    stp x14, x15, [sp, #112]
    stp x16, x17, [sp, #128]
    stp x18, x19, [sp, #144]
    stp x20, x21, [sp, #160]
    stp x22, x23, [sp, #176]
    stp x24, x25, [sp, #192]
    stp x26, x27, [sp, #208]
    stp x28, x29, [sp, #224]
    mrs x1, sp_el0
    stp x30, x1, [sp, #240]
    mrs x1, elr_el1
    mrs x2, spsr_el1
    stp x1, x2, [sp, #256]
    mrs x1, esr_el1
    mrs x2, far_el1
    stp x1, x2, [sp, #272]
    str x0, [sp, #288]
    add x1, sp, #{frame_size}
    stp q0, q1, [x1, #0]
    stp q2, q3, [x1, #32]
    stp q4, q5, [x1, #64]
    stp q6, q7, [x1, #96]
    stp q8, q9, [x1, #128]
    stp q10, q11, [x1, #160]
    stp q12, q13, [x1, #192]
    stp q14, q15, [x1, #224]
    stp q16, q17, [x1, #256]
    stp q18, q19, [x1, #288]
    stp q20, q21, [x1, #320]
    stp q22, q23, [x1, #352]
    stp q24, q25, [x1, #384]
    stp q26, q27, [x1, #416]
    stp q28, q29, [x1, #448]
    stp q30, q31, [x1, #480]
    mrs x2, fpcr
    mrs x3, fpsr
    str x2, [x1, #512]
    str x3, [x1, #520]
    mov x0, sp                  /* x0: the frame, x1: the FP/SIMD state */
    bl qmk_exception_dispatch

    add x1, sp, #{frame_size}
    ldp q0, q1, [x1, #0]
    ldp q2, q3, [x1, #32]
    ldp q4, q5, [x1, #64]
    ldp q6, q7, [x1, #96]
    ldp q8, q9, [x1, #128]
    ldp q10, q11, [x1, #160]
    ldp q12, q13, [x1, #192]
    ldp q14, q15, [x1, #224]
    ldp q16, q17, [x1, #256]
    ldp q18, q19, [x1, #288]
    ldp q20, q21, [x1, #320]
    ldp q22, q23, [x1, #352]
    ldp q24, q25, [x1, #384]
    ldp q26, q27, [x1, #416]
    ldp q28, q29, [x1, #448]
    ldp q30, q31, [x1, #480]
    ldr x2, [x1, #512]
    ldr x3, [x1, #520]
    msr fpcr, x2
    msr fpsr, x3
    ldp x1, x2, [sp, #256]
    msr elr_el1, x1
    msr spsr_el1, x2
    ldp x30, x1, [sp, #240]
    msr sp_el0, x1
    ldp x2, x3, [sp, #16]
    ldp x4, x5, [sp, #32]
    ldp x6, x7, [sp, #48]
    ldp x8, x9, [sp, #64]
    ldp x10, x11, [sp, #80]
    ldp x12, x13, [sp, #96]
    ldp x14, x15, [sp, #112]
    ldp x16, x17, [sp, #128]
    ldp x18, x19, [sp, #144]
    ldp x20, x21, [sp, #160]
    ldp x22, x23, [sp, #176]
    ldp x24, x25, [sp, #192]
    ldp x26, x27, [sp, #208]
    ldp x28, x29, [sp, #224]
    ldp x0, x1, [sp, #0]
    add sp, sp, #{saved_context_size}
    eret
"#,
    saved_context_size = const SAVED_CONTEXT_SIZE,
    frame_size = const FRAME_SIZE,
);

extern "C" {
    /// The vector table above (2 KiB aligned, as VBAR_EL1 requires).
    static qmk_exception_vectors: u8;
}

/// The interrupted context as the entry code saved it; handlers may modify
/// it, and the interrupted code resumes with the modified values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InterruptFrame {
    /// x0–x30 (x29 the frame pointer, x30 the link register).
    pub x: [u64; 31],
    /// The stack pointer of the kernel context (EL1t).
    pub sp_el0: u64,
    /// Where the interrupted code resumes.
    pub elr: u64,
    /// The interrupted PSTATE.
    pub spsr: u64,
    /// The syndrome (synchronous exceptions and SErrors; stale otherwise).
    pub esr: u64,
    /// The fault address (aborts, alignment faults; stale otherwise).
    pub far: u64,
    /// Which of the 16 vectors was taken ([`VectorKind`]).
    pub kind: u64,
    padding: u64,
}

/// The FP/SIMD registers: q0–q31, FPCR, FPSR.
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug)]
pub struct FpState {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

impl FpState {
    /// The state a new thread starts with: all zero (round to nearest, no
    /// exceptions trapped).
    pub const fn initial() -> Self {
        Self {
            q: [0; 32],
            fpcr: 0,
            fpsr: 0,
        }
    }
}

/// Where the exception came from and what it is: the vector's position in
/// the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VectorKind(u64);

impl VectorKind {
    /// 0 synchronous, 1 IRQ, 2 FIQ, 3 SError.
    fn class(self) -> u64 {
        self.0 % 4
    }

    /// A synchronous exception (SVC, abort, undefined instruction...).
    pub fn is_synchronous(self) -> bool {
        self.class() == 0
    }

    /// An IRQ.
    pub fn is_irq(self) -> bool {
        self.class() == 1
    }

    fn class_name(self) -> &'static str {
        ["synchronous exception", "IRQ", "FIQ", "SError"][self.class() as usize]
    }

    fn origin(self) -> &'static str {
        match self.0 / 4 {
            0 => "EL1 on SP_EL0 (kernel code)",
            1 => "EL1 on SP_EL1 (an exception handler)",
            2 => "a lower EL in AArch64",
            _ => "a lower EL in AArch32",
        }
    }
}

impl InterruptFrame {
    /// The vector that was taken.
    pub fn vector_kind(&self) -> VectorKind {
        VectorKind(self.kind)
    }

    /// The exception class, ESR bits 31:26.
    pub fn exception_class(&self) -> u8 {
        ((self.esr >> 26) & 0x3f) as u8
    }

    /// The interrupted stack pointer: SP_EL0 for kernel code, the exception
    /// stack above this frame for a handler.
    pub fn interrupted_sp(&self) -> u64 {
        const SPSR_MODE_EL1H: u64 = 0b0101;
        if self.spsr & 0xf == SPSR_MODE_EL1H {
            (self as *const Self as u64) + SAVED_CONTEXT_SIZE as u64
        } else {
            self.sp_el0
        }
    }
}

/// Points this CPU's VBAR_EL1 at the vector table.
pub fn install_on_this_cpu() {
    let table = (&raw const qmk_exception_vectors) as u64;
    VBAR_EL1.set(table);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Exception classes (ESR_EL1.EC) the kernel handles or names.
pub(super) mod class {
    pub const UNKNOWN: u8 = 0x00;
    pub const SVC_AARCH64: u8 = 0x15;
    pub const DATA_ABORT_SAME_EL: u8 = 0x25;
}

/// Called by the entry code with the saved context.
#[no_mangle]
extern "C" fn qmk_exception_dispatch(frame: &mut InterruptFrame, fp_state: &mut FpState) {
    let kind = frame.vector_kind();
    if kind.class() == 0 {
        let exception_class = frame.exception_class();
        if exception_class == class::DATA_ABORT_SAME_EL {
            if fault_probe::recover_expected_fault(frame, frame.far) {
                return;
            }
            // A fault at a local slot has a quickmap rule that explains it (a
            // slot not put back at switch-in, or used after its removal): that
            // panic is the report.
            crate::vm::quick::explain_local_slot_fault(frame.far);
        }
        if exception_class == class::UNKNOWN && qemu_exit::is_semihosting_trap(frame.elr) {
            crate::console::emergency_print(format_args!(
                "qmk: EXCEPTION: the semihosting exit trapped: QEMU runs without -semihosting, so the run cannot end with a status; halting\n"
            ));
            super::halt_forever();
        }
    }
    if kind.is_irq() || super::context::switch_request_of(frame).is_some() {
        super::interrupts::handle_interrupt(frame, fp_state);
        return;
    }
    fatal_exception(frame)
}

/// ESR_EL1 spelled out: the class, and for aborts the fault status, the
/// access and whether FAR is valid.
pub struct Syndrome(pub u64);

impl Syndrome {
    fn class(&self) -> u8 {
        ((self.0 >> 26) & 0x3f) as u8
    }

    fn is_abort(&self) -> bool {
        matches!(self.class(), 0x20 | 0x21 | 0x24 | 0x25)
    }

    fn is_data_abort(&self) -> bool {
        matches!(self.class(), 0x24 | 0x25)
    }

    /// The fault status code of an abort (DFSC/IFSC, ISS bits 5:0).
    pub fn fault_status(&self) -> u8 {
        (self.0 & 0x3f) as u8
    }

    /// An abort whose cause is a missing translation (no valid descriptor).
    pub fn is_translation_fault(&self) -> bool {
        self.is_abort() && (0x04..=0x07).contains(&self.fault_status())
    }

    /// A data abort on a write (ISS.WnR; cache maintenance reports as write).
    pub fn is_write(&self) -> bool {
        self.is_data_abort() && self.0 & (1 << 6) != 0
    }

    /// FAR_EL1 holds the faulting address (ISS.FnV clear, aborts only).
    fn far_is_valid(&self) -> bool {
        self.is_abort() && self.0 & (1 << 10) == 0 || matches!(self.class(), 0x22 | 0x34 | 0x35)
    }

    fn class_name(&self) -> &'static str {
        match self.class() {
            0x00 => "unknown reason (undefined instruction)",
            0x01 => "trapped WFI/WFE",
            0x07 => "FP/SIMD access trapped",
            0x0e => "illegal execution state",
            0x15 => "SVC from AArch64",
            0x16 => "HVC from AArch64",
            0x17 => "SMC from AArch64",
            0x18 => "trapped system register access",
            0x20 => "instruction abort from a lower EL",
            0x21 => "instruction abort (same EL)",
            0x22 => "PC alignment fault",
            0x24 => "data abort from a lower EL",
            0x25 => "data abort (same EL)",
            0x26 => "SP alignment fault",
            0x2c => "floating-point exception",
            0x2f => "SError",
            0x30 | 0x31 => "breakpoint",
            0x32 | 0x33 => "software step",
            0x34 | 0x35 => "watchpoint",
            0x3c => "BRK instruction",
            _ => "other",
        }
    }

    fn fault_status_name(&self) -> &'static str {
        match self.fault_status() {
            0x00..=0x03 => "address size fault",
            0x04..=0x07 => "translation fault (no valid descriptor)",
            0x09..=0x0b => "access flag fault",
            0x0d..=0x0f => "permission fault",
            0x10 => "synchronous external abort",
            0x21 => "alignment fault",
            0x30 => "TLB conflict abort",
            _ => "other fault status",
        }
    }
}

impl fmt::Display for Syndrome {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        write!(
            formatter,
            "esr={:#x}: {} (class {:#04x})",
            self.0,
            self.class_name(),
            self.class()
        )?;
        if self.is_abort() {
            let level = self.fault_status() & 0x3;
            write!(
                formatter,
                ", {} at level {level} (status {:#04x})",
                self.fault_status_name(),
                self.fault_status()
            )?;
            if self.is_data_abort() {
                let access = if self.is_write() { "write" } else { "read" };
                write!(formatter, ", {access}")?;
            } else {
                write!(formatter, ", instruction fetch")?;
            }
        }
        Ok(())
    }
}

/// Reports an exception the kernel cannot handle and ends the run as failed.
fn fatal_exception(frame: &InterruptFrame) -> ! {
    let kind = frame.vector_kind();
    let print = crate::console::emergency_print;
    crate::test_harness::fail_run(|| {
        print(format_args!(
            "qmk: EXCEPTION: {} from {} at pc={:#x}\n",
            kind.class_name(),
            kind.origin(),
            frame.elr
        ));
        if kind.class() == 0 || kind.class() == 3 {
            let syndrome = Syndrome(frame.esr);
            print(format_args!("qmk: EXCEPTION: {syndrome}\n"));
            if syndrome.far_is_valid() {
                print(format_args!(
                    "qmk: EXCEPTION: faulting address far={:#x}\n",
                    frame.far
                ));
            }
            if fault_probe::is_probe_access(frame.elr) {
                print(format_args!(
                    "qmk: EXCEPTION: the access was a fault probe, but no armed expectation covers this address\n"
                ));
            }
        }
        print_frame(frame);
    })
}

fn print_frame(frame: &InterruptFrame) {
    let print = crate::console::emergency_print;
    print(format_args!(
        "qmk: EXCEPTION: sp={:#x} spsr={:#x} lr={:#x} fp={:#x}\n",
        frame.interrupted_sp(),
        frame.spsr,
        frame.x[30],
        frame.x[29]
    ));
    for row in 0..4 {
        // One line per eight registers; written piecewise, which the
        // lock-free emergency path allows (nothing is allocated).
        print(format_args!("qmk: EXCEPTION:"));
        for register in row * 8..(row * 8 + 8).min(31) {
            print(format_args!(" x{register}={:#x}", frame.x[register]));
        }
        print(format_args!("\n"));
    }
}
