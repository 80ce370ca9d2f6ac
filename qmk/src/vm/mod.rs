//! The virtual-memory layer's view of physical pages, and the quick mappings
//! that reach them (quickmap, wired to this kernel).
//!
//! - [`page`]: `VmPage`, the kernel's `vm_page`: a physical page with a memory
//!   attribute and wire/hold counts.
//! - [`quick`]: quickmap set up for this kernel (window region, platform,
//!   x86_64 backend, direct map) and the FreeBSD names `pmap_quick_enter_page`,
//!   `pmap_quick_remove_page`, `pmap_zero_page` and `pmap_copy_page`.

pub mod page;
pub mod quick;
