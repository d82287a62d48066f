//! The compressed-gradient wire format and its CRC-32.
//!
//! All integers little-endian; floats IEEE-754 binary32 little-endian.
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | magic `"TGRC"` |
//! | 4 | 2 | format version (`1`) |
//! | 6 | 1 | method: 1 count sketch, 2 ternary, 3 top-k, 4 projection, 5 quantized top-k |
//! | 7 | 1 | flags (must be 0) |
//! | 8 | 8 | `dim`: length of the gradient |
//! | 16 | 8 | `seed` the payload was made with |
//! | 24 | 4 | `a`: sketch rows / ternary block / top-k `k` / projection `m` / quantized top-k `k` |
//! | 28 | 4 | `b`: sketch cols / 0 / 0 / 0 / quantized top-k `r | v << 8` (Rice parameter `r` 0..=31, code width `v` 0..=4) |
//! | 32 | 8 | body length in bytes |
//! | 40 | body | sketch: `rows·cols` f32 table, row-major; ternary: `ceil(dim/block)` f32 scales then `ceil(dim/4)` code bytes (2-bit canonical layout); top-k: `k` u32 indices (strictly increasing, `< dim`) then `k` f32 values; projection: `m` f32; quantized top-k: `2^v` f32 levels then the Rice-coded bit stream of [`qtopk`] |
//! | 40 + body | 4 | CRC-32 (IEEE 802.3, reflected polynomial `0xEDB88320`, init and final xor `0xFFFFFFFF`) of every preceding byte |
//!
//! Decoding checks, in order: length ≥ 44, magic, version, method, flags,
//! parameter ranges, body length equal to the one the parameters imply,
//! total length, CRC, then the body itself (finite floats, non-negative
//! scales and levels, projection values within ±[`PROJECTION_MAX`], valid
//! 2-bit codes and zero padding, increasing in-range indices, a well-formed
//! bit stream with zero padding). Any failure is [`Error::InvalidData`]
//! naming `payload`.
//!
//! **A payload that validates decodes to finite values**, for every method:
//! ternary and top-k output stored finite values (times ±1), quantized
//! top-k ±levels, the sketch medians of finite table entries (the mean of
//! two middle rows is taken as `a/2 + b/2`, which cannot overflow), and the
//! projection `Pᵀ y` sums [`projection::NNZ`] values of magnitude at most
//! `f32::MAX / NNZ` per coordinate. The encoder never emits a payload the
//! decoder would reject, and a sum of two payloads that would break these
//! bounds is an error ([`Compressed::add_assign`]).

use super::{projection, qtopk, sketch, ternary};
use super::{Body, Compressed, Method};
use crate::{Error, Result};

/// Magic bytes.
pub const MAGIC: [u8; 4] = *b"TGRC";
/// Format version.
pub const VERSION: u16 = 1;
/// Header bytes.
pub const HEADER: usize = 40;
/// Header plus checksum.
pub const OVERHEAD: usize = HEADER + 4;
/// Largest magnitude of a projection payload value: `Pᵀ y` adds
/// [`projection::NNZ`] of them (times `1/√NNZ`) per coordinate, so values
/// up to `f32::MAX / NNZ` decode to finite floats.
pub const PROJECTION_MAX: f32 = f32::MAX / projection::NNZ as f32;

/// Whether `v` may stand in a linear body of `method` (see [`linear_body_violation`]).
#[inline]
pub fn linear_value_ok(method: Method, v: f32) -> bool {
    match method {
        Method::Projection => v.abs() <= PROJECTION_MAX,
        _ => v.is_finite(),
    }
}

/// The first value of a linear body (sketch table or projection values)
/// that could make its decode non-finite, with its index: non-finite
/// values, and for projections magnitudes above [`PROJECTION_MAX`].
pub fn linear_body_violation(method: Method, values: &[f32]) -> Option<(usize, f32)> {
    let bad = |v: f32| !linear_value_ok(method, v);
    // Branch-free scan in chunks; locate the index only on failure.
    let ci = values
        .chunks(1024)
        .position(|c| c.iter().fold(false, |b, &v| b | bad(v)))?;
    let off = values[ci * 1024..].iter().position(|&v| bad(v))?;
    Some((ci * 1024 + off, values[ci * 1024 + off]))
}

const CRC_TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut s = 1;
    while s < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xFF) as usize];
            i += 1;
        }
        s += 1;
    }
    t
};

/// CRC-32 (IEEE) of `data`. `crc32(b"123456789") == 0xCBF43926`. From 64
/// bytes on CPUs at the AVX2 level (which all have carry-less multiply) the
/// 16-byte blocks are folded with `pclmulqdq`, the rest by slicing-by-8;
/// the same value at every level (tested).
pub fn crc32(data: &[u8]) -> u32 {
    crc32_level(data, crate::cpu::active())
}

/// [`crc32`] with the kernels of `level`.
pub(crate) fn crc32_level(data: &[u8], level: crate::cpu::CpuLevel) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() >= 64
        && crate::cpu::runs(crate::cpu::CpuLevel::Avx2, level)
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("sse4.1")
    {
        let n = data.len() / 16 * 16;
        // SAFETY: both features detected; n >= 64 and a multiple of 16.
        let c = unsafe { crc32_pclmul(!0, &data[..n]) };
        return !crc32_update(c, &data[n..]);
    }
    let _ = level;
    !crc32_update(!0, data)
}

/// The CRC register after `data` from `c` (slicing-by-8; no inversions).
fn crc32_update(mut c: u32, data: &[u8]) -> u32 {
    let t = &CRC_TABLES;
    let mut ch = data.chunks_exact(8);
    for b in &mut ch {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) ^ c;
        let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
        c = t[7][(lo & 0xFF) as usize]
            ^ t[6][((lo >> 8) & 0xFF) as usize]
            ^ t[5][((lo >> 16) & 0xFF) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xFF) as usize]
            ^ t[2][((hi >> 8) & 0xFF) as usize]
            ^ t[1][((hi >> 16) & 0xFF) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    for &b in ch.remainder() {
        c = (c >> 8) ^ t[0][((c ^ b as u32) & 0xFF) as usize];
    }
    c
}

/// [`crc32_update`] by carry-less multiplication: four 16-byte lanes folded
/// 64 bytes a step, folded into one, then the remaining 16-byte blocks, and
/// a Barrett reduction to 32 bits (the folding of Gopal et al., "Fast CRC
/// computation for generic polynomials using PCLMULQDQ", Intel 2009, for
/// the bit-reflected polynomial 0xEDB88320).
///
/// # Safety
/// The CPU must support `pclmulqdq` and SSE4.1; `data.len()` is at least 64
/// and a multiple of 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "pclmulqdq,sse4.1")]
unsafe fn crc32_pclmul(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::*;
    debug_assert!(data.len() >= 64 && data.len().is_multiple_of(16));
    // x^(4*128+32) and x^(4*128-32) mod P (reflected), for the 64-byte fold
    let k1k2 = _mm_set_epi64x(0x1_c6e4_1596, 0x1_5444_2bd4);
    // the same for a 16-byte fold
    let k3k4 = _mm_set_epi64x(0x0_ccaa_009e, 0x1_7519_97d0);
    let k5 = _mm_set_epi64x(0, 0x1_63cd_6124);
    // P' (low) and mu (high) for the Barrett reduction
    let pmu = _mm_set_epi64x(0x1_f701_1641, 0x1_db71_0641);
    let mask32 = _mm_set_epi32(0, 0, 0, -1);
    let len = data.len();
    let p = data.as_ptr();
    let fold = |x: __m128i, k: __m128i, next: __m128i| {
        _mm_xor_si128(
            _mm_xor_si128(
                _mm_clmulepi64_si128::<0x00>(x, k),
                _mm_clmulepi64_si128::<0x11>(x, k),
            ),
            next,
        )
    };
    // SAFETY: every load reads 16 bytes at an offset + 16 <= len.
    unsafe {
        let load = |off: usize| _mm_loadu_si128(p.add(off) as *const __m128i);
        let mut x1 = _mm_xor_si128(load(0), _mm_cvtsi32_si128(crc as i32));
        let (mut x2, mut x3, mut x4) = (load(16), load(32), load(48));
        let mut off = 64;
        while len - off >= 64 {
            x1 = fold(x1, k1k2, load(off));
            x2 = fold(x2, k1k2, load(off + 16));
            x3 = fold(x3, k1k2, load(off + 32));
            x4 = fold(x4, k1k2, load(off + 48));
            off += 64;
        }
        x1 = fold(x1, k3k4, x2);
        x1 = fold(x1, k3k4, x3);
        x1 = fold(x1, k3k4, x4);
        while len - off >= 16 {
            x1 = fold(x1, k3k4, load(off));
            off += 16;
        }
        // 128 -> 64 bits (appending 32 zero bits), then -> 32 by Barrett
        x1 = _mm_xor_si128(
            _mm_srli_si128::<8>(x1),
            _mm_clmulepi64_si128::<0x10>(x1, k3k4),
        );
        let t = _mm_clmulepi64_si128::<0x00>(_mm_and_si128(x1, mask32), k5);
        x1 = _mm_xor_si128(_mm_srli_si128::<4>(x1), t);
        let mut t = _mm_clmulepi64_si128::<0x10>(_mm_and_si128(x1, mask32), pmu);
        t = _mm_clmulepi64_si128::<0x00>(_mm_and_si128(t, mask32), pmu);
        _mm_extract_epi32::<1>(_mm_xor_si128(x1, t)) as u32
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::data("payload", msg)
}

/// Body bytes implied by a method and its parameters (checked arithmetic).
pub(super) fn body_len(method: Method, dim: usize, a: usize, b: usize) -> Option<usize> {
    match method {
        Method::CountSketch => a.checked_mul(b)?.checked_mul(4),
        Method::Ternary => ternary::num_blocks(dim, a.max(1))
            .checked_mul(4)?
            .checked_add(ternary::packed_len(dim)),
        Method::TopK => a.checked_mul(8),
        Method::Projection => a.checked_mul(4),
        Method::QTopK => {
            let (r, v) = qtopk::unpack_b(b)?;
            qtopk::body_bytes(dim, a, r, v)
        }
    }
}

/// Writes into a slice of exactly the payload's size.
struct Cursor<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn put(&mut self, b: &[u8]) {
        self.buf[self.pos..self.pos + b.len()].copy_from_slice(b);
        self.pos += b.len();
    }
    fn put_f32s(&mut self, v: &[f32]) {
        let dst = &mut self.buf[self.pos..self.pos + 4 * v.len()];
        for (d, x) in dst.chunks_exact_mut(4).zip(v) {
            d.copy_from_slice(&x.to_le_bytes());
        }
        self.pos += 4 * v.len();
    }
}

fn get_f32s(b: &[u8]) -> Result<Vec<f32>> {
    let v: Vec<f32> = crate::try_collect(
        b.len() / 4,
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        "payload",
    )?;
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(bad(format!("non-finite float at body element {i}")));
    }
    Ok(v)
}

/// Serializes (see the module table) into a new vector.
pub fn encode(c: &Compressed) -> Vec<u8> {
    let mut out = vec![0u8; c.wire_bytes()];
    encode_into(c, &mut out).expect("sized to wire_bytes");
    out
}

/// Serializes into `out`, which must hold exactly [`Compressed::wire_bytes`]
/// bytes (else [`Error::ShapeMismatch`] naming `payload_out`); allocates nothing.
pub fn encode_into(c: &Compressed, out: &mut [u8]) -> Result<()> {
    if out.len() != c.wire_bytes() {
        return Err(Error::shape(
            "payload_out",
            format!("{} bytes needed, got {}", c.wire_bytes(), out.len()),
        ));
    }
    let (a, b) = c.params();
    let blen = c.body_bytes();
    let mut w = Cursor { buf: out, pos: 0 };
    w.put(&MAGIC);
    w.put(&VERSION.to_le_bytes());
    w.put(&[c.method().code() as u8, 0]);
    w.put(&(c.dim as u64).to_le_bytes());
    w.put(&c.seed.to_le_bytes());
    w.put(&(a as u32).to_le_bytes());
    w.put(&(b as u32).to_le_bytes());
    w.put(&(blen as u64).to_le_bytes());
    match &c.body {
        Body::Sketch { table, .. } => w.put_f32s(table),
        Body::Ternary { scales, packed, .. } => {
            w.put_f32s(scales);
            w.put(packed);
        }
        Body::TopK { indices, values } => {
            for i in indices {
                w.put(&i.to_le_bytes());
            }
            w.put_f32s(values);
        }
        Body::Projection { values } => w.put_f32s(values),
        Body::QTopK { levels, stream, .. } => {
            w.put_f32s(levels);
            w.put(stream);
        }
    }
    let end = w.pos;
    debug_assert_eq!(end + 4, w.buf.len());
    let crc = crc32(&w.buf[..end]);
    w.put(&crc.to_le_bytes());
    Ok(())
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]])
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// Header fields without the body (checks magic, version, method, flags,
/// sizes and total length, but not the CRC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Method.
    pub method: Method,
    /// Gradient length.
    pub dim: usize,
    /// Seed.
    pub seed: u64,
    /// First parameter (see the table).
    pub a: usize,
    /// Second parameter.
    pub b: usize,
    /// Total payload bytes.
    pub total: usize,
}

/// Parses and checks the header of `bytes`.
pub fn header(bytes: &[u8]) -> Result<Header> {
    if bytes.len() < OVERHEAD {
        return Err(bad(format!(
            "{} bytes is shorter than the {OVERHEAD}-byte minimum",
            bytes.len()
        )));
    }
    if bytes[..4] != MAGIC {
        return Err(bad("bad magic (not a tritter gradient payload)"));
    }
    let ver = u16::from_le_bytes([bytes[4], bytes[5]]);
    if ver != VERSION {
        return Err(bad(format!(
            "unsupported version {ver} (expected {VERSION})"
        )));
    }
    let method = Method::from_code(bytes[6] as u32)
        .map_err(|_| bad(format!("unknown method {}", bytes[6])))?;
    if bytes[7] != 0 {
        return Err(bad(format!("unknown flags {:#x}", bytes[7])));
    }
    let dim64 = u64_at(bytes, 8);
    if dim64 == 0 || dim64 > (isize::MAX as u64) / 4 {
        return Err(bad(format!("dim {dim64} out of range")));
    }
    let dim = dim64 as usize;
    let seed = u64_at(bytes, 16);
    let a = u32_at(bytes, 24) as usize;
    let b = u32_at(bytes, 28) as usize;
    let ok = match method {
        Method::CountSketch => (1..=sketch::MAX_ROWS).contains(&a) && b >= 1,
        Method::Ternary => ternary::check_block(a).is_ok() && b == 0,
        Method::TopK => a <= dim && b == 0,
        Method::Projection => projection::Projection::new(dim, a, seed).is_ok() && b == 0,
        Method::QTopK => a <= dim && qtopk::unpack_b(b).is_some(),
    };
    if !ok {
        return Err(bad(format!(
            "invalid parameters a = {a}, b = {b} for {method:?} with dim {dim}"
        )));
    }
    let blen = u64_at(bytes, 32);
    let want = body_len(method, dim, a, b).ok_or_else(|| bad("body size overflows"))?;
    if blen != want as u64 {
        return Err(bad(format!(
            "body length {blen} does not match the {want} bytes the header implies"
        )));
    }
    let total = want
        .checked_add(OVERHEAD)
        .ok_or_else(|| bad("size overflows"))?;
    if bytes.len() != total {
        return Err(bad(format!(
            "length {} does not match the {total} bytes the header implies (truncated or trailing bytes)",
            bytes.len()
        )));
    }
    Ok(Header {
        method,
        dim,
        seed,
        a,
        b,
        total,
    })
}

/// Checks the stored CRC of a payload whose header `h` parsed; returns the
/// offset of the CRC (the end of the body).
fn check_crc(bytes: &[u8], h: &Header) -> Result<usize> {
    let end = h.total - 4;
    let stored = u32_at(bytes, end);
    let crc = crc32(&bytes[..end]);
    if stored != crc {
        return Err(bad(format!(
            "checksum mismatch (stored {stored:#010x}, computed {crc:#010x})"
        )));
    }
    Ok(end)
}

/// The `2^v` levels of a quantized top-k body (none may be negative).
fn qtopk_levels(body: &[u8], v: usize) -> Result<Vec<f32>> {
    let levels = get_f32s(&body[..4 << v])?;
    if let Some(i) = levels.iter().position(|&l| l < 0.0) {
        return Err(bad(format!("negative level {i}")));
    }
    Ok(levels)
}

/// Validates a payload and decodes it into `out` (`dim` floats), with the
/// same checks and errors as [`decode`] followed by
/// [`Compressed::decompress_into`]. A quantized top-k stream is validated
/// while it is decoded (one pass over it, no copy); the other methods are
/// parsed, then decoded. If the stream turns out invalid part-way, `out` is
/// set to zeros before the error returns; a shape error (reported only for
/// a valid payload, as before) leaves it unchanged.
pub fn decompress_into(bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let h = header(bytes)?;
    if h.method != Method::QTopK {
        return decode(bytes)?.decompress_into(out);
    }
    let (levels, r, _, stream) = qtopk_checked(bytes, &h, out.len())?;
    qtopk::decompress_into(&levels, h.a, r, stream, out).inspect_err(|_| out.fill(0.0))
}

/// A quantized top-k payload whose header `h` parsed: checks the CRC and
/// the levels, then that the output holds `out_len == dim` floats (a shape
/// error only for an otherwise valid payload: payload errors come first, as
/// with parse-then-decode). Returns the levels, `r`, `v` and the stream.
fn qtopk_checked<'a>(
    bytes: &'a [u8],
    h: &Header,
    out_len: usize,
) -> Result<(Vec<f32>, usize, usize, &'a [u8])> {
    let end = check_crc(bytes, h)?;
    let body = &bytes[HEADER..end];
    let (r, v) = qtopk::unpack_b(h.b).expect("checked by header");
    let levels = qtopk_levels(body, v)?;
    if out_len != h.dim {
        decode(bytes)?;
        return Err(Error::shape(
            "out",
            format!("expected {} elements, got {out_len}", h.dim),
        ));
    }
    Ok((levels, r, v, &body[4 << v..]))
}

/// Validates a payload and applies its decoded values to `out` (`dim`
/// floats): `out[i] = op(out[i], v)`. Top-k and quantized top-k visit only
/// their coded entries (increasing `i`), the other methods every element in
/// order, so `|a, v| a + v` adds the decoded gradient to `out` at the cost of
/// the entries alone for the sparse methods. Same checks and errors as
/// [`decompress_into`] (payload errors before a wrong `out` length, which
/// leaves `out` unchanged); if a quantized top-k stream turns out invalid
/// part-way, the entries before the fault were applied (callers that need
/// `out` intact apply into scratch).
pub fn decompress_apply(
    bytes: &[u8],
    out: &mut [f32],
    mut op: impl FnMut(f32, f32) -> f32,
) -> Result<()> {
    let h = header(bytes)?;
    if h.method == Method::QTopK {
        let (levels, r, v, stream) = qtopk_checked(bytes, &h, out.len())?;
        return qtopk::decode_entries(h.dim, h.a, r, v, stream, "payload", |i, neg, c| {
            out[i] = op(out[i], qtopk::with_sign(levels[c], neg));
        });
    }
    let c = decode(bytes)?;
    if out.len() != c.dim {
        return Err(Error::shape(
            "out",
            format!("expected {} elements, got {}", c.dim, out.len()),
        ));
    }
    if let Body::TopK { indices, values } = &c.body {
        for (&i, &v) in indices.iter().zip(values) {
            out[i as usize] = op(out[i as usize], v);
        }
        return Ok(());
    }
    let d = c.decompress()?;
    for (o, &v) in out.iter_mut().zip(&d) {
        *o = op(*o, v);
    }
    Ok(())
}

/// [`decompress_apply`] with `op = |_, v| v / div` (`out[i] = v / div` at
/// the entries; the other elements untouched), for sparse payloads. A
/// quantized top-k payload divides its levels once instead of every entry:
/// the same bits, as the sign of a quotient is the sign of its dividend.
pub(crate) fn decompress_div(bytes: &[u8], out: &mut [f32], div: f32) -> Result<()> {
    let h = header(bytes)?;
    if h.method != Method::QTopK {
        return decompress_apply(bytes, out, |_, v| v / div);
    }
    let (levels, r, v, stream) = qtopk_checked(bytes, &h, out.len())?;
    let levels: Vec<f32> = levels.iter().map(|&l| l / div).collect();
    qtopk::decode_entries(h.dim, h.a, r, v, stream, "payload", |i, neg, c| {
        out[i] = qtopk::with_sign(levels[c], neg);
    })
}

/// Parses and fully validates a payload.
pub fn decode(bytes: &[u8]) -> Result<Compressed> {
    let h = header(bytes)?;
    let end = check_crc(bytes, &h)?;
    let body = &bytes[HEADER..end];
    let body = match h.method {
        Method::CountSketch => Body::Sketch {
            rows: h.a,
            cols: h.b,
            table: get_f32s(body)?,
        },
        Method::Ternary => {
            let nb = ternary::num_blocks(h.dim, h.a);
            let scales = get_f32s(&body[..4 * nb])?;
            if let Some(i) = scales.iter().position(|&s| s < 0.0) {
                return Err(bad(format!("negative scale at block {i}")));
            }
            let packed = crate::try_to_vec(&body[4 * nb..], "payload")?;
            ternary::validate_packed(&packed, h.dim, "payload")?;
            Body::Ternary {
                block: h.a,
                scales,
                packed,
            }
        }
        Method::TopK => {
            let k = h.a;
            let indices = crate::try_collect(k, (0..k).map(|j| u32_at(body, 4 * j)), "payload")?;
            if let Some(j) = (0..k)
                .find(|&j| indices[j] as usize >= h.dim || (j > 0 && indices[j] <= indices[j - 1]))
            {
                return Err(bad(format!(
                    "index {} at position {j} is out of range or not increasing",
                    indices[j]
                )));
            }
            Body::TopK {
                indices,
                values: get_f32s(&body[4 * k..])?,
            }
        }
        Method::Projection => {
            let values = get_f32s(body)?;
            if let Some((i, v)) = linear_body_violation(Method::Projection, &values) {
                return Err(bad(format!(
                    "projection value {v:e} at body element {i} is beyond ±{PROJECTION_MAX:e} \
                     (its decode would overflow)"
                )));
            }
            Body::Projection { values }
        }
        Method::QTopK => {
            let (r, v) = qtopk::unpack_b(h.b).expect("checked by header");
            let levels = qtopk_levels(body, v)?;
            let stream = crate::try_to_vec(&body[4 << v..], "payload")?;
            qtopk::decode_entries(h.dim, h.a, r, v, &stream, "payload", |_, _, _| {})?;
            Body::QTopK {
                k: h.a,
                rice: r,
                levels,
                stream,
            }
        }
    };
    Ok(Compressed {
        dim: h.dim,
        seed: h.seed,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_values() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        // Slicing-by-8 equals the bytewise definition at every length mod 8.
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 131 % 251) as u8).collect();
        for len in [0, 1, 7, 8, 9, 15, 16, 17, 999, 1000] {
            let mut c = !0u32;
            for &b in &data[..len] {
                c ^= b as u32;
                for _ in 0..8 {
                    c = if c & 1 != 0 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            assert_eq!(crc32(&data[..len]), !c);
        }
    }

    #[test]
    fn crc_is_the_same_at_every_level() {
        // every length to 300 (the folding starts at 64; tails of 0..15
        // bytes), then long buffers, random bytes and runs of 0xFF
        let mut st = 0x2545_F491_4F6C_DD1Du64;
        let data: Vec<u8> = (0..70_000)
            .map(|_| {
                st ^= st << 13;
                st ^= st >> 7;
                st ^= st << 17;
                st as u8
            })
            .collect();
        let ones = vec![0xFFu8; 4096];
        let levels = crate::cpu::levels_for_test("payload crc32");
        for &l in &levels {
            for len in (0..300).chain([1000, 4095, 4096, 4097, 65_536, 70_000]) {
                let want = !crc32_update(!0, &data[..len]);
                assert_eq!(crc32_level(&data[..len], l), want, "len {len} level {l:?}");
                if len <= ones.len() {
                    let want = !crc32_update(!0, &ones[..len]);
                    assert_eq!(crc32_level(&ones[..len], l), want, "0xFF len {len}");
                }
            }
        }
    }
}
