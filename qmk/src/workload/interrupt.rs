//! Quick mappings in interrupt context: the timer tick of every CPU maps a
//! high-memory page of its own, checks every byte of the generation it wrote
//! last time, and writes the next one. The thread it interrupted may be in
//! the middle of its own mapping (one or two windows held), so the handler
//! takes another window of the same CPU: what quickmap's any-order windows
//! are for, and what FreeBSD's single per-CPU page forbids.
//!
//! A handler must not print (the interrupted thread may hold the console
//! lock): it leaves mismatch reports to the main thread.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use quickmap::PAGE_SIZE;
use spin::Once;

use super::pages::{fill_pattern, quickmap, verify_pattern, Content, OwnedPage};
use super::report::{
    count_operation, count_work, record_mismatch, record_mismatch_in_interrupt, Kind,
    MismatchReport, Work,
};
use crate::cpu::MAX_CPUS;
use crate::memory::frame_allocator::Zone;

/// Each CPU's page and the generation it holds (written by that CPU's tick
/// only; atomics because the main thread reads them at the end).
struct TickPages {
    pages: Vec<OwnedPage>,
    generations: [AtomicU64; MAX_CPUS],
    /// Ticks that found the interrupted context holding a window.
    nested: AtomicU64,
}

static TICK_PAGES: Once<TickPages> = Once::new();
static ARMED: AtomicBool = AtomicBool::new(false);

/// Generations of CPU `cpu`'s tick page: above every worker's (see
/// `Generations`), counting up from here.
fn first_generation(cpu: usize) -> u64 {
    ((1 << 20) + cpu as u64 + 1) << 40
}

/// Allocates a page per CPU, writes its first generation, and installs the
/// tick hook.
pub fn arm(cpus: usize) {
    let state = TICK_PAGES.call_once(|| TickPages {
        pages: (0..cpus).map(|_| OwnedPage::allocate(Zone::High)).collect(),
        generations: [const { AtomicU64::new(0) }; MAX_CPUS],
        nested: AtomicU64::new(0),
    });
    for (cpu, page) in state.pages.iter().enumerate() {
        let wired = page.wire();
        let mapping = quickmap().map(&wired);
        fill_pattern(&mapping, page.pa(), first_generation(cpu));
        state.generations[cpu].store(first_generation(cpu), Ordering::Relaxed);
    }
    ARMED.store(true, Ordering::Release);
    crate::sched::set_tick_hook(Some(on_tick));
}

/// Stops the tick work and waits until no handler can still be inside it.
pub fn disarm() {
    ARMED.store(false, Ordering::Release);
    // Returns only once no CPU is still inside `on_tick`.
    crate::sched::set_tick_hook(None);
}

/// Ticks that mapped a page while the interrupted context held a window.
pub fn nested_ticks() -> u64 {
    TICK_PAGES
        .get()
        .map_or(0, |state| state.nested.load(Ordering::Relaxed))
}

/// The tick hook (interrupt context, interrupts off, on the interrupted CPU).
fn on_tick() {
    if !ARMED.load(Ordering::Acquire) {
        return;
    }
    let Some(state) = TICK_PAGES.get() else {
        return;
    };
    let cpu = crate::cpu::current_cpu_index();
    let Some(page) = state.pages.get(cpu) else {
        return;
    };
    if quickmap().windows_in_use(cpu) != 0 {
        state.nested.fetch_add(1, Ordering::Relaxed);
    }
    let generation = state.generations[cpu].load(Ordering::Relaxed);
    let content = Content {
        origin: page.pa(),
        generation,
        checksum: 0,
    };
    let wired = page.wire();
    let mapping = quickmap().map(&wired);
    let result = verify_pattern(&mapping, content);
    fill_pattern(&mapping, page.pa(), generation + 1);
    drop(mapping);
    drop(wired);
    state.generations[cpu].store(generation + 1, Ordering::Relaxed);
    if let Err(wrong) = result {
        record_mismatch_in_interrupt(MismatchReport {
            kind: Kind::Interrupt,
            page: page.pa(),
            cpu,
            thread: crate::sched::current_thread_id(),
            offset: wrong.offset,
            expected: wrong.expected,
            found: wrong.found,
        });
    }
    count_operation(Kind::Interrupt, Work::pages(1, PAGE_SIZE as u64));
}

/// After [`disarm`]: checks every CPU's tick page holds its last generation.
pub fn final_check() {
    let Some(state) = TICK_PAGES.get() else {
        return;
    };
    let thread = crate::sched::current_thread_id();
    for (cpu, page) in state.pages.iter().enumerate() {
        let content = Content {
            origin: page.pa(),
            generation: state.generations[cpu].load(Ordering::Relaxed),
            checksum: 0,
        };
        let wired = page.wire();
        let mapping = quickmap().map(&wired);
        let checked_on = crate::cpu::current_cpu_index();
        let result = verify_pattern(&mapping, content);
        drop(mapping);
        drop(wired);
        if let Err(wrong) = result {
            record_mismatch(MismatchReport {
                kind: Kind::Interrupt,
                page: page.pa(),
                cpu: checked_on,
                thread,
                offset: wrong.offset,
                expected: wrong.expected,
                found: wrong.found,
            });
        }
        count_work(Work::pages(1, 0));
    }
}
