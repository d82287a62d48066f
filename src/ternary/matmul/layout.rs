//! The compute layout: private to [`TernaryMatrix`](crate::ternary::TernaryMatrix),
//! built once at creation from the canonical 2-bit bytes, read by the SIMD
//! kernels. It is the only copy of the weights a matrix holds: exports decode
//! it row by row ([`ComputeLayout::row_trits`]), exactly, since every code of
//! a real weight is stored as is and padding never reaches an export.
//!
//! Weights are stored as codes `c = t + 1` in {0, 1, 2}, in tiles of
//! 4 output rows (`TILE_ROWS`); `cols` is padded with `t = 0` (`c = 1`) to a
//! whole number of K blocks, `rows` to a whole number of tiles. A tile is the
//! contiguous sequence `[k_block][row in tile][block bytes]`, so one tile is
//! one sequential stream for the prefetcher.
//!
//! * [`ComputeFormat::TwoBit`]: K blocks of 256 weights = 64 bytes a row;
//!   byte `j` holds `c[64 i + j]` in bits `2i..2i+1` for `i` in 0..4 ("bit
//!   planes" of 64 consecutive weights), so masking one plane out of 64 bytes
//!   gives the codes of 64 consecutive weights, scaled by `4^i`.
//! * [`ComputeFormat::Base3`]: K blocks of 320 weights = 64 bytes a row
//!   (1.6 bits a weight); byte `j` holds the five digits
//!   `d_i = c[64 i + j]` as the fixed-point fraction
//!   `n = ceil(256 · v / 243)` with `v = Σ_i d_i 3^(4-i)`; digit `i` is
//!   `floor(3 n_i / 256)` with `n_i = 3^i n mod 256` (exact for every `v`).

use rayon::prelude::*;

use crate::ternary::pack::{row_bytes, PackedLayout};

/// Output rows a tile holds.
pub(crate) const TILE_ROWS: usize = 4;
/// Bytes a row of one K block holds (one AVX-512 register).
pub(crate) const BLOCK_BYTES: usize = 64;

/// The bit layout of the compute copy of the weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ComputeFormat {
    /// 2 bits a weight, bit planes; the fastest kernels.
    #[default]
    TwoBit,
    /// 1.6 bits a weight (5 trits a byte); 20% less memory traffic.
    Base3,
}

crate::c_codes!(ComputeFormat, "compute_format", "compute format" {
    TwoBit = 0 => "two-bit",
    Base3 = 1 => "base-3",
});

impl ComputeFormat {
    /// Weights per K block per row.
    pub const fn block_k(self) -> usize {
        match self {
            ComputeFormat::TwoBit => 256,
            ComputeFormat::Base3 => 320,
        }
    }
}

/// Buffers of at least this many bytes are aligned to, and ask the kernel
/// for, 2 MiB transparent huge pages (Linux, `madvise(MADV_HUGEPAGE)`):
/// one TLB entry and one uninterrupted hardware-prefetch stream per 2 MiB
/// instead of per 4 KiB, which matters when weights stream from DRAM.
const HUGE_MIN: usize = 2 << 20;
const HUGE_ALIGN: usize = 2 << 20;

/// A zero-initialised, 64-byte aligned buffer of `len` plain values
/// (`u8`, `i8`, `f32`, `i32`); 2 MiB aligned, on huge pages where the OS
/// grants them, from [`HUGE_MIN`] bytes up.
pub(crate) struct Aligned<T: Copy> {
    ptr: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
    len: usize,
    _t: std::marker::PhantomData<T>,
}

// SAFETY: Aligned owns its allocation exclusively (like a Vec<T>).
unsafe impl<T: Plain + Send> Send for Aligned<T> {}
// SAFETY: shared access is read-only through &self.
unsafe impl<T: Plain + Sync> Sync for Aligned<T> {}

/// Marker for the plain types [`Aligned`] may hold.
///
/// # Safety
/// Implementors must accept every bit pattern (in particular all zeros) as a
/// valid value and have an alignment of at most 64.
pub(crate) unsafe trait Plain: Copy {}
unsafe impl Plain for u8 {}
unsafe impl Plain for i8 {}
unsafe impl Plain for f32 {}
unsafe impl Plain for i32 {}

impl<T: Plain> Aligned<T> {
    /// Allocates without initialising (callers initialise every byte).
    /// Errors: [`crate::Error::SizeOverflow`] / [`crate::Error::OutOfMemory`] naming `arg`.
    fn try_alloc(len: usize, arg: &'static str) -> crate::Result<Self> {
        let bytes = crate::error::alloc_bytes::<T>(len, arg)?;
        // rounded up to whole 64-byte lines (bytes <= isize::MAX: no overflow)
        let bytes = bytes.div_ceil(64).max(1) * 64;
        let (ptr, layout) = huge::alloc(bytes).ok_or(crate::Error::OutOfMemory { arg, bytes })?;
        Ok(Aligned {
            ptr,
            layout,
            len,
            _t: std::marker::PhantomData,
        })
    }

    /// `len` zeros, allocated fallibly.
    pub(crate) fn try_zeroed(len: usize, arg: &'static str) -> crate::Result<Self> {
        let a = Self::try_alloc(len, arg)?;
        // SAFETY: the allocation is layout.size() writable bytes.
        unsafe { std::ptr::write_bytes(a.ptr.as_ptr(), 0, a.layout.size()) };
        Ok(a)
    }

    /// [`Self::try_zeroed`] for working buffers sized by a caller's
    /// buffers: a refused allocation unwinds with the [`crate::Error`] as
    /// the panic payload, which the C boundary (`ffi::status::guard`) turns
    /// into `TRITTER_ERR_OUT_OF_MEMORY` (never an abort).
    pub(crate) fn zeroed(len: usize) -> Self {
        Self::try_zeroed(len, "buffer").unwrap_or_else(|e| std::panic::panic_any(e))
    }

    /// A copy, allocated fallibly.
    pub(crate) fn try_clone(&self) -> crate::Result<Self> {
        let a = Self::try_alloc(self.len, "matrix")?;
        // SAFETY: both allocations are layout.size() bytes (same len, same
        // layout) and do not overlap; every source byte is initialised.
        unsafe {
            std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), a.ptr.as_ptr(), self.layout.size())
        };
        Ok(a)
    }
    pub(crate) fn as_slice(&self) -> &[T] {
        // SAFETY: the allocation holds at least len * size_of::<T>()
        // initialised bytes, aligned to >= 64 >= align_of::<T>(); T is plain.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr() as *const T, self.len) }
    }
    pub(crate) fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in as_slice, with unique access through &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr() as *mut T, self.len) }
    }
}

impl<T: Copy> Drop for Aligned<T> {
    fn drop(&mut self) {
        // SAFETY: allocated by huge::alloc with this layout.
        unsafe { huge::free(self.ptr, self.layout) }
    }
}

/// Allocation of the big buffers on 2 MiB transparent huge pages.
///
/// * `bytes >= HUGE_MIN`: its own 2 MiB-aligned allocation, advised
///   `MADV_HUGEPAGE` (the whole 2 MiB pieces of it).
/// * `ARENA_MIN <= bytes < HUGE_MIN` (e.g. a 2048x2048 or 2560x2560 matrix):
///   carved from shared 2 MiB huge pages, several buffers a page; a page is
///   returned to the system when its last buffer is freed. (Holes left by
///   freed buffers are reused only when the whole page empties: weights are
///   long-lived.)
/// * smaller: the global allocator, 64-byte aligned.
mod huge {
    use std::alloc::Layout;
    use std::ptr::NonNull;
    use std::sync::Mutex;

    use super::{HUGE_ALIGN, HUGE_MIN};

    const ARENA_MIN: usize = 256 << 10;

    struct Page {
        base: NonNull<u8>,
        used: usize,
        live: usize,
    }
    // SAFETY: a Page is bookkeeping for memory it owns; it is only touched
    // under the PAGES mutex.
    unsafe impl Send for Page {}
    static PAGES: Mutex<Vec<Page>> = Mutex::new(Vec::new());

    fn page_layout() -> Layout {
        Layout::from_size_align(HUGE_ALIGN, HUGE_ALIGN).expect("page layout")
    }

    /// `None` when the allocator refuses (the caller reports it; never an abort).
    fn raw(layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: every layout passed here has a non-zero size.
        let p = NonNull::new(unsafe { std::alloc::alloc(layout) })?;
        #[cfg(target_os = "linux")]
        if layout.align() == HUGE_ALIGN {
            // SAFETY: the range lies in this untouched allocation; the advice
            // only changes how its pages are backed, and its failure (no THP)
            // is harmless.
            unsafe {
                libc::madvise(
                    p.as_ptr() as *mut libc::c_void,
                    layout.size() & !(HUGE_ALIGN - 1),
                    libc::MADV_HUGEPAGE,
                );
            }
        }
        Some(p)
    }

    /// A buffer of `bytes` (a multiple of 64, at most `isize::MAX`), and the
    /// layout to free it with; `None` when the allocator refuses.
    pub(super) fn alloc(bytes: usize) -> Option<(NonNull<u8>, Layout)> {
        if bytes >= HUGE_MIN {
            let l = Layout::from_size_align(bytes, HUGE_ALIGN).ok()?;
            return Some((raw(l)?, l));
        }
        if bytes < ARENA_MIN {
            let l = Layout::from_size_align(bytes, 64).expect("buffer layout");
            return Some((raw(l)?, l));
        }
        // Arena: the tagged layout (align 128) marks arena buffers for free().
        let l = Layout::from_size_align(bytes, 128).expect("buffer layout");
        let mut pages = PAGES.lock().unwrap_or_else(|e| e.into_inner());
        let fit = pages.iter().rposition(|p| HUGE_ALIGN - p.used >= bytes);
        let i = match fit {
            Some(i) => i,
            None => {
                let base = raw(page_layout())?;
                pages.push(Page {
                    base,
                    used: 0,
                    live: 0,
                });
                pages.len() - 1
            }
        };
        let p = &mut pages[i];
        // SAFETY: used + bytes <= HUGE_ALIGN: the buffer lies inside the page.
        let ptr = unsafe { p.base.add(p.used) };
        p.used += bytes;
        p.live += 1;
        Some((ptr, l))
    }

    /// Frees a buffer from [`alloc`].
    ///
    /// # Safety
    /// `ptr` and `layout` must come from one [`alloc`] call, freed once.
    pub(super) unsafe fn free(ptr: NonNull<u8>, layout: Layout) {
        if layout.align() != 128 {
            // SAFETY: allocated by the global allocator with this layout.
            unsafe { std::alloc::dealloc(ptr.as_ptr(), layout) };
            return;
        }
        let base = ptr.as_ptr() as usize & !(HUGE_ALIGN - 1);
        let mut pages = PAGES.lock().unwrap_or_else(|e| e.into_inner());
        let i = pages
            .iter()
            .position(|p| p.base.as_ptr() as usize == base)
            .expect("arena buffer outside every arena page");
        pages[i].live -= 1;
        if pages[i].live == 0 {
            let p = pages.swap_remove(i);
            // SAFETY: the page was allocated by raw(page_layout()).
            unsafe { std::alloc::dealloc(p.base.as_ptr(), page_layout()) };
        }
    }
}

impl<T: Plain> Clone for Aligned<T> {
    /// As [`Aligned::try_clone`]; a refused allocation unwinds with the
    /// error as payload (see [`Aligned::zeroed`]).
    fn clone(&self) -> Self {
        self.try_clone()
            .unwrap_or_else(|e| std::panic::panic_any(e))
    }
}

/// The weights in a compute format (see the module docs).
#[derive(Clone)]
pub struct ComputeLayout {
    format: ComputeFormat,
    /// K blocks per row.
    nkb: usize,
    /// Tiles (`ceil(rows / TILE_ROWS)`).
    ntiles: usize,
    data: Aligned<u8>,
}

impl std::fmt::Debug for ComputeLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComputeLayout")
            .field("format", &self.format)
            .field("nkb", &self.nkb)
            .field("ntiles", &self.ntiles)
            .finish()
    }
}

/// Code `c = t + 1` of a canonical 2-bit code (`00 -> 1`, `01 -> 2`, `10 -> 0`).
const CANON_TO_C: [u8; 4] = [1, 2, 0, 1];

/// The four codes `c = t + 1` of each canonical 2-bit byte (weight `i` in
/// bits `2i`): one lookup per byte instead of a shift, mask and lookup per
/// weight (this loop was most of `from_float`'s time).
const CANON_BYTE_TO_C: [[u8; 4]; 256] = {
    let mut t = [[0u8; 4]; 256];
    let mut b = 0;
    while b < 256 {
        let mut i = 0;
        while i < 4 {
            t[b][i] = CANON_TO_C[(b >> (2 * i)) & 3];
            i += 1;
        }
        b += 1;
    }
    t
};

/// The base-3 fixed-point byte of five codes (`d[0]` the most significant digit).
#[inline]
pub(crate) fn base3_byte(d: [u8; 5]) -> u8 {
    let v = d.iter().fold(0u32, |v, &x| v * 3 + x as u32);
    (v * 256).div_ceil(243) as u8
}

/// Digit `i` of a base-3 fixed-point byte (scalar twin of the SIMD decoders).
#[inline]
pub(crate) fn base3_digit(n: u8, i: usize) -> u8 {
    let mut n = n as u32;
    for _ in 0..i {
        n = (n * 3) & 0xFF;
    }
    ((n * 3) >> 8) as u8
}

/// One block of 256 codes (each 0, 1 or 2) into the 2-bit compute block:
/// byte `j` = `c[j] | c[64 + j] << 2 | c[128 + j] << 4 | c[192 + j] << 6`
/// (16-bit shifts cannot carry across bytes: every code fits in 2 bits).
///
/// # Safety
/// SSE2 present (always on x86-64).
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn codes_block_to_2bit(c: &[u8], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(c.len() >= 256 && dst.len() >= BLOCK_BYTES);
    // SAFETY: 16-byte loads inside c[..256], stores inside dst[..64].
    unsafe {
        let ld = |k: usize| _mm_loadu_si128(c.as_ptr().add(k) as *const __m128i);
        for q in 0..4 {
            let j = 16 * q;
            let v = _mm_or_si128(
                _mm_or_si128(ld(j), _mm_slli_epi16::<2>(ld(64 + j))),
                _mm_or_si128(
                    _mm_slli_epi16::<4>(ld(128 + j)),
                    _mm_slli_epi16::<6>(ld(192 + j)),
                ),
            );
            _mm_storeu_si128(dst.as_mut_ptr().add(j) as *mut __m128i, v);
        }
    }
}

/// One block of canonical 2-bit bytes (weight `4b + f` of quarter `i` in
/// field `f` of byte `16·i + b`) into the 2-bit compute block (code of weight
/// `64·i + j` in field `i` of byte `j`).
///
/// # Safety
/// SSE2 present (always on x86-64).
#[cfg(target_arch = "x86_64")]
#[inline]
unsafe fn canon_block_to_compute(src: &[u8; BLOCK_BYTES], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= BLOCK_BYTES);
    // SAFETY: 16-byte unaligned loads inside src, stores inside dst.
    unsafe {
        let m55 = _mm_set1_epi8(0x55);
        // canonical 00 -> 01, 01 -> 10, 10 -> 00, 11 -> 01 in every field:
        // bit 0 = !(b0 ^ b1), bit 1 = b0 & !b1
        let conv = |v: __m128i| {
            let b0 = _mm_and_si128(v, m55);
            let b1 = _mm_and_si128(_mm_srli_epi16::<1>(v), m55);
            let c0 = _mm_andnot_si128(_mm_xor_si128(b0, b1), m55);
            let c1 = _mm_slli_epi16::<1>(_mm_andnot_si128(b1, b0));
            _mm_or_si128(c0, c1)
        };
        let t: [__m128i; 4] = std::array::from_fn(|i| {
            conv(_mm_loadu_si128(src.as_ptr().add(16 * i) as *const __m128i))
        });
        // g[f]: field f of every quarter's bytes, quarter i into field i
        let m = |i: i8| _mm_set1_epi8(3 << (2 * i));
        let g = |f: usize| {
            let mut acc = _mm_and_si128(t[f], m(f as i8));
            for (i, &ti) in t.iter().enumerate() {
                let sh = match (f as i32 - i as i32) * 2 {
                    0 => continue,
                    2 => _mm_srli_epi16::<2>(ti),
                    4 => _mm_srli_epi16::<4>(ti),
                    6 => _mm_srli_epi16::<6>(ti),
                    -2 => _mm_slli_epi16::<2>(ti),
                    -4 => _mm_slli_epi16::<4>(ti),
                    _ => _mm_slli_epi16::<6>(ti),
                };
                acc = _mm_or_si128(acc, _mm_and_si128(sh, m(i as i8)));
            }
            acc
        };
        let (g0, g1, g2, g3) = (g(0), g(1), g(2), g(3));
        // byte 4b + f = g[f][b]
        let a = _mm_unpacklo_epi8(g0, g1);
        let b = _mm_unpackhi_epi8(g0, g1);
        let c = _mm_unpacklo_epi8(g2, g3);
        let d = _mm_unpackhi_epi8(g2, g3);
        let p = dst.as_mut_ptr() as *mut __m128i;
        _mm_storeu_si128(p, _mm_unpacklo_epi16(a, c));
        _mm_storeu_si128(p.add(1), _mm_unpackhi_epi16(a, c));
        _mm_storeu_si128(p.add(2), _mm_unpacklo_epi16(b, d));
        _mm_storeu_si128(p.add(3), _mm_unpackhi_epi16(b, d));
    }
}

impl ComputeLayout {
    /// Builds the layout from canonical 2-bit bytes (`rows * ceil(cols/4)`).
    /// A refused allocation unwinds (see [`Self::try_from_2bit`]).
    pub fn from_2bit(packed: &[u8], rows: usize, cols: usize, format: ComputeFormat) -> Self {
        Self::try_from_2bit(packed, rows, cols, format).unwrap_or_else(|e| std::panic::panic_any(e))
    }

    /// [`Self::from_2bit`], with [`crate::Error::OutOfMemory`] naming `matrix`
    /// when the layout cannot be allocated.
    pub fn try_from_2bit(
        packed: &[u8],
        rows: usize,
        cols: usize,
        format: ComputeFormat,
    ) -> crate::Result<Self> {
        let rb = row_bytes(cols, PackedLayout::TwoBit);
        #[cfg(target_arch = "x86_64")]
        if format == ComputeFormat::TwoBit {
            return Self::from_2bit_direct(packed, rows, cols);
        }
        Self::from_rows(rows, cols, format, |o, c| {
            let row = &packed[o * rb..(o + 1) * rb];
            for (d, &b) in c.chunks_mut(4).zip(row) {
                d.copy_from_slice(&CANON_BYTE_TO_C[b as usize][..d.len()]);
            }
        })
    }

    /// The 2-bit compute layout straight from canonical bytes, 64 bytes a
    /// block at a time with SSE2 (baseline on x86-64): the canonical codes of
    /// each 16-byte quarter become codes `t + 1` in place (bitwise), then a
    /// 4 x 4 transposition of 2-bit fields and a 4-way byte interleave put
    /// weight `64·i + j` of the block into field `i` of byte `j`. Equal byte
    /// for byte to [`Self::from_rows`] over [`CANON_BYTE_TO_C`] (tested).
    #[cfg(target_arch = "x86_64")]
    fn from_2bit_direct(packed: &[u8], rows: usize, cols: usize) -> crate::Result<Self> {
        let format = ComputeFormat::TwoBit;
        let bk = format.block_k();
        let nkb = cols.div_ceil(bk);
        let ntiles = rows.div_ceil(TILE_ROWS);
        let rb = row_bytes(cols, PackedLayout::TwoBit);
        let tile_bytes = crate::checked_mul(nkb, TILE_ROWS * BLOCK_BYTES, "matrix")?;
        let total = crate::checked_mul(ntiles, tile_bytes, "matrix")?;
        let mut data = Aligned::<u8>::try_zeroed(total, "matrix")?;
        // canonical bytes of one block: 256 weights
        const CB: usize = BLOCK_BYTES;
        let tail = cols % 4;
        let build = |t: usize, out: &mut [u8]| {
            for r in 0..TILE_ROWS {
                let o = t * TILE_ROWS + r;
                for kb in 0..nkb {
                    let dst = &mut out[(kb * TILE_ROWS + r) * BLOCK_BYTES..][..BLOCK_BYTES];
                    if o >= rows {
                        dst.fill(0x55); // code 1 (weight 0) in every field
                        continue;
                    }
                    let row = &packed[o * rb..(o + 1) * rb];
                    let lo = kb * CB;
                    let src: [u8; CB] = if lo + CB <= rb && (tail == 0 || lo + CB < rb) {
                        row[lo..lo + CB].try_into().expect("64 bytes")
                    } else {
                        // the last block: canonical zeros (00) past the row,
                        // the fields past `cols` of its last byte cleared
                        let mut b = [0u8; CB];
                        let n = rb - lo;
                        b[..n].copy_from_slice(&row[lo..]);
                        if tail != 0 {
                            b[n - 1] &= (1u8 << (2 * tail)) - 1;
                        }
                        b
                    };
                    // SAFETY: SSE2 is part of x86-64; 64-byte source and destination.
                    unsafe { canon_block_to_compute(&src, dst) };
                }
            }
        };
        if tile_bytes > 0 {
            if total < 1 << 16 {
                data.as_mut_slice()
                    .chunks_mut(tile_bytes)
                    .enumerate()
                    .for_each(|(t, out)| build(t, out));
            } else {
                crate::parallel::install(|| {
                    data.as_mut_slice()
                        .par_chunks_mut(tile_bytes)
                        .enumerate()
                        .for_each(|(t, out)| build(t, out))
                });
            }
        }
        Ok(ComputeLayout {
            format,
            nkb,
            ntiles,
            data,
        })
    }

    /// Builds the layout from codes `t + 1` (each 0, 1 or 2: the caller
    /// guarantees it) written row by row by `fill(o, c)` (`cols` values):
    /// importers whose bytes already hold such codes skip the canonical copy.
    pub(crate) fn from_code_rows(
        rows: usize,
        cols: usize,
        format: ComputeFormat,
        fill: impl Fn(usize, &mut [u8]) + Sync,
    ) -> crate::Result<Self> {
        Self::from_rows(rows, cols, format, fill)
    }

    /// The same weights in `format` (decoded row by row from this layout, no
    /// canonical copy in between).
    pub fn to_format(&self, rows: usize, cols: usize, format: ComputeFormat) -> Self {
        self.try_to_format(rows, cols, format)
            .unwrap_or_else(|e| std::panic::panic_any(e))
    }

    /// [`Self::to_format`], with [`crate::Error::OutOfMemory`] naming `matrix`.
    pub fn try_to_format(
        &self,
        rows: usize,
        cols: usize,
        format: ComputeFormat,
    ) -> crate::Result<Self> {
        if format == self.format {
            return Ok(ComputeLayout {
                format: self.format,
                nkb: self.nkb,
                ntiles: self.ntiles,
                data: self.data.try_clone()?,
            });
        }
        Self::from_rows(rows, cols, format, |o, c| self.row_codes(o, c))
    }

    /// Builds the layout from a row source: `fill(o, c)` writes the codes
    /// `t + 1` of row `o` into `c` (`cols` values).
    fn from_rows(
        rows: usize,
        cols: usize,
        format: ComputeFormat,
        fill: impl Fn(usize, &mut [u8]) + Sync,
    ) -> crate::Result<Self> {
        let bk = format.block_k();
        let nkb = cols.div_ceil(bk);
        let ntiles = rows.div_ceil(TILE_ROWS);
        let tile_bytes = crate::checked_mul(nkb, TILE_ROWS * BLOCK_BYTES, "matrix")?;
        let total = crate::checked_mul(ntiles, tile_bytes, "matrix")?;
        let mut data = Aligned::<u8>::try_zeroed(total, "matrix")?;
        if tile_bytes > 0 {
            crate::parallel::install(|| {
                data.as_mut_slice()
                    .par_chunks_mut(tile_bytes)
                    .enumerate()
                    .for_each(|(t, out)| {
                        // codes past `cols` stay 1 (weight 0); `fill`
                        // rewrites only the first `cols` of each row
                        let mut c = vec![1u8; nkb * bk];
                        for r in 0..TILE_ROWS {
                            let o = t * TILE_ROWS + r;
                            if o < rows {
                                fill(o, &mut c[..cols]);
                            } else {
                                c.fill(1);
                            }
                            for kb in 0..nkb {
                                let ck = &c[kb * bk..(kb + 1) * bk];
                                let dst =
                                    &mut out[(kb * TILE_ROWS + r) * BLOCK_BYTES..][..BLOCK_BYTES];
                                #[cfg(target_arch = "x86_64")]
                                if format == ComputeFormat::TwoBit {
                                    // SAFETY: SSE2 is part of x86-64; 256 codes in, 64 bytes out.
                                    unsafe { codes_block_to_2bit(ck, dst) };
                                    continue;
                                }
                                for (j, d) in dst.iter_mut().enumerate() {
                                    *d = match format {
                                        ComputeFormat::TwoBit => {
                                            (0..4).fold(0u8, |b, i| b | ck[64 * i + j] << (2 * i))
                                        }
                                        ComputeFormat::Base3 => base3_byte([
                                            ck[j],
                                            ck[64 + j],
                                            ck[128 + j],
                                            ck[192 + j],
                                            ck[256 + j],
                                        ]),
                                    };
                                }
                            }
                        }
                    })
            });
        }
        Ok(ComputeLayout {
            format,
            nkb,
            ntiles,
            data,
        })
    }

    /// Calls `put(k, c)` with the code `c = t + 1` of each of the first `n`
    /// (at most [`Self::kp`]) weights of row `o` (`o < ntiles * TILE_ROWS`):
    /// the scalar inverse of the construction, read by the exports and the
    /// scalar reference kernel.
    #[inline]
    fn decode_row(&self, o: usize, n: usize, mut put: impl FnMut(usize, u8)) {
        assert!(n <= self.kp(), "decode_row: {n} weights > kp {}", self.kp());
        let bk = self.format.block_k();
        let tile = self.tile(o / TILE_ROWS);
        let r = o % TILE_ROWS;
        for kb in 0..n.div_ceil(bk) {
            let src = &tile[(kb * TILE_ROWS + r) * BLOCK_BYTES..][..BLOCK_BYTES];
            let k0 = kb * bk;
            for (j, &b) in src.iter().enumerate() {
                match self.format {
                    ComputeFormat::TwoBit => {
                        for i in 0..4 {
                            let k = k0 + 64 * i + j;
                            if k < n {
                                put(k, (b >> (2 * i)) & 3);
                            }
                        }
                    }
                    ComputeFormat::Base3 => {
                        for i in 0..5 {
                            let k = k0 + 64 * i + j;
                            if k < n {
                                put(k, base3_digit(b, i));
                            }
                        }
                    }
                }
            }
        }
    }

    /// The codes `t + 1` of the first `out.len()` weights of row `o`.
    pub fn row_codes(&self, o: usize, out: &mut [u8]) {
        self.decode_row(o, out.len(), |k, c| out[k] = c);
    }

    /// The trits of the first `out.len()` weights of row `o`.
    pub fn row_trits(&self, o: usize, out: &mut [i8]) {
        self.decode_row(o, out.len(), |k, c| out[k] = c as i8 - 1);
    }

    /// The format.
    pub fn format(&self) -> ComputeFormat {
        self.format
    }
    /// K blocks per row.
    pub fn nkb(&self) -> usize {
        self.nkb
    }
    /// Padded K (`nkb * block_k`).
    pub fn kp(&self) -> usize {
        self.nkb * self.format.block_k()
    }
    /// Number of row tiles.
    pub fn ntiles(&self) -> usize {
        self.ntiles
    }
    /// Bytes of one tile.
    pub fn tile_bytes(&self) -> usize {
        self.nkb * TILE_ROWS * BLOCK_BYTES
    }
    /// The bytes of tile `t`.
    pub fn tile(&self, t: usize) -> &[u8] {
        self.tiles(t, 1)
    }
    /// Tiles `t..t + n`, consecutive in memory.
    pub fn tiles(&self, t: usize, n: usize) -> &[u8] {
        let tb = self.tile_bytes();
        &self.data.as_slice()[t * tb..(t + n) * tb]
    }
    /// Bytes held.
    pub fn memory_bytes(&self) -> usize {
        self.data.as_slice().len()
    }

    /// Decodes tile `t` into codes `c` (`TILE_ROWS` rows of `kp` bytes each),
    /// scalar; the SIMD kernels have their own decoders that must equal this.
    pub fn decode_tile_scalar(&self, t: usize, out: &mut [u8]) {
        let kp = self.kp();
        let bk = self.format.block_k();
        let tile = self.tile(t);
        for kb in 0..self.nkb {
            for r in 0..TILE_ROWS {
                let src = &tile[(kb * TILE_ROWS + r) * BLOCK_BYTES..][..BLOCK_BYTES];
                let dst = &mut out[r * kp + kb * bk..][..bk];
                for (j, &b) in src.iter().enumerate() {
                    match self.format {
                        ComputeFormat::TwoBit => {
                            for i in 0..4 {
                                dst[64 * i + j] = (b >> (2 * i)) & 3;
                            }
                        }
                        ComputeFormat::Base3 => {
                            for i in 0..5 {
                                dst[64 * i + j] = base3_digit(b, i);
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_of_every_size_class_are_zeroed_aligned_and_disjoint() {
        // below the arena, arena-carved (several a page), own huge allocation
        let sizes = [
            1usize,
            63,
            4096,
            (256 << 10) - 64,
            256 << 10,
            700 << 10,
            1 << 20,
            (2 << 20) - 64,
            2 << 20,
            (5 << 20) + 7,
        ];
        let mut bufs: Vec<(u8, Aligned<u8>)> = Vec::new();
        for round in 0..3u8 {
            for (i, &n) in sizes.iter().enumerate() {
                let mut a = Aligned::<u8>::zeroed(n);
                assert_eq!(a.as_slice().len(), n);
                assert_eq!(a.as_slice().as_ptr() as usize % 64, 0, "size {n}");
                assert!(a.as_slice().iter().all(|&b| b == 0), "size {n} not zeroed");
                let tag = round * 16 + i as u8 + 1;
                a.as_mut_slice().fill(tag);
                bufs.push((tag, a));
            }
            // free every other buffer (holes inside arena pages), keep the rest
            let mut k = 0;
            bufs.retain(|_| {
                k += 1;
                k % 2 == 0
            });
            for (tag, a) in &bufs {
                assert!(
                    a.as_slice().iter().all(|b| b == tag),
                    "buffer {tag} overwritten"
                );
            }
        }
        let c = bufs[0].1.clone();
        assert_eq!(c.as_slice(), bufs[0].1.as_slice());
    }

    #[test]
    fn base3_fixed_point_round_trips_every_byte() {
        let mut seen = std::collections::HashSet::new();
        for v in 0..243u32 {
            let d = [
                (v / 81 % 3) as u8,
                (v / 27 % 3) as u8,
                (v / 9 % 3) as u8,
                (v / 3 % 3) as u8,
                (v % 3) as u8,
            ];
            let n = base3_byte(d);
            assert!(seen.insert(n), "two digit strings share byte {n}");
            for (i, &di) in d.iter().enumerate() {
                assert_eq!(base3_digit(n, i), di, "v {v} digit {i}");
            }
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn direct_2bit_build_equals_the_code_rows_build() {
        // every canonical byte value (the invalid code 11 reads as 0), rows
        // and columns around the tile and block edges
        for (rows, cols) in [
            (0usize, 5usize),
            (1, 1),
            (1, 3),
            (3, 4),
            (5, 255),
            (5, 256),
            (4, 257),
            (7, 321),
            (9, 515),
            (2, 1024),
            (70, 300),
        ] {
            let rb = row_bytes(cols, PackedLayout::TwoBit);
            let p: Vec<u8> = (0..rows * rb)
                .map(|i| crate::rng::hash2(5, i as u64) as u8)
                .collect();
            let direct = ComputeLayout::from_2bit_direct(&p, rows, cols).unwrap();
            let generic = ComputeLayout::from_rows(rows, cols, ComputeFormat::TwoBit, |o, c| {
                let row = &p[o * rb..(o + 1) * rb];
                for (d, &b) in c.chunks_mut(4).zip(row) {
                    d.copy_from_slice(&CANON_BYTE_TO_C[b as usize][..d.len()]);
                }
            })
            .unwrap();
            assert_eq!((direct.nkb, direct.ntiles), (generic.nkb, generic.ntiles));
            // the definition, byte by byte
            let code = |o: usize, k: usize| -> u8 {
                if o < rows && k < cols {
                    CANON_TO_C[(p[o * rb + k / 4] >> (2 * (k % 4))) as usize & 3]
                } else {
                    1
                }
            };
            let mut want = Vec::new();
            for t in 0..direct.ntiles {
                for kb in 0..direct.nkb {
                    for r in 0..TILE_ROWS {
                        for j in 0..BLOCK_BYTES {
                            let o = t * TILE_ROWS + r;
                            want.push(
                                (0..4).fold(0u8, |b, i| {
                                    b | code(o, kb * 256 + 64 * i + j) << (2 * i)
                                }),
                            );
                        }
                    }
                }
            }
            assert!(
                direct.data.as_slice() == want.as_slice(),
                "direct {rows}x{cols}"
            );
            assert!(
                generic.data.as_slice() == want.as_slice(),
                "code rows {rows}x{cols}"
            );
        }
    }

    #[test]
    fn layouts_decode_to_the_canonical_trits() {
        for format in [ComputeFormat::TwoBit, ComputeFormat::Base3] {
            for (rows, cols) in [(0, 5), (1, 1), (5, 257), (7, 321), (4, 640), (3, 0)] {
                let t = ndarray::Array2::from_shape_fn((rows, cols), |(i, j)| {
                    (crate::rng::hash2(9, (i * cols + j) as u64) % 3) as i8 - 1
                });
                let p = crate::ternary::pack::pack_2bit(t.view()).unwrap();
                let l = ComputeLayout::from_2bit(&p, rows, cols, format);
                assert_eq!(l.kp() % format.block_k(), 0);
                assert!(l.kp() >= cols);
                let mut buf = vec![9u8; TILE_ROWS * l.kp()];
                for tile in 0..l.ntiles() {
                    l.decode_tile_scalar(tile, &mut buf);
                    for r in 0..TILE_ROWS {
                        for k in 0..l.kp() {
                            let o = tile * TILE_ROWS + r;
                            let want = if o < rows && k < cols {
                                t[[o, k]] + 1
                            } else {
                                1
                            };
                            assert_eq!(buf[r * l.kp() + k] as i8, want, "{format:?} {o} {k}");
                        }
                    }
                }
            }
        }
    }
}
