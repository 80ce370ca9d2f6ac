//! What quickmap asks of the MMU: set and clear one window's page-table entry,
//! invalidate one address on the local CPU, and move bytes through a mapping.

use crate::addr::{PhysAddr, VirtAddr};
use crate::page::MemoryAttribute;
use crate::untyped;

/// One window: a page of kernel virtual address space reserved for one CPU.
///
/// A [`View`](crate::View) also maps the guard pages between the windows it holds:
/// for such a page, `va` and `region_page` are the guard page's, and `slot` is the
/// window it guards. Backends address an entry by `va` or `region_page`, never by
/// `slot` alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The CPU that owns the window; only that CPU writes its page-table entry.
    pub cpu: usize,
    /// The window's index among its CPU's windows (for a guard page a view maps, the
    /// index of the window before it).
    pub slot: usize,
    /// The window's kernel virtual address.
    pub va: VirtAddr,
    /// The window's page number counted from the start of the window region: the index
    /// of its entry when the region's last-level entries form one array.
    pub region_page: usize,
}

/// A page-table backend for the window region.
///
/// quickmap calls these with preemption disabled, on the CPU that owns the window.
/// None of them may sleep, take a lock or send an interrupt to another CPU: that is the
/// whole point of a per-CPU window.
///
/// ## The byte movers: override all four unless the addresses are real
///
/// Every byte that [`Mapping`](crate::Mapping) and the page work
/// ([`QuickMap::zero_page`](crate::QuickMap::zero_page) and friends) move goes through
/// four methods: [`read_bytes`](Self::read_bytes), [`write_bytes`](Self::write_bytes),
/// [`fill_bytes`](Self::fill_bytes) and [`copy_bytes`](Self::copy_bytes). Their
/// defaults **dereference the kernel virtual address** they are given (volatile
/// accesses through raw pointers, never a reference: see [`untyped`](crate::untyped)).
/// That is right for a kernel backend, whose windows and direct map are mappings of
/// the address space the code runs in, and wrong for any backend whose addresses are
/// not:
///
/// - a host-side or simulated MMU (like [`sim`](crate#features)'s `SimMmu`) must
///   override all four to translate each address itself (window entry, or its model of
///   the TLB) and move the bytes in its model of physical memory. A default left in
///   place dereferences an address such as `0xffff_c000_0000_0000` in the host
///   process: a crash at best, undefined behaviour at worst (promise 3 below);
/// - a wrapper around another backend (one that counts or breaks invalidations, say)
///   must forward all four to the inner backend, or it silently swaps the inner
///   backend's byte movers for the dereferencing defaults.
///
/// The defaults are `unsafe` to call, not to override: an override keeps the same
/// contracts (the caller promises the range is mapped for the call) and must honour
/// promise 3.
///
/// # Safety
///
/// Implementors promise:
/// 1. after [`set_window_pte`](Self::set_window_pte), accesses on the window's CPU to
///    `window.va .. window.va + PAGE_SIZE` reach the page at `pa` with `attribute`,
///    supervisor-only and not executable;
/// 2. after [`clear_window_pte`](Self::clear_window_pte) followed by
///    [`invalidate_local`](Self::invalidate_local) of the window's address, or by
///    [`invalidate_all_local`](Self::invalidate_all_local), on the same CPU, that CPU no
///    longer translates the window's address (an access faults);
/// 3. the byte accessors reach exactly the memory the current translation of the given
///    addresses names, and touch nothing else.
pub unsafe trait Mmu {
    /// Pages at or above this physical address cannot be mapped by this MMU (its
    /// physical address width); [`QuickMap::new`](crate::QuickMap::new) refuses a
    /// configured limit above it.
    const PHYS_LIMIT: PhysAddr = PhysAddr(u64::MAX);

    /// Install the translation of `window` to the page at `pa`. The entry is clear
    /// when this is called, so the CPU holds no translation for it and no invalidation
    /// is needed (processors do not cache not-present entries). `pa` is page-aligned and
    /// below the configured physical limit, so below [`PHYS_LIMIT`](Self::PHYS_LIMIT).
    fn set_window_pte(&self, window: Window, pa: PhysAddr, attribute: MemoryAttribute);

    /// Clear the translation of `window`.
    fn clear_window_pte(&self, window: Window);

    /// Drop any cached translation of the page at `va` on the calling CPU only.
    fn invalidate_local(&self, va: VirtAddr);

    /// Drop every cached translation of the window region on the calling CPU only
    /// (dropping more is allowed: on x86_64 a reload of CR3, or `invpcid`).
    ///
    /// Only [`Deferred`](crate::Deferred) instances call it, once for many pairs. A
    /// backend for strict instances only may leave the default, which panics.
    fn invalidate_all_local(&self) {
        panic!("quickmap: this Mmu backend has no local full flush; a Deferred quickmap needs one")
    }

    /// Copy `dst.len()` bytes from kernel address `src` into `dst`.
    ///
    /// The default treats the memory as untyped: it may be mapped elsewhere at the same
    /// time, so it is never turned into a Rust reference (see [`untyped`](crate::untyped)).
    ///
    /// # Safety
    ///
    /// `src .. src + dst.len()` is mapped readable for the duration of the call.
    unsafe fn read_bytes(&self, src: VirtAddr, dst: &mut [u8]) {
        // SAFETY: forwarded from this function's contract.
        unsafe { untyped::read(src.as_mut_ptr(), dst) }
    }

    /// Copy `src` to kernel address `dst`.
    ///
    /// # Safety
    ///
    /// `dst .. dst + src.len()` is mapped writable for the duration of the call.
    unsafe fn write_bytes(&self, dst: VirtAddr, src: &[u8]) {
        // SAFETY: forwarded from this function's contract.
        unsafe { untyped::write(dst.as_mut_ptr(), src) }
    }

    /// Set `len` bytes at kernel address `dst` to `byte`.
    ///
    /// # Safety
    ///
    /// `dst .. dst + len` is mapped writable for the duration of the call.
    unsafe fn fill_bytes(&self, dst: VirtAddr, len: usize, byte: u8) {
        // SAFETY: forwarded from this function's contract.
        unsafe { untyped::fill(dst.as_mut_ptr(), len, byte) }
    }

    /// Copy `len` bytes between two kernel addresses whose ranges do not overlap.
    ///
    /// # Safety
    ///
    /// `src .. src + len` is mapped readable and `dst .. dst + len` writable for the
    /// duration of the call, and the two ranges do not overlap.
    unsafe fn copy_bytes(&self, dst: VirtAddr, src: VirtAddr, len: usize) {
        // SAFETY: forwarded from this function's contract.
        unsafe { untyped::copy(dst.as_mut_ptr(), src.as_mut_ptr(), len) }
    }
}
