//! Thread control blocks, spawning, joining and exiting.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use quickmap::LocalMappings;

use crate::arch::interrupts::{FpState, InterruptFrame};
use crate::arch::percpu::percpu_read_u64;
use crate::arch::stacks::StackBounds;
use crate::cpu::offsets;
use crate::sync::SpinLock;
use crate::vm::quick::LOCAL_SLOTS;

use super::wait::WaitQueue;

/// A thread's id: unique for the whole run (never reused).
pub type ThreadId = u64;

static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

/// Where a thread is in its life. Changed only under the scheduler lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ThreadState {
    Running = 0,
    Ready = 1,
    Parked = 2,
    Exited = 3,
}

/// A thread's saved registers and FP/SIMD state while it is not running.
#[repr(C, align(16))]
pub(crate) struct SavedContext {
    pub fp: FpState,
    pub frame: InterruptFrame,
}

/// One kernel thread.
pub struct Thread {
    id: ThreadId,
    name: String,
    /// The CPU this thread must run on, if pinned.
    pub(crate) affinity: Option<usize>,
    pub(crate) is_idle: bool,
    /// Its own stack, `None` for a CPU's boot context turned thread.
    pub(crate) stack: Option<StackBounds>,
    state: AtomicU8,
    /// A wake-up that arrived while the thread was not parked: its next
    /// park returns at once (so no wake-up is lost).
    pub(crate) wake_permit: AtomicBool,
    /// The CPU it last ran on (while it runs: the CPU it runs on).
    pub(crate) last_cpu: AtomicUsize,
    /// [`super::migrate_disable`] nesting: while non-zero the thread runs
    /// only on `last_cpu`. Written only by the thread itself, read by the
    /// scheduler only while the thread is switched out (see `migrate.rs`
    /// for why that needs no lock and no atomic read-modify-write).
    pub(crate) migrate_disable_count: AtomicU32,
    /// [`super::SwitchWork`] bits: non-zero when a context switch out of or
    /// into this thread must call switch hooks. Same discipline as
    /// `migrate_disable_count` (see `switch_work.rs`).
    pub(crate) switch_work: AtomicU32,
    /// quickmap's save area for the thread's local mappings (`vm::quick`):
    /// written by quickmap on the thread itself and by the switch hooks while
    /// the thread is switched out; it lives as long as the thread.
    local_mappings: LocalMappings<LOCAL_SLOTS>,
    /// How often it was switched in on a different CPU than before.
    pub(crate) migrations: AtomicU64,
    /// How often it was preempted (tick or owed preemption).
    pub(crate) preemptions: AtomicU64,
    /// Set once the thread has left its CPU for good (its stack is free).
    pub(crate) exited: AtomicBool,
    /// Threads waiting in `join`.
    pub(crate) joiners: WaitQueue,
    context: UnsafeCell<SavedContext>,
}

// SAFETY: all fields but `context` are immutable or atomic. `context` is
// read and written only by the scheduler while it holds the scheduler lock
// and the thread is not running anywhere (it is being switched out or in on
// the CPU holding the lock), so no two CPUs ever touch it at once.
unsafe impl Sync for Thread {}
// SAFETY: as above; a `Thread` holds no CPU-local state.
unsafe impl Send for Thread {}

impl Thread {
    pub(crate) fn new(
        name: String,
        affinity: Option<usize>,
        is_idle: bool,
        stack: Option<StackBounds>,
        frame: InterruptFrame,
    ) -> Self {
        Self {
            id: NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed),
            name,
            affinity,
            is_idle,
            stack,
            state: AtomicU8::new(ThreadState::Ready as u8),
            wake_permit: AtomicBool::new(false),
            last_cpu: AtomicUsize::new(usize::MAX),
            migrate_disable_count: AtomicU32::new(0),
            switch_work: AtomicU32::new(0),
            local_mappings: LocalMappings::new(),
            migrations: AtomicU64::new(0),
            preemptions: AtomicU64::new(0),
            exited: AtomicBool::new(false),
            joiners: WaitQueue::new(),
            context: UnsafeCell::new(SavedContext {
                fp: FpState::initial(),
                frame,
            }),
        }
    }

    /// The thread's id.
    pub fn id(&self) -> ThreadId {
        self.id
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Times it was switched in on another CPU than the one before.
    pub fn migrations(&self) -> u64 {
        self.migrations.load(Ordering::Relaxed)
    }

    /// Times it was preempted (by a tick or an owed preemption).
    pub fn preemptions(&self) -> u64 {
        self.preemptions.load(Ordering::Relaxed)
    }

    /// Its [`super::migrate_disable`] nesting. Exact for the running thread
    /// asking about itself, and for a thread that is not running; otherwise
    /// a snapshot.
    pub fn migrate_disable_count(&self) -> u32 {
        self.migrate_disable_count.load(Ordering::Relaxed)
    }

    /// Its [`super::SwitchWork`] bits (same caveat as
    /// [`Thread::migrate_disable_count`]).
    pub fn switch_work(&self) -> u32 {
        self.switch_work.load(Ordering::Relaxed)
    }

    /// Its save area for quickmap's local mappings (`vm::quick`).
    pub fn local_mappings(&self) -> &LocalMappings<LOCAL_SLOTS> {
        &self.local_mappings
    }

    pub(crate) fn state(&self) -> ThreadState {
        match self.state.load(Ordering::Relaxed) {
            0 => ThreadState::Running,
            1 => ThreadState::Ready,
            2 => ThreadState::Parked,
            _ => ThreadState::Exited,
        }
    }

    /// Only under the scheduler lock.
    pub(crate) fn set_state(&self, state: ThreadState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The saved context.
    ///
    /// # Safety
    ///
    /// 1. The caller holds the scheduler lock.
    /// 2. The thread is not running on any CPU (it is being switched out
    ///    from, or in on, the caller's CPU).
    /// 3. No other reference from this function is alive.
    #[allow(
        clippy::mut_from_ref,
        reason = "exclusive by the scheduler lock, see # Safety"
    )]
    pub(crate) unsafe fn context(&self) -> &mut SavedContext {
        // SAFETY: exclusive access by the caller's contract.
        unsafe { &mut *self.context.get() }
    }
}

/// The running thread (a raw pointer kept alive by the scheduler), or null
/// before the scheduler runs on this CPU.
#[inline]
pub(crate) fn current_thread_pointer() -> *const Thread {
    percpu_read_u64!(offsets::CURRENT_THREAD) as *const Thread
}

/// The id of the running thread (0 before the scheduler starts).
pub fn current_thread_id() -> ThreadId {
    let thread = current_thread_pointer();
    if thread.is_null() {
        return 0;
    }
    // SAFETY: a non-null current pointer names the running thread, which
    // the scheduler keeps alive while it runs; the thread is us, so it
    // stays current (on some CPU) until we return.
    unsafe { (*thread).id }
}

/// A counted reference to the running thread.
pub(crate) fn current_thread() -> Arc<Thread> {
    let thread = current_thread_pointer();
    assert!(
        !thread.is_null(),
        "current_thread: the scheduler does not run on this CPU yet"
    );
    // SAFETY: the pointer came from `Arc::as_ptr` of the running thread's
    // Arc, which the scheduler holds while the thread runs (so the count is
    // at least 1 now); we add the reference we return.
    unsafe {
        Arc::increment_strong_count(thread);
        Arc::from_raw(thread)
    }
}

/// Owns the right to wait for a thread and take its result.
#[must_use = "a thread that is never joined still runs, but its result is lost"]
pub struct JoinHandle<T> {
    result: Arc<SpinLock<Option<T>>>,
    thread: Arc<Thread>,
}

impl<T> JoinHandle<T> {
    /// Blocks until the thread has exited (left its CPU for good, its stack
    /// returned); returns its result.
    pub fn join(self) -> T {
        super::might_sleep();
        self.thread
            .joiners
            .wait_until(|| self.thread.exited.load(Ordering::Acquire));
        self.result
            .lock()
            .take()
            .expect("an exited thread left its result")
    }

    /// True once the thread has exited (join will not block).
    pub fn is_finished(&self) -> bool {
        self.thread.exited.load(Ordering::Acquire)
    }

    /// The thread's id.
    pub fn thread_id(&self) -> ThreadId {
        self.thread.id()
    }
}

/// Pages of a thread's stack.
pub const THREAD_STACK_PAGES: u64 = 8;

/// Starts a thread running `body`, on any CPU (it may migrate).
pub fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    spawn_with_affinity(name, None, body)
}

/// Starts a thread running `body` that only ever runs on CPU `cpu`.
///
/// # Panics
///
/// If `cpu` is not online.
pub fn spawn_pinned<T: Send + 'static>(
    name: &str,
    cpu: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    assert!(
        cpu < crate::cpu::cpu_count(),
        "spawn_pinned: CPU {cpu} is not online ({} CPUs)",
        crate::cpu::cpu_count()
    );
    spawn_with_affinity(name, Some(cpu), body)
}

fn spawn_with_affinity<T: Send + 'static>(
    name: &str,
    affinity: Option<usize>,
    body: impl FnOnce() -> T + Send + 'static,
) -> JoinHandle<T> {
    let result = Arc::new(SpinLock::new(None));
    let result_slot = result.clone();
    let start: Box<dyn FnOnce() + Send> = Box::new(move || {
        let value = body();
        *result_slot.lock() = Some(value);
    });
    let thread = super::scheduler::create_thread(String::from(name), affinity, start);
    super::scheduler::make_ready(thread.clone());
    JoinHandle { result, thread }
}

/// Where every new thread starts (`arch::new_thread_frame`'s entry): runs
/// its body, then exits.
///
/// # Safety
///
/// 1. `body` is the address `Box::into_raw` returned for a
///    `Box<Box<dyn FnOnce() + Send>>` (as `create_thread` makes it).
/// 2. Each such address is passed here once.
pub(crate) unsafe extern "C" fn thread_start(body: u64) -> ! {
    // SAFETY: by the caller's contract, `body` is a `Box::into_raw` of this
    // type, owned by no one else.
    let body = unsafe { Box::from_raw(body as *mut Box<dyn FnOnce() + Send>) };
    (*body)();
    // Local mappings first: they are why migration would still be disabled, and
    // their rule names the mistake.
    current_thread().local_mappings().check_thread_exit();
    super::migrate::check_exit();
    super::scheduler::exit_current()
}
