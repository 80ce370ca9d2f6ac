//! Migration control and the switch hooks: a thread with migration disabled
//! stays on its CPU through preemption, yields, sleeps and wake-ups from
//! other CPUs (and moves again once enabled); a bound thread's idle CPU is
//! kicked; nesting; the rules' panics; the hooks run for exactly the threads
//! that ask, on the CPU of the switch.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use super::smp::wait_for;
use crate::arch::clock;
use crate::cpu;
use crate::kernel_test;
use crate::sched::thread::{current_thread, Thread, ThreadState};
use crate::sched::{self, SwitchHooks, SwitchWork, WaitQueue};
use crate::sync::SpinLock;

/// A small deterministic generator (xorshift).
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One thing that gives the scheduler a chance to move the caller: the
/// name of what was done, for messages.
fn disrupt(random: &mut u64) -> &'static str {
    match next_random(random) % 4 {
        0 => {
            sched::yield_now();
            "yield_now"
        }
        1 => {
            sched::sleep(Duration::from_micros(next_random(random) % 2000));
            "sleep"
        }
        // Busy across at least one tick: preempted whenever another thread
        // that may run here is ready.
        _ => {
            clock::delay_us(sched::TICK_PERIOD_US * 3 / 2);
            "a busy loop across a tick"
        }
    }
}

kernel_test! {
    /// Threads (twice as many as CPUs, at least 4) alternate between
    /// phases with migration disabled — yielding, sleeping and being
    /// preempted in busy loops — and phases with it enabled. While disabled
    /// every step finds the thread on the CPU where it disabled migration,
    /// and the scheduler counted no migration; while enabled they do move
    /// (on 2 or more CPUs).
    fn migrate_disabled_threads_stay_on_their_cpu() {
        const ROUNDS: u64 = 4;
        const STEPS: u64 = 12;
        let count = cpu::cpu_count();
        let threads = (2 * count).clamp(4, 16);
        let handles: Vec<_> = (0..threads)
            .map(|index| {
                sched::spawn("migrate-off", move || {
                    let me = current_thread();
                    let mut random = 0x9e37_79b9_7f4a_7c15 ^ (index as u64 + 1);
                    let mut enabled_migrations = 0;
                    for round in 0..ROUNDS {
                        sched::migrate_disable();
                        let home = cpu::current_cpu_index();
                        let migrations_before = me.migrations();
                        for step in 0..STEPS {
                            let what = disrupt(&mut random);
                            let now = cpu::current_cpu_index();
                            assert_eq!(
                                now, home,
                                "thread {index} round {round} step {step}: migration disabled on CPU {home}, but after {what} it runs on CPU {now}"
                            );
                            assert_eq!(sched::migrate_disable_count(), 1);
                        }
                        let migrated = me.migrations() - migrations_before;
                        assert_eq!(
                            migrated, 0,
                            "thread {index} round {round}: migration disabled on CPU {home}, yet the scheduler switched it in on another CPU {migrated} time(s)"
                        );
                        sched::migrate_enable();
                        let migrations_before = me.migrations();
                        for _ in 0..STEPS / 2 {
                            disrupt(&mut random);
                        }
                        enabled_migrations += me.migrations() - migrations_before;
                    }
                    enabled_migrations
                })
            })
            .collect();
        let enabled_migrations: u64 = handles.into_iter().map(|handle| handle.join()).sum();
        if count < 2 {
            crate::println!("qmk: note: migration while enabled needs 2 CPUs; not checked on 1");
            return;
        }
        assert!(
            enabled_migrations > 0,
            "{threads} threads on {count} CPUs never migrated while migration was enabled: the check above proves nothing"
        );
    }
}

kernel_test! {
    /// A thread with migration disabled blocks on a wait queue and is woken
    /// from another CPU: it resumes on its own CPU — while that CPU is busy
    /// with a hog (other CPUs idle, so an unbound thread would run there),
    /// and while it is idle, in which case the wake-up kicks it with a
    /// reschedule IPI rather than leaving the thread for its next tick. On 3
    /// or more CPUs the home CPU is not CPU 0, so a lower idle CPU exists
    /// and a wake-up that kicked "the first idle CPU" would miss it.
    fn wake_up_from_another_cpu_resumes_on_the_home_cpu() {
        const ROUNDS: u64 = 16;
        const HOG_ROUNDS: u64 = ROUNDS / 2;
        let count = cpu::cpu_count();
        if count < 2 {
            crate::test_harness::skip("needs 2 CPUs: on one, every wake-up comes from the home CPU");
            return;
        }
        struct Shared {
            turn: AtomicU64,
            queue: WaitQueue,
            ack: WaitQueue,
            home: AtomicUsize,
            sleeper: SpinLock<Option<Arc<Thread>>>,
            ipis_before_wake: AtomicU64,
            stop_hog: AtomicBool,
        }
        let shared = Arc::new(Shared {
            turn: AtomicU64::new(0),
            queue: WaitQueue::new(),
            ack: WaitQueue::new(),
            home: AtomicUsize::new(usize::MAX),
            sleeper: SpinLock::new(None),
            ipis_before_wake: AtomicU64::new(0),
            stop_hog: AtomicBool::new(false),
        });
        // Keeps CPU 0 busy until the sleeper has settled elsewhere.
        let hog0 = (count >= 3).then(|| {
            let shared = shared.clone();
            sched::spawn_pinned("migrate-hog0", 0, move || {
                while shared.home.load(Ordering::Acquire) == usize::MAX {
                    core::hint::spin_loop();
                }
            })
        });
        let sleeper = {
            let shared = shared.clone();
            sched::spawn("migrate-sleeper", move || {
                let home = loop {
                    sched::migrate_disable();
                    let here = cpu::current_cpu_index();
                    if here != 0 || count < 3 {
                        break here;
                    }
                    sched::migrate_enable();
                    sched::yield_now();
                };
                let me = current_thread();
                *shared.sleeper.lock() = Some(me.clone());
                shared.home.store(home, Ordering::Release);
                let migrations_before = me.migrations();
                for round in 0..ROUNDS {
                    shared
                        .queue
                        .wait_until(|| shared.turn.load(Ordering::Acquire) == 2 * round + 1);
                    let now = cpu::current_cpu_index();
                    assert_eq!(
                        now, home,
                        "round {round}: migration disabled on CPU {home}, woken from another CPU, resumed on CPU {now}"
                    );
                    if round >= HOG_ROUNDS {
                        let before = shared.ipis_before_wake.load(Ordering::Acquire);
                        let after = sched::reschedule_ipis_received(home);
                        assert!(
                            after > before,
                            "round {round}: woken while its CPU {home} was idle, but CPU {home} took no reschedule IPI ({before} before the wake-up, {after} now): it ran at a tick instead"
                        );
                    }
                    shared.turn.store(2 * round + 2, Ordering::Release);
                    shared.ack.wake_all();
                }
                let migrated = me.migrations() - migrations_before;
                sched::migrate_enable();
                assert_eq!(migrated, 0, "the sleeper migrated {migrated} time(s) with migration disabled");
            })
        };
        wait_for("the sleeper to pick its CPU", 5, || {
            shared.home.load(Ordering::Acquire) != usize::MAX
        });
        let home = shared.home.load(Ordering::Acquire);
        if let Some(hog0) = hog0 {
            hog0.join();
        }
        let waker_cpu = (home + 1) % count;
        let hog = {
            let shared = shared.clone();
            sched::spawn_pinned("migrate-hog", home, move || {
                while !shared.stop_hog.load(Ordering::Acquire) {
                    core::hint::spin_loop();
                }
            })
        };
        let waker = {
            let shared = shared.clone();
            sched::spawn_pinned("migrate-waker", waker_cpu, move || {
                let sleeper = shared.sleeper.lock().clone().expect("the sleeper published itself");
                let mut hog = Some(hog);
                for round in 0..ROUNDS {
                    if round == HOG_ROUNDS {
                        shared.stop_hog.store(true, Ordering::Release);
                        hog.take().expect("the hog runs until now").join();
                    }
                    wait_for("the sleeper to block", 5, || sleeper.state() == ThreadState::Parked);
                    if round >= HOG_ROUNDS {
                        // Parked and switched out in one step under the
                        // scheduler lock, so its CPU runs its idle thread now.
                        clock::delay_us(200);
                    }
                    shared
                        .ipis_before_wake
                        .store(sched::reschedule_ipis_received(home), Ordering::Release);
                    shared.turn.store(2 * round + 1, Ordering::Release);
                    shared.queue.wake_all();
                    shared
                        .ack
                        .wait_until(|| shared.turn.load(Ordering::Acquire) == 2 * round + 2);
                }
            })
        };
        waker.join();
        sleeper.join();
    }
}

/// Waits (5 s at most) until idle CPU `target` is one a wake-up would kick.
fn wait_until_kickable(round: usize, target: usize) {
    let deadline = clock::read() + 5 * clock::hz();
    while sched::kickable_idle_cpus() & (1 << target) == 0 {
        assert!(
            clock::read() < deadline,
            "round {round}: CPU {target}, kicked for a thread and idle again, is not kickable 5 s later (idle CPUs a wake-up would kick: {:#b}): a thread pinned to it would wait for its tick",
            sched::kickable_idle_cpus()
        );
        core::hint::spin_loop();
    }
}

kernel_test! {
    /// A CPU kicked for a thread that another CPU then took goes back to
    /// idle kickable: a thread pinned to it later gets it out of `hlt` with
    /// a reschedule IPI, not at its next tick.
    fn idle_cpu_kicked_in_vain_is_kicked_again_for_its_pinned_thread() {
        const ROUNDS: usize = 20;
        let count = cpu::cpu_count();
        if count < 2 {
            crate::test_harness::skip("needs 2 CPUs: kicks go to other CPUs");
            return;
        }
        // This thread stays here; every other CPU idles.
        sched::migrate_disable();
        let here = cpu::current_cpu_index();
        // The lowest idle CPU: the one every unbound wake-up kicks.
        let target = if here == 0 { 1 } else { 0 };
        for round in 0..ROUNDS {
            // The bait's kick goes to `target` only if `target` is kickable
            // when it is queued. Not a given at round 0: the previous test's
            // last wake-up may have kicked `target` for a thread another CPU
            // took, and if `target` counted that IPI before `before_bait` but
            // its switch (which makes it kickable again) was still to come
            // when the bait was queued — a vCPU stall under TCG — the bait
            // kicked another CPU and no IPI after `before_bait` would come.
            wait_until_kickable(round, target);
            let before_bait = sched::reschedule_ipis_received(target);
            // Queued and kicked to `target`; yielding makes this CPU take it
            // first, most of the time.
            let bait = sched::spawn("migrate-bait", || {});
            sched::yield_now();
            bait.join();
            wait_for("the kicked CPU to take its reschedule IPI", 5, || {
                sched::reschedule_ipis_received(target) > before_bait
            });
            // Taking the IPI is not the end of its switch (under TCG a vCPU
            // may stall in between for milliseconds): the probe below would
            // be picked by that switch, kicked or not. Kickable again means
            // the switch is over — and that is what the bug lost.
            wait_until_kickable(round, target);
            let before_probe = sched::reschedule_ipis_received(target);
            let probe = sched::spawn_pinned("migrate-probe", target, move || {
                sched::reschedule_ipis_received(target)
            });
            let when_run = probe.join();
            assert!(
                when_run > before_probe,
                "round {round}: a thread pinned to idle CPU {target} ran there without a reschedule IPI ({before_probe} IPIs before it was spawned, {when_run} when it ran): CPU {target} was not kicked"
            );
        }
        sched::migrate_enable();
    }
}

kernel_test! {
    /// A thread bound to a CPU joins a child pinned to the same CPU: the
    /// child's exit, on that CPU, wakes the joiner while the CPU turns idle,
    /// and the wake-up kicks the CPU itself (a self-IPI taken as the exit
    /// switch returns) instead of leaving the joiner to the next tick.
    fn wake_up_of_a_thread_bound_to_the_waking_idle_cpu_kicks_itself() {
        const ROUNDS: usize = 10;
        let target = cpu::cpu_count() - 1;
        let parent = sched::spawn_pinned("migrate-parent", target, move || {
            let me = current_thread();
            let mut exercised = 0;
            for round in 0..ROUNDS {
                let parent = me.clone();
                let before = sched::reschedule_ipis_received(target);
                // Queued behind us on our CPU: it runs once we block in join.
                let child = sched::spawn_pinned("migrate-child", target, move || {
                    parent.state() == ThreadState::Parked
                });
                let parent_was_blocked = child.join();
                let after = sched::reschedule_ipis_received(target);
                if !parent_was_blocked {
                    // A tick let the child run before the join: nothing to wake.
                    continue;
                }
                exercised += 1;
                assert!(
                    after > before,
                    "round {round}: the child's exit on CPU {target} woke its joiner, bound to that CPU, but CPU {target} took no reschedule IPI ({before} before, {after} after): the joiner waited for a tick"
                );
            }
            exercised
        });
        let exercised = parent.join();
        assert!(exercised > 0, "in {ROUNDS} rounds the child never found its parent blocked in join");
    }
}

kernel_test! {
    /// `migrate_disable` nests: the thread stays bound until the last
    /// `migrate_enable`, and the count follows every call.
    fn migrate_disable_nests() {
        let handles: Vec<_> = (0..(2 * cpu::cpu_count()).clamp(2, 8))
            .map(|index| {
                sched::spawn("migrate-nest", move || {
                    let mut random = 0x2545_f491_4f6c_dd1d ^ (index as u64 + 1);
                    assert_eq!(sched::migrate_disable_count(), 0);
                    sched::migrate_disable();
                    let home = cpu::current_cpu_index();
                    sched::migrate_disable();
                    sched::migrate_disable();
                    assert_eq!(sched::migrate_disable_count(), 3);
                    for depth in (1..=3).rev() {
                        for step in 0..6 {
                            let what = disrupt(&mut random);
                            let now = cpu::current_cpu_index();
                            assert_eq!(
                                now, home,
                                "thread {index}, nesting {depth}, step {step}: bound to CPU {home}, after {what} on CPU {now}"
                            );
                        }
                        sched::migrate_enable();
                        assert_eq!(sched::migrate_disable_count(), depth - 1);
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.join();
        }
    }
}

kernel_test! {
    #[should_panic(expected = "migrate_enable without migrate_disable: thread")]
    fn migrate_enable_without_disable_panics() {
        sched::migrate_enable();
    }
}

kernel_test! {
    #[should_panic(expected = "thread exited with migration disabled: thread")]
    fn thread_exiting_with_migration_disabled_panics() {
        let leaky = sched::spawn("migrate-leak", || {
            sched::migrate_disable();
            sched::migrate_disable();
        });
        leaky.join();
    }
}

kernel_test! {
    #[should_panic(expected = "(migrate-leak-count), count 2")]
    fn exit_panic_names_the_thread_and_the_count() {
        let leaky = sched::spawn("migrate-leak-count", || {
            sched::migrate_disable();
            sched::migrate_disable();
        });
        leaky.join();
    }
}

/// What the test hooks saw.
struct HookLog {
    /// The thread whose switches count.
    worker: AtomicU64,
    outs: AtomicU64,
    ins: AtomicU64,
    /// Calls for any other thread (none has the test's bit).
    strays: AtomicU64,
    /// CPU of the last call of each hook, and whether the thread passed in
    /// was already running (it must not be).
    out_cpu: AtomicUsize,
    in_cpu: AtomicUsize,
    in_running: AtomicU64,
}

static HOOK_LOG: HookLog = HookLog {
    worker: AtomicU64::new(0),
    outs: AtomicU64::new(0),
    ins: AtomicU64::new(0),
    strays: AtomicU64::new(0),
    out_cpu: AtomicUsize::new(usize::MAX),
    in_cpu: AtomicUsize::new(usize::MAX),
    in_running: AtomicU64::new(0),
};

/// (switch-outs, switch-ins) so far, read together: no switch between.
fn hook_counts() -> (u64, u64) {
    let _no_switch = cpu::PreemptGuard::new();
    (
        HOOK_LOG.outs.load(Ordering::Acquire),
        HOOK_LOG.ins.load(Ordering::Acquire),
    )
}

fn test_switch_out(thread: &Thread) {
    if thread.id() != HOOK_LOG.worker.load(Ordering::Acquire) {
        HOOK_LOG.strays.fetch_add(1, Ordering::AcqRel);
        return;
    }
    HOOK_LOG
        .out_cpu
        .store(cpu::current_cpu_index(), Ordering::Release);
    HOOK_LOG.outs.fetch_add(1, Ordering::AcqRel);
}

fn test_switch_in(thread: &Thread) {
    if thread.id() != HOOK_LOG.worker.load(Ordering::Acquire) {
        HOOK_LOG.strays.fetch_add(1, Ordering::AcqRel);
        return;
    }
    if thread.state() == ThreadState::Running {
        HOOK_LOG.in_running.fetch_add(1, Ordering::AcqRel);
    }
    HOOK_LOG
        .in_cpu
        .store(cpu::current_cpu_index(), Ordering::Release);
    HOOK_LOG.ins.fetch_add(1, Ordering::AcqRel);
}

/// Blocks the calling thread (`me`) until a helper thread, which waits to
/// see it parked, wakes it: the caller is certain to have switched out.
///
/// Why not `sleep`: a sleep switches out only if it parks before its
/// deadline passes. Under TCG (more vCPUs than host CPUs, neighbours
/// hammering the scheduler lock) a vCPU — or the holder of the scheduler
/// lock it spins on — can be descheduled by the host for longer than a
/// 500 µs sleep between `sleep` reading the clock and its park taking the
/// lock; a tick on another CPU then expires the still-running sleeper,
/// leaving a wake permit, and the park returns at once without a switch.
/// That is `sleep`'s contract (the deadline had passed), yet it failed
/// this test in 2 of 28 aarch64 boots at 4 CPUs on a 2-CPU host ("the
/// thread slept with switch work, but no switch-out hook ran"). Parked
/// is set by the switch itself, under the scheduler lock, so the helper's
/// wake-up finds the caller switched out, whatever the host's timing.
fn block_until_woken_from_another_thread(me: &Arc<Thread>) {
    let woken = Arc::new(AtomicBool::new(false));
    let queue = Arc::new(WaitQueue::new());
    let waker = {
        let (me, woken, queue) = (me.clone(), woken.clone(), queue.clone());
        sched::spawn("hook-waker", move || {
            wait_for("the hook worker to block", 5, || {
                me.state() == ThreadState::Parked
            });
            woken.store(true, Ordering::Release);
            queue.wake_all();
        })
    };
    queue.wait_until(|| woken.load(Ordering::Acquire));
    waker.join();
}

kernel_test! {
    /// The switch hooks run for a thread that has its work bit, once per
    /// switch out and once per switch in, on the CPU of the switch, before
    /// the incoming thread runs; never for threads without the bit (busy
    /// neighbours switch all the while); not after the bit is removed; not
    /// after the hooks are removed.
    fn switch_hooks_run_for_exactly_the_threads_with_work() {
        const SLEEPS: u64 = 10;
        sched::set_switch_hooks(
            SwitchWork::KernelTest,
            Some(SwitchHooks {
                switch_out: test_switch_out,
                switch_in: test_switch_in,
            }),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let neighbours: Vec<_> = (0..cpu::cpu_count() + 1)
            .map(|_| {
                let stop = stop.clone();
                sched::spawn("hook-neighbour", move || {
                    while !stop.load(Ordering::Acquire) {
                        sched::yield_now();
                    }
                })
            })
            .collect();
        let worker = sched::spawn("hook-worker", || {
            HOOK_LOG.worker.store(sched::thread::current_thread_id(), Ordering::Release);
            sched::migrate_disable();
            let home = cpu::current_cpu_index();
            let me = current_thread();
            sched::add_switch_work(SwitchWork::KernelTest);
            assert_eq!(current_thread().switch_work(), SwitchWork::KernelTest.bit());
            for block in 0..SLEEPS {
                let (outs, _) = hook_counts();
                block_until_woken_from_another_thread(&me);
                let (outs_after, ins_after) = hook_counts();
                assert!(outs_after > outs, "block {block}: the thread blocked with switch work, but no switch-out hook ran");
                assert_eq!(
                    ins_after, outs_after,
                    "block {block}: every switch-out of a running thread is followed by one switch-in"
                );
                let (out_cpu, in_cpu) = (HOOK_LOG.out_cpu.load(Ordering::Acquire), HOOK_LOG.in_cpu.load(Ordering::Acquire));
                assert!(
                    out_cpu == home && in_cpu == home,
                    "block {block}: bound to CPU {home}, the hooks ran on CPU {out_cpu} (out) and {in_cpu} (in)"
                );
            }
            sched::remove_switch_work(SwitchWork::KernelTest);
            let frozen = hook_counts();
            for _ in 0..SLEEPS {
                sched::sleep(Duration::from_micros(500));
            }
            assert_eq!(hook_counts(), frozen, "hooks (outs, ins) ran after the thread removed its switch work");
            sched::migrate_enable();
        });
        worker.join();
        stop.store(true, Ordering::Release);
        for neighbour in neighbours {
            neighbour.join();
        }
        let strays = HOOK_LOG.strays.load(Ordering::Acquire);
        assert_eq!(strays, 0, "switch hooks ran {strays} time(s) for threads without switch work");
        let in_running = HOOK_LOG.in_running.load(Ordering::Acquire);
        assert_eq!(in_running, 0, "the switch-in hook saw its thread already running {in_running} time(s)");

        // Hooks removed: a thread with the bit switches without them.
        sched::set_switch_hooks(SwitchWork::KernelTest, None);
        let frozen = hook_counts();
        let late = sched::spawn("hook-late", || {
            HOOK_LOG.worker.store(sched::thread::current_thread_id(), Ordering::Release);
            sched::add_switch_work(SwitchWork::KernelTest);
            for _ in 0..SLEEPS {
                sched::sleep(Duration::from_micros(500));
            }
            sched::remove_switch_work(SwitchWork::KernelTest);
        });
        late.join();
        assert_eq!(hook_counts(), frozen, "hooks (outs, ins) ran after set_switch_hooks(.., None)");
    }
}

kernel_test! {
    #[should_panic(expected = "switch work changed in an interrupt handler")]
    fn switch_work_from_an_interrupt_handler_panics() {
        fn add_in_tick() {
            sched::add_switch_work(SwitchWork::KernelTest);
        }
        sched::set_tick_hook(Some(add_in_tick));
        sched::sleep(Duration::from_millis(50));
    }
}
