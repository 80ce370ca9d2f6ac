//! The guarantees under real preemption, migration and interrupts: threads on
//! every CPU (more threads than CPUs) hammer their own high-memory pages
//! through quick mappings while the timer preempts and migrates them, the
//! timer interrupt maps pages of its own, and some threads work under a spin
//! lock with interrupts disabled.
//!
//! The same stress runs over each of the kernel's instances: the strict one
//! (every remove invalidates) and the deferred one (removed write-back windows
//! stay mapped until the CPU's next local full flush). On the deferred run the
//! threads cycle through a few pages, so windows are taken back while they
//! still map the page, the pools run dry and flush on their own, and every
//! sixteenth timer tick of a CPU also forces a flush (`flush_local`) in the middle
//! of whatever pair the interrupted thread holds: a translation the flush
//! missed, or a window handed out while stale, reads another page's words.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::arch::quickmap_backend::KernelMmu;
use quickmap::{CpuWindows, Invalidation, MemoryAttribute, Mmu, Platform, QuickMap, PAGE_SIZE};
use spin::Once;

use super::{pattern_word, TestPage};
use crate::arch::paging::{LARGE_PAGE_SIZE, WINDOW_REGION};
use crate::cpu::{current_cpu_index, MAX_CPUS};
use crate::kernel_test;
use crate::vm::page::Wired;
use crate::vm::quick::{self, deferred_quickmap, quickmap, DEFERRED_MAX_CPUS, WINDOWS_PER_CPU};

/// Enter/remove pairs per run, over all threads and CPUs.
const PAIRS: u64 = 1_000_000;
/// Pages each thread owns; it cycles through them.
const PAGES_PER_THREAD: usize = 4;
/// Pairs between short sleeps of a stress thread.
const SLEEP_EVERY: u64 = 2048;
/// Where in each page the pattern is written and checked: both ends and the
/// middle, so a wrong page, a stale page and a torn copy all show.
const CHECKED_OFFSETS: [usize; 3] = [0, PAGE_SIZE / 2, PAGE_SIZE - 8];
/// On a deferred run, one timer tick in this many (per CPU) also flushes the
/// CPU's free windows, while the interrupted thread may hold one.
const TICK_FLUSH_EVERY: u64 = 16;

/// One thread's pages and the generation each holds.
struct ThreadPages {
    pages: Vec<TestPage>,
}

/// Per-run counters, shared by the threads.
#[derive(Default)]
struct StressCounters {
    pairs: AtomicU64,
    /// Every `enter` the threads made (their first writes and their pairs).
    enters: AtomicU64,
    cpu_changes_between_pairs: AtomicU64,
    spin_locked_pairs: AtomicU64,
}

/// What the threads of one run did.
struct ThreadTotals {
    pairs: u64,
    enters: u64,
    moves: u64,
}

/// Runs the integrity stress over `quickmap`. Panics with `quickmap
/// integrity:` on the first violation.
///
/// The spawned threads need `P`, `M` and `I` to be `'static`; the `&'static`
/// instance already implies it, so the bounds do not repeat it.
fn run_stress<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    quickmap: &'static QuickMap<P, M, N, I>,
    pairs: u64,
) -> ThreadTotals
where
    QuickMap<P, M, N, I>: Sync,
{
    let cpus = crate::cpu::cpu_count();
    // More threads than CPUs, so that they compete and migrate; and, per CPU,
    // more than the strict instance's windows, so that a platform that fails to
    // pin (threads preempted while mapped) runs out of windows even on one CPU.
    let threads = 2 * cpus + WINDOWS_PER_CPU;
    let per_thread = pairs.div_ceil(threads as u64);
    let counters = Arc::new(StressCounters::default());
    let handles: Vec<_> = (0..threads)
        .map(|index| {
            let counters = counters.clone();
            crate::sched::spawn("quickmap-stress", move || {
                stress_thread(quickmap, index, per_thread, &counters);
            })
        })
        .collect();
    for handle in handles {
        handle.join();
    }
    ThreadTotals {
        pairs: counters.pairs.load(Ordering::Relaxed),
        enters: counters.enters.load(Ordering::Relaxed),
        moves: counters.cpu_changes_between_pairs.load(Ordering::Relaxed),
    }
}

fn stress_thread<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    quickmap: &QuickMap<P, M, N, I>,
    index: usize,
    rounds: u64,
    counters: &StressCounters,
) {
    let owned = ThreadPages {
        pages: (0..PAGES_PER_THREAD)
            .map(|_| TestPage::high(MemoryAttribute::WriteBack))
            .collect(),
    };
    let wired: Vec<Wired<'_>> = owned.pages.iter().map(|p| p.page().wire()).collect();
    let mut generations = [0u64; PAGES_PER_THREAD];
    // Generation 0: write the first pattern.
    for (slot, page) in wired.iter().enumerate() {
        let mapping = quickmap.map(page);
        for offset in CHECKED_OFFSETS {
            mapping.write_u64(offset, pattern_word(page.page().phys_addr(), 0, offset));
        }
        generations[slot] = 0;
    }
    counters
        .enters
        .fetch_add(PAGES_PER_THREAD as u64, Ordering::Relaxed);
    let lock = crate::sync::SpinLock::new(());
    let mut last_cpu = current_cpu_index();
    for round in 0..rounds {
        let slot = (round as usize + index) % PAGES_PER_THREAD;
        let page = &wired[slot];
        let next = generations[slot] + 1;
        // Every 16th pair runs under a spin lock with interrupts disabled:
        // wider than FreeBSD, which forbids spin mutexes here.
        let _guard = (round % 16 == 0).then(|| {
            counters.spin_locked_pairs.fetch_add(1, Ordering::Relaxed);
            lock.lock_irq()
        });
        let mapping = quickmap.map(page);
        let cpu = current_cpu_index();
        if cpu != last_cpu {
            counters
                .cpu_changes_between_pairs
                .fetch_add(1, Ordering::Relaxed);
            last_cpu = cpu;
        }
        for offset in CHECKED_OFFSETS {
            let expected = pattern_word(page.page().phys_addr(), generations[slot], offset);
            let found = mapping.read_u64(offset);
            if found != expected {
                panic!(
                    "quickmap integrity: mismatch: thread {index} on CPU {cpu}, page {} offset {offset:#x}: \
                     expected {expected:#018x}, found {found:#018x} (round {round})",
                    page.page().phys_addr()
                );
            }
            mapping.write_u64(offset, pattern_word(page.page().phys_addr(), next, offset));
        }
        // Pinned, this thread is the only one on its CPU that can hold a window: an
        // interrupt handler gives its windows back before the thread runs again.
        let in_use = quickmap.windows_in_use(cpu);
        if in_use.count_ones() != 1 {
            panic!(
                "quickmap integrity: thread {index} holds one window of CPU {cpu}, but {} are in use \
                 ({in_use:#06b}): another thread was preempted while it held a mapping",
                in_use.count_ones()
            );
        }
        let still = current_cpu_index();
        if still != cpu {
            panic!("quickmap integrity: thread {index} moved from CPU {cpu} to CPU {still} while holding a mapping");
        }
        drop(mapping);
        generations[slot] = next;
        counters.pairs.fetch_add(1, Ordering::Relaxed);
        counters.enters.fetch_add(1, Ordering::Relaxed);
        // A thread's share lasts only a few timer ticks; sleeping now and then (never
        // while mapped) lets it wake up on whichever CPU picks it next.
        if round % SLEEP_EVERY == SLEEP_EVERY - 1 {
            crate::sched::sleep(core::time::Duration::from_micros(100));
        }
    }
}

/// The timer interrupt's own pages, one per CPU, shared by every run of the
/// boot (each run goes on from the generation the last one left), and what the
/// ticks of the current run did.
struct TickState {
    pages: Vec<TestPage>,
    generations: [AtomicU64; MAX_CPUS],
    /// Ticks that found the interrupted context holding a window.
    nested_ticks: AtomicU64,
    /// Ticks that mapped the page (two `enter` calls each).
    ticks: AtomicU64,
    /// `flush_local` calls made by ticks (deferred runs).
    flushes: AtomicU64,
}

static TICK_STATE: Once<TickState> = Once::new();
static TICK_ARMED: AtomicBool = AtomicBool::new(false);

/// The tick hook of the strict run.
fn strict_tick() {
    tick_maps_a_page(quickmap());
}

/// The tick hook of the deferred run.
fn deferred_tick() {
    tick_maps_a_page(deferred_quickmap());
}

/// Runs in the timer interrupt on every CPU: maps this CPU's page in two more
/// windows of `quickmap` (the instance the threads are using) while the
/// interrupted thread may hold its own, checks the previous generation, writes
/// the next, and releases the windows out of order. On a deferred instance one
/// tick in [`TICK_FLUSH_EVERY`] flushes the CPU's free windows between the two
/// releases, and the window still held must keep working across the flush.
fn tick_maps_a_page<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    quickmap: &QuickMap<P, M, N, I>,
) {
    if !TICK_ARMED.load(Ordering::Acquire) {
        return;
    }
    let Some(state) = TICK_STATE.get() else {
        return;
    };
    let cpu = current_cpu_index();
    let held_by_interrupted = quickmap.windows_in_use(cpu) != 0;
    let page = state.pages[cpu].page();
    let wired = page.wire();
    // Two windows onto the page: the second must see what the first reads,
    // and they are released first-in first-out (not LIFO).
    let first = quickmap.map(&wired);
    let second = quickmap.map(&wired);
    state.ticks.fetch_add(1, Ordering::Relaxed);
    let generation = state.generations[cpu].load(Ordering::Relaxed);
    let next = |offset| pattern_word(page.phys_addr(), generation + 1, offset);
    for offset in CHECKED_OFFSETS {
        let expected = pattern_word(page.phys_addr(), generation, offset);
        let found = first.read_u64(offset);
        assert_eq!(
            found, expected,
            "quickmap integrity: timer interrupt on CPU {cpu} read its page wrong at {offset:#x}"
        );
        second.write_u64(offset, next(offset));
        assert_eq!(
            first.read_u64(offset),
            next(offset),
            "quickmap integrity: two windows of one page disagree"
        );
    }
    drop(first);
    if I::DEFERRED && generation % TICK_FLUSH_EVERY == 0 {
        quickmap.flush_local();
        state.flushes.fetch_add(1, Ordering::Relaxed);
        for offset in CHECKED_OFFSETS {
            assert_eq!(
                second.read_u64(offset),
                next(offset),
                "quickmap integrity: a window in use stopped reaching its page across flush_local on CPU {cpu}"
            );
        }
    }
    drop(second);
    state.generations[cpu].store(generation + 1, Ordering::Relaxed);
    if held_by_interrupted {
        state.nested_ticks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every window of every CPU free, its entry clear.
fn assert_all_windows_free<P: Platform, const N: usize, I: Invalidation>(
    quickmap: &QuickMap<P, KernelMmu, N, I>,
) {
    for cpu in 0..quickmap.cpu_count() {
        assert_eq!(
            quickmap.windows_in_use(cpu),
            0,
            "CPU {cpu} still has windows in use"
        );
        for slot in 0..N {
            let va = quickmap.layout().window_va(cpu, slot);
            assert_eq!(
                quickmap.mmu().read_pte(va),
                0,
                "window {slot} of CPU {cpu} at {va} has a live entry"
            );
        }
    }
}

/// What one run of the stress did, for its test to judge.
struct StressRun {
    cpus: usize,
    threads: ThreadTotals,
    /// Every `enter` of the run: the threads', the ticks', and the first writes
    /// of the tick pages.
    enters: u64,
    /// Timer ticks that mapped a page.
    ticks: u64,
    nested_ticks: u64,
    tick_flushes: u64,
    /// The instance's counts over the run.
    #[cfg(feature = "stats")]
    stats: quickmap::Stats,
}

/// Runs the stress over `quickmap` with `hook` (a tick hook that uses the same
/// instance) mapping pages in the timer interrupt.
fn stress_with_tick_hook<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    quickmap: &'static QuickMap<P, M, N, I>,
    hook: fn(),
) -> StressRun
where
    QuickMap<P, M, N, I>: Sync,
{
    let cpus = crate::cpu::cpu_count();
    let state = TICK_STATE.call_once(|| TickState {
        pages: (0..cpus)
            .map(|_| TestPage::high(MemoryAttribute::WriteBack))
            .collect(),
        generations: [const { AtomicU64::new(0) }; MAX_CPUS],
        nested_ticks: AtomicU64::new(0),
        ticks: AtomicU64::new(0),
        flushes: AtomicU64::new(0),
    });
    #[cfg(feature = "stats")]
    let before = quickmap.total_stats();
    // Each tick page holds the generation its CPU's counter says (0 at first,
    // or where an earlier run of this boot left it).
    for (cpu, page) in state.pages.iter().enumerate() {
        let generation = state.generations[cpu].load(Ordering::Relaxed);
        let wired = page.page().wire();
        let mapping = quickmap.map(&wired);
        for offset in CHECKED_OFFSETS {
            mapping.write_u64(
                offset,
                pattern_word(page.page().phys_addr(), generation, offset),
            );
        }
    }
    for counter in [&state.nested_ticks, &state.ticks, &state.flushes] {
        counter.store(0, Ordering::Relaxed);
    }
    crate::sched::set_tick_hook(Some(hook));
    TICK_ARMED.store(true, Ordering::Release);
    let threads = run_stress(quickmap, PAIRS);
    TICK_ARMED.store(false, Ordering::Release);
    // Returns once no CPU is inside the hook any more.
    crate::sched::set_tick_hook(None);
    #[cfg(feature = "stats")]
    let after = quickmap.total_stats();
    let ticks = state.ticks.load(Ordering::Relaxed);
    StressRun {
        cpus,
        enters: threads.enters + 2 * ticks + cpus as u64,
        threads,
        ticks,
        nested_ticks: state.nested_ticks.load(Ordering::Relaxed),
        tick_flushes: state.flushes.load(Ordering::Relaxed),
        #[cfg(feature = "stats")]
        stats: quickmap::Stats {
            direct_map_hits: after.direct_map_hits - before.direct_map_hits,
            window_maps: after.window_maps - before.window_maps,
            window_reuses: after.window_reuses - before.window_reuses,
            invalidations: after.invalidations - before.invalidations,
            full_flushes: after.full_flushes - before.full_flushes,
        },
    }
}

impl StressRun {
    /// Prints the run's one-line summary: what every run reports, then `details`,
    /// the instance's own figures.
    fn print_summary(&self, instance: &str, details: core::fmt::Arguments) {
        let ThreadTotals { pairs, moves, .. } = self.threads;
        let (cpus, ticks, nested_ticks) = (self.cpus, self.ticks, self.nested_ticks);
        crate::println!(
            "qmk: quickmap stress ({instance}): {pairs} pairs on {cpus} CPU(s), 0 mismatches, {moves} thread moves \
             between pairs, {ticks} timer ticks mapped a page ({nested_ticks} while the interrupted thread held \
             one){details}"
        );
    }
}

/// The checks every run must pass, whatever the instance.
fn assert_run_exercised_everything(run: &StressRun) {
    let pairs = run.threads.pairs;
    assert!(pairs >= PAIRS, "only {pairs} pairs ran");
    if run.cpus > 1 {
        assert!(
            run.threads.moves > 0,
            "threads never changed CPU: migration was not exercised"
        );
    }
    assert!(
        run.nested_ticks > 0,
        "no timer tick found a mapping held: interrupt nesting was not exercised"
    );
}

kernel_test! {
    /// 10^6 enter/remove pairs on the strict instance over 2·CPUs+4 threads with
    /// preemption and migration active, the timer interrupt mapping pages of its
    /// own, and one pair in 16 under a spin lock with interrupts off: no mismatch,
    /// no thread moves while mapped, one invalidation per window pair, and every
    /// window free and clear at the end.
    fn integrity_under_preemption_migration_and_interrupts() {
        let run = stress_with_tick_hook(quickmap(), strict_tick);
        #[cfg(feature = "stats")]
        run.print_summary(
            "strict",
            format_args!(
                "; {} enters: {} window maps, {} invalidations, {} direct-map hits",
                run.enters, run.stats.window_maps, run.stats.invalidations, run.stats.direct_map_hits
            ),
        );
        #[cfg(not(feature = "stats"))]
        run.print_summary("strict", format_args!("; {} enters", run.enters));
        assert_run_exercised_everything(&run);
        #[cfg(feature = "stats")]
        {
            assert_eq!(run.stats.window_maps, run.enters, "every enter took a window");
            assert_eq!(run.stats.window_maps, run.stats.invalidations, "one invalidation per window pair");
        }
        assert_all_windows_free(quickmap());
    }
}

kernel_test! {
    /// The same stress on the deferred instance, its timer hook mapping pages
    /// through that instance and flushing the CPU's free windows in the middle of
    /// the threads' pairs: no mismatch, windows taken back while they still map
    /// the page (reuses) and pools flushed (full flushes), no single-page
    /// invalidation (the pages are write-back), and once every CPU has flushed,
    /// every window free and clear.
    fn deferred_integrity_under_preemption_migration_and_interrupts() {
        let cpus = crate::cpu::cpu_count();
        if cpus > DEFERRED_MAX_CPUS {
            crate::test_harness::skip("the deferred instance serves at most 8 CPUs");
            return;
        }
        let run = stress_with_tick_hook(deferred_quickmap(), deferred_tick);
        let tick_flushes = run.tick_flushes;
        #[cfg(feature = "stats")]
        run.print_summary(
            "deferred",
            format_args!(
                "; {} enters: {} window maps, {} window reuses, {} full flushes ({tick_flushes} forced by timer \
                 ticks), {} invalidations",
                run.enters, run.stats.window_maps, run.stats.window_reuses, run.stats.full_flushes,
                run.stats.invalidations
            ),
        );
        #[cfg(not(feature = "stats"))]
        run.print_summary(
            "deferred",
            format_args!(", {tick_flushes} flushes forced by timer ticks; {} enters", run.enters),
        );
        assert_run_exercised_everything(&run);
        assert!(tick_flushes > 0, "no timer tick flushed: flushes inside pairs were not exercised");
        #[cfg(feature = "stats")]
        {
            let stats = run.stats;
            assert!(
                stats.full_flushes > tick_flushes,
                "{} full flushes, all forced by timer ticks: the pools never ran dry on their own",
                stats.full_flushes
            );
            assert!(stats.window_reuses > 0, "no window was taken back: reuse was not exercised");
            assert_eq!(stats.window_maps + stats.window_reuses, run.enters, "every enter took a window");
            assert_eq!(stats.invalidations, 0, "write-back windows are never invalidated one by one");
        }
        // Removed windows stay mapped until their CPU flushes: flush each CPU.
        for cpu in 0..cpus {
            crate::sched::spawn_pinned("quickmap-flush", cpu, || deferred_quickmap().flush_local()).join();
        }
        assert_all_windows_free(deferred_quickmap());
    }
}

/// A platform that does not pin: critical sections do nothing. With it, the
/// same stress must fail (a thread is moved or preempted while mapped).
#[derive(Clone, Copy)]
struct DoesNotPin;

// SAFETY: test-only and deliberately broken (promise 1 of `Platform`), to show
// the stress test notices.
unsafe impl Platform for DoesNotPin {
    fn current_cpu(&self) -> usize {
        current_cpu_index()
    }
    fn critical_enter(&self) {}
    fn critical_exit(&self) {}
}

static UNPINNED_WINDOWS: [CpuWindows<WINDOWS_PER_CPU>; MAX_CPUS] =
    [const { CpuWindows::new() }; MAX_CPUS];
static UNPINNED: Once<QuickMap<DoesNotPin, KernelMmu, WINDOWS_PER_CPU>> = Once::new();

kernel_test! {
    /// The stress has teeth: over a platform that does not pin the thread, it
    /// detects a thread moved while mapped, corruption, or a misuse panic.
    #[should_panic(expected = "quickmap")]
    fn stress_catches_a_platform_that_does_not_pin() {
        let region = WINDOW_REGION.start + 4 * LARGE_PAGE_SIZE;
        let windows = &UNPINNED_WINDOWS[..crate::cpu::cpu_count()];
        let unpinned = UNPINNED.call_once(|| quick::build(DoesNotPin, region, windows, |mmu| mmu).unwrap());
        run_stress(unpinned, PAIRS);
    }
}
