//! Property test: random programs of enter / access / remove across CPUs, threads,
//! windows and pages, with preemption, migration and nested interrupts, checked against
//! a reference model of physical memory.
//!
//! The programs run on a strict instance (4 windows per CPU) and on a deferred one (32
//! windows per CPU, enough pages to run out of clean windows, recurring pages that take
//! their windows back, `flush_local`, and interrupts that also arrive in the middle of
//! quickmap's enter, remove and flush through [`common::MidPairInterrupts`]).

mod common;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ops::Range;
use std::sync::OnceLock;

use common::{Hook, Phase};
use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config, RngAlgorithm, TestError, TestRunner};
use quickmap::sim::{SimConfig, SimMachine, SimPage, ThreadId, WINDOW_BASE};
use quickmap::{Deferred, Invalidation, Mapping, Mmu, Platform, QuickMap, VirtAddr, PAGE_SIZE};

const CPUS: usize = 3;
/// Windows per CPU of the strict instance.
const WINDOWS: usize = 4;
/// Windows per CPU of the deferred instance.
const DEFERRED_WINDOWS: usize = 32;
/// The CPUs' first threads, their idle threads, and two more threads spawned on CPU 0.
const THREADS: usize = 2 * CPUS + 2;
/// Pages `0..8` are direct-mapped.
const DIRECT_PAGES: usize = common::MODEL_DIRECT_PAGES;
/// Page 2 is write-combining: it takes a window although it is in the direct map.
const WRITE_COMBINING: usize = common::MODEL_WRITE_COMBINING;
/// Strict programs: 8 direct-mapped pages, 16 high ones.
const PAGES: usize = 24;
/// Deferred programs: 8 direct-mapped pages, 88 high ones, so that a CPU runs out of
/// clean windows.
const DEFERRED_PAGES: usize = DIRECT_PAGES + 88;
/// High pages that deferred programs pick often, so that removed windows are taken back.
const HOT_PAGES: Range<usize> = DIRECT_PAGES..DIRECT_PAGES + 6;

#[derive(Clone, Debug)]
enum Op {
    /// Let `cpu` execute next.
    OnCpu(usize),
    /// Preempt the running thread of the thread's CPU in favour of `thread`.
    SwitchTo(usize),
    /// The scheduler moves `thread` to `cpu`.
    Migrate(usize, usize),
    /// The current thread enters page `page`.
    Enter(usize),
    /// The current thread writes `len` bytes of `byte` at `offset` through its `n`-th mapping.
    Write {
        n: usize,
        offset: usize,
        len: usize,
        byte: u8,
    },
    /// The current thread checks its `n`-th mapping's page against the model.
    Verify(usize),
    /// The current thread removes its `n`-th mapping (any order).
    Remove(usize),
    /// An interrupt on the executing CPU does `Work`.
    Interrupt(Work),
    /// `flush_local` on the executing CPU (deferred programs).
    FlushLocal,
    /// The current thread maps `count` high pages from the `first`-th on, one after the
    /// other, checks each and writes `byte` to it, as a page-zeroing loop would
    /// (deferred programs: uses up clean windows).
    Sweep {
        first: usize,
        count: usize,
        byte: u8,
    },
    /// Interrupts delivered later from inside the MMU backend, in the middle of
    /// quickmap's enter, remove or flush (deferred programs).
    Arm(Vec<Scheduled>),
}

/// What an interrupt handler does: map these pages at once, check each, write a byte to
/// each, optionally `flush_local` (and check its mappings again), and release them in
/// the given order.
#[derive(Clone, Debug)]
struct Work {
    pages: Vec<usize>,
    release_order: Vec<usize>,
    byte: u8,
    flush: bool,
}

/// An interrupt that arrives at the `skip + 1`-th `hook` call (in `phase`) from now.
#[derive(Clone, Debug)]
struct Scheduled {
    hook: Hook,
    phase: Phase,
    skip: usize,
    work: Work,
}

fn work(
    page: BoxedStrategy<usize>,
    max_pages: usize,
    flush: BoxedStrategy<bool>,
) -> BoxedStrategy<Work> {
    (
        proptest::collection::vec(page, 1..=max_pages),
        any::<u8>(),
        flush,
    )
        .prop_flat_map(|(pages, byte, flush)| {
            let n = pages.len();
            (
                Just(pages),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                Just(byte),
                Just(flush),
            )
        })
        .prop_map(|(pages, release_order, byte, flush)| Work {
            pages,
            release_order,
            byte,
            flush,
        })
        .boxed()
}

fn write_op() -> BoxedStrategy<Op> {
    (0..8usize, 0..PAGE_SIZE, 1..64usize, any::<u8>())
        .prop_map(|(n, offset, len, byte)| Op::Write {
            n,
            offset,
            len: len.min(PAGE_SIZE - offset),
            byte,
        })
        .boxed()
}

fn thread_index() -> BoxedStrategy<usize> {
    prop_oneof![0..CPUS, 2 * CPUS..THREADS].boxed()
}

/// Ops of strict programs.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..CPUS).prop_map(Op::OnCpu),
        1 => (0..THREADS).prop_map(Op::SwitchTo),
        2 => (thread_index(), 0..CPUS).prop_map(|(t, c)| Op::Migrate(t, c)),
        4 => (0..PAGES).prop_map(Op::Enter),
        4 => write_op(),
        2 => (0..8usize).prop_map(Op::Verify),
        4 => (0..8usize).prop_map(Op::Remove),
        1 => work((0..PAGES).boxed(), 3, Just(false).boxed()).prop_map(Op::Interrupt),
    ]
}

/// A page of a deferred program: often a recurring one, often any high page, sometimes
/// a direct-mapped one, sometimes the write-combining one.
fn deferred_page() -> BoxedStrategy<usize> {
    prop_oneof![
        3 => HOT_PAGES,
        4 => DIRECT_PAGES..DEFERRED_PAGES,
        1 => 0..DIRECT_PAGES,
        1 => Just(WRITE_COMBINING),
    ]
    .boxed()
}

fn scheduled() -> impl Strategy<Value = Scheduled> {
    (
        prop_oneof![
            3 => Just(Hook::SetPte),
            2 => Just(Hook::ClearPte),
            1 => Just(Hook::InvalidateLocal),
            3 => Just(Hook::InvalidateAll),
        ],
        prop_oneof![Just(Phase::Before), Just(Phase::After)],
        0..3usize,
        work(deferred_page(), 4, prop::bool::weighted(0.3).boxed()),
    )
        .prop_map(|(hook, phase, skip, work)| Scheduled {
            hook,
            phase,
            skip,
            work,
        })
}

/// Ops of deferred programs: those of strict programs, with more pages, plus
/// `flush_local`, sweeps and interrupts in the middle of quickmap's operations.
fn deferred_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..CPUS).prop_map(Op::OnCpu),
        1 => (0..THREADS).prop_map(Op::SwitchTo),
        2 => (thread_index(), 0..CPUS).prop_map(|(t, c)| Op::Migrate(t, c)),
        6 => deferred_page().prop_map(Op::Enter),
        3 => write_op(),
        2 => (0..40usize).prop_map(Op::Verify),
        5 => (0..40usize).prop_map(Op::Remove),
        2 => work(deferred_page(), 6, prop::bool::weighted(0.2).boxed()).prop_map(Op::Interrupt),
        1 => Just(Op::FlushLocal),
        1 => (0..DEFERRED_PAGES - DIRECT_PAGES, 1..=40usize, any::<u8>())
            .prop_map(|(first, count, byte)| Op::Sweep { first, count, byte }),
        2 => proptest::collection::vec(scheduled(), 1..=2).prop_map(Op::Arm),
    ]
}

fn strict_program() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..120)
}

fn deferred_program() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(deferred_op(), 1..300)
}

use common::{model_page as page, model_page_takes_slot as takes_window};

fn is_window(va: VirtAddr) -> bool {
    va.0 >= WINDOW_BASE
}

/// A machine of `pages` pages with two extra threads on CPU 0, and every page holding
/// its initial pattern.
fn machine_and_model(pages: usize) -> (SimMachine, Vec<Vec<u8>>) {
    let machine = SimMachine::new(SimConfig {
        cpus: CPUS,
        phys_pages: pages,
        direct_map_pages: DIRECT_PAGES,
    });
    for _ in 2 * CPUS..THREADS {
        machine.spawn(0);
    }
    // The patterns, built once: in a debug build they cost more than a short program.
    static PATTERNS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let patterns =
        PATTERNS.get_or_init(|| (0..DEFERRED_PAGES).map(|p| common::pattern(p, 0)).collect());
    let model = patterns[..pages].to_vec();
    for (p, content) in model.iter().enumerate() {
        machine.phys_write(page(p).pa, content);
    }
    (machine, model)
}

/// What to break, to show the property test notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Breakage {
    Nothing,
    /// Strict: a backend that skips `invalidate_local`.
    SkipInvalidation,
    /// Strict: a platform that does not pin.
    DoNotPin,
    /// Deferred: a full flush that leaves the last cleared window's translation behind.
    FlushOneWindowLate,
    /// Deferred: a full flush that does nothing, so the pool enters windows again before
    /// their old translations are gone.
    FlushNothing,
}

/// What a program exercised, for the tests that check the programs reach the paths
/// they are meant to.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    /// Full flushes before the final `flush_local`.
    full_flushes: u64,
    window_reuses: u64,
    /// Interrupts delivered from inside the backend, and those of them inside a flush.
    mid_operation_interrupts: u64,
    mid_flush_interrupts: u64,
}

fn run(ops: &[Op], breakage: Breakage) -> Result<Coverage, TestCaseError> {
    let (machine, model) = machine_and_model(PAGES);
    let config = machine.quickmap_config();
    match breakage {
        Breakage::Nothing => run_on(&machine, model, &machine.quickmap::<WINDOWS>(), ops, true),
        Breakage::SkipInvalidation => {
            let quickmap: QuickMap<_, _, WINDOWS> = machine.quickmap_with(
                config,
                machine.platform(),
                common::ForgetsInvalidation(machine.mmu()),
            );
            run_on(&machine, model, &quickmap, ops, false)
        }
        Breakage::DoNotPin => {
            let quickmap: QuickMap<_, _, WINDOWS> = machine.quickmap_with(
                config,
                common::DoesNotPin(machine.platform()),
                machine.mmu(),
            );
            run_on(&machine, model, &quickmap, ops, false)
        }
        Breakage::FlushOneWindowLate | Breakage::FlushNothing => {
            unreachable!("{breakage:?} breaks deferred instances")
        }
    }
}

/// A deferred program, on a backend that may deliver interrupts in the middle of
/// quickmap's operations. Broken backends are checked by the memory model only (not by
/// the final look at the TLBs, which would catch them at once).
fn run_deferred(ops: &[Op], breakage: Breakage) -> Result<Coverage, TestCaseError> {
    let (machine, model) = machine_and_model(DEFERRED_PAGES);
    let config = machine.quickmap_config();
    let platform = machine.platform();
    match breakage {
        Breakage::Nothing => {
            let quickmap: QuickMap<_, _, DEFERRED_WINDOWS, Deferred> =
                machine.quickmap_with(config, platform, common::MidPairInterrupts(machine.mmu()));
            run_on(&machine, model, &quickmap, ops, true)
        }
        Breakage::FlushOneWindowLate => {
            let backend = common::FlushSparesLastCleared::new(machine.mmu(), &machine);
            let quickmap: QuickMap<_, _, DEFERRED_WINDOWS, Deferred> =
                machine.quickmap_with(config, platform, common::MidPairInterrupts(backend));
            run_on(&machine, model, &quickmap, ops, false)
        }
        Breakage::FlushNothing => {
            let backend = common::FlushesNothing(machine.mmu());
            let quickmap: QuickMap<_, _, DEFERRED_WINDOWS, Deferred> =
                machine.quickmap_with(config, platform, common::MidPairInterrupts(backend));
            run_on(&machine, model, &quickmap, ops, false)
        }
        Breakage::SkipInvalidation | Breakage::DoNotPin => {
            unreachable!("{breakage:?} breaks strict instances")
        }
    }
}

fn run_on<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    machine: &SimMachine,
    model: Vec<Vec<u8>>,
    quickmap: &QuickMap<P, M, N, I>,
    ops: &[Op],
    check_tlbs: bool,
) -> Result<Coverage, TestCaseError> {
    let harness = Harness {
        machine,
        quickmap,
        pages: (0..model.len()).map(page).collect(),
        model: RefCell::new(model),
        scheduled: RefCell::new(Vec::new()),
        failure: RefCell::new(None),
        windows_entered: Cell::new(0),
        uncached_removes: Cell::new(0),
        coverage: Cell::new(Coverage::default()),
    };
    common::with_interrupt_controller(&|hook, phase| harness.on_hook(hook, phase), || {
        harness.run(ops, check_tlbs)
    })
}

/// One program's run: the machine, the instance under test, and the reference model.
struct Harness<'a, P: Platform, M: Mmu, const N: usize, I: Invalidation> {
    machine: &'a SimMachine,
    quickmap: &'a QuickMap<P, M, N, I>,
    pages: Vec<SimPage>,
    /// What each page holds.
    model: RefCell<Vec<Vec<u8>>>,
    /// Interrupts armed to arrive from inside the backend.
    scheduled: RefCell<Vec<Scheduled>>,
    /// The first failure inside an interrupt delivered from the backend.
    failure: RefCell<Option<TestCaseError>>,
    /// `enter` calls that took a window, in any context.
    windows_entered: Cell<u64>,
    /// Removes of windows that mapped a page that is not write-back.
    uncached_removes: Cell<u64>,
    coverage: Cell<Coverage>,
}

impl<'a, P: Platform, M: Mmu, const N: usize, I: Invalidation> Harness<'a, P, M, N, I> {
    fn check_page(&self, va: VirtAddr, p: usize, context: &str) -> Result<(), TestCaseError> {
        let mut seen = vec![0u8; PAGE_SIZE];
        // SAFETY: `va` is a live mapping of page `p` held by the executing context.
        unsafe { self.quickmap.mmu().read_bytes(va, &mut seen) };
        self.check_seen(&seen, va, p, context)
    }

    /// Compare what a context read from page `p` at `va` with the model.
    fn check_seen(
        &self,
        seen: &[u8],
        va: VirtAddr,
        p: usize,
        context: &str,
    ) -> Result<(), TestCaseError> {
        let model = self.model.borrow();
        if seen == model[p] {
            return Ok(());
        }
        let at = seen
            .iter()
            .zip(&model[p])
            .position(|(s, m)| s != m)
            .unwrap();
        Err(TestCaseError::fail(format!(
            "{context}: page {p} read through {va} differs from the model at byte {at:#x}: \
             found {:#04x}, expected {:#04x}",
            seen[at], model[p][at]
        )))
    }

    fn count(&self, counter: &Cell<u64>) {
        counter.set(counter.get() + 1);
    }

    /// `enter` with the accounting.
    fn enter(&self, p: usize) -> VirtAddr {
        if takes_window(p) {
            self.count(&self.windows_entered);
        }
        self.quickmap.enter(&self.pages[p])
    }

    /// `remove` with the accounting.
    ///
    /// # Safety
    ///
    /// As `QuickMap::remove`; `va` maps page `p`.
    unsafe fn remove(&self, va: VirtAddr, p: usize) {
        if p == WRITE_COMBINING {
            self.count(&self.uncached_removes);
        }
        // SAFETY: forwarded.
        unsafe { self.quickmap.remove(va) };
    }

    /// `map` with the accounting.
    fn map(&self, p: usize) -> Mapping<'a, '_, P, M, N, I> {
        if takes_window(p) {
            self.count(&self.windows_entered);
        }
        self.quickmap.map(&self.pages[p])
    }

    /// Drop a guard with the accounting.
    fn unmap(&self, mapping: Mapping<'a, '_, P, M, N, I>, p: usize) {
        if p == WRITE_COMBINING {
            self.count(&self.uncached_removes);
        }
        drop(mapping);
    }

    fn compare(
        &self,
        mapping: &Mapping<'a, '_, P, M, N, I>,
        p: usize,
        context: &str,
    ) -> Result<(), TestCaseError> {
        let mut seen = vec![0u8; PAGE_SIZE];
        mapping.read(0, &mut seen);
        self.check_seen(&seen, mapping.va(), p, context)
    }

    fn write(&self, mapping: &Mapping<'a, '_, P, M, N, I>, p: usize, offset: usize, byte: u8) {
        mapping.write(offset, &[byte]);
        self.model.borrow_mut()[p][offset] = byte;
    }

    /// Deliver an interrupt that does `work` on the executing CPU, if its windows fit.
    fn interrupt(&self, work: &Work) -> Result<(), TestCaseError> {
        let cpu = self.machine.executing_cpu();
        let in_use = self.quickmap.windows_in_use(cpu);
        let free = N - in_use.count_ones() as usize;
        if work.pages.iter().filter(|&&p| takes_window(p)).count() > free {
            return Ok(());
        }
        self.machine.interrupt(|| -> Result<(), TestCaseError> {
            let mut mappings: Vec<Option<_>> =
                work.pages.iter().map(|&p| Some(self.map(p))).collect();
            for (mapping, &p) in mappings.iter().zip(&work.pages) {
                let mapping = mapping.as_ref().unwrap();
                self.compare(mapping, p, "interrupt")?;
                self.write(mapping, p, p % PAGE_SIZE, work.byte);
            }
            if work.flush {
                self.quickmap.flush_local();
                for (mapping, &p) in mappings.iter().zip(&work.pages) {
                    self.compare(mapping.as_ref().unwrap(), p, "interrupt after flush_local")?;
                }
            }
            for &i in &work.release_order {
                self.unmap(mappings[i].take().unwrap(), work.pages[i]);
            }
            Ok(())
        })?;
        prop_assert_eq!(
            self.quickmap.windows_in_use(cpu),
            in_use,
            "interrupt gave back its windows"
        );
        Ok(())
    }

    /// Called by the backend before and after each of its operations: deliver the first
    /// armed interrupt that is due there.
    ///
    /// Right after a full flush, first load every present window entry of this CPU into
    /// its TLB, as speculation may at any time. (Only a flush or an invalidation takes
    /// a translation out of the simulated TLB, and an invalidated entry is clear, so
    /// this is as eager as speculating everywhere.)
    fn on_hook(&self, hook: Hook, phase: Phase) {
        if (hook, phase) == (Hook::InvalidateAll, Phase::After) {
            let cpu = self.machine.executing_cpu();
            let layout = self.quickmap.layout();
            for slot in 0..N {
                self.machine
                    .tlb_fill_speculatively(cpu, layout.window_va(cpu, slot));
            }
        }
        let due = {
            let mut scheduled = self.scheduled.borrow_mut();
            let Some(at) = scheduled
                .iter()
                .position(|s| s.hook == hook && s.phase == phase)
            else {
                return;
            };
            if scheduled[at].skip > 0 {
                scheduled[at].skip -= 1;
                return;
            }
            scheduled.remove(at)
        };
        let mut coverage = self.coverage.get();
        coverage.mid_operation_interrupts += 1;
        if hook == Hook::InvalidateAll {
            coverage.mid_flush_interrupts += 1;
        }
        self.coverage.set(coverage);
        if let Err(error) = self.interrupt(&due.work) {
            self.failure.borrow_mut().get_or_insert(error);
        }
    }

    fn run(&self, ops: &[Op], check_tlbs: bool) -> Result<Coverage, TestCaseError> {
        let (machine, quickmap) = (self.machine, self.quickmap);
        // Each thread's live mappings, in the order made: (address, page index).
        let mut held: HashMap<ThreadId, Vec<(VirtAddr, usize)>> = HashMap::new();
        let held = &mut held;

        for op in ops {
            let current = machine.current_thread();
            let mine = held.entry(current).or_default();
            match op.clone() {
                Op::OnCpu(cpu) => machine.on_cpu(cpu),
                Op::SwitchTo(t) => {
                    let thread = ThreadId(t);
                    let cpu = machine.cpu_of(thread);
                    machine.on_cpu(cpu);
                    let running = machine.current_thread();
                    let refused = machine.switch_to(thread).is_err();
                    let pinned = running != thread
                        && held
                            .get(&running)
                            .is_some_and(|h| h.iter().any(|&(va, _)| is_window(va)));
                    prop_assert_eq!(refused, pinned, "switch to thread {} on CPU {}", t, cpu);
                }
                Op::Migrate(t, cpu) => {
                    let thread = ThreadId(t);
                    machine.on_cpu(cpu);
                    let displaced = machine.current_thread();
                    let pinned = {
                        let holds = |th: ThreadId| {
                            held.get(&th)
                                .is_some_and(|h| h.iter().any(|&(va, _)| is_window(va)))
                        };
                        holds(thread) || (displaced != thread && holds(displaced))
                    };
                    let refused = machine.migrate(thread, cpu).is_err();
                    prop_assert_eq!(refused, pinned, "migrate thread {} to CPU {}", t, cpu);
                }
                Op::Enter(p) => {
                    let windows_here = quickmap
                        .windows_in_use(machine.executing_cpu())
                        .count_ones() as usize;
                    if windows_here < N {
                        let va = self.enter(p);
                        mine.push((va, p));
                        self.check_page(va, p, "enter")?;
                    }
                }
                Op::Write {
                    n,
                    offset,
                    len,
                    byte,
                } => {
                    if !mine.is_empty() {
                        let (va, p) = mine[n % mine.len()];
                        let bytes = vec![byte; len];
                        // SAFETY: a live mapping of the current thread; inside the page.
                        unsafe { quickmap.mmu().write_bytes(va.add(offset), &bytes) };
                        self.model.borrow_mut()[p][offset..offset + len].copy_from_slice(&bytes);
                    }
                }
                Op::Verify(n) => {
                    if !mine.is_empty() {
                        let (va, p) = mine[n % mine.len()];
                        self.check_page(va, p, "verify")?;
                    }
                }
                Op::Remove(n) => {
                    if !mine.is_empty() {
                        let (va, p) = mine.remove(n % mine.len());
                        // SAFETY: the current thread's own live mapping, removed once.
                        unsafe { self.remove(va, p) };
                    }
                }
                Op::Interrupt(work) => self.interrupt(&work)?,
                Op::FlushLocal => quickmap.flush_local(),
                Op::Sweep { first, count, byte } => {
                    let windows_here = quickmap
                        .windows_in_use(machine.executing_cpu())
                        .count_ones() as usize;
                    if windows_here < N {
                        let high = self.pages.len() - DIRECT_PAGES;
                        for i in 0..count {
                            let p = DIRECT_PAGES + (first + i) % high;
                            let mapping = self.map(p);
                            self.compare(&mapping, p, "sweep")?;
                            self.write(&mapping, p, (i * 8) % PAGE_SIZE, byte);
                            self.unmap(mapping, p);
                        }
                    }
                }
                Op::Arm(scheduled) => self.scheduled.borrow_mut().extend(scheduled),
            }
            if let Some(failure) = self.failure.borrow_mut().take() {
                return Err(failure);
            }
        }
        // What is still armed never arrives.
        self.scheduled.borrow_mut().clear();

        // Every thread removes what it still holds: first the threads that hold windows
        // (each is pinned to, and running on, its CPU), then those holding only direct-map
        // addresses (which pin nothing, so they may have been preempted meanwhile).
        let mut threads: Vec<ThreadId> = held.keys().copied().collect();
        threads.sort_by_key(|&t| (!held[&t].iter().any(|&(va, _)| is_window(va)), t.0));
        for thread in threads {
            let mappings = held.get_mut(&thread).unwrap();
            if mappings.is_empty() {
                continue;
            }
            machine
                .switch_to(thread)
                .expect("a thread with windows is the one running on its CPU");
            for (va, p) in mappings.drain(..) {
                self.check_page(va, p, "final verify")?;
                // SAFETY: the thread's own live mapping.
                unsafe { self.remove(va, p) };
            }
        }
        for (p, expected) in self.model.borrow().iter().enumerate() {
            prop_assert!(
                &common::phys_page(machine, self.pages[p].pa) == expected,
                "physical page {} differs from the model",
                p
            );
        }

        let stats = quickmap.total_stats();
        prop_assert_eq!(
            stats.window_maps + stats.window_reuses,
            self.windows_entered.get(),
            "every window entered is mapped or taken back"
        );
        prop_assert_eq!(
            machine.counters().pte_writes,
            stats.window_maps,
            "one entry write per window mapped"
        );
        if I::DEFERRED {
            prop_assert_eq!(
                stats.invalidations,
                self.uncached_removes.get(),
                "deferred: one invalidation per remove of a page that is not write-back"
            );
            for cpu in 0..CPUS {
                // Clean windows: N at first, one more at each such remove, all free ones
                // at a flush; each window mapped takes one.
                let on_cpu = quickmap.stats(cpu);
                if on_cpu.window_maps > (N as u64) + on_cpu.invalidations {
                    prop_assert!(
                        on_cpu.full_flushes > 0,
                        "CPU {} mapped {} windows with {} invalidations and no full flush",
                        cpu,
                        on_cpu.window_maps,
                        on_cpu.invalidations
                    );
                }
            }
        } else {
            prop_assert_eq!(stats.window_reuses, 0);
            prop_assert_eq!(
                stats.window_maps,
                stats.invalidations,
                "one invalidation per window pair"
            );
        }

        // No window is left in use, and once each CPU flushes (a strict instance has
        // nothing to flush), no window is mapped or cached any more.
        for cpu in 0..CPUS {
            prop_assert_eq!(
                quickmap.windows_in_use(cpu),
                0,
                "CPU {} has windows in use at the end",
                cpu
            );
            machine.on_cpu(cpu);
            quickmap.flush_local();
            for slot in 0..N {
                let va = quickmap.layout().window_va(cpu, slot);
                prop_assert_eq!(machine.window_pte(va), None);
                if check_tlbs {
                    prop_assert!(
                        !machine.tlb_holds(cpu, va),
                        "CPU {} still caches window {} after flush_local",
                        cpu,
                        slot
                    );
                }
            }
        }
        for thread in 0..THREADS {
            prop_assert_eq!(machine.critical_depth(ThreadId(thread)), 0);
        }
        Ok(Coverage {
            full_flushes: stats.full_flushes,
            window_reuses: stats.window_reuses,
            ..self.coverage.get()
        })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_programs_match_the_memory_model(ops in strict_program()) {
        run(&ops, Breakage::Nothing)?;
    }
}

/// The runner of deferred programs: a faster generator than the default (in a debug
/// build, the default's ChaCha costs as much as running the long programs).
fn deferred_config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::XorShift,
        ..Config::default()
    }
}

/// The deferred instance: the same kinds of programs, longer and over more pages, with
/// interrupts also in the middle of quickmap's operations. The runner also checks that
/// the programs reach what they are meant to test: full flushes, windows taken back,
/// interrupts inside enter, remove and flush.
#[test]
fn random_programs_match_the_memory_model_on_a_deferred_instance() {
    let mut runner = TestRunner::new(deferred_config());
    let totals = RefCell::new((0u32, 0u32, 0u32, 0u32, 0u32));
    let outcome = runner.run(&deferred_program(), |ops| {
        let coverage = run_deferred(&ops, Breakage::Nothing)?;
        let mut totals = totals.borrow_mut();
        totals.0 += 1;
        totals.1 += u32::from(coverage.full_flushes > 0);
        totals.2 += u32::from(coverage.window_reuses > 0);
        totals.3 += u32::from(coverage.mid_operation_interrupts > 0);
        totals.4 += u32::from(coverage.mid_flush_interrupts > 0);
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    let (cases, flushed, reused, mid_operation, mid_flush) = totals.into_inner();
    eprintln!(
        "deferred programs: {cases} cases, {flushed} flushed, {reused} reused a window, \
         {mid_operation} had interrupts inside quickmap, {mid_flush} inside a flush"
    );
    assert!(
        flushed * 2 >= cases,
        "too few programs flush: {flushed} of {cases}"
    );
    assert!(
        reused * 2 >= cases,
        "too few programs reuse windows: {reused} of {cases}"
    );
    assert!(
        mid_operation * 2 >= cases,
        "too few programs are interrupted inside quickmap: {mid_operation} of {cases}"
    );
    assert!(
        mid_flush * 5 >= cases,
        "too few programs are interrupted inside a flush: {mid_flush} of {cases}"
    );
}

/// The same programs must catch a backend that skips invalidations and a platform that
/// does not pin (strict), and a full flush that misses one window or does nothing
/// (deferred): the property test has teeth.
#[test]
fn random_programs_catch_broken_backends() {
    for breakage in [Breakage::SkipInvalidation, Breakage::DoNotPin] {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let outcome = runner.run(&strict_program(), |ops| run(&ops, breakage).map(drop));
        assert!(outcome.is_err(), "a broken backend went unnoticed");
    }
    for breakage in [Breakage::FlushOneWindowLate, Breakage::FlushNothing] {
        let mut runner = TestRunner::new(Config {
            max_shrink_iters: 64,
            ..deferred_config()
        });
        let outcome = runner.run(&deferred_program(), |ops| {
            run_deferred(&ops, breakage).map(drop)
        });
        match outcome {
            Err(TestError::Fail(reason, program)) => {
                let reason = reason.message().to_string();
                assert!(
                    reason.contains("differs from the model"),
                    "{breakage:?} caught, but not by the memory model: {reason}"
                );
                eprintln!(
                    "{breakage:?} caught by a program of {} ops: {reason}",
                    program.len()
                );
            }
            Err(other) => panic!("{breakage:?}: {other}"),
            Ok(()) => panic!("{breakage:?} went unnoticed by {} programs", 256),
        }
    }
}
