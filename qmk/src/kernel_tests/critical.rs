//! Critical sections, deferred preemption, might_sleep and spin locks.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use crate::arch::interrupts::interrupts_enabled;
use crate::cpu::{self, PreemptGuard};
use crate::kernel_test;
use crate::sched::{self, critical_depth, critical_enter, critical_exit};
use crate::sync::{self, SpinLock};

/// Ticks this CPU has taken (read inside a critical section).
fn ticks_here(guard: &PreemptGuard) -> u64 {
    cpu::this_cpu(guard).ticks()
}

kernel_test! {
    /// Inside a critical section spanning several ticks, with more busy
    /// threads than CPUs competing, the thread's CPU never changes.
    fn cpu_is_stable_inside_critical_section() {
        static STOP: AtomicBool = AtomicBool::new(false);
        STOP.store(false, Ordering::Release);
        let competitors: Vec<_> = (0..cpu::cpu_count())
            .map(|_| {
                sched::spawn("competitor", || {
                    while !STOP.load(Ordering::Acquire) {
                        core::hint::spin_loop();
                    }
                })
            })
            .collect();
        let checker = sched::spawn("checker", || {
            for _ in 0..3 {
                let guard = PreemptGuard::new();
                let start_cpu = cpu::current_cpu_index();
                let start_ticks = ticks_here(&guard);
                while ticks_here(&guard) < start_ticks + 3 {
                    let now = cpu::current_cpu_index();
                    assert_eq!(now, start_cpu, "the CPU changed inside a critical section");
                }
                drop(guard);
                sched::yield_now();
            }
        });
        checker.join();
        STOP.store(true, Ordering::Release);
        for competitor in competitors {
            competitor.join();
        }
    }
}

kernel_test! {
    /// A tick inside a critical section makes the preemption owed: a
    /// thread pinned to the same CPU makes no progress until
    /// `critical_exit`, which performs the preemption (counted) and lets it run.
    fn owed_preemption_happens_at_critical_exit() {
        static STOP: AtomicBool = AtomicBool::new(false);
        static COMPETITOR_STEPS: AtomicU64 = AtomicU64::new(0);
        STOP.store(false, Ordering::Release);
        let target = cpu::cpu_count() - 1;
        let competitor = sched::spawn_pinned("competitor", target, || {
            while !STOP.load(Ordering::Acquire) {
                COMPETITOR_STEPS.fetch_add(1, Ordering::Relaxed);
            }
        });
        let tester = sched::spawn_pinned("tester", target, move || {
            while COMPETITOR_STEPS.load(Ordering::Relaxed) == 0 {
                sched::yield_now();
            }
            critical_enter();
            let this = cpu::cpu(target);
            let steps_before = COMPETITOR_STEPS.load(Ordering::Relaxed);
            let start_ticks = this.ticks();
            while this.ticks() < start_ticks + 2 {
                core::hint::spin_loop();
            }
            assert!(
                this.preemption_owed(),
                "a tick inside the critical section leaves a preemption owed"
            );
            assert_eq!(
                COMPETITOR_STEPS.load(Ordering::Relaxed),
                steps_before,
                "the competitor on the same CPU ran inside the critical section"
            );
            let deferred_before = this.deferred_preemptions();
            critical_exit();
            assert_eq!(
                this.deferred_preemptions(),
                deferred_before + 1,
                "critical_exit performed the owed preemption"
            );
            // The switch to the competitor happened in `critical_exit` (counted
            // above). Whether it got through a loop iteration before a tick brought
            // the tester back depends on the host: with more vCPUs than host cores a
            // vCPU can be descheduled for longer than a tick, and the pending tick then
            // preempts the competitor at once. So allow it a few more time slices.
            let deadline = this.ticks() + 250;
            while COMPETITOR_STEPS.load(Ordering::Relaxed) == steps_before {
                assert!(
                    this.ticks() < deadline,
                    "the competitor never ran after the owed preemption"
                );
                sched::yield_now();
            }
        });
        tester.join();
        STOP.store(true, Ordering::Release);
        competitor.join();
    }
}

kernel_test! {
    /// Blocking inside a critical section is refused by might_sleep.
    #[should_panic(expected = "would block inside a critical section")]
    fn might_sleep_in_critical_section_panics() {
        critical_enter();
        sched::sleep(Duration::from_millis(1));
    }
}

static REFUSE_SLEEP: AtomicBool = AtomicBool::new(false);

fn refusing_check() {
    if REFUSE_SLEEP.load(Ordering::Acquire) {
        panic!("test check: sleep refused by a registered check");
    }
}

kernel_test! {
    /// A registered might_sleep check runs first, so its message wins over
    /// the generic critical-section one.
    #[should_panic(expected = "sleep refused by a registered check")]
    fn registered_might_sleep_check_wins() {
        sched::register_might_sleep_check(refusing_check);
        REFUSE_SLEEP.store(true, Ordering::Release);
        critical_enter();
        sched::sleep(Duration::from_millis(1));
    }
}

kernel_test! {
    /// Holding a spin lock while blocking is refused too (with the count).
    #[should_panic(expected = "spin locks held 1")]
    fn might_sleep_under_spin_lock_panics() {
        static LOCK: SpinLock<u32> = SpinLock::new(0);
        let _held = LOCK.lock();
        sched::sleep(Duration::from_millis(1));
    }
}

kernel_test! {
    /// Spin locks disable preemption and count themselves; `lock_irq` also
    /// disables interrupts and restores them; critical sections nest.
    fn spin_lock_counts_and_disables_preemption() {
        static LOCK: SpinLock<u64> = SpinLock::new(0);
        assert_eq!(critical_depth(), 0);
        assert_eq!(sync::spin_locks_held(), 0);
        let acquisitions_before = sync::lock_acquisitions();
        {
            let mut value = LOCK.lock();
            *value += 1;
            assert_eq!(critical_depth(), 1);
            assert_eq!(sync::spin_locks_held(), 1);
            assert!(interrupts_enabled());
        }
        {
            let _value = LOCK.lock_irq();
            assert!(!interrupts_enabled());
            assert_eq!(sync::spin_locks_held(), 1);
            critical_enter();
            assert_eq!(critical_depth(), 2);
            critical_exit();
        }
        assert!(interrupts_enabled());
        assert_eq!(critical_depth(), 0);
        assert_eq!(sync::spin_locks_held(), 0);
        assert!(sync::lock_acquisitions() >= acquisitions_before + 2);
        assert_eq!(*LOCK.lock(), 1);
    }
}
