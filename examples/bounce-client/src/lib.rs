//! # bounce-client — a client of quickmap, from outside its workspace
//!
//! A crate that uses quickmap as a kernel's driver code would, through its public API
//! and documentation only:
//!
//! - [`host_mmu`]: a [`Platform`](quickmap::Platform) and an [`Mmu`](quickmap::Mmu) of
//!   our own, for the host: one CPU, and physical memory modelled as a `Vec` of frames,
//!   with the byte movers overridden as quickmap's `Mmu` documentation requires;
//! - [`bounce`]: busdma-style bounce copies (FreeBSD's `BUS_DMASYNC_PREWRITE` and
//!   `POSTREAD`) through [`QuickMap::map`](quickmap::QuickMap::map) and
//!   [`QuickMap::enter`](quickmap::QuickMap::enter), and a fallback for a context
//!   whose CPU has no free window;
//! - [`descriptor`]: the device's plain-data segment descriptors (zerocopy) and a page
//!   checksum over the unsafe slice view;
//! - [`x86_boot`]: a kernel's boot-time setup with the `x86_64` crate's types.
//!
//! The tests in `tests/` exercise each of them, on this host model and on quickmap's
//! simulated machine (feature `sim`).

pub mod bounce;
pub mod descriptor;
pub mod host_mmu;
pub mod x86_boot;
