//! Property test of local mappings: random programs of local maps and unmaps (guards
//! and the raw API, in any order), context switches between threads that hold them,
//! attempted migrations, pinned mappings and interrupt handlers on top, all checked
//! against a reference model of physical memory. Every access also checks that the
//! thread has not changed CPU since its first local mapping.
//!
//! The same programs must catch a scheduler that skips the switch-in hook or the
//! switch-out hook, a backend that skips invalidations, and a platform that lets a
//! thread holding local mappings migrate.

mod common;

use std::collections::HashMap;
use std::mem::ManuallyDrop;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestError, TestRunner};
use quickmap::sim::{
    SimConfig, SimMachine, SimPage, SimSwitchHooks, ThreadId, LOCAL_BASE, LOCAL_SLOTS,
};
use quickmap::{
    LocalMapping, LocalPlatform, LocalQuickMap, Mapping, Mmu, QuickMap, VirtAddr, PAGE_SIZE,
};

const CPUS: usize = 2;
/// Pinned windows per CPU (interrupt handlers and threads on top of local mappings).
const WINDOWS: usize = 4;
/// Pages `0..8` are direct-mapped; page 2 is write-combining, so takes a slot anyway.
const DIRECT_PAGES: usize = common::MODEL_DIRECT_PAGES;
const PAGES: usize = 24;
/// Threads 0 and 1 run first, 2 and 3 are the idle threads, 4 and 5 are spawned on
/// CPU 0 and 6 on CPU 1: three threads compete for CPU 0.
const THREADS: usize = 7;
const WORKERS: [usize; 5] = [0, 1, 4, 5, 6];

#[derive(Clone, Debug)]
enum Op {
    /// Let `cpu` execute next.
    OnCpu(usize),
    /// Preempt what runs on the thread's CPU and run the thread there.
    Switch(usize),
    /// The scheduler tries to move the thread to the CPU.
    Migrate(usize, usize),
    /// The current thread maps page `page` locally (with the raw API if `raw`).
    MapLocal { page: usize, raw: bool },
    /// The current thread removes its `n`-th local mapping (any order).
    UnmapLocal(usize),
    /// The current thread writes `len` bytes of `byte` at `offset` through its `n`-th
    /// local mapping.
    Write {
        n: usize,
        offset: usize,
        len: usize,
        byte: u8,
    },
    /// The current thread checks its `n`-th local mapping against the model.
    Verify(usize),
    /// The current thread maps a page with the pinned instance, on top.
    MapPinned(usize),
    /// The current thread drops its `n`-th pinned mapping.
    UnmapPinned(usize),
    /// An interrupt on the executing CPU maps these pages (pinned), checks them, writes
    /// `byte` to each, and checks the interrupted thread's first local mapping.
    Interrupt(Vec<usize>, u8),
}

fn op() -> impl Strategy<Value = Op> {
    let worker = proptest::sample::select(WORKERS.to_vec());
    prop_oneof![
        2 => (0..CPUS).prop_map(Op::OnCpu),
        5 => worker.clone().prop_map(Op::Switch),
        2 => (worker, 0..CPUS).prop_map(|(t, c)| Op::Migrate(t, c)),
        5 => (0..PAGES, prop::bool::weighted(0.25)).prop_map(|(page, raw)| Op::MapLocal { page, raw }),
        4 => (0..LOCAL_SLOTS).prop_map(Op::UnmapLocal),
        4 => (0..LOCAL_SLOTS, 0..PAGE_SIZE, 1..64usize, any::<u8>()).prop_map(|(n, offset, len, byte)| {
            Op::Write { n, offset, len: len.min(PAGE_SIZE - offset), byte }
        }),
        3 => (0..LOCAL_SLOTS).prop_map(Op::Verify),
        1 => (0..PAGES).prop_map(Op::MapPinned),
        2 => (0..WINDOWS).prop_map(Op::UnmapPinned),
        1 => (proptest::collection::vec(0..PAGES, 1..=2), any::<u8>())
            .prop_map(|(pages, byte)| Op::Interrupt(pages, byte)),
    ]
}

fn program() -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..160)
}

use common::{model_page as page, model_page_takes_slot as takes_slot};

/// Whether `va` is a local slot (not a direct-map address).
fn is_slot(va: VirtAddr) -> bool {
    va.0 >= LOCAL_BASE
}

/// What to break, to show the property test notices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Breakage {
    Nothing,
    /// The context switch skips the switch-in hook.
    SkipSwitchIn,
    /// The context switch skips the switch-out hook.
    SkipSwitchOut,
    /// The local instance's backend skips `invalidate_local`.
    SkipInvalidation,
    /// The platform's `migrate_disable` does nothing.
    MigratesAnyway,
}

/// What a program exercised.
#[derive(Clone, Copy, Debug, Default)]
struct Coverage {
    /// Switches away from a thread that held local slots.
    switch_outs: u64,
    /// Migrations refused because the thread held local slots.
    refused_migrations: u64,
}

fn run(ops: &[Op], breakage: Breakage) -> Result<Coverage, TestCaseError> {
    let machine = SimMachine::new(SimConfig {
        cpus: CPUS,
        phys_pages: PAGES,
        direct_map_pages: DIRECT_PAGES,
    });
    for cpu in [0, 0, 1] {
        machine.spawn(cpu);
    }
    let pages: Vec<SimPage> = (0..PAGES).map(page).collect();
    let model: Vec<Vec<u8>> = (0..PAGES).map(|p| common::pattern(p, 0)).collect();
    for (p, content) in model.iter().enumerate() {
        machine.phys_write(pages[p].pa, content);
    }
    let pinned: QuickMap<_, _, WINDOWS> =
        machine.quickmap_with(machine.quickmap_config(), machine.platform(), machine.mmu());
    let config = machine.local_config();
    match breakage {
        Breakage::Nothing | Breakage::SkipSwitchIn | Breakage::SkipSwitchOut => {
            let local = machine.local_quickmap();
            let hooks: &dyn SimSwitchHooks = match breakage {
                Breakage::SkipSwitchIn => &common::SkipsSwitchIn(&local),
                Breakage::SkipSwitchOut => &common::SkipsSwitchOut(&local),
                _ => &local,
            };
            let harness = Harness::new(&machine, &local, hooks, &pinned, &pages, model);
            harness.run(ops, breakage == Breakage::Nothing)
        }
        Breakage::SkipInvalidation => {
            let local = machine.local_quickmap_with(
                config,
                machine.platform(),
                common::ForgetsInvalidation(machine.mmu()),
            );
            Harness::new(&machine, &local, &local, &pinned, &pages, model).run(ops, false)
        }
        Breakage::MigratesAnyway => {
            let local = machine.local_quickmap_with(
                config,
                common::MigratesAnyway(machine.platform()),
                machine.mmu(),
            );
            Harness::new(&machine, &local, &local, &pinned, &pages, model).run(ops, false)
        }
    }
}

/// A local mapping a thread holds: a guard, or an address from the raw API.
enum Held<'a, P: LocalPlatform<LOCAL_SLOTS>, M: Mmu> {
    Guard(LocalMapping<'a, 'a, P, M, LOCAL_SLOTS>),
    Raw(VirtAddr),
}

/// Each thread's local mappings, in the order made: (mapping, page index).
type LocalsByThread<'a, P, M> = HashMap<ThreadId, Vec<(Held<'a, P, M>, usize)>>;

struct Harness<'a, P: LocalPlatform<LOCAL_SLOTS>, M: Mmu, PP: quickmap::Platform, PM: Mmu> {
    machine: &'a SimMachine,
    local: &'a LocalQuickMap<P, M, LOCAL_SLOTS>,
    hooks: &'a dyn SimSwitchHooks,
    pinned: &'a QuickMap<PP, PM, WINDOWS>,
    pages: &'a [SimPage],
    model: Vec<Vec<u8>>,
    /// Each thread's local mappings. Never dropped as a whole: a program that fails leaves guards of several threads behind,
    /// which must not be dropped by whichever thread runs then (a successful program
    /// gives every one back on its thread).
    locals: ManuallyDrop<LocalsByThread<'a, P, M>>,
    /// Each thread's pinned mappings that took a window (never dropped as a whole, as
    /// `locals`).
    pins: ManuallyDrop<HashMap<ThreadId, Vec<Mapping<'a, 'a, PP, PM, WINDOWS>>>>,
    /// The CPU of each thread's local slots, while it holds any.
    home: HashMap<ThreadId, usize>,
    coverage: Coverage,
}

impl<'a, P, M, PP, PM> Harness<'a, P, M, PP, PM>
where
    P: LocalPlatform<LOCAL_SLOTS>,
    M: Mmu,
    PP: quickmap::Platform,
    PM: Mmu,
{
    fn new(
        machine: &'a SimMachine,
        local: &'a LocalQuickMap<P, M, LOCAL_SLOTS>,
        hooks: &'a dyn SimSwitchHooks,
        pinned: &'a QuickMap<PP, PM, WINDOWS>,
        pages: &'a [SimPage],
        model: Vec<Vec<u8>>,
    ) -> Self {
        Harness {
            machine,
            local,
            hooks,
            pinned,
            pages,
            model,
            locals: ManuallyDrop::new(HashMap::new()),
            pins: ManuallyDrop::new(HashMap::new()),
            home: HashMap::new(),
            coverage: Coverage::default(),
        }
    }

    fn slots_held(&self, thread: ThreadId) -> usize {
        self.locals.get(&thread).map_or(0, |held| {
            held.iter().filter(|(h, _)| is_slot(self.va(h))).count()
        })
    }

    fn holds_pins(&self, thread: ThreadId) -> bool {
        self.pins.get(&thread).is_some_and(|pins| !pins.is_empty())
    }

    fn va(&self, held: &Held<'a, P, M>) -> VirtAddr {
        match held {
            Held::Guard(mapping) => mapping.va(),
            Held::Raw(va) => *va,
        }
    }

    /// The current thread's `n`-th local mapping (modulo how many it holds), after
    /// checking that the thread is still on the CPU of its slots.
    fn nth_local(&self, n: usize) -> Result<Option<(VirtAddr, usize)>, TestCaseError> {
        let thread = self.machine.current_thread();
        let Some(held) = self.locals.get(&thread).filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        if let Some(&home) = self.home.get(&thread) {
            let now = self.machine.cpu_of(thread);
            prop_assert_eq!(
                now,
                home,
                "thread {} holds local slots of CPU {} but runs on CPU {}",
                thread.0,
                home,
                now
            );
        }
        let (mapping, p) = &held[n % held.len()];
        Ok(Some((self.va(mapping), *p)))
    }

    fn check(&self, va: VirtAddr, p: usize, context: &str) -> Result<(), TestCaseError> {
        let mut seen = vec![0u8; PAGE_SIZE];
        // SAFETY: `va` is a live mapping of page `p` held by the executing context.
        unsafe { self.local.mmu().read_bytes(va, &mut seen) };
        if seen != self.model[p] {
            let at = seen
                .iter()
                .zip(&self.model[p])
                .position(|(s, m)| s != m)
                .unwrap();
            return Err(TestCaseError::fail(format!(
                "{context}: page {p} read through {va} differs from the model at byte {at:#x}: \
                 found {:#04x}, expected {:#04x}",
                seen[at], self.model[p][at]
            )));
        }
        Ok(())
    }

    fn switch(&mut self, thread: ThreadId) -> Result<(), TestCaseError> {
        let cpu = self.machine.cpu_of(thread);
        self.machine.on_cpu(cpu);
        let running = self.machine.current_thread();
        let pinned = running != thread && self.holds_pins(running);
        let refused = self.machine.switch_to_with(thread, self.hooks).is_err();
        prop_assert_eq!(
            refused,
            pinned,
            "switch to thread {} on CPU {}",
            thread.0,
            cpu
        );
        if !refused && running != thread && self.slots_held(running) > 0 {
            self.coverage.switch_outs += 1;
        }
        Ok(())
    }

    fn migrate(&mut self, thread: ThreadId, cpu: usize) -> Result<(), TestCaseError> {
        self.machine.on_cpu(cpu);
        let displaced = self.machine.current_thread();
        let from = self.machine.cpu_of(thread);
        let bound = self.slots_held(thread) > 0 && from != cpu;
        let pinned = self.holds_pins(thread) || (displaced != thread && self.holds_pins(displaced));
        let refused = self.machine.migrate_with(thread, cpu, self.hooks).is_err();
        prop_assert_eq!(
            refused,
            pinned || bound,
            "migrate thread {} from CPU {} to CPU {} (holding {} local slots)",
            thread.0,
            from,
            cpu,
            self.slots_held(thread)
        );
        if bound && !pinned {
            self.coverage.refused_migrations += 1;
        }
        Ok(())
    }

    fn map_local(&mut self, p: usize, raw: bool) -> Result<(), TestCaseError> {
        let thread = self.machine.current_thread();
        let page: &'a SimPage = &self.pages[p];
        let takes_slot = takes_slot(p);
        if takes_slot && self.slots_held(thread) == LOCAL_SLOTS {
            prop_assert!(self.local.try_map(page).is_err(), "a ninth local slot");
            return Ok(());
        }
        let held = if raw {
            Held::Raw(self.local.enter(page))
        } else {
            Held::Guard(self.local.map(page))
        };
        let va = self.va(&held);
        prop_assert_eq!(is_slot(va), takes_slot, "page {} at {}", p, va);
        if takes_slot {
            self.home
                .entry(thread)
                .or_insert_with(|| self.machine.cpu_of(thread));
        }
        self.locals.entry(thread).or_default().push((held, p));
        self.check(va, p, "map_local")
    }

    fn unmap_local(&mut self, n: usize) -> Result<(), TestCaseError> {
        let thread = self.machine.current_thread();
        let Some(held) = self.locals.get_mut(&thread).filter(|h| !h.is_empty()) else {
            return Ok(());
        };
        let (mapping, _) = held.remove(n % held.len());
        match mapping {
            Held::Guard(mapping) => drop(mapping),
            // SAFETY: the current thread's own live mapping, removed once.
            Held::Raw(va) => unsafe { self.local.remove(va) },
        }
        if self.slots_held(thread) == 0 {
            self.home.remove(&thread);
        }
        Ok(())
    }

    fn interrupt(&mut self, pages: &[usize], byte: u8) -> Result<(), TestCaseError> {
        let cpu = self.machine.executing_cpu();
        let free = WINDOWS - self.pinned.windows_in_use(cpu).count_ones() as usize;
        if pages.len() > free {
            return Ok(());
        }
        let interrupted = self.nth_local(0)?;
        let this = &*self;
        let written = self
            .machine
            .interrupt(|| -> Result<Vec<usize>, TestCaseError> {
                let mappings: Vec<_> = pages
                    .iter()
                    .map(|&p| (this.pinned.map(&this.pages[p]), p))
                    .collect();
                for (mapping, p) in &mappings {
                    this.check(mapping.va(), *p, "interrupt")?;
                }
                if let Some((va, p)) = interrupted {
                    this.check(va, p, "interrupt, through the thread's local mapping")?;
                }
                let mut written = Vec::new();
                for (mapping, p) in &mappings {
                    if !written.contains(p) {
                        mapping.write(*p, &[byte]);
                        written.push(*p);
                    }
                }
                Ok(written)
            })?;
        for p in written {
            self.model[p][p] = byte;
        }
        Ok(())
    }

    fn run(mut self, ops: &[Op], check_tlbs: bool) -> Result<Coverage, TestCaseError> {
        for op in ops {
            match op.clone() {
                Op::OnCpu(cpu) => self.machine.on_cpu(cpu),
                Op::Switch(t) => self.switch(ThreadId(t))?,
                Op::Migrate(t, cpu) => self.migrate(ThreadId(t), cpu)?,
                Op::MapLocal { page, raw } => self.map_local(page, raw)?,
                Op::UnmapLocal(n) => self.unmap_local(n)?,
                Op::Write {
                    n,
                    offset,
                    len,
                    byte,
                } => {
                    if let Some((va, p)) = self.nth_local(n)? {
                        let bytes = vec![byte; len];
                        // SAFETY: a live mapping of the current thread; inside the page.
                        unsafe { self.local.mmu().write_bytes(va.add(offset), &bytes) };
                        self.model[p][offset..offset + len].copy_from_slice(&bytes);
                    }
                }
                Op::Verify(n) => {
                    if let Some((va, p)) = self.nth_local(n)? {
                        self.check(va, p, "verify")?;
                    }
                }
                Op::MapPinned(p) => {
                    let cpu = self.machine.executing_cpu();
                    let free = self.pinned.windows_in_use(cpu).count_ones() < WINDOWS as u32;
                    if takes_slot(p) && free {
                        let page: &'a SimPage = &self.pages[p];
                        let mapping = self.pinned.map(page);
                        self.check(mapping.va(), p, "map_pinned")?;
                        let thread = self.machine.current_thread();
                        self.pins.entry(thread).or_default().push(mapping);
                    }
                }
                Op::UnmapPinned(n) => {
                    let thread = self.machine.current_thread();
                    if let Some(pins) = self.pins.get_mut(&thread).filter(|p| !p.is_empty()) {
                        drop(pins.remove(n % pins.len()));
                    }
                }
                Op::Interrupt(pages, byte) => self.interrupt(&pages, byte)?,
            }
        }
        // Every thread gives back what it holds: first those pinned to their CPU by a
        // window (each is running), then the others, each switched in to do it.
        let mut threads: Vec<ThreadId> = (0..THREADS).map(ThreadId).collect();
        threads.sort_by_key(|&t| (!self.holds_pins(t), t.0));
        for thread in threads {
            let holds_locals = self.locals.get(&thread).is_some_and(|h| !h.is_empty());
            if !holds_locals && !self.holds_pins(thread) {
                continue;
            }
            self.machine
                .switch_to_with(thread, self.hooks)
                .map_err(|error| TestCaseError::fail(format!("final switch: {error}")))?;
            drop(self.pins.remove(&thread));
            for n in (0..self.locals.get(&thread).map_or(0, Vec::len)).rev() {
                let (va, p) = self.nth_local(n)?.expect("held");
                self.check(va, p, "final verify")?;
                self.unmap_local(n)?;
            }
            prop_assert_eq!(self.machine.local_mappings(thread).held(), 0);
            prop_assert_eq!(self.machine.migration_disabled(thread), 0);
        }
        for (p, expected) in self.model.iter().enumerate() {
            prop_assert!(
                &common::phys_page(self.machine, self.pages[p].pa) == expected,
                "physical page {} differs from the model",
                p
            );
        }
        let stats = self.local.total_stats();
        prop_assert_eq!(stats.slot_maps, stats.slot_removes);
        prop_assert_eq!(stats.switch_outs, stats.switch_ins);
        prop_assert_eq!(stats.slots_saved, stats.slots_restored);
        prop_assert!(
            stats.switch_outs >= self.coverage.switch_outs,
            "the hooks saw fewer switches of holders than the program made"
        );
        for cpu in 0..CPUS {
            for slot in 0..LOCAL_SLOTS {
                let va = self.local.layout().window_va(cpu, slot);
                prop_assert_eq!(self.machine.window_pte(va), None);
                if check_tlbs {
                    prop_assert!(
                        !self.machine.tlb_holds(cpu, va),
                        "CPU {} still caches local slot {}",
                        cpu,
                        slot
                    );
                }
            }
        }
        Ok(self.coverage)
    }
}

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Programs match the memory model, and they exercise what they are meant to:
/// switches away from threads that hold local slots, and migrations refused for them.
#[test]
fn random_programs_with_context_switches_match_the_memory_model() {
    let mut runner = TestRunner::new(config());
    let totals = std::cell::Cell::new((0u32, 0u32, 0u32));
    let outcome = runner.run(&program(), |ops| {
        let coverage = run(&ops, Breakage::Nothing)?;
        let (cases, switched, refused) = totals.get();
        totals.set((
            cases + 1,
            switched + u32::from(coverage.switch_outs > 0),
            refused + u32::from(coverage.refused_migrations > 0),
        ));
        Ok(())
    });
    if let Err(error) = outcome {
        panic!("{error}");
    }
    let (cases, switched, refused) = totals.get();
    eprintln!(
        "local programs: {cases} cases, {switched} switched away from a holder, {refused} had a \
         migration refused"
    );
    assert!(
        switched * 2 >= cases,
        "too few programs switch holders: {switched} of {cases}"
    );
    assert!(
        refused * 4 >= cases,
        "too few programs try to migrate holders: {refused} of {cases}"
    );
}

/// The property test has teeth: each broken scheduler, backend or platform is caught,
/// the stale translation by the memory model itself.
#[test]
fn random_programs_catch_broken_schedulers_backends_and_platforms() {
    // A migrating holder is caught by quickmap's own check at switch-in where it is
    // built in (`contract-checks`), else by the program's expectation of the scheduler.
    let migrated: &[&str] = if cfg!(feature = "contract-checks") {
        &["quickmap: local mappings migrated"]
    } else {
        &["migrate thread"]
    };
    for (breakage, caught_by) in [
        (Breakage::SkipSwitchIn, &["sim: page fault"][..]),
        (Breakage::SkipSwitchOut, &["sim: PTE busy"][..]),
        (Breakage::SkipInvalidation, &["differs from the model"][..]),
        (Breakage::MigratesAnyway, migrated),
    ] {
        let mut runner = TestRunner::new(Config {
            max_shrink_iters: 256,
            ..config()
        });
        match runner.run(&program(), |ops| run(&ops, breakage).map(drop)) {
            Err(TestError::Fail(reason, program)) => {
                let reason = reason.message().to_string();
                assert!(
                    caught_by.iter().any(|by| reason.contains(by)),
                    "{breakage:?} caught, but not by {caught_by:?}: {reason}"
                );
                eprintln!(
                    "{breakage:?} caught by a program of {} ops: {reason}",
                    program.len()
                );
            }
            Err(other) => panic!("{breakage:?}: {other}"),
            Ok(()) => panic!("{breakage:?} went unnoticed by 256 programs"),
        }
    }
}
