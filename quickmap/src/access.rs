//! The byte, integer and object accessors of a live mapping, written once for both
//! guards that have them: [`Mapping`](crate::Mapping) (one page) and
//! [`View`](crate::View) (several pages side by side).
//!
//! A guard invokes [`byte_accessors!`] inside its own `impl` block, with its backend
//! type named `M` and its instance in a field `quickmap` (whose [`Mmu`](crate::Mmu)'s
//! byte movers reach the mapped bytes), and defines there:
//! - `fn span_va(&self) -> VirtAddr`: where the mapped bytes start;
//! - `fn span_len(&self) -> usize`: how many bytes are mapped;
//! - `fn refuse_access(&self, offset: usize, len: usize) -> !`: the panic of the rule
//!   that an access outside them breaks (`#[track_caller]`).
//!
//! The macro's literals fill in the documentation: what the bytes are called (`page`,
//! `view`), the bound and the rule named in `# Panics`, and the lines of each example
//! that make the guard.

/// The integer accessors: one `read_*` and one `write_*` method per type and byte
/// order, all through `read` and `write`. Invoked by [`byte_accessors!`].
macro_rules! integer_accessors {
    (
        ($span:literal, $bound:literal, $rule:literal, $setup:literal, $guard:literal, $end:literal, $odd:literal)
        $(
            $ty:ident: $read:ident / $write:ident,
            $from_bytes:ident / $to_bytes:ident,
            $order:literal,
            $bytes_doc:literal;
        )*
    ) => {$(
        #[doc = concat!("Read the ", $order, " `", stringify!($ty), "` at `offset`.")]
        ///
        #[doc = concat!(
            "Bytes `offset .. offset + size_of::<", stringify!($ty), ">()` of the ", $span, ", ",
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
            "With `quickmap: ", $rule, "` unless `offset + size_of::<",
            stringify!($ty), ">() <= ", $bound, "`."
        )]
        ///
        /// # Example
        ///
        /// ```
        /// # #[cfg(feature = "sim")] {
        #[doc = $setup]
        #[doc = concat!("let size = core::mem::size_of::<", stringify!($ty), ">();")]
        #[doc = concat!("let value: ", stringify!($ty), " = 0x0123_4567_89ab_cdef_u64 as ", stringify!($ty), ";")]
        #[doc = concat!("// The last bytes of the ", $span, ", and an odd offset: any offset that fits.")]
        #[doc = concat!($guard, ".", stringify!($write), "(", $end, " - size, value);")]
        #[doc = concat!($guard, ".", stringify!($write), "(", $odd, ", value);")]
        #[doc = concat!("assert_eq!(", $guard, ".", stringify!($read), "(", $end, " - size), value);")]
        #[doc = concat!("assert_eq!(", $guard, ".", stringify!($read), "(", $odd, "), value);")]
        /// let mut bytes = [0u8; 8];
        #[doc = concat!($guard, ".read(", $odd, ", &mut bytes[..size]);")]
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
            "Bytes `offset .. offset + size_of::<", stringify!($ty), ">()` of the ", $span, ", ",
            "written ", $bytes_doc, " (as [`", stringify!($ty), "::", stringify!($to_bytes), "`] writes them). ",
            "Any offset at which they fit will do: no alignment is needed."
        )]
        /// Like [`write`](Self::write), this is a volatile byte copy, not one access of
        #[doc = concat!("the integer's width (see [`", stringify!($read), "`](Self::", stringify!($read), "), which has an example).")]
        ///
        /// # Panics
        ///
        #[doc = concat!(
            "With `quickmap: ", $rule, "` unless `offset + size_of::<",
            stringify!($ty), ">() <= ", $bound, "`."
        )]
        #[track_caller]
        pub fn $write(&self, offset: usize, value: $ty) {
            self.write(offset, &value.$to_bytes());
        }
    )*};
}

pub(crate) use integer_accessors;

/// `read`, `write`, `fill`, `zero`, `compare`, the integer accessors and (feature
/// `zerocopy`) `read_obj` and `write_obj` of a guard, with every access checked against
/// the guard's span (see the [module documentation](self)). The literals:
/// - `span`: what the docs call the mapped bytes (`"page"`);
/// - `bound`: the length named in `# Panics` (`"PAGE_SIZE"`);
/// - `rule`: the rule an access outside breaks (`"access outside the page"`);
/// - `setup`: the lines of each example that make the guard, on the simulated machine;
/// - `guard`: the guard's name in those lines;
/// - `end`: an expression of the span's length in the examples;
/// - `odd`: an offset at which the examples show that no alignment is needed.
macro_rules! byte_accessors {
    (
        span: $span:literal,
        bound: $bound:literal,
        rule: $rule:literal,
        setup: $setup:literal,
        guard: $guard:literal,
        end: $end:literal,
        odd: $odd:literal $(,)?
    ) => {
        #[doc = concat!("Copy `dst.len()` bytes from the ", $span, ", starting at `offset`.")]
        ///
        /// # Panics
        ///
        #[doc = concat!("With `quickmap: ", $rule, "` unless `offset + dst.len() <= ", $bound, "`.")]
        #[track_caller]
        pub fn read(&self, offset: usize, dst: &mut [u8]) {
            let va = self.checked_range(offset, dst.len());
            // SAFETY: the span is mapped from `span_va()` until the guard drops, and the
            // range lies inside it.
            unsafe { self.span_mmu().read_bytes(va, dst) }
        }

        #[doc = concat!("Copy `src` into the ", $span, ", starting at `offset`.")]
        ///
        /// # Panics
        ///
        #[doc = concat!("With `quickmap: ", $rule, "` unless `offset + src.len() <= ", $bound, "`.")]
        #[track_caller]
        pub fn write(&self, offset: usize, src: &[u8]) {
            let va = self.checked_range(offset, src.len());
            // SAFETY: as in `read`; window mappings are writable.
            unsafe { self.span_mmu().write_bytes(va, src) }
        }

        /// Set `len` bytes from `offset` to `byte`.
        ///
        /// # Panics
        ///
        #[doc = concat!("With `quickmap: ", $rule, "` unless `offset + len <= ", $bound, "`.")]
        #[track_caller]
        pub fn fill(&self, offset: usize, len: usize, byte: u8) {
            let va = self.checked_range(offset, len);
            // SAFETY: as in `write`.
            unsafe { self.span_mmu().fill_bytes(va, len, byte) }
        }

        #[doc = concat!("Zero the whole ", $span, ".")]
        #[track_caller]
        pub fn zero(&self) {
            self.fill(0, self.span_len(), 0);
        }

        $crate::access::integer_accessors! {
            ($span, $bound, $rule, $setup, $guard, $end, $odd)
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

        #[doc = concat!(
            "Read a `T` from bytes `offset .. offset + size_of::<T>()` of the ", $span,
            " (feature `zerocopy`)."
        )]
        ///
        /// The bytes are copied into a new `T` as [`read`](Self::read) copies them: no
        #[doc = concat!("reference into the ", $span, " is made, and `offset` need not be aligned for `T`.")]
        /// [`FromBytes`](zerocopy::FromBytes) makes any bytes a valid `T`;
        /// [`IntoBytes`](zerocopy::IntoBytes) (no padding) lets the copy land in the `T`
        /// without `unsafe` code. Derive both for a `#[repr(C)]` struct in your own crate,
        /// with zerocopy's `derive` feature, or use zerocopy's
        /// [`byteorder`](zerocopy::byteorder) types for fields of a fixed byte order.
        ///
        /// # Panics
        ///
        #[doc = concat!(
            "With `quickmap: ", $rule, "` unless `offset + size_of::<T>() <= ", $bound, "`."
        )]
        ///
        /// # Example
        ///
        /// ```
        /// # #[cfg(feature = "sim")] {
        #[doc = $setup]
        /// use zerocopy::byteorder::network_endian::U16;
        ///
        /// // Three big-endian 16-bit fields at an odd offset.
        #[doc = concat!($guard, ".write(", $odd, ", &[0x12, 0x34, 0xab, 0xcd, 0x00, 0x2a]);")]
        #[doc = concat!("let fields: [U16; 3] = ", $guard, ".read_obj(", $odd, ");")]
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

        #[doc = concat!(
            "Write the bytes of `value` to `offset .. offset + size_of::<T>()` of the ", $span,
            " (feature `zerocopy`)."
        )]
        ///
        /// A copy, as [`write`](Self::write) makes it; `offset` need not be aligned for `T`.
        /// [`IntoBytes`](zerocopy::IntoBytes) (no padding) and
        /// [`Immutable`](zerocopy::Immutable) (no interior mutability) make `value`'s bytes
        /// readable as a `&[u8]`.
        ///
        /// # Panics
        ///
        #[doc = concat!(
            "With `quickmap: ", $rule, "` unless `offset + size_of::<T>() <= ", $bound, "`."
        )]
        ///
        /// # Example
        ///
        /// ```
        /// # #[cfg(feature = "sim")] {
        #[doc = $setup]
        /// let record: [u32; 3] = [7, 0xdead_beef, u32::MAX];
        #[doc = concat!($guard, ".write_obj(", $end, " - 12, &record); // the last 12 bytes of the ", $span)]
        #[doc = concat!($guard, ".write_obj(", $odd, ", &record); // not aligned for `u32`, which is fine")]
        #[doc = concat!("assert_eq!(", $guard, ".read_obj::<[u32; 3]>(", $end, " - 12), record);")]
        #[doc = concat!("assert_eq!(", $guard, ".read_obj::<[u32; 3]>(", $odd, "), record);")]
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

        #[doc = concat!("Compare the ", $span, " from `offset` with `expected`; the first differing byte, if any.")]
        ///
        /// # Panics
        ///
        #[doc = concat!(
            "With `quickmap: ", $rule, "` unless `offset + expected.len() <= ", $bound, "`."
        )]
        #[track_caller]
        pub fn compare(&self, offset: usize, expected: &[u8]) -> Result<(), $crate::Mismatch> {
            self.checked_range(offset, expected.len());
            let mut chunk = [0u8; 256];
            for (index, want) in expected.chunks(chunk.len()).enumerate() {
                let start = offset + index * chunk.len();
                let got = &mut chunk[..want.len()];
                self.read(start, got);
                if let Some(at) = want.iter().zip(got.iter()).position(|(w, g)| w != g) {
                    return Err($crate::Mismatch {
                        offset: start + at,
                        expected: want[at],
                        found: got[at],
                    });
                }
            }
            Ok(())
        }

        /// The backend whose byte movers reach the mapped bytes.
        #[inline(always)]
        fn span_mmu(&self) -> &M {
            self.quickmap.mmu()
        }

        #[doc = concat!(
            "The address of `offset .. offset + len` in the ", $span, ": the rule `", $rule,
            "` is that the whole range lies in what is mapped."
        )]
        #[track_caller]
        fn checked_range(&self, offset: usize, len: usize) -> VirtAddr {
            let size = self.span_len();
            if offset > size || len > size - offset {
                self.refuse_access(offset, len);
            }
            self.span_va().add(offset)
        }
    };
}

pub(crate) use byte_accessors;
