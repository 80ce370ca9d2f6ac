//! The scheduler: one run queue shared by every CPU, per-CPU idle threads,
//! sleeping, and the switch itself.
//!
//! Why one shared queue: a preempted thread goes to the back, and the next
//! CPU that looks takes the front, so threads migrate as a matter of course
//! (which quickmap's pinning must survive). One spin lock (taken with
//! interrupts off) guards it and every thread's state; at 1–16 CPUs under
//! TCG the contention is irrelevant next to the simplicity.
//!
//! Every switch happens on the way out of an interrupt handler
//! ([`interrupt_exit`]): the timer tick and the reschedule IPI set
//! "preemption owed", a thread that yields, parks or exits raises the
//! switch request (`arch::request_switch`: `int 0x81` with the request in
//! `rdi` on x86_64, `svc` with it in x0 on aarch64). The switch copies the
//! interrupted frame and FP/SIMD state (which the entry code saved on the
//! interrupt stack) into the outgoing thread and the next thread's into their
//! place, so the exception return resumes the next thread on its own stack.
//! Nothing of a thread stays on an interrupt stack, so threads can resume on
//! any CPU. A switch happens only at critical depth 0 (and so with no spin lock
//! held): the per-CPU depth needs no saving.
//!
//! Where a thread may run ([`required_cpu`]): anywhere, unless it was
//! spawned pinned (`affinity`) or has migration disabled (`migrate.rs`), in
//! which case only on that one CPU. The pick skips threads bound elsewhere,
//! and making a thread ready kicks an idle CPU it may run on — its own CPU
//! for a bound thread, with a self-IPI when that is the CPU doing the
//! wake-up — so a bound thread never waits for a tick on an idle CPU.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use super::switch_work::{SwitchHooks, SwitchWork};
use super::thread::{
    current_thread, thread_start, Thread, ThreadId, ThreadState, THREAD_STACK_PAGES,
};
use crate::arch::interrupts::{
    enable_interrupts_and_halt, end_of_interrupt, in_interrupt, interrupts_enabled,
    set_interrupt_handler, FpState, InterruptFrame,
};
use crate::arch::stacks::{self, StackBounds};
use crate::arch::{clock, ipi, timer};
use crate::cpu::{self, MAX_CPUS};
use crate::sync::SpinLock;

/// The timer period: the time slice, and the granularity of `sleep`.
pub const TICK_PERIOD_US: u64 = 4000;

/// What a thread asks of the scheduler with `arch::request_switch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
enum SwitchRequest {
    /// Give the CPU to another ready thread, if any.
    Yield = 1,
    /// Block until unparked (or return at once if a wake permit waits).
    Park = 2,
    /// The thread is finished.
    Exit = 3,
    /// `critical_exit` performs a preemption a tick asked for.
    OwedPreemption = 4,
    /// A tick or reschedule IPI preempts the interrupted thread.
    Preemption = 5,
}

impl SwitchRequest {
    fn from_request(value: u64) -> Self {
        match value {
            1 => Self::Yield,
            2 => Self::Park,
            3 => Self::Exit,
            4 => Self::OwedPreemption,
            _ => panic!("switch request with an unknown value {value}: the known ones are 1 (Yield) to 4 (OwedPreemption)"),
        }
    }

    fn is_preemption(self) -> bool {
        matches!(self, Self::OwedPreemption | Self::Preemption)
    }
}

struct Scheduler {
    run_queue: VecDeque<Arc<Thread>>,
    running: [Option<Arc<Thread>>; MAX_CPUS],
    idle: [Option<Arc<Thread>>; MAX_CPUS],
    /// Every thread that has not exited (keeps parked threads alive).
    threads: BTreeMap<ThreadId, Arc<Thread>>,
    /// Sleeping threads by (deadline in TSC ticks, id).
    sleepers: BTreeMap<(u64, ThreadId), Arc<Thread>>,
    /// CPUs running their idle thread (bit per CPU index).
    idle_cpus: u64,
    /// Stacks of exited threads, for reuse.
    free_stacks: Vec<StackBounds>,
    /// Switch hooks by `SwitchWork` index (see `switch_work.rs`).
    switch_hooks: [Option<SwitchHooks>; SwitchWork::COUNT],
}

static SCHEDULER: SpinLock<Scheduler> = SpinLock::new(Scheduler {
    run_queue: VecDeque::new(),
    running: [const { None }; MAX_CPUS],
    idle: [const { None }; MAX_CPUS],
    threads: BTreeMap::new(),
    sleepers: BTreeMap::new(),
    idle_cpus: 0,
    free_stacks: Vec::new(),
    switch_hooks: [None; SwitchWork::COUNT],
});

/// The earliest sleeper's deadline (TSC), so ticks skip the lock otherwise.
static EARLIEST_DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
/// A function every tick calls on every CPU (0: none).
static TICK_HOOK: AtomicUsize = AtomicUsize::new(0);
/// Reschedule IPIs each CPU has taken (tests check that a bound thread's
/// idle CPU is kicked).
static RESCHEDULE_IPIS: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Reschedule IPIs CPU `cpu_index` has taken so far.
pub fn reschedule_ipis_received(cpu_index: usize) -> u64 {
    RESCHEDULE_IPIS[cpu_index].load(Ordering::Relaxed)
}

/// The CPUs running their idle thread that a wake-up would kick (bit per
/// CPU index): an idle CPU already kicked, whose switch is still to come,
/// is not among them. For tests.
pub fn kickable_idle_cpus() -> u64 {
    SCHEDULER.lock_irq().idle_cpus
}

/// See `switch_work::set_switch_hooks`.
pub(super) fn set_switch_hooks(work: SwitchWork, hooks: Option<SwitchHooks>) {
    SCHEDULER.lock_irq().switch_hooks[work as usize] = hooks;
}

/// Sets (or clears) a function that runs on every timer tick on every CPU,
/// in interrupt context, before the scheduling decision. For tests and the
/// workload.
///
/// When it returns, no CPU is still inside the previous hook, so the caller
/// may inspect what the hook touched: every other CPU has answered a
/// cross-CPU call, which it takes only outside interrupt handlers (they do
/// not nest and run with interrupts off).
pub fn set_tick_hook(hook: Option<fn()>) {
    TICK_HOOK.store(hook.map_or(0, |hook| hook as usize), Ordering::Release);
    if cpu::cpu_count() > 1 && crate::arch::interrupts::interrupts_enabled() {
        crate::smp::run_on_other_cpus(|| {});
    }
}

/// True when the scheduler runs on this CPU (it has a current thread).
pub(super) fn is_running_here() -> bool {
    !super::thread::current_thread_pointer().is_null()
}

fn raise_schedule_interrupt(request: SwitchRequest) {
    crate::arch::request_switch(request as u64);
}

/// Gives the CPU to another ready thread, if there is one.
///
/// # Panics
///
/// Inside a critical section or an interrupt handler, where switching is
/// impossible.
pub fn yield_now() {
    let depth = super::critical_depth();
    assert!(
        depth == 0 && !in_interrupt(),
        "yield_now: cannot switch threads inside a critical section (depth {depth}) or an interrupt handler"
    );
    raise_schedule_interrupt(SwitchRequest::Yield);
}

/// Blocks the running thread until [`unpark`] (returns at once when a wake
/// permit is waiting). Callers have checked `might_sleep`.
pub(super) fn park() {
    raise_schedule_interrupt(SwitchRequest::Park);
}

/// Makes `thread` ready if it is parked; otherwise leaves it a wake permit.
pub(super) fn unpark(thread: &Arc<Thread>) {
    let mut scheduler = SCHEDULER.lock_irq();
    if thread.state() == ThreadState::Parked {
        thread.set_state(ThreadState::Ready);
        scheduler.enqueue(thread.clone());
    } else if thread.state() != ThreadState::Exited {
        thread.wake_permit.store(true, Ordering::Relaxed);
    }
}

/// Called from `critical_exit` when the count reached zero with a
/// preemption owed.
#[cold]
#[inline(never)]
pub(super) fn perform_owed_preemption() {
    // In an interrupt handler the switch happens on its way out; with
    // interrupts off the next tick's exit (or an enabling critical_exit)
    // performs it.
    if in_interrupt() || !interrupts_enabled() || !is_running_here() {
        return;
    }
    // A per-CPU increment, not an atomic RMW: this path is reachable from
    // quickmap's remove, which must not execute locked instructions.
    crate::arch::percpu::percpu_increment_u64!(core::mem::offset_of!(
        cpu::PerCpu,
        deferred_preemptions
    ));
    raise_schedule_interrupt(SwitchRequest::OwedPreemption);
}

/// Sleeps for at least `duration` (rounded up to the tick).
pub fn sleep(duration: Duration) {
    super::might_sleep();
    let ticks = (duration.as_nanos() * u128::from(clock::hz()) / 1_000_000_000) as u64;
    let deadline = clock::read().saturating_add(ticks);
    let me = current_thread();
    while clock::read() < deadline {
        {
            let mut scheduler = SCHEDULER.lock_irq();
            scheduler.sleepers.insert((deadline, me.id()), me.clone());
            EARLIEST_DEADLINE.fetch_min(deadline, Ordering::AcqRel);
        }
        park();
    }
}

/// Ends the running thread (its join state is already set).
pub(super) fn exit_current() -> ! {
    raise_schedule_interrupt(SwitchRequest::Exit);
    unreachable!("an exited thread was resumed");
}

/// The one CPU `thread` may run on now, or `None` for any: its fixed
/// affinity (`spawn_pinned`, idle threads), else, while its migration is
/// disabled, the CPU it is on (`last_cpu`; see `migrate.rs`, point 5).
///
/// Only under the scheduler lock, for a thread that is not running (so its
/// migrate-disable count is settled: `migrate.rs`, points 3 and 4).
fn required_cpu(thread: &Thread) -> Option<usize> {
    if thread.affinity.is_some() {
        return thread.affinity;
    }
    if thread.migrate_disable_count.load(Ordering::Relaxed) != 0 {
        return Some(thread.last_cpu.load(Ordering::Relaxed));
    }
    None
}

impl Scheduler {
    /// Queues a ready thread and wakes an idle CPU that may run it.
    fn enqueue(&mut self, thread: Arc<Thread>) {
        let allowed = match required_cpu(&thread) {
            Some(cpu) => 1u64 << cpu,
            None => u64::MAX,
        };
        self.run_queue.push_back(thread);
        let candidates = self.idle_cpus & allowed;
        if candidates == 0 {
            // Every CPU it may run on is busy (or already kicked): the next
            // tick or switch there picks it.
            return;
        }
        // This CPU when it is a candidate: its idle bit is set only while
        // its idle thread runs, so the caller is an interrupt handler on top
        // of it (or the exit path in `switch`, which just chose it), and the
        // self-IPI taken when the handler returns switches. Otherwise the
        // lowest idle candidate. A bound thread has exactly one candidate:
        // its own CPU, which must get the IPI or it would halt until its next
        // tick with the thread ready.
        let this_cpu = cpu::current_cpu_index();
        let target = if candidates & (1u64 << this_cpu) != 0 {
            this_cpu
        } else {
            candidates.trailing_zeros() as usize
        };
        // Kicked once: it leaves idle (or returns to it and sets the bit
        // again, see `switch`), so a burst of wake-ups sends one IPI, not
        // many.
        self.idle_cpus &= !(1u64 << target);
        crate::smp::send_ipi(target, ipi::RESCHEDULE_VECTOR);
    }

    /// The first queued thread that may run on `cpu`.
    fn pick(&mut self, cpu: usize) -> Option<Arc<Thread>> {
        let position = self
            .run_queue
            .iter()
            .position(|thread| required_cpu(thread).is_none_or(|bound| bound == cpu))?;
        self.run_queue.remove(position)
    }

    /// The hook point (see `switch_work.rs`): `outgoing` has stopped and is
    /// still this CPU's, `incoming` has not resumed. Out of line: reached
    /// only when one of them has switch work.
    #[cold]
    #[inline(never)]
    fn run_switch_hooks(&self, outgoing: &Thread, incoming: &Thread) {
        let hooks = &self.switch_hooks;
        let mut work = outgoing.switch_work.load(Ordering::Relaxed);
        while work != 0 {
            let index = work.trailing_zeros() as usize;
            work &= work - 1;
            if let Some(hooks) = hooks.get(index).copied().flatten() {
                (hooks.switch_out)(outgoing);
            }
        }
        let mut work = incoming.switch_work.load(Ordering::Relaxed);
        while work != 0 {
            let index = work.trailing_zeros() as usize;
            work &= work - 1;
            if let Some(hooks) = hooks.get(index).copied().flatten() {
                (hooks.switch_in)(incoming);
            }
        }
    }

    fn wake_expired_sleepers(&mut self, now: u64) {
        while let Some(entry) = self.sleepers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let thread = entry.remove();
            if thread.state() == ThreadState::Parked {
                thread.set_state(ThreadState::Ready);
                self.enqueue(thread);
            } else if thread.state() != ThreadState::Exited {
                thread.wake_permit.store(true, Ordering::Relaxed);
            }
        }
        let next = self
            .sleepers
            .first_key_value()
            .map_or(u64::MAX, |((deadline, _), _)| *deadline);
        EARLIEST_DEADLINE.store(next, Ordering::Release);
    }
}

/// A new thread (not yet queued) that will run `body` on its own stack.
pub(super) fn create_thread(
    name: String,
    affinity: Option<usize>,
    body: Box<dyn FnOnce() + Send>,
) -> Arc<Thread> {
    create_thread_with(name, affinity, false, body)
}

fn create_thread_with(
    name: String,
    affinity: Option<usize>,
    is_idle: bool,
    body: Box<dyn FnOnce() + Send>,
) -> Arc<Thread> {
    let reused = SCHEDULER.lock_irq().free_stacks.pop();
    let stack = match reused {
        Some(stack) => stack,
        None => stacks::allocate_stack(THREAD_STACK_PAGES)
            .unwrap_or_else(|error| panic!("no stack for thread '{name}': {error}")),
    };
    let body = Box::into_raw(Box::new(body));
    // `thread_start` gets the one `Box::into_raw` address, once (its
    // contract), when the thread first runs.
    let frame = crate::arch::new_thread_frame(thread_start, body as u64, stack.top);
    Arc::new(Thread::new(name, affinity, is_idle, Some(stack), frame))
}

/// Registers a new thread and queues it.
pub(super) fn make_ready(thread: Arc<Thread>) {
    let mut scheduler = SCHEDULER.lock_irq();
    scheduler.threads.insert(thread.id(), thread.clone());
    thread.set_state(ThreadState::Ready);
    scheduler.enqueue(thread);
}

fn idle_loop() -> ! {
    loop {
        enable_interrupts_and_halt();
    }
}

/// Turns the running context into thread `name` on CPU `cpu_index`.
fn adopt_boot_context(cpu_index: usize, name: String, is_idle: bool) -> Arc<Thread> {
    let affinity = is_idle.then_some(cpu_index);
    let thread = Arc::new(Thread::new(
        name,
        affinity,
        is_idle,
        None,
        InterruptFrame::default(),
    ));
    thread.set_state(ThreadState::Running);
    thread.last_cpu.store(cpu_index, Ordering::Relaxed);
    let mut scheduler = SCHEDULER.lock_irq();
    scheduler.threads.insert(thread.id(), thread.clone());
    cpu::cpu(cpu_index)
        .current_thread
        .store(Arc::as_ptr(&thread).cast_mut(), Ordering::Release);
    scheduler.running[cpu_index] = Some(thread.clone());
    thread
}

fn install_handlers() {
    set_interrupt_handler(timer::TIMER_VECTOR, on_tick);
    set_interrupt_handler(ipi::RESCHEDULE_VECTOR, on_reschedule);
}

/// Starts scheduling on the bootstrap CPU: the running boot code becomes
/// thread "main", CPU 0 gets an idle thread, and its timer starts.
/// Interrupts stay off until the caller enables them.
pub fn init_bootstrap_cpu() {
    install_handlers();
    adopt_boot_context(0, String::from("main"), false);
    let idle = create_thread_with(
        String::from("idle0"),
        Some(0),
        true,
        Box::new(|| idle_loop()),
    );
    idle.set_state(ThreadState::Ready);
    SCHEDULER.lock_irq().idle[0] = Some(idle);
    timer::start_periodic(TICK_PERIOD_US);
}

/// Starts scheduling on an application processor: its boot context becomes
/// its idle thread. The caller enables interrupts and idles.
pub fn init_application_cpu(cpu_index: usize) -> ! {
    let idle = adopt_boot_context(cpu_index, alloc::format!("idle{cpu_index}"), true);
    {
        let mut scheduler = SCHEDULER.lock_irq();
        scheduler.idle[cpu_index] = Some(idle);
        scheduler.idle_cpus |= 1 << cpu_index;
    }
    timer::start_periodic(TICK_PERIOD_US);
    cpu::mark_online(cpu_index);
    idle_loop()
}

fn on_tick(_frame: &mut InterruptFrame) {
    let this_cpu = cpu::this_cpu_unguarded();
    this_cpu.ticks.fetch_add(1, Ordering::Relaxed);
    let hook = TICK_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: non-zero values are only stored from a `fn()` by
        // `set_tick_hook`.
        let hook = unsafe { core::mem::transmute::<usize, fn()>(hook) };
        hook();
    }
    let now = clock::read();
    if now >= EARLIEST_DEADLINE.load(Ordering::Acquire) {
        SCHEDULER.lock_irq().wake_expired_sleepers(now);
    }
    // One tick is one time slice.
    this_cpu.owe_preemption();
    end_of_interrupt();
}

fn on_reschedule(_frame: &mut InterruptFrame) {
    let this_cpu = cpu::this_cpu_unguarded();
    RESCHEDULE_IPIS[this_cpu.index()].fetch_add(1, Ordering::Relaxed);
    this_cpu.owe_preemption();
    end_of_interrupt();
}

/// Called on the way out of every interrupt handler (vectors 32–255) with
/// the saved context: performs a requested or owed switch.
pub fn interrupt_exit(frame: &mut InterruptFrame, fp_state: &mut FpState) {
    let this_cpu = cpu::this_cpu_unguarded();
    let request = if let Some(request) = crate::arch::switch_request_of(frame) {
        SwitchRequest::from_request(request)
    } else if this_cpu.preemption_owed() {
        SwitchRequest::Preemption
    } else {
        return;
    };
    if !is_running_here() {
        return;
    }
    let depth = super::critical_depth();
    if depth != 0 {
        // A tick inside a critical section: the preemption stays owed and
        // `critical_exit` performs it.
        assert!(
            request == SwitchRequest::Preemption,
            "a thread asked for {request:?} inside a critical section (depth {depth})"
        );
        return;
    }
    this_cpu.settle_owed_preemption();
    switch(this_cpu.index(), frame, fp_state, request);
}

fn switch(
    cpu_index: usize,
    frame: &mut InterruptFrame,
    fp_state: &mut FpState,
    request: SwitchRequest,
) {
    let mut scheduler = SCHEDULER.lock_irq();
    let outgoing = scheduler.running[cpu_index]
        .clone()
        .expect("a CPU with a current thread has it in `running`");
    if request == SwitchRequest::Park && outgoing.wake_permit.swap(false, Ordering::Relaxed) {
        return;
    }
    let next = match scheduler.pick(cpu_index) {
        Some(next) => next,
        None if matches!(request, SwitchRequest::Park | SwitchRequest::Exit) => scheduler.idle
            [cpu_index]
            .clone()
            .expect("every CPU has an idle thread"),
        // Nothing else to run: the yielding or preempted thread goes on.
        None => {
            // An idle CPU that was kicked (its bit cleared in `enqueue`) for
            // a thread another CPU took first stays idle: it must be kickable
            // again, or a thread bound to it would wait for a tick.
            if outgoing.is_idle {
                scheduler.idle_cpus |= 1 << cpu_index;
            }
            return;
        }
    };
    match request {
        SwitchRequest::Park => outgoing.set_state(ThreadState::Parked),
        SwitchRequest::Exit => outgoing.set_state(ThreadState::Exited),
        _ if outgoing.is_idle => outgoing.set_state(ThreadState::Ready),
        _ => {
            outgoing.set_state(ThreadState::Ready);
            scheduler.run_queue.push_back(outgoing.clone());
        }
    }
    if request.is_preemption() && !outgoing.is_idle {
        outgoing.preemptions.fetch_add(1, Ordering::Relaxed);
    }
    if request != SwitchRequest::Exit {
        // SAFETY: we hold the scheduler lock; `outgoing` stopped running
        // on this CPU when the interrupt arrived and cannot be resumed
        // elsewhere before we release the lock; no other `context()`
        // reference exists.
        let context = unsafe { outgoing.context() };
        context.frame = *frame;
        context.fp = *fp_state;
    }
    // The hook point: one predictable branch when neither thread has switch
    // work (both words are read while neither runs: `switch_work.rs`).
    if (outgoing.switch_work.load(Ordering::Relaxed) | next.switch_work.load(Ordering::Relaxed))
        != 0
    {
        scheduler.run_switch_hooks(&outgoing, &next);
    }
    {
        // SAFETY: we hold the scheduler lock; `next` was ready (or idle),
        // so it runs nowhere, and it was saved under this lock earlier.
        let context = unsafe { next.context() };
        *frame = context.frame;
        *fp_state = context.fp;
    }
    next.set_state(ThreadState::Running);
    let previous_cpu = next.last_cpu.swap(cpu_index, Ordering::Relaxed);
    if previous_cpu != cpu_index && previous_cpu != usize::MAX {
        next.migrations.fetch_add(1, Ordering::Relaxed);
    }
    if next.is_idle {
        scheduler.idle_cpus |= 1 << cpu_index;
    } else {
        scheduler.idle_cpus &= !(1 << cpu_index);
    }
    cpu::cpu(cpu_index)
        .current_thread
        .store(Arc::as_ptr(&next).cast_mut(), Ordering::Release);
    scheduler.running[cpu_index] = Some(next);
    if request == SwitchRequest::Exit {
        scheduler.threads.remove(&outgoing.id());
        if let Some(stack) = outgoing.stack {
            scheduler.free_stacks.push(stack);
        }
        // Joiners are woken after the scheduler lock is released (waking
        // takes it). Still in the handler, so the CPU is off the exited
        // thread's stack for good: join may hand out that stack again.
        drop(scheduler);
        outgoing.exited.store(true, Ordering::Release);
        outgoing.joiners.wake_all();
    }
}
