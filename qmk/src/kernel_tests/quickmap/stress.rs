//! The guarantees under real preemption, migration and interrupts: threads on
//! every CPU (more threads than CPUs) hammer their own high-memory pages
//! through quick mappings while the timer preempts and migrates them, the
//! timer interrupt maps pages of its own, and some threads work under a spin
//! lock with interrupts disabled.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quickmap::arch::x86_64::X86Mmu;
use quickmap::{CpuWindows, MemoryAttribute, Platform, QuickMap, PAGE_SIZE};
use spin::Once;

use super::{pattern_word, TestPage};
use crate::arch::paging::{LARGE_PAGE_SIZE, WINDOW_REGION};
use crate::cpu::{current_cpu_index, MAX_CPUS};
use crate::kernel_test;
use crate::vm::page::Wired;
use crate::vm::quick::{self, quickmap, WINDOWS_PER_CPU};

/// Enter/remove pairs per run, over all threads and CPUs.
const PAIRS: u64 = 1_000_000;
/// Pages each thread owns; it cycles through them.
const PAGES_PER_THREAD: usize = 4;
/// Pairs between short sleeps of a stress thread.
const SLEEP_EVERY: u64 = 2048;
/// Where in each page the pattern is written and checked: both ends and the
/// middle, so a wrong page, a stale page and a torn copy all show.
const CHECKED_OFFSETS: [usize; 3] = [0, PAGE_SIZE / 2, PAGE_SIZE - 8];

/// Lets [`run_stress`] use the kernel's instance or a broken one.
type QuickMapOver<P> = QuickMap<P, X86Mmu, WINDOWS_PER_CPU>;

/// One thread's pages and the generation each holds.
struct ThreadPages {
    pages: Vec<TestPage>,
}

/// Per-run counters, shared by the threads.
#[derive(Default)]
struct StressCounters {
    pairs: AtomicU64,
    cpu_changes_between_pairs: AtomicU64,
    spin_locked_pairs: AtomicU64,
}

/// Runs the integrity stress over `quickmap`: returns (pairs, migrations seen).
/// Panics with `quickmap integrity:` on the first violation.
fn run_stress<P: Platform + Sync + Send + 'static>(
    quickmap: &'static QuickMapOver<P>,
    pairs: u64,
) -> (u64, u64) {
    let cpus = crate::cpu::cpu_count();
    // More threads than CPUs, so that they compete and migrate; and, per CPU,
    // more than its windows, so that a platform that fails to pin (threads
    // preempted while mapped) runs out of windows even on one CPU.
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
    (
        counters.pairs.load(Ordering::Relaxed),
        counters.cpu_changes_between_pairs.load(Ordering::Relaxed),
    )
}

fn stress_thread<P: Platform>(
    quickmap: &QuickMapOver<P>,
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
        // A thread's share lasts only a few timer ticks; sleeping now and then (never
        // while mapped) lets it wake up on whichever CPU picks it next.
        if round % SLEEP_EVERY == SLEEP_EVERY - 1 {
            crate::sched::sleep(core::time::Duration::from_micros(100));
        }
    }
}

/// The timer interrupt's own pages, one per CPU, and how often it found the
/// interrupted context holding a window.
struct TickState {
    pages: Vec<TestPage>,
    generations: [AtomicU64; MAX_CPUS],
    ticks_with_mapping: [AtomicU64; MAX_CPUS],
    nested_ticks: AtomicU64,
}

static TICK_STATE: Once<TickState> = Once::new();
static TICK_ARMED: AtomicBool = AtomicBool::new(false);

/// Runs in the timer interrupt on every CPU: maps this CPU's page in two more
/// windows while the interrupted thread may hold its own, checks the previous
/// generation, writes the next, and releases the windows out of order.
fn tick_maps_a_page() {
    if !TICK_ARMED.load(Ordering::Acquire) {
        return;
    }
    let Some(state) = TICK_STATE.get() else {
        return;
    };
    let cpu = current_cpu_index();
    let held_by_interrupted = quickmap().windows_in_use(cpu) != 0;
    let page = state.pages[cpu].page();
    let wired = page.wire();
    // Two windows onto the page: the second must see what the first reads,
    // and they are released first-in first-out (not LIFO).
    let first = quickmap().map(&wired);
    let second = quickmap().map(&wired);
    let generation = state.generations[cpu].load(Ordering::Relaxed);
    for offset in CHECKED_OFFSETS {
        let expected = pattern_word(page.phys_addr(), generation, offset);
        let found = first.read_u64(offset);
        assert_eq!(
            found, expected,
            "quickmap integrity: timer interrupt on CPU {cpu} read its page wrong at {offset:#x}"
        );
        second.write_u64(
            offset,
            pattern_word(page.phys_addr(), generation + 1, offset),
        );
        assert_eq!(
            first.read_u64(offset),
            pattern_word(page.phys_addr(), generation + 1, offset),
            "quickmap integrity: two windows of one page disagree"
        );
    }
    drop(first);
    drop(second);
    state.generations[cpu].store(generation + 1, Ordering::Relaxed);
    if held_by_interrupted {
        state.ticks_with_mapping[cpu].fetch_add(1, Ordering::Relaxed);
        state.nested_ticks.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every window of every CPU free, its entry clear.
fn assert_all_windows_free<P: Platform>(quickmap: &QuickMapOver<P>) {
    for cpu in 0..quickmap.cpu_count() {
        assert_eq!(
            quickmap.windows_in_use(cpu),
            0,
            "CPU {cpu} still has windows in use"
        );
        for slot in 0..WINDOWS_PER_CPU {
            let va = quickmap.layout().window_va(cpu, slot);
            assert_eq!(
                quickmap.mmu().read_pte(va),
                0,
                "window {slot} of CPU {cpu} at {va} has a live entry"
            );
        }
    }
}

kernel_test! {
    /// 10^6 enter/remove pairs over 2·CPUs+4 threads with preemption and
    /// migration active, the timer interrupt mapping pages of its own, and one
    /// pair in 16 under a spin lock with interrupts off: no mismatch, no thread
    /// moves while mapped, and every window free and clear at the end.
    fn integrity_under_preemption_migration_and_interrupts() {
        let cpus = crate::cpu::cpu_count();
        let state = TICK_STATE.call_once(|| TickState {
            pages: (0..cpus).map(|_| TestPage::high(MemoryAttribute::WriteBack)).collect(),
            generations: [const { AtomicU64::new(0) }; MAX_CPUS],
            ticks_with_mapping: [const { AtomicU64::new(0) }; MAX_CPUS],
            nested_ticks: AtomicU64::new(0),
        });
        for page in &state.pages {
            let wired = page.page().wire();
            let mapping = quickmap().map(&wired);
            for offset in CHECKED_OFFSETS {
                mapping.write_u64(offset, pattern_word(page.page().phys_addr(), 0, offset));
            }
        }
        crate::sched::set_tick_hook(Some(tick_maps_a_page));
        TICK_ARMED.store(true, Ordering::Release);
        let (pairs, moves) = run_stress(quickmap(), PAIRS);
        TICK_ARMED.store(false, Ordering::Release);
        crate::sched::set_tick_hook(None);
        let nested = state.nested_ticks.load(Ordering::Relaxed);
        let stats = quickmap().total_stats();
        crate::println!(
            "qmk: quickmap stress: {pairs} pairs on {cpus} CPU(s), 0 mismatches, {moves} thread moves between pairs, \
             {nested} timer ticks mapped a page while the interrupted thread held one; totals: {} window maps, \
             {} invalidations, {} direct-map hits",
            stats.window_maps, stats.invalidations, stats.direct_map_hits
        );
        assert!(pairs >= PAIRS, "only {pairs} pairs ran");
        if cpus > 1 {
            assert!(moves > 0, "threads never changed CPU: migration was not exercised");
        }
        assert!(nested > 0, "no timer tick found a mapping held: interrupt nesting was not exercised");
        assert_eq!(stats.window_maps, stats.invalidations, "one invalidation per window pair");
        assert_all_windows_free(quickmap());
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
static UNPINNED: Once<QuickMapOver<DoesNotPin>> = Once::new();

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
