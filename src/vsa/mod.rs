//! Vector symbolic architecture (hyperdimensional computing) on ternary
//! hypervectors, with **one algebra on every path**.
//!
//! # Representations
//!
//! * **Dense** ([`DenseHv`], or plain `&[i8]` in [`dense`]): one `i8` per trit,
//!   each in {-1, 0, +1}. The functions in [`dense`] are the scalar reference
//!   that every other path must equal exactly.
//! * **Packed** ([`PackedHv`]): bit-sliced, two bit planes. With
//!   `W = ceil(dim / 64)`, a vector is `2 W` `u64` words: words `[0, W)` are the
//!   *plus* plane (bit `i % 64` of word `i / 64` set iff trit `i` is +1) and
//!   words `[W, 2W)` the *minus* plane (set iff trit `i` is -1). A trit never
//!   has both bits set, and the padding bits past `dim` are zero; buffers that
//!   break either rule are rejected as invalid data. This is also the layout of
//!   packed vectors at the C ABI.
//!
//! # The algebra (identical in [`dense`], [`ops`], [`bundle`], [`memory`] and the C ABI)
//!
//! * `random(dim, seed, density)`: trit `i` comes from `h = rng::hash2(seed, i)`:
//!   it is non-zero iff `(h >> 11) / 2^53 < density`, and then +1 if `h` is
//!   even, -1 if odd. A pure function of `(seed, i)`. `density = 1` gives a
//!   dense bipolar vector.
//! * **bind / unbind**, two named algebras ([`Algebra`]):
//!   * [`Algebra::Map`] (multiply-add-permute): `c_i = a_i * b_i`.
//!     Commutative, associative, identity all-ones; self-inverse on bipolar
//!     keys (`b * b = 1`), so `unbind = bind`, and `unbind(bind(a, b), b) = a`
//!     wherever `b_i != 0` (a sparse key erases `a` where it is 0). Distributes
//!     over bundle exactly under [`TieRule::Zero`]:
//!     `b * bundle(x..) = bundle(b * x..)` for any ternary `b` (sign is odd).
//!   * [`Algebra::Modular`] (balanced ternary addition mod 3):
//!     `c_i = ((a_i + b_i + 1) mod 3) - 1`, i.e. addition in Z/3 with the
//!     representatives {-1, 0, +1}. Commutative, associative, identity the
//!     zero vector; `unbind(c, b) = c - b (mod 3)` inverts bind exactly for any
//!     operands. Not self-inverse (`bind(bind(a, b), b) = a - b`), and does not
//!     distribute over bundle.
//! * **bundle** of `n` vectors with integer weights `w_k` (default 1):
//!   `s_i = Σ_k w_k x_{k,i}` (exact integer), result `sign(s_i)`; a tie
//!   `s_i = 0` becomes 0 under [`TieRule::Zero`] (a ternary result) or trit `i`
//!   of `random(dim, seed, 1)` under [`TieRule::Random`] (a bipolar result).
//!   [`BundleAccumulator`] computes the same thing streaming, one vector at a
//!   time, with `i64` counters.
//! * **permute** by `k`: `out[(i + k) mod dim] = a[i]` (NumPy's `np.roll(a, k)`),
//!   any `k` (negative shifts left); permute by `-k` inverts it.
//! * **similarity** ([`Metric`]): `dot = Σ a_i b_i`; `cosine = dot /
//!   sqrt(nnz(a) nnz(b))`, defined as 0 when either vector is all zero;
//!   `hamming = #{i : a_i != b_i}` (a distance: smaller is nearer).
//! * **item memory** ([`ItemMemory`]): top-k by the metric (largest dot or
//!   cosine, smallest Hamming distance), ties broken by the lower insertion
//!   index; identical for any thread count.

pub mod bundle;
pub mod dense;
pub mod memory;
pub mod ops;
pub mod packed;
pub mod simd;

pub use bundle::BundleAccumulator;
pub use dense::DenseHv;
pub use memory::{Hit, ItemMemory};
pub use packed::PackedHv;

use crate::{Error, Result};

/// Which bind/unbind algebra (see the module docs for its properties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algebra {
    /// Multiplicative (MAP): element-wise product; self-inverse on bipolar keys.
    #[default]
    Map,
    /// Balanced ternary addition mod 3; unbind subtracts mod 3.
    Modular,
}

crate::c_codes!(Algebra, "algebra", "algebra code" { Map = 0 => "MAP", Modular = 1 => "modular" });

/// Similarity metric (see the module docs for the definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Metric {
    /// `Σ a_i b_i` (larger is nearer).
    Dot,
    /// `dot / sqrt(nnz(a) nnz(b))`, 0 for an all-zero operand (larger is nearer).
    #[default]
    Cosine,
    /// Number of differing trits (smaller is nearer).
    Hamming,
}

crate::c_codes!(Metric, "metric", "metric code" {
    Dot = 0 => "dot",
    Cosine = 1 => "cosine",
    Hamming = 2 => "hamming",
});

impl Metric {
    /// The score of a pair from its counts: `agree` = positions where both are
    /// non-zero and equal, `disagree` = both non-zero and opposite, `nnz_a`,
    /// `nnz_b` the non-zero counts. Every path computes scores through here.
    #[inline]
    pub fn score(self, agree: u64, disagree: u64, nnz_a: u64, nnz_b: u64) -> f64 {
        match self {
            Metric::Dot => agree as f64 - disagree as f64,
            Metric::Cosine => {
                if nnz_a == 0 || nnz_b == 0 {
                    0.0
                } else {
                    (agree as f64 - disagree as f64) / ((nnz_a as f64) * (nnz_b as f64)).sqrt()
                }
            }
            Metric::Hamming => (nnz_a + nnz_b - 2 * agree - disagree) as f64,
        }
    }

    /// True if larger scores are nearer (dot, cosine); false for Hamming.
    pub fn larger_is_nearer(self) -> bool {
        !matches!(self, Metric::Hamming)
    }
}

/// What a bundle does where the weighted sum is exactly 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TieRule {
    /// A tie gives 0 (the result is ternary).
    #[default]
    Zero,
    /// A tie at trit `i` gives trit `i` of `random(dim, seed, 1.0)` (the
    /// result is bipolar).
    Random(u64),
}

impl TieRule {
    /// The C code: 0 = zero, 1 = random.
    pub const fn code(self) -> u32 {
        match self {
            TieRule::Zero => 0,
            TieRule::Random(_) => 1,
        }
    }
    /// From the C code (the inverse of [`TieRule::code`]), with `seed` for random ties.
    pub fn from_code(code: u32, seed: u64) -> Result<Self> {
        [TieRule::Zero, TieRule::Random(seed)]
            .into_iter()
            .find(|t| t.code() == code)
            .ok_or_else(|| {
                Error::invalid(
                    "tie_rule",
                    format!("unknown tie rule code {code} (0 = zero, 1 = random)"),
                )
            })
    }
}

/// Settings for [`VsaOps`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VsaConfig {
    /// Hypervector dimension (trits), > 0.
    pub dim: usize,
    /// Bind/unbind algebra.
    pub algebra: Algebra,
    /// Fraction of non-zero trits in [`VsaOps::random`] (1 = bipolar).
    pub density: f64,
    /// Tie rule of [`VsaOps::bundle`].
    pub tie: TieRule,
    /// Metric of [`VsaOps::similarity`].
    pub metric: Metric,
}

impl Default for VsaConfig {
    /// dim 10,000, MAP, bipolar, ties to 0, cosine.
    fn default() -> Self {
        VsaConfig {
            dim: 10_000,
            algebra: Algebra::Map,
            density: 1.0,
            tie: TieRule::Zero,
            metric: Metric::Cosine,
        }
    }
}

/// The seed's `VsaOps` object: the packed operations with a fixed
/// configuration. Every method equals the corresponding [`dense`] reference.
///
/// ```
/// use tritter_accel::vsa::{VsaConfig, VsaOps};
/// let ops = VsaOps::new(VsaConfig::default()).unwrap();
/// let a = ops.random(42).unwrap();
/// let b = ops.random(43).unwrap();
/// let bound = ops.bind(&a, &b).unwrap();
/// assert_eq!(ops.unbind(&bound, &b).unwrap(), a);
/// assert!(ops.similarity(&a, &b).unwrap().abs() < 0.05);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct VsaOps {
    cfg: VsaConfig,
}

impl VsaOps {
    /// Checks the configuration (dim > 0, density finite in [0, 1]).
    pub fn new(cfg: VsaConfig) -> Result<Self> {
        if cfg.dim == 0 {
            return Err(Error::invalid("dim", "must be > 0"));
        }
        packed::check_density(cfg.density)?;
        Ok(VsaOps { cfg })
    }

    /// The configuration.
    pub fn config(&self) -> &VsaConfig {
        &self.cfg
    }

    /// `random(dim, seed, density)` with the configured dim and density.
    pub fn random(&self, seed: u64) -> Result<PackedHv> {
        PackedHv::random(self.cfg.dim, seed, self.cfg.density)
    }

    /// Binds with the configured algebra.
    pub fn bind(&self, a: &PackedHv, b: &PackedHv) -> Result<PackedHv> {
        ops::bind(a, b, self.cfg.algebra)
    }

    /// Unbinds with the configured algebra.
    pub fn unbind(&self, c: &PackedHv, b: &PackedHv) -> Result<PackedHv> {
        ops::unbind(c, b, self.cfg.algebra)
    }

    /// Bundles with weight 1 each and the configured tie rule.
    pub fn bundle(&self, vectors: &[&PackedHv]) -> Result<PackedHv> {
        bundle::bundle(self.cfg.dim, vectors, None, self.cfg.tie)
    }

    /// Bundles with integer weights and the configured tie rule.
    pub fn bundle_weighted(&self, vectors: &[&PackedHv], weights: &[i32]) -> Result<PackedHv> {
        bundle::bundle(self.cfg.dim, vectors, Some(weights), self.cfg.tie)
    }

    /// Cyclic shift by `k` (`out[(i + k) mod dim] = a[i]`).
    pub fn permute(&self, a: &PackedHv, k: i64) -> PackedHv {
        ops::permute(a, k)
    }

    /// The inverse of [`VsaOps::permute`] by `k`.
    pub fn inverse_permute(&self, a: &PackedHv, k: i64) -> PackedHv {
        ops::inverse_permute(a, k)
    }

    /// Similarity with the configured metric.
    pub fn similarity(&self, a: &PackedHv, b: &PackedHv) -> Result<f64> {
        ops::similarity(a, b, self.cfg.metric)
    }

    /// An empty item memory of the configured dimension.
    pub fn item_memory(&self) -> Result<ItemMemory> {
        ItemMemory::new(self.cfg.dim)
    }
}

#[cfg(test)]
mod tests;
