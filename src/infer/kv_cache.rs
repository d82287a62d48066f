//! [`KvCache`]: keys and values of every layer, preallocated once.
//!
//! Layout (keys and values alike): `[layer][sequence][kv_head][position][head_dim]`,
//! so a head's history is one contiguous run and attention reads it
//! front to back. Appending a position writes `kv_heads · head_dim` values
//! per layer into place: O(1), nothing stored is ever moved or copied.
//! Each sequence has its own length; [`KvCache::truncate`] shortens one
//! (prefix reuse), [`KvCache::reset`] empties one.
//!
//! Storage is f32, f16 or bf16 (values rounded to nearest-even on write;
//! read back widened exactly). [`KvCache::memory_bytes`] is the exact size of
//! the allocation, known before making it; allocation is fallible.

use super::kernels::Row;
use crate::precision::convert::{f32_to_bf16_bits, f32_to_f16_bits};
use crate::{Error, Result};

/// Element type of a [`KvCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheDtype {
    /// 4 bytes a value.
    F32,
    /// IEEE half, 2 bytes a value.
    F16,
    /// bfloat16, 2 bytes a value.
    Bf16,
}

impl CacheDtype {
    /// From the C code (0 f32, 1 f16, 2 bf16).
    pub fn from_code(code: u32) -> Result<Self> {
        match code {
            0 => Ok(CacheDtype::F32),
            1 => Ok(CacheDtype::F16),
            2 => Ok(CacheDtype::Bf16),
            c => Err(Error::invalid(
                "cache_dtype",
                format!("unknown cache dtype {c} (0 f32, 1 f16, 2 bf16)"),
            )),
        }
    }
    /// The C code.
    pub fn code(self) -> u32 {
        match self {
            CacheDtype::F32 => 0,
            CacheDtype::F16 => 1,
            CacheDtype::Bf16 => 2,
        }
    }
    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            CacheDtype::F32 => 4,
            _ => 2,
        }
    }
}

/// The dimensions of a [`KvCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvCacheShape {
    /// Decoder layers.
    pub layers: usize,
    /// Sequences held side by side (the batch).
    pub batch: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Positions per sequence.
    pub max_seq_len: usize,
    /// Values per head.
    pub head_dim: usize,
}

impl KvCacheShape {
    /// Values in the key (or value) array; errors on overflow or a zero size.
    pub fn values(&self) -> Result<usize> {
        for (n, name) in [
            (self.layers, "layers"),
            (self.batch, "batch"),
            (self.kv_heads, "kv_heads"),
            (self.max_seq_len, "max_seq_len"),
            (self.head_dim, "head_dim"),
        ] {
            if n == 0 {
                return Err(Error::invalid(name, "must be > 0"));
            }
        }
        [self.batch, self.kv_heads, self.max_seq_len, self.head_dim]
            .into_iter()
            .try_fold(self.layers, |a, b| {
                crate::checked_mul(a, b, "kv cache size")
            })
    }
}

#[derive(Debug)]
enum Store {
    F32(Vec<f32>),
    Half(Vec<u16>),
}

impl Store {
    fn new(dtype: CacheDtype, n: usize) -> Result<Self> {
        Ok(match dtype {
            CacheDtype::F32 => Store::F32(super::try_zeroed(n, "kv cache")?),
            _ => Store::Half(super::try_zeroed(n, "kv cache")?),
        })
    }
}

/// Preallocated keys and values for `batch` sequences (see the module docs).
/// Not shareable across threads while being written (`&mut` to append).
#[derive(Debug)]
pub struct KvCache {
    shape: KvCacheShape,
    dtype: CacheDtype,
    k: Store,
    v: Store,
    lens: Vec<usize>,
}

impl KvCache {
    /// Exact bytes [`KvCache::new`] allocates for keys and values (the
    /// per-sequence lengths add `8 · batch`).
    pub fn memory_bytes(shape: KvCacheShape, dtype: CacheDtype) -> Result<usize> {
        let n = shape.values()?;
        let b = crate::checked_mul(n, 2 * dtype.size(), "kv cache bytes")?;
        if b > isize::MAX as usize {
            return Err(Error::overflow("kv cache bytes", format!("{b} bytes")));
        }
        Ok(b)
    }

    /// Allocates an empty cache (fallible: a size the machine cannot hold is
    /// an error, never an abort).
    pub fn new(shape: KvCacheShape, dtype: CacheDtype) -> Result<Self> {
        Self::memory_bytes(shape, dtype)?;
        let n = shape.values()?;
        Ok(KvCache {
            shape,
            dtype,
            k: Store::new(dtype, n)?,
            v: Store::new(dtype, n)?,
            lens: vec![0; shape.batch],
        })
    }

    /// The dimensions.
    pub fn shape(&self) -> KvCacheShape {
        self.shape
    }
    /// The element type.
    pub fn dtype(&self) -> CacheDtype {
        self.dtype
    }
    /// Positions held by sequence `seq`.
    pub fn len(&self, seq: usize) -> usize {
        self.lens[seq]
    }
    /// Whether every sequence is empty.
    pub fn is_empty(&self) -> bool {
        self.lens.iter().all(|&l| l == 0)
    }
    /// Positions held by each sequence.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    fn check_seq(&self, seq: usize) -> Result<()> {
        if seq >= self.shape.batch {
            return Err(Error::invalid(
                "seq",
                format!(
                    "sequence {seq} out of range (the cache holds {})",
                    self.shape.batch
                ),
            ));
        }
        Ok(())
    }

    /// Empties sequence `seq`.
    pub fn reset(&mut self, seq: usize) -> Result<()> {
        self.check_seq(seq)?;
        self.lens[seq] = 0;
        Ok(())
    }

    /// Empties every sequence.
    pub fn reset_all(&mut self) {
        self.lens.fill(0);
    }

    /// Keeps the first `len` positions of `seq` (`len <= its length`).
    pub fn truncate(&mut self, seq: usize, len: usize) -> Result<()> {
        self.check_seq(seq)?;
        if len > self.lens[seq] {
            return Err(Error::invalid(
                "len",
                format!(
                    "cannot truncate sequence {seq} of length {} to {len}",
                    self.lens[seq]
                ),
            ));
        }
        self.lens[seq] = len;
        Ok(())
    }

    /// Sets the length of `seq` after its positions were written.
    pub(crate) fn set_len(&mut self, seq: usize, len: usize) {
        debug_assert!(len <= self.shape.max_seq_len);
        self.lens[seq] = len;
    }

    #[inline]
    fn offset(&self, layer: usize, seq: usize, head: usize, pos: usize) -> usize {
        let s = &self.shape;
        (((layer * s.batch + seq) * s.kv_heads + head) * s.max_seq_len + pos) * s.head_dim
    }

    /// Writes the keys and values of one position (`kv_heads · head_dim`
    /// values each) without changing the length (see [`Self::append`]).
    pub(crate) fn write(&mut self, layer: usize, seq: usize, pos: usize, k: &[f32], v: &[f32]) {
        let hd = self.shape.head_dim;
        for h in 0..self.shape.kv_heads {
            let o = self.offset(layer, seq, h, pos);
            let (ks, vs) = (&k[h * hd..(h + 1) * hd], &v[h * hd..(h + 1) * hd]);
            match (&mut self.k, &mut self.v, self.dtype) {
                (Store::F32(kk), Store::F32(vv), _) => {
                    kk[o..o + hd].copy_from_slice(ks);
                    vv[o..o + hd].copy_from_slice(vs);
                }
                (Store::Half(kk), Store::Half(vv), dt) => {
                    let f = if dt == CacheDtype::F16 {
                        f32_to_f16_bits
                    } else {
                        f32_to_bf16_bits
                    };
                    for (d, &x) in kk[o..o + hd].iter_mut().zip(ks) {
                        *d = f(x);
                    }
                    for (d, &x) in vv[o..o + hd].iter_mut().zip(vs) {
                        *d = f(x);
                    }
                }
                _ => unreachable!("keys and values share a dtype"),
            }
        }
    }

    /// Appends one position to `seq` in every layer: `k` and `v` hold
    /// `layers · kv_heads · head_dim` values, layer-major. Errors: a full
    /// sequence, an unknown `seq`, wrong lengths.
    pub fn append(&mut self, seq: usize, k: &[f32], v: &[f32]) -> Result<()> {
        self.check_seq(seq)?;
        let per = self.shape.kv_heads * self.shape.head_dim;
        let need = per * self.shape.layers;
        for (a, name) in [(k, "k"), (v, "v")] {
            if a.len() != need {
                return Err(Error::shape(
                    name,
                    format!(
                        "{} values, expected layers x kv_heads x head_dim = {need}",
                        a.len()
                    ),
                ));
            }
        }
        let pos = self.lens[seq];
        if pos >= self.shape.max_seq_len {
            return Err(Error::InvalidState(format!(
                "sequence {seq} is full ({} positions)",
                self.shape.max_seq_len
            )));
        }
        for l in 0..self.shape.layers {
            self.write(
                l,
                seq,
                pos,
                &k[l * per..(l + 1) * per],
                &v[l * per..(l + 1) * per],
            );
        }
        self.lens[seq] = pos + 1;
        Ok(())
    }

    /// Keys of `(layer, seq, head)` for positions `0..len` as one row of
    /// `len · head_dim` values.
    #[inline]
    pub fn keys(&self, layer: usize, seq: usize, head: usize, len: usize) -> Row<'_> {
        let o = self.offset(layer, seq, head, 0);
        Self::row(&self.k, self.dtype, o, len * self.shape.head_dim)
    }

    /// Values of `(layer, seq, head)` for positions `0..len`.
    #[inline]
    pub fn values(&self, layer: usize, seq: usize, head: usize, len: usize) -> Row<'_> {
        let o = self.offset(layer, seq, head, 0);
        Self::row(&self.v, self.dtype, o, len * self.shape.head_dim)
    }

    fn row(s: &Store, dt: CacheDtype, o: usize, n: usize) -> Row<'_> {
        match (s, dt) {
            (Store::F32(a), _) => Row::F32(&a[o..o + n]),
            (Store::Half(a), CacheDtype::F16) => Row::F16(&a[o..o + n]),
            (Store::Half(a), _) => Row::Bf16(&a[o..o + n]),
        }
    }

    /// Reads back position `pos` of `(layer, seq)`'s keys and values widened
    /// to f32 (`kv_heads · head_dim` each).
    pub fn read(
        &self,
        layer: usize,
        seq: usize,
        pos: usize,
        k: &mut [f32],
        v: &mut [f32],
    ) -> Result<()> {
        self.check_seq(seq)?;
        if layer >= self.shape.layers {
            return Err(Error::invalid(
                "layer",
                format!("layer {layer} out of range"),
            ));
        }
        if pos >= self.lens[seq] {
            return Err(Error::invalid(
                "pos",
                format!(
                    "position {pos} not stored (sequence {seq} holds {})",
                    self.lens[seq]
                ),
            ));
        }
        let hd = self.shape.head_dim;
        let per = self.shape.kv_heads * hd;
        for (a, name) in [(&*k, "k"), (&*v, "v")] {
            if a.len() != per {
                return Err(Error::shape(
                    name,
                    format!("{} values, expected {per}", a.len()),
                ));
            }
        }
        for h in 0..self.shape.kv_heads {
            let kr = self.keys(layer, seq, h, pos + 1);
            let vr = self.values(layer, seq, h, pos + 1);
            for i in 0..hd {
                k[h * hd + i] = kr.get(pos * hd + i);
                v[h * hd + i] = vr.get(pos * hd + i);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> KvCacheShape {
        KvCacheShape {
            layers: 2,
            batch: 3,
            kv_heads: 2,
            max_seq_len: 5,
            head_dim: 4,
        }
    }

    #[test]
    fn memory_is_exact_and_append_round_trips() {
        for dt in [CacheDtype::F32, CacheDtype::F16, CacheDtype::Bf16] {
            let s = shape();
            assert_eq!(
                KvCache::memory_bytes(s, dt).unwrap(),
                2 * 2 * 3 * 2 * 5 * 4 * dt.size()
            );
            let mut c = KvCache::new(s, dt).unwrap();
            let per = 2 * 4;
            for p in 0..5 {
                let k: Vec<f32> = (0..2 * per).map(|i| (p * 100 + i) as f32).collect();
                let v: Vec<f32> = k.iter().map(|x| -x).collect();
                c.append(1, &k, &v).unwrap();
            }
            assert_eq!(c.lens(), &[0, 5, 0]);
            let full = c.append(1, &vec![0.0; 2 * per], &vec![0.0; 2 * per]);
            assert!(matches!(full, Err(Error::InvalidState(_))));
            let (mut k, mut v) = (vec![0f32; per], vec![0f32; per]);
            c.read(1, 1, 3, &mut k, &mut v).unwrap();
            // 300 + 8..16 are exact in f16 and bf16 (bf16: 8 bits of mantissa, 308 = 0b100110100 -> 308)
            for i in 0..per {
                let want = (300 + per + i) as f32;
                let tol = if dt == CacheDtype::Bf16 { 2.0 } else { 0.0 };
                assert!((k[i] - want).abs() <= tol && (v[i] + want).abs() <= tol);
            }
            c.truncate(1, 2).unwrap();
            assert_eq!(c.len(1), 2);
            assert!(c.truncate(1, 3).is_err());
            assert!(c.read(1, 1, 2, &mut k, &mut v).is_err());
            assert!(c.reset(3).is_err());
            c.reset(1).unwrap();
            assert!(c.is_empty());
        }
        let huge = KvCacheShape {
            max_seq_len: usize::MAX / 2,
            ..shape()
        };
        assert!(KvCache::memory_bytes(huge, CacheDtype::F32).is_err());
        assert!(KvCache::new(huge, CacheDtype::F32).is_err());
        let too_big = KvCacheShape {
            max_seq_len: 1 << 40,
            ..shape()
        };
        // 2^40 positions x 96 values: overflow-free but far beyond memory
        assert!(KvCache::new(too_big, CacheDtype::F16).is_err());
    }
}
