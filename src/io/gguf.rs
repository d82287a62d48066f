//! GGUF v3 files (ggml / llama.cpp): reading, writing, and ggml's ternary
//! block types `TQ1_0` and `TQ2_0`.
//!
//! # File layout (little-endian)
//! `"GGUF"`, version `u32` (3; 2 has the same layout and is read too),
//! tensor count `u64`, metadata count `u64`; metadata key/values (key:
//! `u64` length + UTF-8 bytes; value type `u32`; value, arrays as element
//! type `u32` + count `u64` + elements); tensor infos (name, `n_dims: u32`
//! (at most 4), `ne[n_dims]: u64` innermost first, ggml type `u32`, offset
//! `u64` relative to the data section, a multiple of the alignment); padding
//! to `general.alignment` (default 32); the data section. A tensor's shape
//! here is `ne` reversed (`[rows, cols]` for a 2-D weight with `ne = [cols,
//! rows]`).
//!
//! # TQ2_0 (66 bytes / 256 weights)
//! `qs[64]`, then `d: f16`. Weight `k = 128 h + 32 l + m` (`h < 2`, `l < 4`,
//! `m < 32`) is `(((qs[32 h + m] >> 2 l) & 3) - 1) · d`. Code 3 is invalid.
//!
//! # TQ1_0 (54 bytes / 256 weights)
//! `qs[48]`, `qh[4]`, `d: f16`. Five trits a byte as a fixed-point fraction:
//! for trits `x_0..x_4` (first most significant) `v = Σ (x_n + 1) 3^(4-n)`
//! and the byte is `ceil(256 v / 243)`; trit `n` is recovered as
//! `((byte · 3^n mod 256) · 3) >> 8`. Bytes `qs[0..32]` hold weights
//! `32 n + m`, bytes `qs[32..48]` weights `160 + 16 n + m`, and `qh[j]` four
//! trits (then a zero digit) for weights `240 + 4 n + j`. Bytes that are
//! not the encoding of any digits (13 of 256 values for `qs`) are invalid.
//!
//! Both types carry one scale per 256 weights along a row; imported
//! matrices get [`Granularity::PerGroup`]`(256)` scales, the blocks the
//! fast kernels run. Dequantized values equal ggml's `dequantize_row_tq*`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;

use super::dtype::{Dtype, TensorInfo, QK_K};
use super::Mapping;
use crate::precision::convert::{f16_bits_to_f32, f32_to_f16_bits};
use crate::ternary::{Granularity, PackedLayout, TernaryMatrix};
use crate::{Error, Result};

/// `"GGUF"` read as a little-endian `u32`.
pub const MAGIC: u32 = 0x4655_4747;
/// Version written.
pub const VERSION: u32 = 3;
/// Alignment when `general.alignment` is absent.
pub(crate) const DEFAULT_ALIGNMENT: usize = 32;
/// ggml's limit on tensor dimensions.
pub(crate) const MAX_DIMS: usize = 4;

/// ggml type numbers of the types this module converts.
pub(crate) mod ggml_type {
    /// `GGML_TYPE_F32`.
    pub(crate) const F32: u32 = 0;
    /// `GGML_TYPE_F16`.
    pub(crate) const F16: u32 = 1;
    /// `GGML_TYPE_I8`.
    pub(crate) const I8: u32 = 24;
    /// `GGML_TYPE_I16`.
    pub(crate) const I16: u32 = 25;
    /// `GGML_TYPE_I32`.
    pub(crate) const I32: u32 = 26;
    /// `GGML_TYPE_I64`.
    pub(crate) const I64: u32 = 27;
    /// `GGML_TYPE_F64`.
    pub(crate) const F64: u32 = 28;
    /// `GGML_TYPE_BF16`.
    pub(crate) const BF16: u32 = 30;
    /// `GGML_TYPE_TQ1_0`.
    pub(crate) const TQ1_0: u32 = 34;
    /// `GGML_TYPE_TQ2_0`.
    pub(crate) const TQ2_0: u32 = 35;
}

/// `(name, elements a block, bytes a block)` of every ggml type number
/// that gguf-py knows (others are refused).
const GGML_TYPES: &[(u32, &str, usize, usize)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 40),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

/// `(elements, bytes)` a block of ggml type `t`, if known.
pub fn ggml_block(t: u32) -> Option<(usize, usize)> {
    GGML_TYPES.iter().find(|e| e.0 == t).map(|e| (e.2, e.3))
}

/// The name of ggml type `t`, if known.
pub fn ggml_type_name(t: u32) -> Option<&'static str> {
    GGML_TYPES.iter().find(|e| e.0 == t).map(|e| e.1)
}

/// The [`Dtype`] of ggml type `t` (known types only).
pub fn dtype_of_ggml(t: u32) -> Option<Dtype> {
    use ggml_type as g;
    ggml_block(t)?;
    Some(match t {
        g::F32 => Dtype::F32,
        g::F16 => Dtype::F16,
        g::BF16 => Dtype::BF16,
        g::F64 => Dtype::F64,
        g::I8 => Dtype::I8,
        g::I16 => Dtype::I16,
        g::I32 => Dtype::I32,
        g::I64 => Dtype::I64,
        g::TQ1_0 => Dtype::TQ1_0,
        g::TQ2_0 => Dtype::TQ2_0,
        o => Dtype::Other(o),
    })
}

/// The ggml type number of `d`, if GGUF can hold it.
pub fn ggml_of_dtype(d: Dtype) -> Option<u32> {
    use ggml_type as g;
    Some(match d {
        Dtype::F32 => g::F32,
        Dtype::F16 => g::F16,
        Dtype::BF16 => g::BF16,
        Dtype::F64 => g::F64,
        Dtype::I8 => g::I8,
        Dtype::I16 => g::I16,
        Dtype::I32 => g::I32,
        Dtype::I64 => g::I64,
        Dtype::TQ1_0 => g::TQ1_0,
        Dtype::TQ2_0 => g::TQ2_0,
        Dtype::Other(t) => t,
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// TQ1_0 / TQ2_0 blocks
// ---------------------------------------------------------------------------

/// Trit `n` (0..5) of a TQ1_0 byte, as a code 0..=2.
#[inline(always)]
fn tq1_digit(b: u8, n: u32) -> u8 {
    let q = b.wrapping_mul(3u8.pow(n));
    ((q as u16 * 3) >> 8) as u8
}

/// `ceil(256 v / 243)`: the TQ1_0 byte of the 5-digit base-3 number `v`.
#[inline(always)]
fn tq1_encode(v: u16) -> u8 {
    (v * 256).div_ceil(243) as u8
}

/// For each byte: bit 0 set if it is a valid `qs` byte, bit 1 if a valid `qh`
/// byte (the exact encoding of the digits it decodes to).
static TQ1_VALID: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let mut v: u16 = 0;
        let mut n = 0;
        while n < 5 {
            let q = (b as u8).wrapping_mul(match n {
                0 => 1,
                1 => 3,
                2 => 9,
                3 => 27,
                _ => 81,
            });
            v = v * 3 + ((q as u16 * 3) >> 8);
            n += 1;
        }
        let mut f = 0;
        if (v * 256).div_ceil(243) as usize == b {
            f |= 1;
        }
        // qh: four digits, then a zero fifth digit.
        if v.is_multiple_of(3) && (v * 256).div_ceil(243) as usize == b {
            f |= 2;
        }
        t[b] = f;
        b += 1;
    }
    t
};

/// Decodes TQ2_0 block `blk` into codes (`t + 1`) of its 256 weights, or the
/// index of the first weight with code 3.
fn tq2_codes(blk: &[u8], out: &mut [u8; QK_K]) -> std::result::Result<(), usize> {
    for h in 0..2 {
        for l in 0..4 {
            for m in 0..32 {
                let c = (blk[32 * h + m] >> (2 * l)) & 3;
                let k = 128 * h + 32 * l + m;
                if c == 3 {
                    return Err(k);
                }
                out[k] = c;
            }
        }
    }
    Ok(())
}

/// Decodes TQ1_0 block `blk` into codes of its 256 weights, or the index of
/// the first invalid byte in the block.
fn tq1_codes(blk: &[u8], out: &mut [u8; QK_K]) -> std::result::Result<(), usize> {
    for (i, &b) in blk[..48].iter().enumerate() {
        if TQ1_VALID[b as usize] & 1 == 0 {
            return Err(i);
        }
    }
    for (i, &b) in blk[48..52].iter().enumerate() {
        if TQ1_VALID[b as usize] & 2 == 0 {
            return Err(48 + i);
        }
    }
    for n in 0..5u32 {
        for m in 0..32 {
            out[32 * n as usize + m] = tq1_digit(blk[m], n);
        }
        for m in 0..16 {
            out[160 + 16 * n as usize + m] = tq1_digit(blk[32 + m], n);
        }
    }
    for n in 0..4u32 {
        for j in 0..4 {
            out[240 + 4 * n as usize + j] = tq1_digit(blk[48 + j], n);
        }
    }
    Ok(())
}

/// Encodes 256 codes (`t + 1`) and scale bits into a TQ2_0 block.
fn tq2_encode_block(codes: &[u8; QK_K], d: u16, blk: &mut [u8]) {
    for h in 0..2 {
        for m in 0..32 {
            let mut b = 0u8;
            for l in 0..4 {
                b |= codes[128 * h + 32 * l + m] << (2 * l);
            }
            blk[32 * h + m] = b;
        }
    }
    blk[64..66].copy_from_slice(&d.to_le_bytes());
}

/// Encodes 256 codes and scale bits into a TQ1_0 block (as ggml's quantizer).
fn tq1_encode_block(codes: &[u8; QK_K], d: u16, blk: &mut [u8]) {
    for m in 0..32 {
        let v = (0..5).fold(0u16, |v, n| v * 3 + codes[m + 32 * n] as u16);
        blk[m] = tq1_encode(v);
    }
    for m in 0..16 {
        let v = (0..5).fold(0u16, |v, n| v * 3 + codes[160 + m + 16 * n] as u16);
        blk[32 + m] = tq1_encode(v);
    }
    for j in 0..4 {
        let v = (0..4).fold(0u16, |v, n| v * 3 + codes[240 + j + 4 * n] as u16);
        blk[48 + j] = tq1_encode(v * 3);
    }
    blk[52..54].copy_from_slice(&d.to_le_bytes());
}

fn block_err(name: &str, dtype: Dtype, block: usize, what: String) -> Error {
    Error::data(
        "file",
        format!("tensor `{name}` ({dtype}): block {block}: {what}"),
    )
}

/// Decodes every block of a TQ tensor: `f(block index, codes, scale)`.
fn for_each_block(
    dtype: Dtype,
    src: &[u8],
    name: &str,
    mut f: impl FnMut(usize, &[u8; QK_K], f32),
) -> Result<()> {
    let bb = dtype.block().1;
    let mut codes = [0u8; QK_K];
    for (bi, blk) in src.chunks_exact(bb).enumerate() {
        let r = match dtype {
            Dtype::TQ1_0 => tq1_codes(blk, &mut codes).map_err(|i| {
                format!(
                    "byte {i} ({:#04x}) is not a valid TQ1_0 base-3 code",
                    blk[i]
                )
            }),
            _ => tq2_codes(blk, &mut codes)
                .map_err(|k| format!("invalid 2-bit code 3 for weight {k}")),
        };
        r.map_err(|w| block_err(name, dtype, bi, w))?;
        let d = f16_bits_to_f32(u16::from_le_bytes([blk[bb - 2], blk[bb - 1]]));
        if !d.is_finite() {
            return Err(block_err(name, dtype, bi, format!("scale is {d}")));
        }
        f(bi, &codes, d);
    }
    Ok(())
}

fn dequantize(dtype: Dtype, src: &[u8], dst: &mut [f32], name: &str) -> Result<()> {
    let bb = dtype.block().1;
    if !src.len().is_multiple_of(bb) || src.len() / bb * QK_K != dst.len() {
        return Err(Error::shape(
            "tensor",
            format!(
                "`{name}`: {} bytes of {dtype} for {} values",
                src.len(),
                dst.len()
            ),
        ));
    }
    for_each_block(dtype, src, name, |bi, codes, d| {
        for (o, &c) in dst[bi * QK_K..(bi + 1) * QK_K].iter_mut().zip(codes) {
            *o = (c as i32 - 1) as f32 * d;
        }
    })
}

/// ggml's `dequantize_row_tq1_0` over whole blocks (invalid bytes and
/// non-finite scales are errors naming the tensor and block).
pub fn dequantize_tq1_0(src: &[u8], dst: &mut [f32], name: &str) -> Result<()> {
    dequantize(Dtype::TQ1_0, src, dst, name)
}

/// ggml's `dequantize_row_tq2_0` over whole blocks (code 3 and non-finite
/// scales are errors naming the tensor and block).
pub fn dequantize_tq2_0(src: &[u8], dst: &mut [f32], name: &str) -> Result<()> {
    dequantize(Dtype::TQ2_0, src, dst, name)
}

/// A `[rows, cols]` TQ1_0/TQ2_0 tensor as a ternary matrix with one scale
/// per 256-weight block ([`Granularity::PerGroup`]`(256)`).
pub fn tq_to_matrix(
    dtype: Dtype,
    src: &[u8],
    rows: usize,
    cols: usize,
    name: &str,
) -> Result<TernaryMatrix> {
    if !cols.is_multiple_of(QK_K) {
        return Err(Error::shape(
            "tensor",
            format!("`{name}`: {cols} columns is not a whole number of {QK_K}-weight blocks"),
        ));
    }
    let nb = cols / QK_K;
    let nblocks = rows
        .checked_mul(nb)
        .ok_or_else(|| Error::overflow("tensor", format!("`{name}`: {rows} x {nb} blocks")))?;
    if dtype.nbytes(nblocks * QK_K) != Some(src.len()) {
        return Err(Error::shape(
            "tensor",
            format!("`{name}`: {} bytes of {dtype} for {rows}x{cols}", src.len()),
        ));
    }
    let rb = cols / 4;
    let mut packed = super::try_alloc(rows * rb, 0u8, "tensor")?;
    let mut scales = super::try_alloc(nblocks, 0f32, "tensor")?;
    for_each_block(dtype, src, name, |bi, codes, d| {
        // The library's scales are magnitudes (>= 0); ggml allows any sign.
        // A negative d is stored as |d| with the block's trits negated:
        // (c - 1) d = ((2 - c) - 1) (-d), exactly.
        let neg = d < 0.0;
        scales[bi] = d.abs();
        // Block bi is row bi / nb, columns (bi % nb) * 256 ..; 64 bytes.
        let dst = &mut packed[(bi / nb) * rb + (bi % nb) * 64..][..64];
        let map: [u8; 3] = if neg { [1, 0, 2] } else { [2, 0, 1] };
        for (o, q) in dst.iter_mut().zip(codes.chunks_exact(4)) {
            // code c = t + 1 -> library code: 0 -> 10, 1 -> 00, 2 -> 01
            // (mirrored for a negative block scale).
            let f = |c: u8| map[c as usize];
            *o = f(q[0]) | f(q[1]) << 2 | f(q[2]) << 4 | f(q[3]) << 6;
        }
    })?;
    TernaryMatrix::from_packed(
        &packed,
        rows,
        cols,
        PackedLayout::TwoBit,
        &scales,
        Granularity::PerGroup(QK_K),
    )
}

/// A ternary matrix as TQ1_0/TQ2_0 blocks. Needs `cols % 256 == 0` and one
/// scale per block: per-tensor, per-row, or per-group with groups that are
/// a multiple of 256 (else [`Error::InvalidArgument`] naming `matrix`).
/// Scales are rounded to f16 (round to nearest even), so the stored values
/// are `t · f16(scale)`; scales beyond f16's range are an error.
pub fn matrix_to_tq(m: &TernaryMatrix, dtype: Dtype, name: &str) -> Result<Vec<u8>> {
    let (rows, cols) = (m.rows(), m.cols());
    if cols % QK_K != 0 {
        return Err(Error::invalid(
            "matrix",
            format!("`{name}`: {cols} columns is not a multiple of {QK_K} ({dtype} blocks)"),
        ));
    }
    if let Granularity::PerGroup(g) = m.granularity() {
        if g % QK_K != 0 {
            return Err(Error::invalid(
                "matrix",
                format!("`{name}`: group size {g} is not a multiple of {QK_K}; {dtype} holds one scale per {QK_K} weights"),
            ));
        }
    }
    let nb = cols / QK_K;
    let bb = dtype.block().1;
    let total = crate::checked_mul(crate::checked_mul(rows, nb, "matrix")?, bb, "matrix")?;
    let mut out = super::try_alloc(total, 0u8, "matrix")?;
    let glen = m.granularity().group_len(cols);
    let mut t = vec![0i8; cols];
    let mut codes = [0u8; QK_K];
    for o in 0..rows {
        m.row_ternary(o, &mut t);
        for b in 0..nb {
            let s = m.scale(o, b * QK_K / glen.max(1));
            let d = f32_to_f16_bits(s);
            if !f16_bits_to_f32(d).is_finite() {
                return Err(Error::invalid(
                    "matrix",
                    format!("`{name}`: scale {s} of row {o} is beyond f16's range"),
                ));
            }
            for (c, &v) in codes.iter_mut().zip(&t[b * QK_K..(b + 1) * QK_K]) {
                *c = (v + 1) as u8;
            }
            let blk = &mut out[(o * nb + b) * bb..][..bb];
            match dtype {
                Dtype::TQ1_0 => tq1_encode_block(&codes, d, blk),
                _ => tq2_encode_block(&codes, d, blk),
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Metadata values
// ---------------------------------------------------------------------------

/// A typed array of metadata values (nested arrays are refused, as ggml does).
#[derive(Debug, Clone, PartialEq)]
pub enum GgufArray {
    /// `UINT8` elements.
    U8(Vec<u8>),
    /// `INT8` elements.
    I8(Vec<i8>),
    /// `UINT16` elements.
    U16(Vec<u16>),
    /// `INT16` elements.
    I16(Vec<i16>),
    /// `UINT32` elements.
    U32(Vec<u32>),
    /// `INT32` elements.
    I32(Vec<i32>),
    /// `FLOAT32` elements.
    F32(Vec<f32>),
    /// `BOOL` elements.
    Bool(Vec<bool>),
    /// `STRING` elements.
    String(Vec<String>),
    /// `UINT64` elements.
    U64(Vec<u64>),
    /// `INT64` elements.
    I64(Vec<i64>),
    /// `FLOAT64` elements.
    F64(Vec<f64>),
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// `UINT8` (type 0).
    U8(u8),
    /// `INT8` (1).
    I8(i8),
    /// `UINT16` (2).
    U16(u16),
    /// `INT16` (3).
    I16(i16),
    /// `UINT32` (4).
    U32(u32),
    /// `INT32` (5).
    I32(i32),
    /// `FLOAT32` (6).
    F32(f32),
    /// `BOOL` (7).
    Bool(bool),
    /// `STRING` (8).
    String(String),
    /// `ARRAY` (9).
    Array(GgufArray),
    /// `UINT64` (10).
    U64(u64),
    /// `INT64` (11).
    I64(i64),
    /// `FLOAT64` (12).
    F64(f64),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U8(v) => Some(v as u64),
            GgufValue::U16(v) => Some(v as u64),
            GgufValue::U32(v) => Some(v as u64),
            GgufValue::U64(v) => Some(v),
            GgufValue::I8(v) => u64::try_from(v).ok(),
            GgufValue::I16(v) => u64::try_from(v).ok(),
            GgufValue::I32(v) => u64::try_from(v).ok(),
            GgufValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }
    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::String(s) => Some(s),
            _ => None,
        }
    }
    fn type_code(&self) -> u32 {
        match self {
            GgufValue::U8(_) => 0,
            GgufValue::I8(_) => 1,
            GgufValue::U16(_) => 2,
            GgufValue::I16(_) => 3,
            GgufValue::U32(_) => 4,
            GgufValue::I32(_) => 5,
            GgufValue::F32(_) => 6,
            GgufValue::Bool(_) => 7,
            GgufValue::String(_) => 8,
            GgufValue::Array(_) => 9,
            GgufValue::U64(_) => 10,
            GgufValue::I64(_) => 11,
            GgufValue::F64(_) => 12,
        }
    }
}

// ---------------------------------------------------------------------------
// Reader
// ---------------------------------------------------------------------------

/// A bounds-checked cursor over the file's bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: impl std::fmt::Display) -> Error {
        Error::data(
            "file",
            format!("{}: at byte {}: {what}", self.path.display(), self.pos),
        )
    }
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes, {} left",
                self.left()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8"),
        ))
    }
    /// A count of items each at least `min` bytes long, checked against the
    /// bytes left before anything is allocated for them.
    fn count(&mut self, min: usize, what: &str) -> Result<usize> {
        let n = self.u64(what)?;
        if n > (self.left() / min.max(1)) as u64 {
            return Err(self.err(format!(
                "{what} is {n}, but only {} bytes are left (a lying length)",
                self.left()
            )));
        }
        Ok(n as usize)
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        if n > self.left() as u64 {
            return Err(self.err(format!(
                "{what}: string length {n} exceeds the {} bytes left",
                self.left()
            )));
        }
        let b = self.take(n as usize, what)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|e| self.err(format!("{what} is not UTF-8: {e}")))
    }
    fn scalar(&mut self, ty: u32, what: &str) -> Result<GgufValue> {
        Ok(match ty {
            0 => GgufValue::U8(self.take(1, what)?[0]),
            1 => GgufValue::I8(self.take(1, what)?[0] as i8),
            2 => GgufValue::U16(u16::from_le_bytes(
                self.take(2, what)?.try_into().expect("2"),
            )),
            3 => GgufValue::I16(i16::from_le_bytes(
                self.take(2, what)?.try_into().expect("2"),
            )),
            4 => GgufValue::U32(self.u32(what)?),
            5 => GgufValue::I32(self.u32(what)? as i32),
            6 => GgufValue::F32(f32::from_bits(self.u32(what)?)),
            7 => {
                let b = self.take(1, what)?[0];
                if b > 1 {
                    return Err(self.err(format!("{what}: bool byte {b} is neither 0 nor 1")));
                }
                GgufValue::Bool(b == 1)
            }
            8 => GgufValue::String(self.string(what)?),
            10 => GgufValue::U64(self.u64(what)?),
            11 => GgufValue::I64(self.u64(what)? as i64),
            12 => GgufValue::F64(f64::from_bits(self.u64(what)?)),
            9 => return Err(self.err(format!("{what}: nested arrays are not supported"))),
            t => return Err(self.err(format!("{what}: unknown value type {t}"))),
        })
    }
    fn array(&mut self, what: &str) -> Result<GgufArray> {
        let ty = self.u32(what)?;
        let min = match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            8 | 10..=12 => 8,
            9 => return Err(self.err(format!("{what}: nested arrays are not supported"))),
            t => return Err(self.err(format!("{what}: unknown array element type {t}"))),
        };
        let n = self.count(min, &format!("{what}: array length"))?;
        macro_rules! arr {
            ($variant:ident, $get:expr) => {{
                let mut v = crate::error::try_with_capacity(n, "metadata array")?;
                for _ in 0..n {
                    let x = $get(&mut *self)?;
                    v.push(x);
                }
                GgufArray::$variant(v)
            }};
        }
        Ok(match ty {
            0 => arr!(U8, |c: &mut Self| c.take(1, what).map(|b| b[0])),
            1 => arr!(I8, |c: &mut Self| c.take(1, what).map(|b| b[0] as i8)),
            2 => arr!(U16, |c: &mut Self| c
                .take(2, what)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))),
            3 => arr!(I16, |c: &mut Self| c
                .take(2, what)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))),
            4 => arr!(U32, |c: &mut Self| c.u32(what)),
            5 => arr!(I32, |c: &mut Self| c.u32(what).map(|v| v as i32)),
            6 => arr!(F32, |c: &mut Self| c.u32(what).map(f32::from_bits)),
            7 => arr!(Bool, |c: &mut Self| match c.scalar(7, what)? {
                GgufValue::Bool(b) => Ok(b),
                _ => unreachable!(),
            }),
            8 => arr!(String, |c: &mut Self| c.string(what)),
            10 => arr!(U64, |c: &mut Self| c.u64(what)),
            11 => arr!(I64, |c: &mut Self| c.u64(what).map(|v| v as i64)),
            _ => arr!(F64, |c: &mut Self| c.u64(what).map(f64::from_bits)),
        })
    }
}

/// One tensor of a GGUF file.
#[derive(Debug, Clone)]
pub struct GgufTensor {
    /// Name.
    pub name: String,
    /// ggml dimensions, innermost first.
    pub ne: Vec<u64>,
    /// ggml type number.
    pub ggml_type: u32,
    /// Offset in the data section.
    pub offset: u64,
    /// Dtype, logical shape (`ne` reversed) and size.
    pub info: TensorInfo,
    start: usize,
}

/// An open GGUF file: the mapping, metadata and tensor table.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mapping,
    version: u32,
    metadata: Vec<(String, GgufValue)>,
    tensors: Vec<GgufTensor>,
    index: HashMap<String, usize>,
    alignment: usize,
    data_start: usize,
}

impl GgufFile {
    /// Maps and validates `path`.
    ///
    /// Errors ([`Error::InvalidData`] naming the file, the byte offset and,
    /// where there is one, the key or tensor): wrong magic or version,
    /// truncation anywhere, lengths and counts larger than the bytes left,
    /// unknown value or ggml types, nested arrays, duplicate keys or tensor
    /// names, an alignment that is not a power of two, more than 4
    /// dimensions, a row that is not a whole number of blocks, offsets that
    /// are misaligned, out of range or overlap another tensor.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let map = super::map_file(path)?;
        Self::from_mapping(path, map)
    }

    /// Parses a GGUF file held in memory (`path` only names it in errors);
    /// same checks as [`Self::open`].
    pub fn from_bytes(bytes: Vec<u8>, path: impl AsRef<Path>) -> Result<Self> {
        Self::from_mapping(path.as_ref(), Mapping::Owned(bytes))
    }

    pub(crate) fn from_mapping(path: &Path, map: Mapping) -> Result<Self> {
        let buf = map.bytes();
        let mut c = Cursor { buf, pos: 0, path };
        let magic = c.u32("magic")?;
        if magic != MAGIC {
            return Err(c.err(format!(
                "magic {:?} is not \"GGUF\"",
                String::from_utf8_lossy(&magic.to_le_bytes())
            )));
        }
        let version = c.u32("version")?;
        if version != 2 && version != 3 {
            return Err(c.err(format!("version {version} (this reader reads 2 and 3)")));
        }
        let n_tensors = c.u64("tensor count")?;
        let n_kv = c.count(13, "metadata count")?;
        let mut metadata: Vec<(String, GgufValue)> =
            crate::error::try_with_capacity(n_kv, "metadata")?;
        let mut keys = std::collections::HashSet::new();
        let mut alignment = DEFAULT_ALIGNMENT;
        for i in 0..n_kv {
            let key = c.string(&format!("key of metadata entry {i}"))?;
            if !keys.insert(key.clone()) {
                return Err(c.err(format!("duplicate metadata key `{key}`")));
            }
            let ty = c.u32(&format!("type of `{key}`"))?;
            let v = if ty == 9 {
                GgufValue::Array(c.array(&format!("`{key}`"))?)
            } else {
                c.scalar(ty, &format!("`{key}`"))?
            };
            if key == "general.alignment" {
                alignment = match v {
                    GgufValue::U32(a) if a > 0 && a.is_power_of_two() => a as usize,
                    ref other => {
                        return Err(c.err(format!(
                            "`general.alignment` is {other:?}; it must be a u32 power of two"
                        )))
                    }
                };
            }
            metadata.push((key, v));
        }
        // A tensor info is at least 8 (name) + 4 + 4 + 8 bytes.
        if n_tensors > (c.left() / 24) as u64 {
            return Err(c.err(format!(
                "tensor count {n_tensors} does not fit in the {} bytes left (a lying length)",
                c.left()
            )));
        }
        let n_tensors = n_tensors as usize;
        let mut tensors: Vec<GgufTensor> = Vec::with_capacity(n_tensors);
        let mut index = HashMap::with_capacity(n_tensors);
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor {i}"))?;
            let n_dims = c.u32(&format!("tensor `{name}`: n_dims"))? as usize;
            if n_dims > MAX_DIMS {
                return Err(c.err(format!(
                    "tensor `{name}` has {n_dims} dimensions (at most {MAX_DIMS})"
                )));
            }
            let mut ne = Vec::with_capacity(n_dims);
            for _ in 0..n_dims {
                ne.push(c.u64(&format!("tensor `{name}`: dimension"))?);
            }
            let ty = c.u32(&format!("tensor `{name}`: type"))?;
            let offset = c.u64(&format!("tensor `{name}`: offset"))?;
            let dtype = dtype_of_ggml(ty).ok_or_else(|| Error::UnsupportedDtype {
                arg: "file",
                msg: format!(
                    "{}: tensor `{name}` has unknown ggml type {ty}",
                    path.display()
                ),
            })?;
            let mut shape = Vec::with_capacity(n_dims);
            for &d in ne.iter().rev() {
                shape.push(
                    usize::try_from(d)
                        .map_err(|_| c.err(format!("tensor `{name}`: dimension {d} overflows")))?,
                );
            }
            let numel = super::dtype::checked_numel(&shape, &name)?;
            let (be, _) = dtype.block();
            let row = ne.first().copied().unwrap_or(1);
            if row % be as u64 != 0 {
                return Err(c.err(format!(
                    "tensor `{name}`: row of {row} elements is not a whole number of {be}-element {dtype} blocks"
                )));
            }
            let nbytes = dtype.nbytes(numel).ok_or_else(|| {
                c.err(format!(
                    "tensor `{name}`: size of {numel} {dtype} overflows"
                ))
            })?;
            if index.insert(name.clone(), i).is_some() {
                return Err(c.err(format!("duplicate tensor name `{name}`")));
            }
            tensors.push(GgufTensor {
                name,
                ne,
                ggml_type: ty,
                offset,
                info: TensorInfo {
                    dtype,
                    shape,
                    nbytes,
                },
                start: 0,
            });
        }
        let data_start = c.pos.div_ceil(alignment) * alignment;
        if data_start > buf.len() && n_tensors > 0 {
            return Err(c.err("truncated before the data section"));
        }
        let data_len = buf.len().saturating_sub(data_start);
        for t in &mut tensors {
            let name = &t.name;
            if t.offset % alignment as u64 != 0 {
                return Err(Error::data(
                    "file",
                    format!(
                        "{}: tensor `{name}`: offset {} is not a multiple of the alignment {alignment}",
                        path.display(),
                        t.offset
                    ),
                ));
            }
            if t.offset > data_len as u64 || (t.info.nbytes as u64) > data_len as u64 - t.offset {
                return Err(Error::data(
                    "file",
                    format!(
                        "{}: tensor `{name}`: {} bytes at offset {} run past the {data_len}-byte data section (truncated file?)",
                        path.display(),
                        t.info.nbytes,
                        t.offset
                    ),
                ));
            }
            t.start = data_start + t.offset as usize;
        }
        let mut order: Vec<usize> = (0..tensors.len()).collect();
        order.sort_by_key(|&i| (tensors[i].start, tensors[i].info.nbytes));
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if a.start + a.info.nbytes > b.start {
                return Err(Error::data(
                    "file",
                    format!(
                        "{}: tensor `{}` overlaps tensor `{}`",
                        path.display(),
                        b.name,
                        a.name
                    ),
                ));
            }
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            map,
            version,
            metadata,
            tensors,
            index,
            alignment,
            data_start,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// The format version read.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The data alignment.
    pub fn alignment(&self) -> usize {
        self.alignment
    }
    /// Offset of the data section in the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }
    /// Metadata key/values, in file order.
    pub fn metadata(&self) -> &[(String, GgufValue)] {
        &self.metadata
    }
    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    /// Tensors, in file order.
    pub fn tensors(&self) -> &[GgufTensor] {
        &self.tensors
    }
    /// Tensor names, in file order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.iter().map(|t| t.name.as_str())
    }
    /// What the file says about `name`.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i].info)
    }
    fn tensor(&self, name: &str) -> Result<&GgufTensor> {
        self.index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| {
                Error::invalid(
                    "name",
                    format!("no tensor `{name}` in {}", self.path.display()),
                )
            })
    }
    /// The stored bytes of `name`, borrowed from the mapping.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        Ok(&self.map.bytes()[t.start..t.start + t.info.nbytes])
    }
    /// Drops the mapped pages of `name` from resident memory.
    pub fn release(&self, name: &str) {
        if let Ok(t) = self.tensor(name) {
            self.map.release(t.start..t.start + t.info.nbytes);
        }
    }
    /// Any convertible tensor as f32 in its logical shape (TQ types
    /// dequantized exactly as ggml does).
    pub fn tensor_f32(&self, name: &str) -> Result<ArrayD<f32>> {
        let t = self.tensor(name)?;
        super::hf::tensor_f32_from(name, &t.info, self.bytes(name)?)
    }
    /// A 2-D TQ1_0/TQ2_0 tensor as a ternary matrix with per-block
    /// (group-256) scales. Other dtypes: [`Error::UnsupportedDtype`] (use
    /// [`crate::io::Checkpoint::ternary_quantized`] for float tensors).
    pub fn ternary(&self, name: &str) -> Result<TernaryMatrix> {
        let t = self.tensor(name)?;
        let info = &t.info;
        if !matches!(info.dtype, Dtype::TQ1_0 | Dtype::TQ2_0) {
            return Err(Error::UnsupportedDtype {
                arg: "name",
                msg: format!(
                    "tensor `{name}` is {}; ternary tensors in GGUF are TQ1_0 or TQ2_0",
                    info.dtype
                ),
            });
        }
        let (rows, cols) = match info.shape[..] {
            [r, c] => (r, c),
            [c] => (1, c),
            _ => {
                return Err(Error::shape(
                    "name",
                    format!(
                        "tensor `{name}` has shape {:?}; a matrix is 2-D",
                        info.shape
                    ),
                ))
            }
        };
        tq_to_matrix(info.dtype, self.bytes(name)?, rows, cols, name)
    }
}

// ---------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------

/// A tensor to write: its dtype, logical shape and stored bytes.
#[derive(Debug, Clone)]
pub struct GgufWriteTensor {
    /// Name.
    pub name: String,
    /// Stored dtype.
    pub dtype: Dtype,
    /// Logical shape (outermost first; written as `ne` reversed).
    pub shape: Vec<usize>,
    /// The bytes (`dtype.nbytes(numel)` of them).
    pub data: Vec<u8>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue) {
    match v {
        GgufValue::U8(x) => out.push(*x),
        GgufValue::I8(x) => out.push(*x as u8),
        GgufValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Bool(x) => out.push(*x as u8),
        GgufValue::String(s) => put_str(out, s),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::Array(a) => {
            macro_rules! w {
                ($ty:expr, $v:expr, $f:expr) => {{
                    out.extend_from_slice(&($ty as u32).to_le_bytes());
                    out.extend_from_slice(&($v.len() as u64).to_le_bytes());
                    for x in $v {
                        $f(&mut *out, x);
                    }
                }};
            }
            match a {
                GgufArray::U8(v) => w!(0, v, |o: &mut Vec<u8>, x: &u8| o.push(*x)),
                GgufArray::I8(v) => w!(1, v, |o: &mut Vec<u8>, x: &i8| o.push(*x as u8)),
                GgufArray::U16(v) => w!(2, v, |o: &mut Vec<u8>, x: &u16| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::I16(v) => w!(3, v, |o: &mut Vec<u8>, x: &i16| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::U32(v) => w!(4, v, |o: &mut Vec<u8>, x: &u32| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::I32(v) => w!(5, v, |o: &mut Vec<u8>, x: &i32| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::F32(v) => w!(6, v, |o: &mut Vec<u8>, x: &f32| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::Bool(v) => w!(7, v, |o: &mut Vec<u8>, x: &bool| o.push(*x as u8)),
                GgufArray::String(v) => w!(8, v, |o: &mut Vec<u8>, x: &String| put_str(o, x)),
                GgufArray::U64(v) => w!(10, v, |o: &mut Vec<u8>, x: &u64| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::I64(v) => w!(11, v, |o: &mut Vec<u8>, x: &i64| o
                    .extend_from_slice(&x.to_le_bytes())),
                GgufArray::F64(v) => w!(12, v, |o: &mut Vec<u8>, x: &f64| o
                    .extend_from_slice(&x.to_le_bytes())),
            }
        }
    }
}

/// Writes a GGUF v3 file laid out as ggml and gguf-py's `GGUFWriter` lay it
/// out: header, metadata in the order given, tensor infos in the order
/// given, padding to the alignment, then each tensor padded to the
/// alignment (`general.alignment` if given, else 32). The file is written
/// beside `path` and renamed into place.
///
/// Errors: duplicate keys or names, a shape whose size disagrees with the
/// data, more than 4 dimensions, a row that is not whole blocks
/// ([`Error::InvalidArgument`] / [`Error::ShapeMismatch`] naming the tensor
/// or key); I/O failures ([`Error::Io`]).
pub fn write(
    path: impl AsRef<Path>,
    metadata: &[(String, GgufValue)],
    tensors: &[GgufWriteTensor],
) -> Result<()> {
    let path = path.as_ref();
    let mut alignment = DEFAULT_ALIGNMENT;
    let mut keys = std::collections::HashSet::new();
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(Error::invalid("metadata", format!("duplicate key `{k}`")));
        }
        if k == "general.alignment" {
            alignment = match v {
                GgufValue::U32(a) if *a > 0 && a.is_power_of_two() => *a as usize,
                _ => {
                    return Err(Error::invalid(
                        "metadata",
                        "`general.alignment` must be a u32 power of two",
                    ))
                }
            };
        }
    }
    let mut head = Vec::new();
    head.extend_from_slice(&MAGIC.to_le_bytes());
    head.extend_from_slice(&VERSION.to_le_bytes());
    head.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    head.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
    for (k, v) in metadata {
        put_str(&mut head, k);
        head.extend_from_slice(&v.type_code().to_le_bytes());
        put_value(&mut head, v);
    }
    let mut names = std::collections::HashSet::new();
    let mut offset = 0usize;
    for t in tensors {
        let name = &t.name;
        if !names.insert(name.as_str()) {
            return Err(Error::invalid(
                "tensors",
                format!("duplicate tensor name `{name}`"),
            ));
        }
        let ty = ggml_of_dtype(t.dtype).ok_or_else(|| Error::UnsupportedDtype {
            arg: "tensors",
            msg: format!("`{name}`: GGUF cannot hold {}", t.dtype),
        })?;
        if t.shape.len() > MAX_DIMS {
            return Err(Error::shape(
                "tensors",
                format!(
                    "`{name}`: {} dimensions (GGUF allows {MAX_DIMS})",
                    t.shape.len()
                ),
            ));
        }
        let numel = super::dtype::checked_numel(&t.shape, name)?;
        let inner = t.shape.last().copied().unwrap_or(1);
        if inner % t.dtype.block().0 != 0 || t.dtype.nbytes(numel) != Some(t.data.len()) {
            return Err(Error::shape(
                "tensors",
                format!(
                    "`{name}`: shape {:?} of {} does not match {} bytes (rows must be whole blocks)",
                    t.shape,
                    t.dtype,
                    t.data.len()
                ),
            ));
        }
        put_str(&mut head, name);
        head.extend_from_slice(&(t.shape.len() as u32).to_le_bytes());
        for &d in t.shape.iter().rev() {
            head.extend_from_slice(&(d as u64).to_le_bytes());
        }
        head.extend_from_slice(&ty.to_le_bytes());
        head.extend_from_slice(&(offset as u64).to_le_bytes());
        offset += t.data.len().div_ceil(alignment) * alignment;
    }
    head.resize(head.len().div_ceil(alignment) * alignment, 0);
    let tmp = tmp_path(path);
    let res = (|| -> std::io::Result<()> {
        let f = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, f);
        w.write_all(&head)?;
        let zeros = vec![0u8; alignment];
        for t in tensors {
            w.write_all(&t.data)?;
            let pad = t.data.len().div_ceil(alignment) * alignment - t.data.len();
            w.write_all(&zeros[..pad])?;
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::Io(format!("cannot write {}: {e}", path.display()))
    })
}

/// A sibling temporary path for writing then renaming.
pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tq1_bytes_round_trip_every_digit_pattern() {
        // Every 5-digit value encodes to a byte that decodes back to it and
        // is marked valid; exactly 243 bytes are valid qs bytes.
        for v in 0..243u16 {
            let b = tq1_encode(v);
            let back = (0..5).fold(0u16, |a, n| a * 3 + tq1_digit(b, n) as u16);
            assert_eq!(back, v, "v={v} b={b}");
            assert_eq!(TQ1_VALID[b as usize] & 1, 1);
        }
        assert_eq!(TQ1_VALID.iter().filter(|&&f| f & 1 == 1).count(), 243);
        assert_eq!(TQ1_VALID.iter().filter(|&&f| f & 2 == 2).count(), 81);
    }

    fn rand_matrix(rows: usize, cols: usize, g: Granularity, seed: u64) -> TernaryMatrix {
        let t = ndarray::Array2::from_shape_fn((rows, cols), |(i, j)| {
            (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
        });
        let ns = g.num_scales(rows, cols);
        // f16-exact scales (matrices hold magnitudes; negative block
        // scales in a file are tested in tq_negative_block_scales_import).
        let s: Vec<f32> = (0..ns)
            .map(|i| (crate::rng::hash2(seed ^ 7, i as u64) % 2000) as f32 / 256.0 + 0.125)
            .collect();
        TernaryMatrix::from_ternary(t.view(), &s, g).unwrap()
    }

    #[test]
    fn tq_blocks_round_trip_and_dequantize_to_the_matrix() {
        for dtype in [Dtype::TQ1_0, Dtype::TQ2_0] {
            for &(rows, cols) in &[(0usize, 256usize), (1, 256), (3, 512), (5, 768)] {
                for g in [
                    Granularity::PerTensor,
                    Granularity::PerRow,
                    Granularity::PerGroup(256),
                    Granularity::PerGroup(512),
                ] {
                    if let Granularity::PerGroup(512) = g {
                        if cols % 512 != 0 {
                            continue;
                        }
                    }
                    let m = rand_matrix(rows, cols, g, (rows * 31 + cols) as u64);
                    let bytes = matrix_to_tq(&m, dtype, "w").unwrap();
                    assert_eq!(bytes.len(), rows * cols / 256 * dtype.block().1);
                    let mut deq = vec![0f32; rows * cols];
                    dequantize(dtype, &bytes, &mut deq, "w").unwrap();
                    let want = m.to_f32();
                    assert_eq!(
                        &deq[..],
                        want.as_slice().unwrap(),
                        "{dtype} {rows}x{cols} {g:?}"
                    );
                    let back = tq_to_matrix(dtype, &bytes, rows, cols, "w").unwrap();
                    assert_eq!(back.granularity(), Granularity::PerGroup(256));
                    assert_eq!(back.to_f32(), want);
                    assert_eq!(back.to_ternary(), m.to_ternary());
                }
            }
        }
    }

    #[test]
    fn tq_invalid_codes_and_scales_are_refused() {
        let m = rand_matrix(2, 256, Granularity::PerRow, 3);
        let mut b2 = matrix_to_tq(&m, Dtype::TQ2_0, "w").unwrap();
        b2[66 + 5] |= 0b11 << 4;
        let e = tq_to_matrix(Dtype::TQ2_0, &b2, 2, 256, "w").unwrap_err();
        assert!(
            e.to_string().contains("`w`") && e.to_string().contains("block 1"),
            "{e}"
        );
        let mut b1 = matrix_to_tq(&m, Dtype::TQ1_0, "w").unwrap();
        // A byte that is not an encoding: find one.
        let bad = (0..=255u8)
            .find(|&b| TQ1_VALID[b as usize] & 1 == 0)
            .unwrap();
        b1[7] = bad;
        assert!(tq_to_matrix(Dtype::TQ1_0, &b1, 2, 256, "w").is_err());
        let mut b1 = matrix_to_tq(&m, Dtype::TQ1_0, "w").unwrap();
        b1[52..54].copy_from_slice(&0x7c00u16.to_le_bytes()); // +inf
        let e = tq_to_matrix(Dtype::TQ1_0, &b1, 2, 256, "w").unwrap_err();
        assert!(e.to_string().contains("inf"), "{e}");
        // Wrong sizes and shapes.
        assert!(tq_to_matrix(Dtype::TQ2_0, &b2[..65], 1, 256, "w").is_err());
        assert!(tq_to_matrix(Dtype::TQ2_0, &b2, 2, 255, "w").is_err());
        let g = rand_matrix(2, 256, Granularity::PerGroup(64), 1);
        assert!(matrix_to_tq(&g, Dtype::TQ2_0, "w").is_err());
    }

    #[test]
    fn tq_negative_block_scales_import() {
        // ggml writes any f16 d; a negative one must import exactly (as |d|
        // with the block's trits negated).
        let m = rand_matrix(3, 512, Granularity::PerGroup(256), 11);
        for dtype in [Dtype::TQ1_0, Dtype::TQ2_0] {
            let mut bytes = matrix_to_tq(&m, dtype, "w").unwrap();
            let bb = dtype.block().1;
            for blk in [0usize, 3, 5] {
                // d is the last two bytes of a block; flip its sign bit.
                bytes[blk * bb + bb - 1] ^= 0x80;
            }
            let mut want = vec![0f32; 3 * 512];
            dequantize(dtype, &bytes, &mut want, "w").unwrap();
            assert!(want[..256].iter().any(|&v| v < 0.0) && want[..256].iter().any(|&v| v > 0.0));
            let back = tq_to_matrix(dtype, &bytes, 3, 512, "w").unwrap();
            assert_eq!(back.to_f32().as_slice().unwrap(), &want[..], "{dtype}");
            assert!((0..6).all(|i| back.scale(i / 2, i % 2) >= 0.0));
        }
    }
}
