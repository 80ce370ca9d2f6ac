//! What both kinds of instance tell about themselves, written once:
//! [`QuickMap`](crate::QuickMap) (pinned windows) and
//! [`LocalQuickMap`](crate::LocalQuickMap) (thread-local slots) keep the same fields
//! for it.

/// The accessors of an instance, invoked inside its `impl` block. The instance has the
/// fields `platform: P`, `mmu: M`, `routing` (its [`Routing`](crate::routing)),
/// `cpus: &'static [T]` (each `T` with a `counters` field under the feature `stats`)
/// and the region's base in the field named by `base`, with `per_cpu` slots per CPU.
/// The literals:
/// - `slots`: what the docs call its slots (`"windows"`, `"local slots"`);
/// - `stats`: the type of its counts' snapshot (`Stats`, `LocalStats`).
macro_rules! instance_accessors {
    (slots: $slots:literal, base: $base:ident, per_cpu: $per_cpu:ident, stats: $stats:ident $(,)?) => {
        /// Number of CPUs served.
        pub fn cpu_count(&self) -> usize {
            self.cpus.len()
        }

        #[doc = concat!(
                            "Where the ", $slots, " are: slot `s` of CPU `c` is the layout's \
             `window_va(c, s)`."
                        )]
        pub fn layout(&self) -> $crate::WindowLayout {
            $crate::WindowLayout::guarded($crate::VirtAddr(self.$base), $per_cpu)
        }

        /// The direct map the fast path uses, if any.
        pub fn direct_map(&self) -> Option<&$crate::DirectMap> {
            self.routing.direct_map()
        }

        /// The MMU backend.
        pub fn mmu(&self) -> &M {
            &self.mmu
        }

        /// The platform.
        pub fn platform(&self) -> &P {
            &self.platform
        }

        /// Event counts of `cpu`.
        #[cfg(feature = "stats")]
        #[cfg_attr(docsrs, doc(cfg(feature = "stats")))]
        pub fn stats(&self, cpu: usize) -> $crate::$stats {
            self.cpus[cpu].counters.snapshot()
        }

        /// Event counts of all CPUs together.
        #[cfg(feature = "stats")]
        #[cfg_attr(docsrs, doc(cfg(feature = "stats")))]
        pub fn total_stats(&self) -> $crate::$stats {
            self.cpus
                .iter()
                .fold($crate::$stats::default(), |sum, cpu| {
                    sum.plus(cpu.counters.snapshot())
                })
        }
    };
}

pub(crate) use instance_accessors;
