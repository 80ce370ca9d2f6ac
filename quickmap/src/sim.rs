//! A simulated multi-CPU machine for host tests (feature `sim`).
//!
//! It models exactly what quickmap's correctness depends on, and lets a test break it:
//! - physical memory as bytes, and a fixed direct map of its low part;
//! - one page table for the window region, shared by all CPUs, as in a kernel;
//! - **a TLB per CPU that keeps a translation until that CPU invalidates it**. A
//!   translation enters the TLB at the first access and may also be loaded
//!   speculatively as soon as its entry is present; neither a new entry for the same
//!   address nor another CPU's invalidation replaces it. A backend that forgets an
//!   invalidation therefore reads stale data, and the tests see it;
//! - threads that run on CPUs, critical sections that forbid preempting or migrating
//!   them, and interrupts that nest on the CPU they arrive on;
//! - what context the code runs in (an interrupt handler or a thread, how many spin
//!   locks its CPU holds), so that either [`ContextPolicy`] runs: the default
//!   ([`SimMachine::platform`]) or FreeBSD's
//!   ([`SimMachine::platform_with_policy`]`::<`[`FreeBsdPolicy`]`>`).
//!
//! Its [`SimMmu`] moves bytes in the simulated memory: it overrides all four byte
//! movers of [`Mmu`], whose defaults would dereference the simulated kernel addresses
//! in the host process (see [`Mmu`]'s documentation).
//!
//! The machine is deterministic: the test says which CPU executes next
//! ([`SimMachine::on_cpu`]), when a thread is preempted or migrated, and when an
//! interrupt arrives ([`SimMachine::interrupt`]).
//!
//! ```
//! use quickmap::sim::{SimConfig, SimMachine, SimPage};
//!
//! let machine = SimMachine::new(SimConfig::default());
//! let quickmap = machine.quickmap::<4>();
//! let page = SimPage::high_memory(&machine, 0);
//! {
//!     let mapping = quickmap.map(&page);
//!     mapping.write(0, b"hello");
//!     // A mapping pins its thread: the simulated scheduler refuses to migrate it.
//!     assert!(machine.migrate(machine.current_thread(), 1).is_err());
//! }
//! let mut back = [0u8; 5];
//! machine.phys_read(page.pa, &mut back);
//! assert_eq!(&back, b"hello");
//! ```

extern crate std;

use core::marker::PhantomData;
use std::boxed::Box;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::vec;
use std::vec::Vec;

use crate::addr::{PhysAddr, VirtAddr, PAGE_SIZE};
use crate::invalidation::{Deferred, Invalidation};
use crate::layout::DirectMap;
use crate::mmu::{Mmu, Window};
use crate::page::{HeldPage, MemoryAttribute};
use crate::percpu::CpuWindows;
use crate::platform::{ContextPolicy, ExecutionContext, Platform};
use crate::quick_map::{Config, QuickMap};

/// Where the simulated kernel keeps its windows.
pub const WINDOW_BASE: usize = 0xffff_c000_0000_0000;
/// Where the simulated kernel's direct map starts.
pub const DIRECT_MAP_BASE: usize = 0xffff_8000_0000_0000;

/// Size of a simulated machine.
#[derive(Clone, Copy, Debug)]
pub struct SimConfig {
    /// CPUs.
    pub cpus: usize,
    /// Pages of physical memory.
    pub phys_pages: usize,
    /// Pages of physical memory, from address 0, that the direct map covers.
    pub direct_map_pages: usize,
}

impl Default for SimConfig {
    /// 4 CPUs, 64 pages of RAM, the first 16 direct-mapped.
    fn default() -> Self {
        SimConfig {
            cpus: 4,
            phys_pages: 64,
            direct_map_pages: 16,
        }
    }
}

/// A simulated thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadId(pub usize);

/// Why the simulated scheduler refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// The thread that would lose its CPU is in a critical section.
    PreemptionDisabled {
        /// The pinned thread.
        thread: ThreadId,
        /// Its CPU.
        cpu: usize,
    },
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchedError::PreemptionDisabled { thread, cpu } => {
                write!(
                    f,
                    "thread {} on CPU {cpu} is in a critical section",
                    thread.0
                )
            }
        }
    }
}

impl std::error::Error for SchedError {}

/// What the simulated hardware did, for tests that count events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimCounters {
    /// Window page-table entries written.
    pub pte_writes: u64,
    /// Window page-table entries cleared.
    pub pte_clears: u64,
    /// Local single-page invalidations.
    pub invalidations: u64,
    /// Local full flushes.
    pub full_flushes: u64,
    /// Accesses served from a TLB entry.
    pub tlb_hits: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Translation {
    pa: PhysAddr,
    attribute: MemoryAttribute,
}

struct SimThread {
    cpu: usize,
    critical_depth: u32,
}

struct SimCpu {
    running: ThreadId,
    /// Critical depth of each interrupt frame active on this CPU, innermost last.
    interrupt_frames: Vec<u32>,
    /// Spin locks held by what executes on this CPU (see `set_spin_locks_held`).
    spin_locks_held: u32,
    tlb: HashMap<usize, Translation>,
}

struct State {
    phys: Vec<u8>,
    page_table: HashMap<usize, Translation>,
    cpus: Vec<SimCpu>,
    threads: Vec<SimThread>,
    executing: usize,
    counters: SimCounters,
}

/// A simulated machine. See the [module documentation](self).
pub struct SimMachine {
    config: SimConfig,
    state: RefCell<State>,
}

/// A page of simulated memory; always held, since simulated memory never goes away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimPage {
    /// Its physical address.
    pub pa: PhysAddr,
    /// Its memory attribute.
    pub attribute: MemoryAttribute,
}

impl SimPage {
    /// Physical page `pfn`, write-back.
    pub fn new(pfn: usize) -> SimPage {
        SimPage {
            pa: PhysAddr((pfn * PAGE_SIZE) as u64),
            attribute: MemoryAttribute::WriteBack,
        }
    }

    /// The `index`-th page above the direct map (reachable only through a window).
    pub fn high_memory(machine: &SimMachine, index: usize) -> SimPage {
        SimPage::new(machine.config.direct_map_pages + index)
    }
}

// SAFETY: simulated memory lives as long as the machine and is never reused; the
// address and attribute are fixed fields.
unsafe impl HeldPage for SimPage {
    fn phys_addr(&self) -> PhysAddr {
        self.pa
    }

    fn memory_attribute(&self) -> MemoryAttribute {
        self.attribute
    }
}

impl SimMachine {
    /// A machine with thread `i` running on CPU `i` and CPU 0 executing. (Threads
    /// `cpus .. 2 * cpus` are the CPUs' idle threads; [`spawn`](Self::spawn) numbers
    /// new threads after them.)
    pub fn new(config: SimConfig) -> SimMachine {
        assert!(config.cpus > 0, "sim: a machine needs at least one CPU");
        assert!(
            config.direct_map_pages <= config.phys_pages,
            "sim: direct map of {} pages is larger than the {} pages of memory",
            config.direct_map_pages,
            config.phys_pages
        );
        let cpus = (0..config.cpus)
            .map(|cpu| SimCpu {
                running: ThreadId(cpu),
                interrupt_frames: Vec::new(),
                spin_locks_held: 0,
                tlb: HashMap::new(),
            })
            .collect();
        // Threads 0..cpus run first; threads cpus..2*cpus are the CPUs' idle threads.
        let threads = (0..2 * config.cpus)
            .map(|t| SimThread {
                cpu: t % config.cpus,
                critical_depth: 0,
            })
            .collect();
        SimMachine {
            config,
            state: RefCell::new(State {
                phys: vec![0; config.phys_pages * PAGE_SIZE],
                page_table: HashMap::new(),
                cpus,
                threads,
                executing: 0,
                counters: SimCounters::default(),
            }),
        }
    }

    /// The machine's size.
    pub fn config(&self) -> SimConfig {
        self.config
    }

    /// The kernel configuration of quickmap on this machine.
    pub fn quickmap_config(&self) -> Config {
        Config {
            window_base: VirtAddr(WINDOW_BASE),
            direct_map: Some(DirectMap {
                phys_start: PhysAddr(0),
                len: (self.config.direct_map_pages * PAGE_SIZE) as u64,
                virt_start: VirtAddr(DIRECT_MAP_BASE),
            }),
            phys_limit: PhysAddr((self.config.phys_pages * PAGE_SIZE) as u64),
        }
    }

    /// quickmap with `N` windows per CPU on this machine.
    pub fn quickmap<const N: usize>(&self) -> QuickMap<SimPlatform<'_>, SimMmu<'_>, N> {
        self.quickmap_with(self.quickmap_config(), self.platform(), self.mmu())
    }

    /// quickmap with `N` windows per CPU and deferred invalidation on this machine.
    pub fn quickmap_deferred<const N: usize>(
        &self,
    ) -> QuickMap<SimPlatform<'_>, SimMmu<'_>, N, Deferred> {
        self.quickmap_with(self.quickmap_config(), self.platform(), self.mmu())
    }

    /// quickmap on this machine with another configuration or backends (e.g. a broken
    /// backend, to show a test catches it).
    pub fn quickmap_with<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
        &self,
        config: Config,
        platform: P,
        mmu: M,
    ) -> QuickMap<P, M, N, I> {
        let windows: &'static [CpuWindows<N>] = Box::leak(
            (0..self.config.cpus)
                .map(|_| CpuWindows::new())
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        QuickMap::new(config, platform, mmu, windows).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The platform side (CPU identity, critical sections), with the default
    /// [`ContextPolicy::Anywhere`].
    pub fn platform(&self) -> SimPlatform<'_> {
        self.platform_with_policy()
    }

    /// The platform side with the context policy `C`: [`FreeBsdPolicy`] for a kernel
    /// that enforces the man page's context rules (see [`SimPlatform`]).
    pub fn platform_with_policy<C: SimContextPolicy>(&self) -> SimPlatform<'_, C> {
        SimPlatform {
            machine: self,
            _policy: PhantomData,
        }
    }

    /// The MMU side.
    pub fn mmu(&self) -> SimMmu<'_> {
        SimMmu { machine: self }
    }

    /// Make `cpu` the one that executes from now on (what runs there: its running
    /// thread, or the innermost interrupt).
    pub fn on_cpu(&self, cpu: usize) {
        assert!(cpu < self.config.cpus, "sim: no CPU {cpu}");
        self.state.borrow_mut().executing = cpu;
    }

    /// The CPU executing now.
    pub fn executing_cpu(&self) -> usize {
        self.state.borrow().executing
    }

    /// The thread running on the executing CPU.
    pub fn current_thread(&self) -> ThreadId {
        let state = self.state.borrow();
        state.cpus[state.executing].running
    }

    /// The CPU `thread` is on.
    pub fn cpu_of(&self, thread: ThreadId) -> usize {
        self.state.borrow().threads[thread.0].cpu
    }

    /// A new thread on `cpu`, not running yet.
    pub fn spawn(&self, cpu: usize) -> ThreadId {
        assert!(cpu < self.config.cpus, "sim: no CPU {cpu}");
        let mut state = self.state.borrow_mut();
        state.threads.push(SimThread {
            cpu,
            critical_depth: 0,
        });
        ThreadId(state.threads.len() - 1)
    }

    /// Preempt whatever runs on `thread`'s CPU and run `thread` there; that CPU
    /// executes from now on. Refused while the running thread is in a critical section.
    pub fn switch_to(&self, thread: ThreadId) -> Result<(), SchedError> {
        let mut state = self.state.borrow_mut();
        let cpu = state.threads[thread.0].cpu;
        let running = state.cpus[cpu].running;
        if running != thread && state.threads[running.0].critical_depth > 0 {
            return Err(SchedError::PreemptionDisabled {
                thread: running,
                cpu,
            });
        }
        state.cpus[cpu].running = thread;
        state.executing = cpu;
        Ok(())
    }

    /// Move `thread` to `cpu` and run it there, as a scheduler that balances load
    /// does. Refused while `thread`, or the thread running on `cpu`, is in a critical
    /// section. The CPU it leaves runs its idle thread.
    pub fn migrate(&self, thread: ThreadId, cpu: usize) -> Result<(), SchedError> {
        assert!(cpu < self.config.cpus, "sim: no CPU {cpu}");
        let is_idle = (self.config.cpus..2 * self.config.cpus).contains(&thread.0);
        assert!(
            !is_idle,
            "sim: thread {} is an idle thread; idle threads stay on their CPU",
            thread.0
        );
        let mut state = self.state.borrow_mut();
        let from = state.threads[thread.0].cpu;
        if state.threads[thread.0].critical_depth > 0 {
            return Err(SchedError::PreemptionDisabled { thread, cpu: from });
        }
        let displaced = state.cpus[cpu].running;
        if displaced != thread && state.threads[displaced.0].critical_depth > 0 {
            return Err(SchedError::PreemptionDisabled {
                thread: displaced,
                cpu,
            });
        }
        if state.cpus[from].running == thread && from != cpu {
            state.cpus[from].running = ThreadId(self.config.cpus + from); // the CPU's idle thread
        }
        state.threads[thread.0].cpu = cpu;
        state.cpus[cpu].running = thread;
        state.executing = cpu;
        Ok(())
    }

    /// Deliver an interrupt to the executing CPU: `handler` runs on it, nested inside
    /// whatever ran there, and must leave every critical section it entered.
    pub fn interrupt<R>(&self, handler: impl FnOnce() -> R) -> R {
        /// Pops the interrupt frame even when the handler panics, so that a test that
        /// expects a panic unwinds through a consistent machine.
        struct Frame<'m> {
            machine: &'m SimMachine,
            cpu: usize,
        }
        impl Drop for Frame<'_> {
            fn drop(&mut self) {
                let mut state = self.machine.state.borrow_mut();
                let depth = state.cpus[self.cpu]
                    .interrupt_frames
                    .pop()
                    .expect("sim: interrupt frame vanished");
                state.executing = self.cpu;
                if !std::thread::panicking() {
                    assert_eq!(depth, 0, "sim: an interrupt handler on CPU {} returned inside {depth} critical section(s)", self.cpu);
                }
            }
        }
        let frame = {
            let mut state = self.state.borrow_mut();
            let cpu = state.executing;
            state.cpus[cpu].interrupt_frames.push(0);
            Frame { machine: self, cpu }
        };
        let result = handler();
        drop(frame);
        result
    }

    /// Set how many spin locks the code on the executing CPU holds: only counted,
    /// for the checks of [`ContextPolicy::FreeBsd`] (see [`FreeBsdPolicy`]). The count
    /// is the CPU's: other CPUs do not see it, and since a spin lock's holder is neither
    /// preempted nor interrupted before it lets go, a test that switches threads or
    /// delivers an interrupt on the CPU while it is not zero models what a kernel does
    /// not do.
    pub fn set_spin_locks_held(&self, held: u32) {
        let mut state = self.state.borrow_mut();
        let cpu = state.executing;
        state.cpus[cpu].spin_locks_held = held;
    }

    /// Critical-section depth of `thread`.
    pub fn critical_depth(&self, thread: ThreadId) -> u32 {
        self.state.borrow().threads[thread.0].critical_depth
    }

    /// Read physical memory directly: the reference the tests compare against.
    pub fn phys_read(&self, pa: PhysAddr, dst: &mut [u8]) {
        let state = self.state.borrow();
        let start = pa.0 as usize;
        dst.copy_from_slice(&state.phys[start..start + dst.len()]);
    }

    /// Write physical memory directly.
    pub fn phys_write(&self, pa: PhysAddr, src: &[u8]) {
        let mut state = self.state.borrow_mut();
        let start = pa.0 as usize;
        state.phys[start..start + src.len()].copy_from_slice(src);
    }

    /// The window page-table entry for `va`, if present.
    pub fn window_pte(&self, va: VirtAddr) -> Option<(PhysAddr, MemoryAttribute)> {
        self.state
            .borrow()
            .page_table
            .get(&page_number(va))
            .map(|t| (t.pa, t.attribute))
    }

    /// Whether `cpu`'s TLB holds a translation for `va`.
    pub fn tlb_holds(&self, cpu: usize, va: VirtAddr) -> bool {
        self.state.borrow().cpus[cpu]
            .tlb
            .contains_key(&page_number(va))
    }

    /// The translation `cpu`'s TLB holds for `va`, if any (stale or not).
    pub fn tlb_entry(&self, cpu: usize, va: VirtAddr) -> Option<(PhysAddr, MemoryAttribute)> {
        self.state.borrow().cpus[cpu]
            .tlb
            .get(&page_number(va))
            .map(|t| (t.pa, t.attribute))
    }

    /// Load `va`'s page-table entry, if present, into `cpu`'s TLB unless it holds a
    /// translation of `va` already: the speculative load that hardware may do at any
    /// time. The machine does it by itself only at `set_window_pte`; a test calls this
    /// to make speculation as eager as hardware may be (e.g. right after a flush).
    /// Counts as no event.
    pub fn tlb_fill_speculatively(&self, cpu: usize, va: VirtAddr) {
        assert!(cpu < self.config.cpus, "sim: no CPU {cpu}");
        let mut state = self.state.borrow_mut();
        let page = page_number(va);
        if let Some(&present) = state.page_table.get(&page) {
            state.cpus[cpu].tlb.entry(page).or_insert(present);
        }
    }

    /// **Fault injection, for tests only**: put a translation of `va` to `pa` into
    /// `cpu`'s TLB behind the page table's back, as broken hardware or a broken backend
    /// would leave one (e.g. a full flush that misses an entry). It replaces any
    /// translation of `va` the TLB holds, stays until `cpu` invalidates `va` or flushes,
    /// and counts as no event. Correct backends never call it; tests use it to build
    /// a broken one and show that they catch it.
    pub fn tlb_insert_stale(
        &self,
        cpu: usize,
        va: VirtAddr,
        pa: PhysAddr,
        attribute: MemoryAttribute,
    ) {
        assert!(cpu < self.config.cpus, "sim: no CPU {cpu}");
        self.state.borrow_mut().cpus[cpu]
            .tlb
            .insert(page_number(va), Translation { pa, attribute });
    }

    /// What the hardware did so far.
    pub fn counters(&self) -> SimCounters {
        self.state.borrow().counters
    }

    /// Translate `va` on the executing CPU the way hardware would: direct map, then
    /// the TLB (stale or not), then a walk of the page table that fills the TLB.
    fn translate(&self, va: VirtAddr, write: bool) -> PhysAddr {
        let direct_len = self.config.direct_map_pages * PAGE_SIZE;
        if let Some(offset) =
            va.0.checked_sub(DIRECT_MAP_BASE)
                .filter(|&o| o < direct_len)
        {
            return PhysAddr(offset as u64);
        }
        let mut state = self.state.borrow_mut();
        let cpu = state.executing;
        let page = page_number(va);
        let translation = match state.cpus[cpu].tlb.get(&page) {
            Some(&cached) => {
                state.counters.tlb_hits += 1;
                cached
            }
            None => match state.page_table.get(&page) {
                Some(&walked) => {
                    state.cpus[cpu].tlb.insert(page, walked);
                    walked
                }
                None => panic!(
                    "sim: page fault: CPU {cpu} {} {va}, which has no translation",
                    if write { "wrote" } else { "read" }
                ),
            },
        };
        PhysAddr(translation.pa.0 + (va.0 % PAGE_SIZE) as u64)
    }

    /// Apply `access` to each piece of `len` bytes at `va` that lies in one page.
    fn for_each_page_piece(
        &self,
        va: VirtAddr,
        len: usize,
        write: bool,
        mut access: impl FnMut(&mut State, usize, usize, usize),
    ) {
        let mut done = 0;
        while done < len {
            let here = va.add(done);
            let piece = (PAGE_SIZE - here.0 % PAGE_SIZE).min(len - done);
            let pa = self.translate(here, write).0 as usize;
            access(&mut self.state.borrow_mut(), pa, done, piece);
            done += piece;
        }
    }
}

fn page_number(va: VirtAddr) -> usize {
    va.0 / PAGE_SIZE
}

/// The simulated CPU identity and critical sections, and the [`ContextPolicy`] `C`
/// chooses: the default [`AnywherePolicy`], or [`FreeBsdPolicy`]
/// ([`SimMachine::platform_with_policy`]).
///
/// It reports the context as [`ExecutionContext`]: every handler that
/// [`SimMachine::interrupt`] runs is primary interrupt context, and the spin locks are
/// those [`SimMachine::set_spin_locks_held`] gave the executing CPU. A FreeBSD interrupt
/// thread is a thread: [`spawn`](SimMachine::spawn) one and
/// [`switch_to`](SimMachine::switch_to) it.
///
/// ```should_panic
/// use quickmap::sim::{FreeBsdPolicy, SimConfig, SimMachine, SimPage};
///
/// let machine = SimMachine::new(SimConfig::default());
/// let quickmap = machine.quickmap_with::<_, _, 4, quickmap::Strict>(
///     machine.quickmap_config(),
///     machine.platform_with_policy::<FreeBsdPolicy>(),
///     machine.mmu(),
/// );
/// let page = SimPage::high_memory(&machine, 0);
/// quickmap.map(&page).write_u64(0, 1); // a thread, no spin lock: allowed
/// // "in all thread contexts except primary interrupt context": panics.
/// machine.interrupt(|| quickmap.map(&page).write_u64(0, 2));
/// ```
pub struct SimPlatform<'m, C = AnywherePolicy> {
    machine: &'m SimMachine,
    _policy: PhantomData<C>,
}

impl<C> Clone for SimPlatform<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C> Copy for SimPlatform<'_, C> {}

/// A [`ContextPolicy`] chosen by a type, so that [`SimPlatform`] can have either (the
/// policy is an associated constant of [`Platform`]).
pub trait SimContextPolicy {
    /// The policy.
    const POLICY: ContextPolicy;
}

/// [`ContextPolicy::Anywhere`], the default.
#[derive(Clone, Copy, Debug, Default)]
pub struct AnywherePolicy;

impl SimContextPolicy for AnywherePolicy {
    const POLICY: ContextPolicy = ContextPolicy::Anywhere;
}

/// [`ContextPolicy::FreeBsd`]: `enter` (and `map`, and the page work on top) panics in
/// primary interrupt context and under a spin lock.
#[derive(Clone, Copy, Debug, Default)]
pub struct FreeBsdPolicy;

impl SimContextPolicy for FreeBsdPolicy {
    const POLICY: ContextPolicy = ContextPolicy::FreeBsd;
}

// SAFETY: the simulated scheduler refuses to preempt or migrate a thread whose critical
// depth is not zero, and interrupt frames are strictly nested by `SimMachine::interrupt`.
// The policy changes only which contexts quickmap refuses.
unsafe impl<C: SimContextPolicy> Platform for SimPlatform<'_, C> {
    const CONTEXT_POLICY: ContextPolicy = C::POLICY;

    fn current_cpu(&self) -> usize {
        self.machine.executing_cpu()
    }

    fn critical_enter(&self) {
        let mut state = self.machine.state.borrow_mut();
        let cpu = state.executing;
        if let Some(depth) = state.cpus[cpu].interrupt_frames.last_mut() {
            *depth += 1;
        } else {
            let thread = state.cpus[cpu].running;
            state.threads[thread.0].critical_depth += 1;
        }
    }

    fn critical_exit(&self) {
        let mut state = self.machine.state.borrow_mut();
        let cpu = state.executing;
        let depth = match state.cpus[cpu].interrupt_frames.last_mut() {
            Some(depth) => depth,
            None => {
                let thread = state.cpus[cpu].running;
                &mut state.threads[thread.0].critical_depth
            }
        };
        assert!(
            *depth > 0,
            "sim: critical_exit on CPU {cpu} without critical_enter"
        );
        *depth -= 1;
    }

    fn execution_context(&self) -> ExecutionContext {
        let state = self.machine.state.borrow();
        let cpu = &state.cpus[state.executing];
        ExecutionContext {
            in_primary_interrupt: !cpu.interrupt_frames.is_empty(),
            spin_locks_held: cpu.spin_locks_held,
        }
    }
}

/// The simulated MMU: window page-table entries, per-CPU TLBs, and byte access that
/// goes through them.
#[derive(Clone, Copy)]
pub struct SimMmu<'m> {
    machine: &'m SimMachine,
}

// SAFETY: translations and byte access are simulated over `SimMachine::phys`, which
// nothing else references.
unsafe impl Mmu for SimMmu<'_> {
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute) {
        let mut state = self.machine.state.borrow_mut();
        let page = page_number(window.va);
        let translation = Translation { pa, attribute };
        let previous = state.page_table.insert(page, translation);
        assert!(
            previous.is_none(),
            "sim: PTE busy: window {} of CPU {} was still mapped to {:?}",
            window.slot,
            window.cpu,
            previous
        );
        state.counters.pte_writes += 1;
        // A present entry may be loaded into the TLB at any time (speculation); an
        // entry already there stays, stale or not, until invalidated.
        let cpu = state.executing;
        state.cpus[cpu].tlb.entry(page).or_insert(translation);
    }

    fn clear_window_pte(&self, window: Window) {
        let mut state = self.machine.state.borrow_mut();
        state.page_table.remove(&page_number(window.va));
        state.counters.pte_clears += 1;
    }

    fn invalidate_local(&self, va: VirtAddr) {
        let mut state = self.machine.state.borrow_mut();
        let cpu = state.executing;
        state.cpus[cpu].tlb.remove(&page_number(va));
        state.counters.invalidations += 1;
    }

    fn invalidate_all_local(&self) {
        let mut state = self.machine.state.borrow_mut();
        let cpu = state.executing;
        state.cpus[cpu].tlb.clear();
        state.counters.full_flushes += 1;
    }

    unsafe fn read_bytes(&self, src: VirtAddr, dst: &mut [u8]) {
        self.machine
            .for_each_page_piece(src, dst.len(), false, |state, pa, at, len| {
                dst[at..at + len].copy_from_slice(&state.phys[pa..pa + len]);
            });
    }

    unsafe fn write_bytes(&self, dst: VirtAddr, src: &[u8]) {
        self.machine
            .for_each_page_piece(dst, src.len(), true, |state, pa, at, len| {
                state.phys[pa..pa + len].copy_from_slice(&src[at..at + len]);
            });
    }

    unsafe fn fill_bytes(&self, dst: VirtAddr, len: usize, byte: u8) {
        self.machine
            .for_each_page_piece(dst, len, true, |state, pa, _, len| {
                state.phys[pa..pa + len].fill(byte);
            });
    }

    unsafe fn copy_bytes(&self, dst: VirtAddr, src: VirtAddr, len: usize) {
        let mut buffer = vec![0u8; len];
        // SAFETY: forwarded from this function's contract.
        unsafe {
            self.read_bytes(src, &mut buffer);
            self.write_bytes(dst, &buffer);
        }
    }
}
