//! Dense ternary hypervectors (one `i8` per trit) and the scalar reference
//! of every operation, written straight from the definitions in the
//! [module docs](super). The packed and SIMD paths are tested against these.

use super::packed::{self, PackedHv};
use super::{Algebra, Metric, TieRule};
use crate::{Error, Result};

/// A dense ternary hypervector: one `i8` in {-1, 0, 1} per trit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DenseHv(Vec<i8>);

impl DenseHv {
    /// Takes ownership after checking every value is in {-1, 0, 1}.
    pub fn new(trits: Vec<i8>) -> Result<Self> {
        validate(&trits, "trits")?;
        Ok(DenseHv(trits))
    }

    /// `random(dim, seed, density)`.
    pub fn random(dim: usize, seed: u64, density: f64) -> Result<Self> {
        random(dim, seed, density).map(DenseHv)
    }

    /// The trits.
    pub fn as_slice(&self) -> &[i8] {
        &self.0
    }

    /// Consumes the vector.
    pub fn into_vec(self) -> Vec<i8> {
        self.0
    }

    /// Number of trits.
    pub fn dim(&self) -> usize {
        self.0.len()
    }

    /// Converts to the packed layout.
    pub fn to_packed(&self) -> PackedHv {
        PackedHv::from_trits(&self.0).expect("DenseHv holds valid trits")
    }

    /// Converts from the packed layout.
    pub fn from_packed(p: &PackedHv) -> Self {
        DenseHv(p.to_trits())
    }
}

/// Checks that every value is in {-1, 0, 1} (invalid data naming `arg` otherwise).
pub fn validate(trits: &[i8], arg: &'static str) -> Result<()> {
    match trits.iter().position(|t| !(-1..=1).contains(t)) {
        None => Ok(()),
        Some(i) => Err(Error::data(
            arg,
            format!("value {} at index {i} is not in {{-1, 0, 1}}", trits[i]),
        )),
    }
}

fn same_len(a: &[i8], b: &[i8]) -> Result<()> {
    if a.len() != b.len() {
        return Err(Error::shape(
            "b",
            format!("dim {} != dim of a {}", b.len(), a.len()),
        ));
    }
    Ok(())
}

/// `random(dim, seed, density)`, trit by trit.
pub fn random(dim: usize, seed: u64, density: f64) -> Result<Vec<i8>> {
    packed::check_density(density)?;
    crate::try_collect(
        dim,
        (0..dim as u64).map(|i| packed::random_trit(seed, density, i)),
        "dim",
    )
}

fn mod3(x: i8) -> i8 {
    // x in [-2, 2] -> representative in {-1, 0, 1}
    match x {
        2 => -1,
        -2 => 1,
        v => v,
    }
}

/// Bind: MAP `a_i * b_i`, or modular `(a_i + b_i) mod 3`.
pub fn bind(a: &[i8], b: &[i8], algebra: Algebra) -> Result<Vec<i8>> {
    same_len(a, b)?;
    Ok(a.iter()
        .zip(b)
        .map(|(&x, &y)| match algebra {
            Algebra::Map => x * y,
            Algebra::Modular => mod3(x + y),
        })
        .collect())
}

/// Unbind: MAP `c_i * b_i` (= bind), modular `(c_i - b_i) mod 3`.
pub fn unbind(c: &[i8], b: &[i8], algebra: Algebra) -> Result<Vec<i8>> {
    same_len(c, b)?;
    Ok(c.iter()
        .zip(b)
        .map(|(&x, &y)| match algebra {
            Algebra::Map => x * y,
            Algebra::Modular => mod3(x - y),
        })
        .collect())
}

/// Bundle: `sign(Σ_k w_k x_k)` with the tie rule; weights default to 1.
pub fn bundle(
    dim: usize,
    vectors: &[&[i8]],
    weights: Option<&[i32]>,
    tie: TieRule,
) -> Result<Vec<i8>> {
    if let Some(w) = weights {
        if w.len() != vectors.len() {
            return Err(Error::shape(
                "weights",
                format!("{} weights for {} vectors", w.len(), vectors.len()),
            ));
        }
    }
    let mut s = vec![0i64; dim];
    for (k, v) in vectors.iter().enumerate() {
        if v.len() != dim {
            return Err(Error::shape(
                "vectors",
                format!("vector {k} has dim {} != {dim}", v.len()),
            ));
        }
        let w = weights.map_or(1, |w| w[k]) as i64;
        for (si, &t) in s.iter_mut().zip(v.iter()) {
            *si += w * t as i64;
        }
    }
    let tv = match tie {
        TieRule::Zero => None,
        TieRule::Random(seed) => Some(random(dim, seed, 1.0)?),
    };
    Ok(s.iter()
        .enumerate()
        .map(|(i, &x)| match x.signum() {
            0 => tv.as_ref().map_or(0, |t| t[i]),
            v => v as i8,
        })
        .collect())
}

/// Permute: `out[(i + k) mod dim] = a[i]`.
pub fn permute(a: &[i8], k: i64) -> Vec<i8> {
    let d = a.len();
    if d == 0 {
        return Vec::new();
    }
    let k = k.rem_euclid(d as i64) as usize;
    let mut out = vec![0i8; d];
    for (i, &t) in a.iter().enumerate() {
        out[(i + k) % d] = t;
    }
    out
}

/// `Σ a_i b_i`.
pub fn dot(a: &[i8], b: &[i8]) -> Result<i64> {
    same_len(a, b)?;
    Ok(a.iter().zip(b).map(|(&x, &y)| x as i64 * y as i64).sum())
}

/// Similarity by `metric` (dot, cosine, Hamming distance) as f64.
pub fn similarity(a: &[i8], b: &[i8], metric: Metric) -> Result<f64> {
    same_len(a, b)?;
    Ok(match metric {
        Metric::Dot => dot(a, b)? as f64,
        Metric::Cosine => {
            let na = a.iter().filter(|&&x| x != 0).count() as f64;
            let nb = b.iter().filter(|&&x| x != 0).count() as f64;
            if na == 0.0 || nb == 0.0 {
                0.0
            } else {
                dot(a, b)? as f64 / (na * nb).sqrt()
            }
        }
        Metric::Hamming => a.iter().zip(b).filter(|(x, y)| x != y).count() as f64,
    })
}
