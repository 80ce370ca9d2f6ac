//! Interrupt entry: the IDT, the assembly entry stubs, and dispatch.
//!
//! Stable Rust has no `extern "x86-interrupt"`, so entry is hand-written:
//! one 16-byte stub per vector pushes a zero error code (for vectors where the
//! CPU pushes none) and the vector number, then jumps to a common routine that
//! saves every general-purpose register and the SSE state (`fxsave`: Rust
//! code, including prebuilt `core`, uses SSE registers), calls
//! [`qmk_interrupt_dispatch`] with a pointer to the saved [`InterruptFrame`],
//! restores everything from that frame and returns with `iretq`. Because the
//! frame is restored from memory, a handler may change it — the page-fault
//! probe recovery sets `rip` that way.
//!
//! Every vector runs on an IST stack (see [`IstSlot`]). Because the whole
//! interrupted context (registers and SSE state) is in memory when the
//! handler returns, the scheduler switches threads by swapping that saved
//! context for another thread's before `iretq` (see `sched::switch`): the
//! IST stack is never left holding a thread's state.
//!
//! External interrupts and IPIs (vectors 32–255) count as "in interrupt"
//! ([`in_interrupt`]) while their handler runs; exceptions do not. Their
//! handler must give back every quickmap window it took before it returns:
//! [`qmk_interrupt_dispatch`] compares the CPU's windows in use before and
//! after it (`vm::quick::interrupt_windows_check`).

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use ::x86_64::instructions::segmentation::{Segment, CS};
use ::x86_64::instructions::tables::lidt;
use ::x86_64::registers::control::Cr2;
use ::x86_64::structures::DescriptorTablePointer;
use ::x86_64::VirtAddr;
use spin::Once;

use super::cpu_tables::IstSlot;
use super::fault_probe;

/// Bytes between two entry stubs; the IDT computes stub addresses from it.
const STUB_SPACING: u64 = 16;

// The vectors for which the CPU pushes an error code: 8, 10–14, 17, 21, 29, 30.
core::arch::global_asm!(
    r#"
    .section .text.interrupt_entry, "ax"
    .balign 16
    .global qmk_interrupt_stubs
qmk_interrupt_stubs:
    .set vector, 0
    .rept 256
    .org qmk_interrupt_stubs + vector * 16
    .if (vector == 8) || ((vector >= 10) && (vector <= 14)) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushq $0
    .endif
    pushq $vector
    jmp qmk_interrupt_common
    .set vector, vector + 1
    .endr

qmk_interrupt_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rbx             /* rbx = &InterruptFrame; callee-saved */
    subq $512, %rsp
    andq $-16, %rsp             /* fxsave needs a 16-byte-aligned area */
    fxsave64 (%rsp)
    cld
    movq %rbx, %rdi
    movq %rsp, %rsi             /* the saved SSE state: the scheduler may swap it */
    call qmk_interrupt_dispatch
    fxrstor64 (%rsp)
    movq %rbx, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %r11
    popq %r10
    popq %r9
    popq %r8
    popq %rbp
    popq %rdi
    popq %rsi
    popq %rdx
    popq %rcx
    popq %rbx
    popq %rax
    addq $16, %rsp              /* vector and error code */
    iretq
"#,
    options(att_syntax)
);

extern "C" {
    /// The first of 256 entry stubs, [`STUB_SPACING`] bytes apart.
    fn qmk_interrupt_stubs();
}

/// The interrupted context as the entry code saved it; handlers may modify
/// it, and the interrupted code resumes with the modified values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct InterruptFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors that have none.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// One IDT gate, in the hardware's layout.
#[derive(Clone, Copy)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attributes: u8,
    offset_middle: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, ring 0, 64-bit interrupt gate (interrupts stay off in handlers).
const INTERRUPT_GATE: u8 = 0x8e;

#[repr(C, align(16))]
struct InterruptDescriptorTable([Gate; 256]);

/// One IDT serves every CPU: the IST indices it names resolve through each
/// CPU's own TSS, so the stacks are per CPU while the table is shared.
static IDT: Once<InterruptDescriptorTable> = Once::new();

fn build_idt() -> InterruptDescriptorTable {
    let code_selector = CS::get_reg().0;
    let stubs = qmk_interrupt_stubs as *const () as u64;
    let mut gates = [Gate {
        offset_low: 0,
        selector: 0,
        ist: 0,
        type_attributes: 0,
        offset_middle: 0,
        offset_high: 0,
        reserved: 0,
    }; 256];
    for (vector, gate) in (0u8..=255).zip(gates.iter_mut()) {
        let handler = stubs + u64::from(vector) * STUB_SPACING;
        *gate = Gate {
            offset_low: handler as u16,
            selector: code_selector,
            ist: IstSlot::for_vector(vector).gate_ist_index(),
            type_attributes: INTERRUPT_GATE,
            offset_middle: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
    }
    InterruptDescriptorTable(gates)
}

/// Loads the IDT on this CPU (after its GDT and TSS: gates name IST slots).
pub fn load_on_this_cpu() {
    let idt = IDT.call_once(build_idt);
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<InterruptDescriptorTable>() - 1) as u16,
        base: VirtAddr::from_ptr(idt),
    };
    // SAFETY: the table is 'static and never changes after `call_once`; every
    // gate points at an entry stub with the current code selector, and every
    // IST index names a stack set in this CPU's TSS.
    unsafe { lidt(&pointer) };
}

/// Sets up interrupt entry on the bootstrap CPU.
pub fn init_bootstrap_cpu() {
    load_on_this_cpu();
    // A switch request's work happens in `sched::interrupt_exit`, after
    // the handler; the handler only has to exist.
    set_interrupt_handler(super::context::SWITCH_REQUEST_VECTOR, |_| {});
}

/// A handler for an external interrupt or IPI (vectors 32–255).
pub type InterruptHandler = fn(&mut InterruptFrame);

const FIRST_EXTERNAL_VECTOR: usize = 32;
static EXTERNAL_HANDLERS: [AtomicUsize; 256 - FIRST_EXTERNAL_VECTOR] =
    [const { AtomicUsize::new(0) }; 256 - FIRST_EXTERNAL_VECTOR];

/// Installs `handler` for `vector` (32–255); exceptions (0–31) are the
/// kernel's own and cannot be replaced.
pub fn set_interrupt_handler(vector: u8, handler: InterruptHandler) {
    let index = usize::from(vector)
        .checked_sub(FIRST_EXTERNAL_VECTOR)
        .unwrap_or_else(|| {
            panic!("interrupt handlers are for vectors 32-255; vector {vector} is a CPU exception")
        });
    EXTERNAL_HANDLERS[index].store(handler as usize, Ordering::Release);
}

/// The SSE state (`fxsave64` image) the entry code saved below the frame.
#[repr(C, align(16))]
#[derive(Clone, Copy)]
pub struct SseState(pub [u8; 512]);

impl SseState {
    /// The state of a fresh thread: x87 control word 0x37f and MXCSR
    /// 0x1f80 (all exceptions masked, round to nearest), as after `fninit`
    /// and reset; everything else zero.
    pub const fn initial() -> Self {
        let mut bytes = [0u8; 512];
        bytes[0] = 0x7f;
        bytes[1] = 0x03;
        bytes[24] = 0x80;
        bytes[25] = 0x1f;
        Self(bytes)
    }
}

/// The FP/SIMD state the entry code saves: on x86_64, the SSE state.
pub type FpState = SseState;

/// Tells the interrupt controller the handled interrupt is done: every
/// handler of an external interrupt or IPI calls it (a local APIC EOI).
/// Handlers of software interrupts (`int n`) must not.
#[inline]
pub fn end_of_interrupt() {
    super::apic::end_of_interrupt();
}

/// True while an interrupt or IPI handler (vector 32–255) runs on this CPU.
#[inline]
pub fn in_interrupt() -> bool {
    crate::arch::percpu::percpu_read_u32!(crate::cpu::offsets::INTERRUPT_NESTING) != 0
}

/// True when this CPU accepts maskable interrupts (RFLAGS.IF).
#[inline]
pub fn interrupts_enabled() -> bool {
    ::x86_64::instructions::interrupts::are_enabled()
}

/// Masks interrupts on this CPU.
#[inline]
pub fn disable_interrupts() {
    ::x86_64::instructions::interrupts::disable();
}

/// Unmasks interrupts on this CPU.
#[inline]
pub fn enable_interrupts() {
    ::x86_64::instructions::interrupts::enable();
}

/// Enables interrupts and halts until the next one, atomically (`sti` takes
/// effect after `hlt` starts, so a wake-up cannot slip in between).
#[inline]
pub fn enable_interrupts_and_halt() {
    ::x86_64::instructions::interrupts::enable_and_hlt();
}

/// Called by the entry code for every interrupt and exception.
#[no_mangle]
extern "C" fn qmk_interrupt_dispatch(frame: &mut InterruptFrame, sse_state: &mut SseState) {
    let vector = frame.vector as usize;
    if vector == PAGE_FAULT_VECTOR {
        let fault_address = Cr2::read_raw();
        if fault_probe::recover_expected_fault(frame, fault_address) {
            return;
        }
        // A fault at a local slot has a quickmap rule that explains it (a slot
        // not put back at switch-in, or used after its removal): that panic is
        // the report.
        crate::vm::quick::explain_local_slot_fault(fault_address);
        fatal_exception(frame, Some(fault_address));
    }
    if vector < FIRST_EXTERNAL_VECTOR {
        fatal_exception(frame, None);
    }
    let handler = EXTERNAL_HANDLERS[vector - FIRST_EXTERNAL_VECTOR].load(Ordering::Acquire);
    if handler == 0 {
        crate::test_harness::fail_run(|| {
            crate::emergency_println!(
                "qmk: EXCEPTION: interrupt vector {vector} arrived but no handler is installed"
            );
            print_frame(frame);
        });
    }
    // SAFETY: non-zero entries are only ever stored from an `InterruptHandler`
    // by `set_interrupt_handler`, so this is a valid fn pointer of that type.
    let handler: InterruptHandler =
        unsafe { core::mem::transmute::<usize, InterruptHandler>(handler) };
    crate::arch::percpu::percpu_increment_u32!(crate::cpu::offsets::INTERRUPT_NESTING);
    // quickmap's windows in use before the handler: every one in use after it
    // that was free here is the handler's, and it must give each back before
    // it returns. A local of this call, so each nesting level keeps its own
    // (handlers run with interrupts off and do not nest today).
    let cpu = crate::cpu::current_cpu_index();
    let windows_at_entry = crate::vm::quick::WindowsInUse::on(cpu);
    handler(frame);
    crate::vm::quick::interrupt_windows_check(vector, cpu, windows_at_entry);
    // The handler may have asked for a thread switch (a tick, a reschedule
    // IPI, a yield); the scheduler performs it by swapping the saved
    // context, still "in interrupt" so that nothing in it may block.
    crate::sched::interrupt_exit(frame, sse_state);
    let _ =
        crate::arch::percpu::percpu_decrement_u32_is_zero!(crate::cpu::offsets::INTERRUPT_NESTING);
}

const PAGE_FAULT_VECTOR: usize = 14;

/// Mnemonic and name of CPU exception `vector`.
fn exception_name(vector: usize) -> (&'static str, &'static str) {
    const NAMES: [(&str, &str); 32] = [
        ("#DE", "divide error"),
        ("#DB", "debug"),
        ("NMI", "non-maskable interrupt"),
        ("#BP", "breakpoint"),
        ("#OF", "overflow"),
        ("#BR", "bound range exceeded"),
        ("#UD", "invalid opcode"),
        ("#NM", "device not available"),
        ("#DF", "double fault"),
        ("-", "coprocessor segment overrun"),
        ("#TS", "invalid TSS"),
        ("#NP", "segment not present"),
        ("#SS", "stack-segment fault"),
        ("#GP", "general protection fault"),
        ("#PF", "page fault"),
        ("-", "reserved"),
        ("#MF", "x87 floating-point error"),
        ("#AC", "alignment check"),
        ("#MC", "machine check"),
        ("#XM", "SIMD floating-point error"),
        ("#VE", "virtualization exception"),
        ("#CP", "control protection"),
        ("-", "reserved"),
        ("-", "reserved"),
        ("-", "reserved"),
        ("-", "reserved"),
        ("-", "reserved"),
        ("-", "reserved"),
        ("#HV", "hypervisor injection"),
        ("#VC", "VMM communication"),
        ("#SX", "security exception"),
        ("-", "reserved"),
    ];
    NAMES
        .get(vector)
        .copied()
        .unwrap_or(("-", "external interrupt"))
}

/// The page-fault error code, spelled out.
struct PageFaultCause(u64);

impl fmt::Display for PageFaultCause {
    fn fmt(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        let code = self.0;
        let presence = if code & 1 != 0 {
            "protection violation"
        } else {
            "page not present"
        };
        let access = if code & (1 << 4) != 0 {
            "instruction fetch"
        } else if code & (1 << 1) != 0 {
            "write"
        } else {
            "read"
        };
        let mode = if code & (1 << 2) != 0 {
            "user"
        } else {
            "kernel"
        };
        write!(formatter, "{presence}, {access}, {mode} mode")?;
        if code & (1 << 3) != 0 {
            write!(formatter, ", reserved bit set in a page-table entry")?;
        }
        Ok(())
    }
}

/// Reports an exception the kernel cannot handle and ends the run as failed.
fn fatal_exception(frame: &InterruptFrame, fault_address: Option<u64>) -> ! {
    let (mnemonic, name) = exception_name(frame.vector as usize);
    crate::test_harness::fail_run(|| {
        crate::emergency_println!(
            "qmk: EXCEPTION: {name} ({mnemonic}, vector {}) at rip={:#x}, error code {:#x}",
            frame.vector,
            frame.rip,
            frame.error_code
        );
        if let Some(address) = fault_address {
            crate::emergency_println!(
                "qmk: EXCEPTION: faulting address cr2={address:#x} ({})",
                PageFaultCause(frame.error_code)
            );
            // Every page of the run-time stack region that is not mapped is a
            // guard page.
            let on_a_guard_page = super::stacks::STACK_REGION.contains(&address)
                || super::stacks::guard_pages()
                    .any(|guard| (guard.as_u64()..guard.as_u64() + 4096).contains(&address));
            if on_a_guard_page {
                crate::emergency_println!(
                    "qmk: EXCEPTION: the address is a stack guard page: a stack overflowed"
                );
            }
            if fault_probe::is_probe_access(frame.rip) {
                crate::emergency_println!(
                    "qmk: EXCEPTION: the access was a fault probe, but no armed expectation covers this address"
                );
            }
        }
        print_frame(frame);
    })
}

fn print_frame(frame: &InterruptFrame) {
    crate::emergency_println!(
        "qmk: EXCEPTION: rsp={:#x} rflags={:#x} cs={:#x} ss={:#x}",
        frame.rsp,
        frame.rflags,
        frame.cs,
        frame.ss
    );
    crate::emergency_println!(
        "qmk: EXCEPTION: rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp
    );
    crate::emergency_println!(
        "qmk: EXCEPTION: r8={:#x} r9={:#x} r10={:#x} r11={:#x} r12={:#x} r13={:#x} r14={:#x} r15={:#x}",
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
}
