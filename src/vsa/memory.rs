//! Item (cleanup) memory: `M` labelled hypervectors stored packed and
//! contiguous, queried for the top-k nearest by dot, cosine or Hamming.
//!
//! Layout: all plus planes back to back (`M x W` words), all minus planes back
//! to back, the non-zero count of each row, and a per-row bipolar flag. A
//! bipolar row's minus plane is `!plus` inside `dim`, so a scan reads only its
//! plus plane: half the memory traffic for the common dense-bipolar case.
//!
//! A query scores rows in fixed blocks of [`BLOCK`] rows in parallel (the
//! crate's pool); each block keeps its own top-k and the blocks' lists are
//! merged under one total order (nearer first, then lower index), so the
//! result is the same for any thread count.

use super::packed::{plane_words, validate_words, PackedHv};
use super::simd::{self, Level};
use super::Metric;
use crate::{Error, Result};

/// Rows per parallel block of a query.
pub const BLOCK: usize = 1024;

/// One query result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Insertion index of the row (0-based).
    pub index: usize,
    /// The label given when the row was added.
    pub label: u64,
    /// Dot, cosine, or Hamming distance.
    pub score: f64,
}

/// Labelled packed hypervectors of one dimension. Not internally locked:
/// share `&ItemMemory` across threads for queries, `&mut` for adds.
#[derive(Debug, Clone, Default)]
pub struct ItemMemory {
    dim: usize,
    w: usize,
    plus: Vec<u64>,
    minus: Vec<u64>,
    nnz: Vec<u64>,
    bipolar: Vec<bool>,
    labels: Vec<u64>,
}

/// `a` is nearer than `b` under `metric` (score, then lower index).
#[inline]
fn nearer(metric: Metric, a: (f64, usize), b: (f64, usize)) -> bool {
    let ord = if metric.larger_is_nearer() {
        b.0.total_cmp(&a.0)
    } else {
        a.0.total_cmp(&b.0)
    };
    match ord {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => a.1 < b.1,
    }
}

/// Inserts `c` into `top` (sorted nearest first, at most `k` long).
#[inline]
fn push_top(metric: Metric, top: &mut Vec<(f64, usize)>, k: usize, c: (f64, usize)) {
    if top.len() == k {
        match top.last() {
            Some(&last) if nearer(metric, c, last) => {
                top.pop();
            }
            _ => return,
        }
    }
    let pos = top
        .iter()
        .position(|&t| nearer(metric, c, t))
        .unwrap_or(top.len());
    top.insert(pos, c);
}

impl ItemMemory {
    /// An empty memory for vectors of `dim` trits. `dim == 0` is valid, as
    /// everywhere in [`crate::vsa`] (empty vectors: every score is the
    /// metric's value for all-zero operands).
    pub fn new(dim: usize) -> Result<Self> {
        Ok(ItemMemory {
            dim,
            w: plane_words(dim),
            ..Default::default()
        })
    }

    /// Vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of stored vectors.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True if nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes held by the stored vectors and their metadata.
    pub fn memory_bytes(&self) -> usize {
        (self.plus.len() + self.minus.len() + self.nnz.len() + self.labels.len()) * 8
            + self.bipolar.len()
    }

    /// Stores `v` with `label`; returns its index. Errors: another dim (`vector`).
    pub fn add(&mut self, v: &PackedHv, label: u64) -> Result<usize> {
        if v.dim() != self.dim {
            return Err(Error::shape(
                "vector",
                format!("dim {} != the memory's dim {}", v.dim(), self.dim),
            ));
        }
        self.push(v.words(), label)
    }

    /// Stores a raw packed vector (validated; errors name `vector`).
    pub fn add_words(&mut self, words: &[u64], label: u64) -> Result<usize> {
        validate_words(self.dim, words, "vector")?;
        self.push(words, label)
    }

    fn push(&mut self, words: &[u64], label: u64) -> Result<usize> {
        // Room first (fallible), so a refused allocation leaves the memory unchanged.
        crate::try_reserve(&mut self.plus, self.w, "vector")?;
        crate::try_reserve(&mut self.minus, self.w, "vector")?;
        crate::try_reserve(&mut self.nnz, 1, "vector")?;
        crate::try_reserve(&mut self.bipolar, 1, "vector")?;
        crate::try_reserve(&mut self.labels, 1, "vector")?;
        let (p, m) = words.split_at(self.w);
        let nnz: u64 = words.iter().map(|x| x.count_ones() as u64).sum();
        self.plus.extend_from_slice(p);
        self.minus.extend_from_slice(m);
        self.nnz.push(nnz);
        self.bipolar.push(nnz == self.dim as u64);
        self.labels.push(label);
        Ok(self.labels.len() - 1)
    }

    /// The label of row `index`. Errors: index out of range.
    pub fn label(&self, index: usize) -> Result<u64> {
        self.labels
            .get(index)
            .copied()
            .ok_or_else(|| self.out_of_range(index))
    }

    fn out_of_range(&self, index: usize) -> Error {
        Error::invalid(
            "index",
            format!("{index} out of range for {} stored vectors", self.len()),
        )
    }

    /// A copy of row `index`. Errors: index out of range.
    pub fn get(&self, index: usize) -> Result<PackedHv> {
        if index >= self.len() {
            return Err(self.out_of_range(index));
        }
        let w = self.w;
        let mut words = self.plus[index * w..(index + 1) * w].to_vec();
        words.extend_from_slice(&self.minus[index * w..(index + 1) * w]);
        Ok(PackedHv::from_words_unchecked(self.dim, words))
    }

    fn rows(&self) -> simd::Rows<'_> {
        simd::Rows {
            plus: &self.plus,
            minus: &self.minus,
            bipolar: &self.bipolar,
            w: self.w,
        }
    }

    fn check_query(&self, q: &PackedHv) -> Result<()> {
        if q.dim() != self.dim {
            return Err(Error::shape(
                "query",
                format!("dim {} != the memory's dim {}", q.dim(), self.dim),
            ));
        }
        Ok(())
    }

    /// The score of `q` against every stored row, in insertion order.
    pub fn similarities(&self, q: &PackedHv, metric: Metric) -> Result<Vec<f64>> {
        self.check_query(q)?;
        let level = simd::best_level();
        let (qp, qm) = (q.plus(), q.minus());
        let nq = q.nnz();
        let mut out = crate::try_zeroed(self.len(), "memory")?;
        use rayon::prelude::*;
        crate::parallel::install(|| {
            out.par_chunks_mut(BLOCK).enumerate().for_each(|(b, o)| {
                let start = b * BLOCK;
                simd::scan_rows_at(
                    level,
                    qp,
                    qm,
                    self.rows(),
                    start..start + o.len(),
                    |i, a, d| {
                        o[i - start] = metric.score(a, d, nq, self.nnz[i]);
                    },
                );
            })
        });
        Ok(out)
    }

    /// The `k` stored vectors nearest to `q` under `metric` (largest dot or
    /// cosine, smallest Hamming distance), nearest first; ties go to the lower
    /// index. Returns `min(k, len)` hits. Errors: `q` of another dim.
    pub fn query(&self, q: &PackedHv, k: usize, metric: Metric) -> Result<Vec<Hit>> {
        self.query_at(simd::best_level(), q, k, metric)
    }

    /// [`ItemMemory::query`] with the kernels of `level` (for tests and benches).
    pub fn query_at(
        &self,
        level: Level,
        q: &PackedHv,
        k: usize,
        metric: Metric,
    ) -> Result<Vec<Hit>> {
        self.check_query(q)?;
        let k = k.min(self.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        let (qp, qm) = (q.plus(), q.minus());
        let nq = q.nnz();
        let nblocks = self.len().div_ceil(BLOCK);
        use rayon::prelude::*;
        let lists: Vec<Vec<(f64, usize)>> = crate::parallel::install(|| {
            (0..nblocks)
                .into_par_iter()
                .map(|b| {
                    let mut top: Vec<(f64, usize)> = Vec::with_capacity(k + 1);
                    let end = ((b + 1) * BLOCK).min(self.len());
                    simd::scan_rows_at(level, qp, qm, self.rows(), b * BLOCK..end, |i, a, d| {
                        push_top(
                            metric,
                            &mut top,
                            k,
                            (metric.score(a, d, nq, self.nnz[i]), i),
                        );
                    });
                    top
                })
                .collect()
        });
        let mut top = Vec::with_capacity(k + 1);
        for l in lists {
            for c in l {
                push_top(metric, &mut top, k, c);
            }
        }
        Ok(top
            .into_iter()
            .map(|(score, index)| Hit {
                index,
                label: self.labels[index],
                score,
            })
            .collect())
    }
}
