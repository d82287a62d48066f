//! Interchange layouts for ternary matrices.
//!
//! * **2-bit** ([`PackedLayout::TwoBit`]): row-major, 4 trits a byte; trit `j`
//!   of a byte sits in bits `2j..2j+1`; codes `00 = 0`, `01 = +1`, `10 = -1`.
//!   Code `11` is invalid. Each row starts on a byte boundary
//!   (`ceil(cols / 4)` bytes a row); padding trits must be `00`.
//! * **Base-3** ([`PackedLayout::Base3`]): row-major, 5 trits a byte
//!   (1.6 bits a weight); a byte is `Σ_{i<5} (t_i + 1) · 3^i`, so trit `i`
//!   is digit `i` of the byte in base 3. Bytes above 242 are invalid. Each row
//!   starts on a byte boundary (`ceil(cols / 5)` bytes a row); padding trits are 0
//!   (digit 1).
//!
//! Unpacking validates every byte (including padding) and reports the first
//! bad one as [`Error::InvalidData`].

use ndarray::{Array2, ArrayView2};

use crate::{checked_mul, Error, Result};

/// An interchange byte layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackedLayout {
    /// 4 trits a byte, 2 bits each.
    TwoBit,
    /// 5 trits a byte, base 3.
    Base3,
}

impl PackedLayout {
    /// Trits per byte.
    pub const fn trits_per_byte(self) -> usize {
        match self {
            PackedLayout::TwoBit => 4,
            PackedLayout::Base3 => 5,
        }
    }
}

crate::c_codes!(PackedLayout, "layout", "packed layout" {
    TwoBit = 0 => "two-bit",
    Base3 = 1 => "base-3",
});

/// A `[rows, cols]` matrix of zero trits, allocated fallibly.
pub(crate) fn zeros(rows: usize, cols: usize) -> Result<Array2<i8>> {
    let n = checked_mul(rows, cols, "rows * cols")?;
    let v = crate::try_zeroed(n, "rows * cols")?;
    Ok(Array2::from_shape_vec((rows, cols), v).expect("rows * cols elements"))
}

/// Bytes per packed row of `cols` trits.
pub const fn row_bytes(cols: usize, layout: PackedLayout) -> usize {
    cols.div_ceil(layout.trits_per_byte())
}

/// Total packed bytes for `rows x cols`, with overflow checking.
pub fn packed_len(rows: usize, cols: usize, layout: PackedLayout) -> Result<usize> {
    checked_mul(rows, row_bytes(cols, layout), "rows * cols")
}

/// 2-bit code of a trit (`0 -> 00`, `1 -> 01`, `-1 -> 10`); branch-free.
#[inline(always)]
pub const fn code2(t: i8) -> u8 {
    let u = t as u8;
    (u & 3) ^ (u >> 7)
}

/// Trit of a 2-bit code; `None` for the invalid code `11`.
#[inline(always)]
pub const fn decode2(c: u8) -> Option<i8> {
    match c & 3 {
        0 => Some(0),
        1 => Some(1),
        2 => Some(-1),
        _ => None,
    }
}

/// Packs one row of trits (values must be in {-1, 0, 1}; not checked here)
/// into `out` (`ceil(t.len() / 4)` bytes).
#[inline]
pub fn pack_2bit_row(t: &[i8], out: &mut [u8]) {
    let mut ch = t.chunks_exact(4);
    let mut i = 0;
    for c in &mut ch {
        out[i] = code2(c[0]) | code2(c[1]) << 2 | code2(c[2]) << 4 | code2(c[3]) << 6;
        i += 1;
    }
    let rem = ch.remainder();
    if !rem.is_empty() {
        let mut b = 0u8;
        for (j, &v) in rem.iter().enumerate() {
            b |= code2(v) << (2 * j);
        }
        out[i] = b;
    }
}

fn check_trits(t: &ArrayView2<i8>, arg: &'static str) -> Result<()> {
    match t.iter().position(|&v| !(-1..=1).contains(&v)) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(
            arg,
            format!(
                "value {} at flat index {i} is not in {{-1, 0, 1}}",
                t.iter().nth(i).copied().unwrap_or(0)
            ),
        )),
    }
}

/// Packs `[rows, cols]` trits into the 2-bit layout.
pub fn pack_2bit(t: ArrayView2<i8>) -> Result<Vec<u8>> {
    check_trits(&t, "ternary")?;
    let (rows, cols) = t.dim();
    let rb = row_bytes(cols, PackedLayout::TwoBit);
    let mut out = crate::try_zeroed(packed_len(rows, cols, PackedLayout::TwoBit)?, "rows * cols")?;
    let mut buf = Vec::with_capacity(cols);
    for (r, o) in t.rows().into_iter().zip(out.chunks_mut(rb.max(1))) {
        buf.clear();
        buf.extend(r.iter().copied());
        pack_2bit_row(&buf, o);
    }
    Ok(out)
}

/// Checks that `bytes` is a valid 2-bit `[rows, cols]` matrix (length, no
/// `11` codes, zero padding).
pub fn validate_2bit(bytes: &[u8], rows: usize, cols: usize) -> Result<()> {
    let need = packed_len(rows, cols, PackedLayout::TwoBit)?;
    if bytes.len() != need {
        return Err(Error::shape(
            "packed",
            format!(
                "2-bit {rows}x{cols} needs {need} bytes, got {}",
                bytes.len()
            ),
        ));
    }
    let rb = row_bytes(cols, PackedLayout::TwoBit);
    if rb == 0 {
        return Ok(());
    }
    let tail = cols % 4;
    let pad_mask: u8 = if tail == 0 {
        0
    } else {
        !((1u8 << (2 * tail)) - 1)
    };
    for (r, row) in bytes.chunks(rb).enumerate() {
        // A byte has a `11` code iff some pair has both bits set.
        let bad = row.iter().position(|&b| b & (b >> 1) & 0x55 != 0);
        if let Some(j) = bad {
            return Err(Error::data(
                "packed",
                format!("invalid 2-bit code 0b11 in byte {} (row {r})", r * rb + j),
            ));
        }
        if row[rb - 1] & pad_mask != 0 {
            return Err(Error::data(
                "packed",
                format!(
                    "non-zero padding bits in byte {} (row {r})",
                    r * rb + rb - 1
                ),
            ));
        }
    }
    Ok(())
}

/// Unpacks a 2-bit `[rows, cols]` matrix, validating every byte.
pub fn unpack_2bit(bytes: &[u8], rows: usize, cols: usize) -> Result<Array2<i8>> {
    validate_2bit(bytes, rows, cols)?;
    let rb = row_bytes(cols, PackedLayout::TwoBit);
    let mut out = zeros(rows, cols)?;
    if cols == 0 {
        return Ok(out);
    }
    for (row, src) in out
        .as_slice_mut()
        .expect("contiguous")
        .chunks_mut(cols)
        .zip(bytes.chunks(rb))
    {
        unpack_2bit_row(src, row);
    }
    Ok(out)
}

/// Decodes one valid 2-bit row into `out.len()` trits.
#[inline]
pub fn unpack_2bit_row(src: &[u8], out: &mut [i8]) {
    // Per-byte lookup: 4 trits as one u32.
    const LUT: [[i8; 4]; 256] = {
        let mut t = [[0i8; 4]; 256];
        let mut b = 0;
        while b < 256 {
            let mut j = 0;
            while j < 4 {
                let c = (b >> (2 * j)) & 3;
                t[b][j] = if c == 1 {
                    1
                } else if c == 2 {
                    -1
                } else {
                    0
                };
                j += 1;
            }
            b += 1;
        }
        t
    };
    let full = out.len() / 4;
    let mut ch = out.chunks_exact_mut(4);
    for (o, &b) in (&mut ch).zip(src) {
        o.copy_from_slice(&LUT[b as usize]);
    }
    let rem = ch.into_remainder();
    if !rem.is_empty() {
        let b = src[full];
        let n = rem.len();
        rem.copy_from_slice(&LUT[b as usize][..n]);
    }
}

const POW3: [u8; 5] = [1, 3, 9, 27, 81];

/// Packs one row of trits into base-3 bytes (`ceil(t.len() / 5)`).
#[inline]
pub fn pack_base3_row(t: &[i8], out: &mut [u8]) {
    for (o, c) in out.iter_mut().zip(t.chunks(5)) {
        let mut b = 0u8;
        for (i, p) in POW3.iter().enumerate() {
            let d = c.get(i).map_or(1, |&v| (v + 1) as u8);
            b += d * p;
        }
        *o = b;
    }
}

/// Packs `[rows, cols]` trits into the base-3 layout.
pub fn pack_base3(t: ArrayView2<i8>) -> Result<Vec<u8>> {
    check_trits(&t, "ternary")?;
    let (rows, cols) = t.dim();
    let rb = row_bytes(cols, PackedLayout::Base3);
    let mut out = crate::try_zeroed(packed_len(rows, cols, PackedLayout::Base3)?, "rows * cols")?;
    let mut buf = Vec::with_capacity(cols);
    for (r, o) in t.rows().into_iter().zip(out.chunks_mut(rb.max(1))) {
        buf.clear();
        buf.extend(r.iter().copied());
        pack_base3_row(&buf, o);
    }
    Ok(out)
}

/// Unpacks a base-3 `[rows, cols]` matrix, validating every byte (values
/// <= 242, padding trits zero).
pub fn unpack_base3(bytes: &[u8], rows: usize, cols: usize) -> Result<Array2<i8>> {
    let need = packed_len(rows, cols, PackedLayout::Base3)?;
    if bytes.len() != need {
        return Err(Error::shape(
            "packed",
            format!(
                "base-3 {rows}x{cols} needs {need} bytes, got {}",
                bytes.len()
            ),
        ));
    }
    let rb = row_bytes(cols, PackedLayout::Base3);
    let mut out = zeros(rows, cols)?;
    if cols == 0 {
        return Ok(out);
    }
    for (r, (row, src)) in out
        .as_slice_mut()
        .expect("contiguous")
        .chunks_mut(cols)
        .zip(bytes.chunks(rb))
        .enumerate()
    {
        for (j, (&b, o)) in src.iter().zip(row.chunks_mut(5)).enumerate() {
            if b > 242 {
                return Err(Error::data(
                    "packed",
                    format!(
                        "invalid base-3 byte {b} (> 242) at byte {} (row {r})",
                        r * rb + j
                    ),
                ));
            }
            let mut v = b;
            for i in 0..5 {
                let d = (v % 3) as i8 - 1;
                v /= 3;
                if i < o.len() {
                    o[i] = d;
                } else if d != 0 {
                    return Err(Error::data(
                        "packed",
                        format!("non-zero padding trit in byte {} (row {r})", r * rb + j),
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Converts a valid base-3 matrix to the 2-bit layout.
pub fn base3_to_2bit(bytes: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    pack_2bit(unpack_base3(bytes, rows, cols)?.view())
}

/// Converts a valid 2-bit matrix to the base-3 layout.
pub fn two_bit_to_base3(bytes: &[u8], rows: usize, cols: usize) -> Result<Vec<u8>> {
    pack_base3(unpack_2bit(bytes, rows, cols)?.view())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_trits(rows: usize, cols: usize, seed: u64) -> Array2<i8> {
        Array2::from_shape_fn((rows, cols), |(i, j)| {
            (crate::rng::hash2(seed, (i * cols + j) as u64) % 3) as i8 - 1
        })
    }

    #[test]
    fn layout_by_hand() {
        let t = ndarray::array![[0i8, 1, -1, 1, -1]];
        let p = pack_2bit(t.view()).unwrap();
        assert_eq!(p, vec![0b01_10_01_00, 0b10]);
        let b = pack_base3(t.view()).unwrap();
        // digits 1,2,0,2,0 -> 1 + 6 + 0 + 54 + 0
        assert_eq!(b, vec![61]);
    }

    #[test]
    fn round_trips_on_boundary_shapes() {
        for rows in [0, 1, 2, 3] {
            for cols in [0, 1, 3, 4, 5, 6, 9, 10, 31, 32, 33, 255, 256, 257] {
                let t = random_trits(rows, cols, (rows * 1000 + cols) as u64);
                let p = pack_2bit(t.view()).unwrap();
                assert_eq!(p.len(), rows * cols.div_ceil(4));
                assert_eq!(unpack_2bit(&p, rows, cols).unwrap(), t);
                let b = pack_base3(t.view()).unwrap();
                assert_eq!(b.len(), rows * cols.div_ceil(5));
                assert_eq!(unpack_base3(&b, rows, cols).unwrap(), t);
                assert_eq!(base3_to_2bit(&b, rows, cols).unwrap(), p);
                assert_eq!(two_bit_to_base3(&p, rows, cols).unwrap(), b);
            }
        }
    }

    #[test]
    fn rejects_invalid_codes_padding_and_lengths() {
        assert!(matches!(
            unpack_2bit(&[0b11], 1, 4),
            Err(Error::InvalidData { .. })
        ));
        assert!(matches!(
            unpack_2bit(&[0b1100_0000], 1, 4),
            Err(Error::InvalidData { .. })
        ));
        // padding: cols = 3, top two bits must be zero
        assert!(matches!(
            unpack_2bit(&[0b0100_0000], 1, 3),
            Err(Error::InvalidData { .. })
        ));
        assert!(matches!(
            unpack_2bit(&[0, 0], 1, 4),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            unpack_base3(&[243], 1, 5),
            Err(Error::InvalidData { .. })
        ));
        // cols = 4: digit 4 must be 1 (trit 0): 121 + 81 = 202 has digit 4 = 2
        assert!(matches!(
            unpack_base3(&[202], 1, 4),
            Err(Error::InvalidData { .. })
        ));
        assert!(pack_2bit(ndarray::array![[2i8]].view()).is_err());
        // every byte value: valid iff no 11 pair
        for b in 0..=255u8 {
            let ok = (0..4).all(|j| (b >> (2 * j)) & 3 != 3);
            assert_eq!(unpack_2bit(&[b], 1, 4).is_ok(), ok, "byte {b}");
            assert_eq!(unpack_base3(&[b], 1, 5).is_ok(), b <= 242, "byte {b}");
        }
    }

    #[test]
    fn code2_matches_decode2() {
        for t in -1i8..=1 {
            assert_eq!(decode2(code2(t)), Some(t));
        }
        assert_eq!(decode2(3), None);
    }
}
