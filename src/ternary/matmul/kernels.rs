//! Each CPU level's kernels, as one table of function pointers the
//! strategies call. A level lists only what it has; a strategy that needs a
//! missing kernel is not chosen at that level.

use super::layout::{ComputeFormat, BLOCK_BYTES, TILE_ROWS};
use crate::cpu::CpuLevel;
#[cfg(not(target_arch = "x86_64"))]
use crate::ternary::quant;

/// Int8, one tile (4 rows), one activation row: `Σ c·q` per row.
#[cfg(test)]
pub(crate) type GemvI8 = unsafe fn(*const u8, *const i8, usize) -> [i32; 4];
/// Int8 over consecutive tiles, one activation row: tile pointer, tile
/// bytes, q, nkb, ntiles, out (`out[4 t + r]`).
pub(crate) type GemvTiles = unsafe fn(*const u8, usize, *const i8, usize, usize, *mut i32);
/// Int8 over consecutive tiles, `na` (1..=3) activation rows: tile pointer,
/// tile bytes, q rows, na, nkb, ntiles, out (`out[(4 t + r) * na + a]`).
pub(crate) type GemvN = unsafe fn(*const u8, usize, &[*const i8; 3], usize, usize, usize, *mut i32);
/// Direct f32 kernel: tile, permuted activations of up to 2 batch rows, nb, nkb.
pub(crate) type GemvF32 = unsafe fn(*const u8, &[*const f32; 2], usize, usize) -> [[f32; 2]; 4];
/// Lookup-table f32 kernel: 4 tiles, the tables of one batch row, nkb.
pub(crate) type LutF32 = unsafe fn(&[*const u8; 4], *const f32, usize) -> [f32; 16];
/// Decodes a tile (nkb blocks) into codes, row `r` at `out + r * kp`.
pub(crate) type Decode = unsafe fn(*const u8, usize, *mut u8, usize);
/// Int8 on decoded codes: 4 rows, up to 4 batch rows, `len` (multiple of 64).
pub(crate) type GemmI8 = unsafe fn(&[*const u8; 4], &[*const i8; 4], usize, usize) -> [[i32; 4]; 4];
/// f32 on decoded codes: 4 rows, one batch row, `len` (multiple of 64).
pub(crate) type BytesF32 = unsafe fn(&[*const u8; 4], *const f32, usize) -> [f32; 4];

/// One level's kernels.
pub(crate) struct Kernels {
    /// Int8 batch-1 multi-tile kernels, one activation row (2-bit, base-3).
    pub gemv_tiles_2bit: Option<GemvTiles>,
    pub gemv_tiles_base3: Option<GemvTiles>,
    /// Int8 multi-tile kernels over 1..=3 activation rows (preferred over
    /// `gemv_tiles_*`; also run f32 activations split into three int8 digits).
    pub gemv_n_2bit: Option<GemvN>,
    pub gemv_n_base3: Option<GemvN>,
    /// Direct f32 kernels on the packed tile (any batch).
    pub gemv_f32_2bit: Option<GemvF32>,
    pub gemv_f32_base3: Option<GemvF32>,
    /// f32, 2-bit, 16 rows by table lookup (preferred over `gemv_f32_2bit`).
    pub lut_f32_2bit: Option<LutF32>,
    pub decode_2bit: Decode,
    pub decode_base3: Decode,
    pub gemm_i8: GemmI8,
    pub bytes_f32: BytesF32,
    pub abs_max: fn(&[f32]) -> f32,
    pub quantize: fn(&[f32], f32, &mut [i8]),
}

#[cfg(not(target_arch = "x86_64"))]
fn abs_max_scalar(x: &[f32]) -> f32 {
    quant::abs_max(x)
}

#[cfg(target_arch = "x86_64")]
fn abs_max_avx2_(x: &[f32]) -> f32 {
    // SAFETY: only installed for levels that checked avx2.
    unsafe { super::avx2::abs_max(x) }
}
#[cfg(target_arch = "x86_64")]
fn quantize_avx2_(x: &[f32], s: f32, q: &mut [i8]) {
    // SAFETY: only installed for levels that checked avx2.
    unsafe { super::avx2::quantize_act(x, s, q) }
}
#[cfg(target_arch = "x86_64")]
fn abs_max_avx512_(x: &[f32]) -> f32 {
    // SAFETY: only installed for levels that checked avx512f.
    unsafe { super::x86::abs_max_avx512(x) }
}
#[cfg(target_arch = "x86_64")]
fn quantize_avx512_(x: &[f32], s: f32, q: &mut [i8]) {
    // SAFETY: only installed for levels that checked avx512f.
    unsafe { super::x86::quantize_act_avx512(x, s, q) }
}

/// Scalar decoders with the SIMD decoders' signature (NEON uses them).
#[allow(dead_code)]
unsafe fn decode_scalar<const BASE3: bool>(w: *const u8, nkb: usize, out: *mut u8, kp: usize) {
    let bk = if BASE3 { 320 } else { 256 };
    // SAFETY: the caller passes a tile of nkb blocks and TILE_ROWS * kp out bytes.
    unsafe {
        for kb in 0..nkb {
            for r in 0..TILE_ROWS {
                for j in 0..BLOCK_BYTES {
                    let b = *w.add((kb * TILE_ROWS + r) * BLOCK_BYTES + j);
                    let d = out.add(r * kp + kb * bk + j);
                    if BASE3 {
                        for i in 0..5 {
                            *d.add(64 * i) = super::layout::base3_digit(b, i);
                        }
                    } else {
                        for i in 0..4 {
                            *d.add(64 * i) = (b >> (2 * i)) & 3;
                        }
                    }
                }
            }
        }
    }
}

/// The kernels of `level` (`None`: the scalar reference).
pub(crate) fn kernels(level: CpuLevel) -> Option<Kernels> {
    match level {
        CpuLevel::Scalar => None,
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx2 => {
            use super::x86::*;
            Some(Kernels {
                gemv_tiles_2bit: None,
                gemv_tiles_base3: None,
                gemv_n_2bit: Some(super::avx2::i8_gemv_n_2bit),
                gemv_n_base3: Some(super::avx2::i8_gemv_n_base3),
                gemv_f32_2bit: Some(f32_gemv_2bit_avx2),
                gemv_f32_base3: Some(f32_gemv_base3_avx2),
                lut_f32_2bit: None,
                decode_2bit: decode_2bit_avx2,
                decode_base3: decode_base3_avx2,
                gemm_i8: super::avx2::i8_gemm,
                bytes_f32: f32_bytes_avx2,
                abs_max: abs_max_avx2_,
                quantize: quantize_avx2_,
            })
        }
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512 => {
            use super::x86::*;
            Some(Kernels {
                gemv_tiles_2bit: Some(i8_gemv_2bit_avx512_tiles),
                gemv_tiles_base3: None,
                gemv_n_2bit: None,
                gemv_n_base3: None,
                gemv_f32_2bit: Some(f32_gemv_2bit_avx512),
                gemv_f32_base3: Some(f32_gemv_base3_avx512),
                lut_f32_2bit: Some(f32_lut_2bit_avx512),
                decode_2bit: decode_2bit_avx512,
                decode_base3: decode_base3_avx512,
                gemm_i8: i8_gemm_avx512,
                bytes_f32: f32_bytes_avx512,
                abs_max: abs_max_avx512_,
                quantize: quantize_avx512_,
            })
        }
        #[cfg(target_arch = "x86_64")]
        CpuLevel::Avx512Vnni => {
            use super::x86::*;
            Some(Kernels {
                gemv_tiles_2bit: Some(i8_gemv_2bit_vnni_tiles),
                gemv_tiles_base3: Some(i8_gemv_base3_vnni_tiles),
                gemv_n_2bit: None,
                gemv_n_base3: None,
                gemv_f32_2bit: Some(f32_gemv_2bit_avx512),
                gemv_f32_base3: Some(f32_gemv_base3_avx512),
                lut_f32_2bit: Some(f32_lut_2bit_avx512),
                decode_2bit: decode_2bit_avx512,
                decode_base3: decode_base3_avx512,
                gemm_i8: i8_gemm_vnni,
                bytes_f32: f32_bytes_avx512,
                abs_max: abs_max_avx512_,
                quantize: quantize_avx512_,
            })
        }
        #[cfg(target_arch = "aarch64")]
        CpuLevel::Neon => Some(Kernels {
            gemv_tiles_2bit: None,
            gemv_tiles_base3: None,
            gemv_n_2bit: None,
            gemv_n_base3: None,
            gemv_f32_2bit: None,
            gemv_f32_base3: None,
            lut_f32_2bit: None,
            decode_2bit: decode_scalar::<false>,
            decode_base3: decode_scalar::<true>,
            gemm_i8: super::neon::i8_gemm_neon,
            bytes_f32: super::neon::f32_bytes_neon,
            abs_max: abs_max_scalar,
            quantize: quant::quantize_act_row,
        }),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

impl Kernels {
    /// The single-row int8 multi-tile kernel of `f`.
    pub fn gemv_tiles(&self, f: ComputeFormat) -> Option<GemvTiles> {
        match f {
            ComputeFormat::TwoBit => self.gemv_tiles_2bit,
            ComputeFormat::Base3 => self.gemv_tiles_base3,
        }
    }
    /// The multi-row int8 multi-tile kernel of `f`.
    pub fn gemv_n(&self, f: ComputeFormat) -> Option<GemvN> {
        match f {
            ComputeFormat::TwoBit => self.gemv_n_2bit,
            ComputeFormat::Base3 => self.gemv_n_base3,
        }
    }
    /// The direct f32 kernel of `f`.
    pub fn gemv_f32(&self, f: ComputeFormat) -> Option<GemvF32> {
        match f {
            ComputeFormat::TwoBit => self.gemv_f32_2bit,
            ComputeFormat::Base3 => self.gemv_f32_base3,
        }
    }
    /// The tile decoder of `f`.
    pub fn decode(&self, f: ComputeFormat) -> Decode {
        match f {
            ComputeFormat::TwoBit => self.decode_2bit,
            ComputeFormat::Base3 => self.decode_base3,
        }
    }
}
