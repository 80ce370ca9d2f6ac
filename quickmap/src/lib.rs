//! # quickmap — fast, temporary, per-CPU kernel mappings of single physical pages
//!
//! FreeBSD's `pmap_quick_enter_page(9)` / `pmap_quick_remove_page(9)` for Rust kernels.
//! A kernel that cannot (or will not) keep all of physical memory mapped still needs to
//! reach any page for a moment: to zero it, copy it, or bounce an I/O buffer through it.
//! quickmap maps the page at a window reserved for the current CPU, with preemption
//! disabled, and takes the mapping down again with one local TLB invalidation: no lock,
//! no inter-processor interrupt, no atomic instruction shared between CPUs.
//!
//! ## The contract (from the man page, and where quickmap goes further)
//!
//! - [`QuickMap::enter`] *"accepts a single page m, and enters this page into a
//!   preallocated address in kernel virtual address space"*, and *"always returns a valid
//!   address"*. It never sleeps. Misuse panics with a message that names the rule (see
//!   [`rules`](crate#rules)).
//! - [`QuickMap::remove`] *"removes a mapping previously created ... making the KVA frame
//!   available for reuse"*. By default ([`Strict`]) the window is also **invalidated**:
//!   the old address faults from then on (FreeBSD i386 leaves a stale TLB entry behind).
//!   A [`Deferred`] instance trades that for speed: write-back windows are invalidated
//!   by one local full flush per pool of windows, and a page entered again while a free
//!   window still maps it takes that window back with no page-table write at all (see
//!   [`invalidation`] for when to pick which).
//! - *"it must disable preemption on the local CPU"*: a window path `enter` calls
//!   [`Platform::critical_enter`], its `remove` calls [`Platform::critical_exit`]. So,
//!   *"it is therefore not safe ... to sleep ... while holding these mappings"*; kernels
//!   call [`QuickMap::assert_may_sleep`] from their `might_sleep()` to catch it.
//! - *"calls to pmap_quick_enter_page() must not be nested"*: quickmap instead gives each
//!   CPU `N` windows (at least 4 recommended), taken and given back in **any order**, so
//!   Rust drop order is fine and an interrupt handler can map a page while the thread it
//!   interrupted holds its own. Running out is a panic, never a silent reuse.
//! - *"safe ... under all types of locks except spin mutexes ... in all thread contexts
//!   except primary interrupt context"*: FreeBSD needs those exclusions only because
//!   some of its implementations lock inside. quickmap takes no lock, so it works under
//!   spin locks, with interrupts disabled, and in interrupt handlers
//!   ([`ContextPolicy::Anywhere`], the default; a kernel whose
//!   [`Platform::CONTEXT_POLICY`] is [`ContextPolicy::FreeBsd`] gets the man page's
//!   rules enforced word for word).
//! - *"The page must not be swapped or otherwise reused while the mapping is active"*:
//!   [`HeldPage`]; the safe guard [`Mapping`] borrows the page, so the borrow checker
//!   enforces it.
//! - Pages inside the kernel's direct map with the write-back attribute come back at
//!   their direct-map address: no page-table write, no invalidation, nothing pinned.
//!   Other attributes (write-combining, uncached, ...) always take a window, so a frame is
//!   never mapped with two cache attributes at once.
//!
//! ## Three layers
//!
//! 1. FreeBSD style: [`QuickMap::enter`] returns an address, [`QuickMap::remove`]
//!    (unsafe: the caller vouches that the address is its own) takes it back; with the
//!    feature `contract-checks` quickmap checks what it can of that vouching.
//! 2. A guard: [`QuickMap::map`] returns a [`Mapping`] (`#[must_use]`, not `Send`, borrows
//!    the page) that removes itself on drop and moves bytes without ever lending out a
//!    Rust reference to memory that may be mapped elsewhere too. It carries its window,
//!    so its drop checks nothing it cannot break: the leanest path.
//! 3. Page work: [`QuickMap::zero_page`], [`QuickMap::copy_page`],
//!    [`QuickMap::copy_to_pages`] and [`QuickMap::copy_from_pages`] (`uiomove_fromphys`,
//!    busdma bounce copies).
//!
//! Beyond one page: [`QuickMap::map_pages`] (scattered held pages) and
//! [`QuickMap::map_range`] (a physically contiguous [`HeldRange`]) return a [`View`]:
//! `K` pages at consecutive addresses of this CPU (up to `2 * N - 1` of them), with an
//! unmapped guard page after the last, pinned and removed as one, like COCONUT-SVSM's
//! `PerCPUPageMappingGuard`. A view lays its pages over adjacent windows and the guard
//! pages between them (the layout is unchanged; see
//! [`WindowLayout`](WindowLayout#views-several-pages-side-by-side)), and exists on
//! [`Strict`] instances only (see [`View`]).
//!
//! ## Example
//!
//! On the host, the simulated machine of [`sim`] (feature `sim`) stands in for a kernel:
//!
#![cfg_attr(feature = "sim", doc = "```")]
#![cfg_attr(not(feature = "sim"), doc = "```ignore")]
//! use quickmap::sim::{SimConfig, SimMachine, SimPage};
//!
//! let machine = SimMachine::new(SimConfig::default());
//! let quickmap = machine.quickmap::<4>();
//! let (source, destination) = (SimPage::high_memory(&machine, 0), SimPage::high_memory(&machine, 1));
//!
//! // The guard API.
//! let mapping = quickmap.map(&source);
//! mapping.fill(0, 4096, 0xAB);
//! drop(mapping);
//!
//! // Page work on top of it: two windows at once.
//! quickmap.copy_page(&source, &destination);
//!
//! // The FreeBSD API.
//! let va = quickmap.enter(&destination);
//! let mut byte = [0u8];
//! // SAFETY: `va` maps `destination` until the remove below.
//! unsafe { quickmap::Mmu::read_bytes(quickmap.mmu(), va.add(4095), &mut byte) };
//! assert_eq!(byte, [0xAB]);
//! // SAFETY: `va` came from `enter` just above, in this context, and is not used again.
//! unsafe { quickmap.remove(va) };
//! assert_eq!(quickmap.windows_in_use(0), 0);
//! ```
//!
//! ## What a kernel provides
//!
//! - [`Platform`]: the current CPU and nestable critical sections (and, optionally, what
//!   context it is in and which [`ContextPolicy`] it wants);
//! - [`Mmu`]: set and clear a window's page-table entry, invalidate one address locally,
//!   and (for [`Deferred`] instances) flush the local TLB (backends for x86_64 and
//!   aarch64 are in [`arch::x86_64`] and [`arch::aarch64`]);
//! - a [`Config`]: where the window region starts (its layout, with a guard page after
//!   each window, follows from `N`: see [`WindowLayout::guarded`]; its size for a CPU
//!   count is [`WindowLayout::region_len`]), the direct map if any, the physical address
//!   limit; the [`Mmu`] must write the entries of the guard
//!   pages too, which [`View`]s map;
//! - per-CPU state: a `static` array of [`CpuWindows`].
//!
//! ## Rules
//!
//! Each rule that can be broken at run time is one function in `src/rules.rs`, and its
//! panic message starts with `quickmap: <rule>`: `nesting beyond capacity`, `sleep while
//! mapped`, `unaligned page`, `page out of range`, `access outside the page`, `copy_page
//! needs two windows`, for views `view size`, `no room for the view` and `access outside
//! the view`, the two context rules of [`ContextPolicy::FreeBsd`], and, with
//! `contract-checks`, the rules of the unsafe contracts: `double remove`, `remove on
//! another CPU`, `remove of a foreign address`, `unknown CPU`. Each message ends with what
//! the caller should do, and each panicking entry point is `#[track_caller]`, so the
//! message points at the caller's line. A caller that can fall back when its CPU's
//! windows are all in use calls [`QuickMap::try_map`] or [`QuickMap::try_enter`], which
//! return [`EnterError`] instead of panicking ([`QuickMap::try_map_pages`] and
//! [`QuickMap::try_map_range`] return [`ViewError`]).
//!
//! ## Features
//!
//! - `contract-checks` (default): the rules of the unsafe contracts above, like FreeBSD's
//!   `INVARIANTS`. Without it, `remove` trusts its caller and costs a few instructions
//!   less; what keeps the safe API sound is checked in every build.
//! - `stats`: per-CPU event counters ([`QuickMap::stats`]); exact, and free of `lock`
//!   instructions on the window path.
//! - `sim` (implies `std`): the simulated machine for host tests.
//! - `zerocopy`: [`Mapping::read_obj`] and [`Mapping::write_obj`] for plain-data types
//!   (zerocopy's `FromBytes` and `IntoBytes`); `no_std`, no allocation.
//! - `x86_64`: [interoperation] with the `x86_64` crate: its `PhysAddr`, `VirtAddr` and
//!   `PhysFrame` convert to quickmap's addresses, a held `PhysFrame` is a [`HeldPage`]
//!   (`HeldFrame`), and the x86_64 backend is built from the window region's
//!   `&'static mut PageTable`; `no_std`, stable, none of that crate's instructions.
//! - `std`: links `std` (only `sim` needs it).
//!
//! The example above needs `sim`, quickmap's integration tests `sim` and `stats`:
//! `cargo test --all-features` runs them all.
//!
// Links to feature-gated items: to the item when the feature is on (docs.rs documents
// all features), else to the list above, so no build of the docs has a broken link.
#![cfg_attr(feature = "sim", doc = "[`sim`]: crate::sim")]
#![cfg_attr(not(feature = "sim"), doc = "[`sim`]: #features")]
#![cfg_attr(feature = "stats", doc = "[`QuickMap::stats`]: crate::QuickMap::stats")]
#![cfg_attr(not(feature = "stats"), doc = "[`QuickMap::stats`]: #features")]
#![cfg_attr(feature = "zerocopy", doc = "[`Mapping::read_obj`]: Mapping::read_obj")]
#![cfg_attr(not(feature = "zerocopy"), doc = "[`Mapping::read_obj`]: #features")]
#![cfg_attr(
    feature = "zerocopy",
    doc = "[`Mapping::write_obj`]: Mapping::write_obj"
)]
#![cfg_attr(not(feature = "zerocopy"), doc = "[`Mapping::write_obj`]: #features")]
#![cfg_attr(
    feature = "x86_64",
    doc = "[interoperation]: crate::arch::x86_64::interop"
)]
#![cfg_attr(not(feature = "x86_64"), doc = "[interoperation]: #features")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

mod access;
mod addr;
pub mod arch;
mod deferred;
mod guard;
pub mod invalidation;
mod layout;
mod mmu;
mod page;
mod page_ops;
mod percpu;
mod platform;
mod quick_map;
mod rules;
#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;
mod stats;
pub mod untyped;
mod view;

pub use addr::{PhysAddr, VirtAddr, PAGE_SIZE};
pub use guard::{Mapping, Mismatch};
pub use invalidation::{Deferred, Invalidation, Strict};
pub use layout::{ConfigError, DirectMap, WindowLayout, PTES_PER_CACHE_LINE};
pub use mmu::{Mmu, Window};
pub use page::{HeldPage, HeldRange, MemoryAttribute};
pub use percpu::CpuWindows;
pub use platform::{ContextPolicy, ExecutionContext, Platform};
pub use quick_map::{Config, EnterError, QuickMap};
pub use stats::Stats;
pub use view::{View, ViewError};
