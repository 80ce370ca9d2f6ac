//! The safe face of quickmap: a mapping that removes itself.

use core::fmt;
use core::marker::PhantomData;

use crate::addr::{VirtAddr, PAGE_SIZE};
use crate::invalidation::{Invalidation, Strict};
use crate::mmu::Mmu;
use crate::platform::Platform;
use crate::quick_map::{Held, QuickMap};
use crate::rules;

/// A live mapping of one held page, made by [`QuickMap::map`]; dropping it removes the
/// mapping.
///
/// - It borrows the page, so the page stays held while mapped.
/// - It is neither `Send` nor `Sync`: a window belongs to the CPU and the context that
///   entered it, and preemption stays disabled until the guard drops.
/// - Guards may be dropped in any order: quickmap's windows are not a stack.
/// - Byte access copies in and out and never lends out a Rust reference to the page,
///   because the same frame may be mapped elsewhere at the same time (see
///   [`untyped`](crate::untyped)); only the unsafe [`as_slice`](Self::as_slice) and
///   [`as_mut_slice`](Self::as_mut_slice) do, for a caller who can promise more.
/// - Integers come in the target's byte order (`read_u32`, ...) and little-endian
///   (`read_le_u32`, ...); with the feature `zerocopy`, plain-data types too
///   (`read_obj`, `write_obj`). Every accessor checks that it stays inside the page
///   and panics at the caller's line (`#[track_caller]`) if not.
/// - It carries the window it holds, so dropping it neither decodes an address nor
///   checks the rules of the unsafe [`QuickMap::remove`]: the guard cannot break them.
#[must_use = "dropping the mapping removes it at once"]
pub struct Mapping<'q, 'p, P: Platform, M: Mmu, const N: usize, I: Invalidation = Strict> {
    quickmap: &'q QuickMap<P, M, N, I>,
    va: VirtAddr,
    /// The window entered, or `None` for a direct-map address.
    held: Option<Held<N>>,
    _page: PhantomData<&'p ()>,
    /// A raw pointer is neither `Send` nor `Sync`, and neither is the guard.
    _pinned_to_this_cpu: PhantomData<*const ()>,
}

/// The first byte that differs in [`Mapping::compare`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Offset in the page.
    pub offset: usize,
    /// The byte expected there.
    pub expected: u8,
    /// The byte found.
    pub found: u8,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "byte at offset {:#x}: expected {:#04x}, found {:#04x}",
            self.offset, self.expected, self.found
        )
    }
}

impl core::error::Error for Mismatch {}

/// The integer accessors of [`Mapping`]: one `read_*` and one `write_*` method per type
/// and byte order, all through [`Mapping::read`] and [`Mapping::write`].
macro_rules! integer_accessors {
    ($(
        $ty:ident: $read:ident / $write:ident,
        $from_bytes:ident / $to_bytes:ident,
        $order:literal,
        $bytes_doc:literal;
    )*) => {$(
        #[doc = concat!("Read the ", $order, " `", stringify!($ty), "` at `offset`.")]
        ///
        #[doc = concat!(
            "Bytes `offset .. offset + size_of::<", stringify!($ty), ">()` of the page, ",
            "read ", $bytes_doc, " (as [`", stringify!($ty), "::", stringify!($from_bytes), "`] reads them). ",
            "Any offset at which they fit will do: no alignment is needed."
        )]
        /// The bytes are copied like [`read`](Self::read) copies them (volatile, through
        /// the [`Mmu`]'s byte movers), so this is **not** one access of the integer's width:
        /// it is not atomic with respect to other CPUs or devices, and is not meant for
        /// device registers that must be read at a given width.
        ///
        /// # Panics
        ///
        #[doc = concat!(
            "With `quickmap: access outside the page` unless `offset + size_of::<",
            stringify!($ty), ">() <= PAGE_SIZE`."
        )]
        ///
        /// # Example
        ///
        /// ```
        /// # #[cfg(feature = "sim")] {
        /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
        /// use quickmap::PAGE_SIZE;
        ///
        /// let machine = SimMachine::new(SimConfig::default());
        /// let quickmap = machine.quickmap::<4>();
        /// let page = SimPage::high_memory(&machine, 0);
        /// let mapping = quickmap.map(&page);
        #[doc = concat!("let size = core::mem::size_of::<", stringify!($ty), ">();")]
        #[doc = concat!("let value: ", stringify!($ty), " = 0x0123_4567_89ab_cdef_u64 as ", stringify!($ty), ";")]
        /// // The last bytes of the page, and an odd offset: any offset that fits.
        #[doc = concat!("mapping.", stringify!($write), "(PAGE_SIZE - size, value);")]
        #[doc = concat!("mapping.", stringify!($write), "(3, value);")]
        #[doc = concat!("assert_eq!(mapping.", stringify!($read), "(PAGE_SIZE - size), value);")]
        #[doc = concat!("assert_eq!(mapping.", stringify!($read), "(3), value);")]
        /// let mut bytes = [0u8; 8];
        /// mapping.read(3, &mut bytes[..size]);
        #[doc = concat!("assert_eq!(bytes[..size], value.", stringify!($to_bytes), "());")]
        /// # }
        /// ```
        #[track_caller]
        pub fn $read(&self, offset: usize) -> $ty {
            let mut bytes = [0u8; core::mem::size_of::<$ty>()];
            self.read(offset, &mut bytes);
            $ty::$from_bytes(bytes)
        }

        #[doc = concat!("Write `value` as a ", $order, " `", stringify!($ty), "` at `offset`.")]
        ///
        #[doc = concat!(
            "Bytes `offset .. offset + size_of::<", stringify!($ty), ">()` of the page, ",
            "written ", $bytes_doc, " (as [`", stringify!($ty), "::", stringify!($to_bytes), "`] writes them). ",
            "Any offset at which they fit will do: no alignment is needed."
        )]
        /// Like [`write`](Self::write), this is a volatile byte copy, not one access of
        #[doc = concat!("the integer's width (see [`", stringify!($read), "`](Self::", stringify!($read), "), which has an example).")]
        ///
        /// # Panics
        ///
        #[doc = concat!(
            "With `quickmap: access outside the page` unless `offset + size_of::<",
            stringify!($ty), ">() <= PAGE_SIZE`."
        )]
        #[track_caller]
        pub fn $write(&self, offset: usize, value: $ty) {
            self.write(offset, &value.$to_bytes());
        }
    )*};
}

impl<'q, 'p, P: Platform, M: Mmu, const N: usize, I: Invalidation> Mapping<'q, 'p, P, M, N, I> {
    /// # Safety
    ///
    /// `va` (in `held`'s window, or in the direct map when `held` is `None`) was
    /// entered by `quickmap` in the calling context for a page that stays held for
    /// `'p`, and nothing else will remove it.
    pub(crate) unsafe fn new(
        quickmap: &'q QuickMap<P, M, N, I>,
        va: VirtAddr,
        held: Option<Held<N>>,
    ) -> Self {
        Mapping {
            quickmap,
            va,
            held,
            _page: PhantomData,
            _pinned_to_this_cpu: PhantomData,
        }
    }

    /// The kernel virtual address of the page.
    pub fn va(&self) -> VirtAddr {
        self.va
    }

    /// A raw pointer to the page, valid until the guard drops. Dereferencing it is the
    /// caller's business: the frame may be mapped elsewhere at the same time, so do not
    /// turn it into a `&` or `&mut` that outlives a single access.
    pub fn as_mut_ptr(&self) -> *mut u8 {
        self.va.as_mut_ptr()
    }

    /// The page as a byte slice that borrows the guard.
    ///
    /// The safe methods never lend out a reference to the page, because the frame is
    /// untyped memory (see [`untyped`](crate::untyped)): other mappings of it (another
    /// window, on this CPU or another, the direct map, a user mapping, a device doing
    /// DMA) may change it behind Rust's back, while a `&[u8]` promises the compiler that
    /// nothing does for as long as it lives, so that the compiler may read the page
    /// once and keep the bytes, read it again, or read it before the code says so. The
    /// safe methods copy instead, with volatile accesses through the [`Mmu`]. This method
    /// is for a caller who can make the promise, to hand the page to code that takes a
    /// slice (a checksum, a parser).
    ///
    /// # Safety
    ///
    /// While the returned slice lives:
    /// - no other mapping of the frame is written: not another window (another
    ///   [`Mapping`] of the same page, an address from [`QuickMap::enter`]) on this CPU
    ///   or another, not the direct map, not a user mapping, and no device writes it by
    ///   DMA;
    /// - the page is not written through this guard either: [`write`](Self::write),
    ///   [`fill`](Self::fill), [`zero`](Self::zero), [`copy_from`](Self::copy_from), the
    ///   `write_*` methods and [`as_mut_ptr`](Self::as_mut_ptr) take `&self`, so the
    ///   borrow checker does not rule them out;
    /// - the page is memory, not device registers: a read of it has no side effect
    ///   (through a reference the compiler may read more or less often than the code
    ///   says, and at other times);
    /// - the guard's address is one this CPU can dereference, as it is with a kernel's
    ///   [`Mmu`], whose windows and direct map are real translations. It is not with the
    ///   simulated machine of `sim`, whose addresses exist only inside its byte movers
    ///   (any [`Mmu`] that overrides the byte movers is bypassed by the slice).
    ///
    /// The slice cannot outlive the guard, so the page stays mapped and held meanwhile.
    ///
    /// # Example
    ///
    /// ```
    /// use quickmap::{Invalidation, Mapping, Mmu, Platform};
    ///
    /// /// The sum of the page's bytes.
    /// ///
    /// /// # Safety
    /// ///
    /// /// As for [`Mapping::as_slice`], for the duration of the call.
    /// unsafe fn byte_sum<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    ///     mapping: &Mapping<'_, '_, P, M, N, I>,
    /// ) -> u32 {
    ///     // SAFETY: forwarded from this function's contract; `bytes` does not outlive
    ///     // the call, and the guard is not written through meanwhile.
    ///     let bytes = unsafe { mapping.as_slice() };
    ///     bytes.iter().map(|&byte| u32::from(byte)).sum()
    /// }
    /// ```
    pub unsafe fn as_slice(&self) -> &[u8] {
        // SAFETY: `self.va .. self.va + PAGE_SIZE` maps the held page until the guard
        // drops, and the slice borrows the guard; the caller promises that the address
        // is dereferenceable, that the bytes are memory and that nothing writes them
        // while the slice lives (this function's contract).
        unsafe { core::slice::from_raw_parts(self.va.as_mut_ptr().cast_const(), PAGE_SIZE) }
    }

    /// The page as a mutable byte slice that borrows the guard exclusively.
    ///
    /// Why the safe methods copy instead is explained at [`as_slice`](Self::as_slice).
    /// Taking `&mut self` rules out every other use of this guard while the slice
    /// lives; what the borrow checker cannot see is the caller's to promise.
    ///
    /// # Safety
    ///
    /// While the returned slice lives:
    /// - no other mapping of the frame is read or written: not another window (another
    ///   [`Mapping`] of the same page, an address from [`QuickMap::enter`]) on this CPU
    ///   or another, not the direct map, not a user mapping, and no device reads or
    ///   writes it by DMA (writes through the slice may reach memory later than the code
    ///   says, or not at all if overwritten);
    /// - no raw pointer obtained earlier from [`as_mut_ptr`](Self::as_mut_ptr) is used;
    /// - the page is memory, not device registers: accesses have no side effects;
    /// - the guard's address is one this CPU can dereference, as at
    ///   [`as_slice`](Self::as_slice) (not the simulated machine's).
    ///
    /// # Example
    ///
    /// ```
    /// use quickmap::{Invalidation, Mapping, Mmu, Platform};
    ///
    /// /// Number the page's bytes `0, 1, 2, ...` (wrapping at 256).
    /// ///
    /// /// # Safety
    /// ///
    /// /// As for [`Mapping::as_mut_slice`], for the duration of the call.
    /// unsafe fn number_bytes<P: Platform, M: Mmu, const N: usize, I: Invalidation>(
    ///     mapping: &mut Mapping<'_, '_, P, M, N, I>,
    /// ) {
    ///     // SAFETY: forwarded from this function's contract; `bytes` does not outlive
    ///     // the call.
    ///     let bytes = unsafe { mapping.as_mut_slice() };
    ///     for (index, byte) in bytes.iter_mut().enumerate() {
    ///         *byte = index as u8;
    ///     }
    /// }
    /// ```
    pub unsafe fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the slice borrows the guard exclusively, and the
        // caller promises that nothing else reads or writes the frame while it lives.
        unsafe { core::slice::from_raw_parts_mut(self.va.as_mut_ptr(), PAGE_SIZE) }
    }

    /// Copy `dst.len()` bytes from the page, starting at `offset`.
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the page` unless `offset + dst.len() <= PAGE_SIZE`.
    #[track_caller]
    pub fn read(&self, offset: usize, dst: &mut [u8]) {
        let va = self.checked_range(offset, dst.len());
        // SAFETY: the page is mapped at `self.va` until the guard drops, and the range
        // lies inside it.
        unsafe { self.quickmap.mmu().read_bytes(va, dst) }
    }

    /// Copy `src` into the page, starting at `offset`.
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the page` unless `offset + src.len() <= PAGE_SIZE`.
    #[track_caller]
    pub fn write(&self, offset: usize, src: &[u8]) {
        let va = self.checked_range(offset, src.len());
        // SAFETY: as in `read`; window mappings are writable.
        unsafe { self.quickmap.mmu().write_bytes(va, src) }
    }

    /// Set `len` bytes from `offset` to `byte`.
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the page` unless `offset + len <= PAGE_SIZE`.
    #[track_caller]
    pub fn fill(&self, offset: usize, len: usize, byte: u8) {
        let va = self.checked_range(offset, len);
        // SAFETY: as in `write`.
        unsafe { self.quickmap.mmu().fill_bytes(va, len, byte) }
    }

    /// Zero the whole page.
    #[track_caller]
    pub fn zero(&self) {
        self.fill(0, PAGE_SIZE, 0);
    }

    /// Copy the whole page from another mapping.
    pub fn copy_from(&self, source: &Mapping<'_, '_, P, M, N, I>) {
        // SAFETY: both pages are mapped while their guards live, and two live mappings
        // never share a window (nor does a window overlap the direct map).
        unsafe {
            self.quickmap
                .mmu()
                .copy_bytes(self.va, source.va, PAGE_SIZE)
        }
    }

    integer_accessors! {
        u16: read_u16 / write_u16, from_ne_bytes / to_ne_bytes, "native-endian",
            "in the target's byte order";
        u32: read_u32 / write_u32, from_ne_bytes / to_ne_bytes, "native-endian",
            "in the target's byte order";
        u64: read_u64 / write_u64, from_ne_bytes / to_ne_bytes, "native-endian",
            "in the target's byte order";
        u16: read_le_u16 / write_le_u16, from_le_bytes / to_le_bytes, "little-endian",
            "least significant byte first on every target";
        u32: read_le_u32 / write_le_u32, from_le_bytes / to_le_bytes, "little-endian",
            "least significant byte first on every target";
        u64: read_le_u64 / write_le_u64, from_le_bytes / to_le_bytes, "little-endian",
            "least significant byte first on every target";
    }

    /// Read a `T` from bytes `offset .. offset + size_of::<T>()` of the page (feature
    /// `zerocopy`).
    ///
    /// The bytes are copied into a new `T` as [`read`](Self::read) copies them: no
    /// reference into the page is made, and `offset` need not be aligned for `T`.
    /// [`FromBytes`](zerocopy::FromBytes) makes any bytes a valid `T`;
    /// [`IntoBytes`](zerocopy::IntoBytes) (no padding) lets the copy land in the `T`
    /// without `unsafe` code. Derive both for a `#[repr(C)]` struct in your own crate,
    /// with zerocopy's `derive` feature, or use zerocopy's
    /// [`byteorder`](zerocopy::byteorder) types for fields of a fixed byte order.
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the page` unless
    /// `offset + size_of::<T>() <= PAGE_SIZE`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sim")] {
    /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
    /// use zerocopy::byteorder::network_endian::U16;
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let quickmap = machine.quickmap::<4>();
    /// let page = SimPage::high_memory(&machine, 0);
    /// let mapping = quickmap.map(&page);
    /// // Three big-endian 16-bit fields at an odd offset.
    /// mapping.write(101, &[0x12, 0x34, 0xab, 0xcd, 0x00, 0x2a]);
    /// let fields: [U16; 3] = mapping.read_obj(101);
    /// assert_eq!(fields.map(|field| field.get()), [0x1234, 0xabcd, 42]);
    /// # }
    /// ```
    #[cfg(feature = "zerocopy")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zerocopy")))]
    #[track_caller]
    pub fn read_obj<T: zerocopy::FromBytes + zerocopy::IntoBytes>(&self, offset: usize) -> T {
        let mut value = T::new_zeroed();
        self.read(offset, value.as_mut_bytes());
        value
    }

    /// Write the bytes of `value` to `offset .. offset + size_of::<T>()` of the page
    /// (feature `zerocopy`).
    ///
    /// A copy, as [`write`](Self::write) makes it; `offset` need not be aligned for `T`.
    /// [`IntoBytes`](zerocopy::IntoBytes) (no padding) and
    /// [`Immutable`](zerocopy::Immutable) (no interior mutability) make `value`'s bytes
    /// readable as a `&[u8]`.
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the page` unless
    /// `offset + size_of::<T>() <= PAGE_SIZE`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[cfg(feature = "sim")] {
    /// use quickmap::sim::{SimConfig, SimMachine, SimPage};
    ///
    /// let machine = SimMachine::new(SimConfig::default());
    /// let quickmap = machine.quickmap::<4>();
    /// let page = SimPage::high_memory(&machine, 0);
    /// let mapping = quickmap.map(&page);
    /// let record: [u32; 3] = [7, 0xdead_beef, u32::MAX];
    /// mapping.write_obj(4084, &record); // the last 12 bytes of the page
    /// mapping.write_obj(13, &record); // not aligned for `u32`, which is fine
    /// assert_eq!(mapping.read_obj::<[u32; 3]>(4084), record);
    /// assert_eq!(mapping.read_obj::<[u32; 3]>(13), record);
    /// # }
    /// ```
    #[cfg(feature = "zerocopy")]
    #[cfg_attr(docsrs, doc(cfg(feature = "zerocopy")))]
    #[track_caller]
    pub fn write_obj<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &self,
        offset: usize,
        value: &T,
    ) {
        self.write(offset, value.as_bytes());
    }

    /// Compare the page from `offset` with `expected`; the first differing byte, if any.
    ///
    /// # Panics
    ///
    /// With `quickmap: access outside the page` unless
    /// `offset + expected.len() <= PAGE_SIZE`.
    #[track_caller]
    pub fn compare(&self, offset: usize, expected: &[u8]) -> Result<(), Mismatch> {
        self.checked_range(offset, expected.len());
        let mut chunk = [0u8; 256];
        for (index, want) in expected.chunks(chunk.len()).enumerate() {
            let start = offset + index * chunk.len();
            let got = &mut chunk[..want.len()];
            self.read(start, got);
            if let Some(at) = want.iter().zip(got.iter()).position(|(w, g)| w != g) {
                return Err(Mismatch {
                    offset: start + at,
                    expected: want[at],
                    found: got[at],
                });
            }
        }
        Ok(())
    }

    /// The address of `offset .. offset + len` in the page: the rule `access outside
    /// the page` is that the whole range lies in the one page mapped.
    #[track_caller]
    fn checked_range(&self, offset: usize, len: usize) -> VirtAddr {
        if offset > PAGE_SIZE || len > PAGE_SIZE - offset {
            rules::access_outside_page(offset, len);
        }
        self.va.add(offset)
    }
}

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> Drop for Mapping<'_, '_, P, M, N, I> {
    #[inline]
    fn drop(&mut self) {
        // The guard owns its window (see `new`) and this is its only removal; the guard
        // is not `Send`, so this runs in the context, and on the CPU, that entered it.
        // A direct-map address pinned nothing and needs nothing.
        if let Some(held) = self.held {
            self.quickmap.remove_window(held);
        }
    }
}

impl<P: Platform, M: Mmu, const N: usize, I: Invalidation> fmt::Debug
    for Mapping<'_, '_, P, M, N, I>
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping").field("va", &self.va).finish()
    }
}
