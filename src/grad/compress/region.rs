//! The two-phase region exchange of sparse payloads, one call per phase.
//!
//! A data-parallel gradient exchange whose traffic per rank does not grow
//! with the number of ranks `N` (as in Ok-Topk, Li and Hoefler 2022): the
//! `n` coordinates of a bucket are split into `N` contiguous regions
//! ([`region_bounds`]: region `j` = `[j L, min(n, (j + 1) L))`,
//! `L = ceil(n / N)`), and rank `j` owns region `j`.
//!
//! 1. [`RegionExchange::compress`]: every rank compresses each region of its
//!    gradient (plus that region's error-feedback residual) into a slot of
//!    `slot` bytes; slot `j` goes to rank `j` (an all-to-all).
//! 2. [`RegionExchange::reduce`]: the owner decodes the `N` payloads of its
//!    region, sums them in rank order (sparse methods: only their entries),
//!    and re-compresses the sum with its own residual into `owner_slot`
//!    bytes; every rank then all-gathers the `N` owner payloads.
//! 3. [`RegionExchange::decode`]: every rank decodes the gathered owner
//!    payloads into the averaged update (divided by `N`), identical on every
//!    rank.
//!
//! Error feedback works at two levels: each rank keeps what its regional
//! payloads lost, each owner what re-compression lost from its region's
//! sum. Summed over steps and ranks, `Σ g = N Σ updates + Σ regional
//! residuals + Σ owner residuals` up to f32 rounding (tested).
//!
//! Every payload is a checksummed [`super::payload`]; `reduce` and `decode`
//! validate what they receive, so a corrupt or foreign slot is an error,
//! never a crash. The results have the same bits as composing
//! [`Compressor::compress`], [`super::payload::decompress_into`] and dense
//! sums region by region (tested), which is what the Python reference does.

use super::payload;
use super::{Compressor, CompressorConfig};
use crate::{rng, Error, Result};
use rayon::prelude::*;

/// Buckets from this many floats run their regions on the crate's threads
/// (below it, waking threads costs more than the work).
const PAR_MIN: usize = 1 << 16;

/// Most ranks a [`RegionExchange`] accepts.
pub const MAX_WORLD: usize = 1 << 20;

/// The `world` regions `[(start, end), ...]` of `n` coordinates: region `j`
/// is `[j L, min(n, (j + 1) L))` with `L = ceil(n / world)`; trailing regions
/// may be short or empty. `world` must be at least 1.
pub fn region_bounds(n: usize, world: usize) -> Vec<(usize, usize)> {
    let l = n.div_ceil(world.max(1));
    (0..world)
        .map(|j| (n.min(j.saturating_mul(l)), n.min((j + 1).saturating_mul(l))))
        .collect()
}

/// Wire bytes of a payload of `dim` coordinates under `cfg` (0 if empty).
fn wire_for(dim: usize, cfg: &CompressorConfig) -> Result<usize> {
    if dim == 0 {
        return Ok(0);
    }
    let c = Compressor::new(
        dim,
        CompressorConfig {
            error_feedback: false,
            ..*cfg
        },
    )?;
    Ok(c.wire_bytes())
}

/// One rank's state of the two-phase region exchange of one bucket: a
/// compressor (with its residual) per region of this rank's gradient and one
/// for the owned region's sum. See the [module documentation](self).
#[derive(Debug, Clone)]
pub struct RegionExchange {
    dim: usize,
    world: usize,
    rank: usize,
    bounds: Vec<(usize, usize)>,
    local: Vec<Option<Compressor>>,
    owner: Option<Compressor>,
    wire: Vec<usize>,
    owner_wire: Vec<usize>,
    slot: usize,
    owner_slot: usize,
    acc: Vec<f32>,
}

impl RegionExchange {
    /// Rank `rank` of `world` for a bucket of `dim` coordinates. Region `j`
    /// is compressed with `local` and seed `region_seeds[j]` (or, without
    /// seeds, `rng::derive(local.seed, j)`); the owned region's sum with
    /// `owner` (its own seed). Errors: `dim` zero or >= 2^32, `world` zero
    /// or above [`MAX_WORLD`], `rank >= world`, `region_seeds` not `world`
    /// long, an invalid configuration (named as by [`Compressor::new`]),
    /// out of memory.
    pub fn new(
        dim: usize,
        world: usize,
        rank: usize,
        local: CompressorConfig,
        owner: CompressorConfig,
        region_seeds: Option<&[u64]>,
    ) -> Result<Self> {
        if dim == 0 || dim > u32::MAX as usize {
            return Err(Error::invalid(
                "dim",
                format!("must be in 1..2^32, got {dim}"),
            ));
        }
        if world == 0 || world > MAX_WORLD {
            return Err(Error::invalid(
                "world",
                format!("must be in 1..={MAX_WORLD}, got {world}"),
            ));
        }
        if rank >= world {
            return Err(Error::invalid(
                "rank",
                format!("must be < world ({world}), got {rank}"),
            ));
        }
        if let Some(s) = region_seeds {
            if s.len() != world {
                return Err(Error::shape(
                    "region_seeds",
                    format!("expected {world} seeds (one per region), got {}", s.len()),
                ));
            }
        }
        let bounds = region_bounds(dim, world);
        let mut local_c = Vec::new();
        crate::try_reserve(&mut local_c, world, "world")?;
        let mut wire = Vec::new();
        crate::try_reserve(&mut wire, world, "world")?;
        let mut owner_wire = Vec::new();
        crate::try_reserve(&mut owner_wire, world, "world")?;
        for (j, &(s, e)) in bounds.iter().enumerate() {
            let seed = region_seeds.map_or_else(|| rng::derive(local.seed, j as u64), |v| v[j]);
            local_c.push(if e > s {
                Some(Compressor::new(e - s, CompressorConfig { seed, ..local })?)
            } else {
                None
            });
            wire.push(wire_for(e - s, &local)?);
            owner_wire.push(wire_for(e - s, &owner)?);
        }
        let (s, e) = bounds[rank];
        let owner_c = if e > s {
            Some(Compressor::new(e - s, owner)?)
        } else {
            None
        };
        let acc = crate::try_zeroed(e - s, "dim")?;
        Ok(RegionExchange {
            dim,
            world,
            rank,
            slot: wire.iter().copied().max().unwrap_or(0),
            owner_slot: owner_wire.iter().copied().max().unwrap_or(0),
            bounds,
            local: local_c,
            owner: owner_c,
            wire,
            owner_wire,
            acc,
        })
    }

    /// Bucket length.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Number of ranks.
    pub fn world(&self) -> usize {
        self.world
    }
    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }
    /// `[(start, end)]` of every region.
    pub fn bounds(&self) -> &[(usize, usize)] {
        &self.bounds
    }
    /// Bytes of one phase-1 slot (the largest regional payload); the
    /// phase-1 buffer is `world * slot` bytes.
    pub fn slot_bytes(&self) -> usize {
        self.slot
    }
    /// Bytes of one owner payload slot; the gathered buffer is
    /// `world * owner_slot` bytes.
    pub fn owner_slot_bytes(&self) -> usize {
        self.owner_slot
    }
    /// Exact payload bytes of region `j`'s phase-1 and owner payloads (0
    /// for an empty region); the rest of a slot is zero padding.
    pub fn region_wire_bytes(&self, j: usize) -> Option<(usize, usize)> {
        Some((*self.wire.get(j)?, *self.owner_wire.get(j)?))
    }

    /// Phase 1: compresses each region of `grad` (`dim` floats) plus its
    /// residual into `slots_out` (`world * slot_bytes()` bytes; slot `j`
    /// holds region `j`'s payload, zero-padded), updating the regional
    /// residuals. Errors: lengths (`grad`, `slots_out`), a non-finite
    /// gradient (checked before anything changes: the state is unchanged on
    /// error).
    pub fn compress(&mut self, grad: &[f32], slots_out: &mut [u8]) -> Result<()> {
        if grad.len() != self.dim {
            return Err(Error::shape(
                "grad",
                format!("expected {} elements, got {}", self.dim, grad.len()),
            ));
        }
        check_slots("slots_out", slots_out.len(), self.world, self.slot, "slot")?;
        // Each region's compress checks its part of `grad` while adding the
        // residual (one pass); a failure part-way takes back the regions
        // already done, so the state is unchanged on error. Large buckets
        // compress their regions on the crate's threads (the regions are
        // independent: same bits at any thread count).
        let slot = self.slot;
        let one = |c: &mut Option<Compressor>,
                   out: &mut [u8],
                   (s, e): (usize, usize),
                   w: usize|
         -> Result<bool> {
            let Some(c) = c.as_mut() else {
                out.fill(0);
                return Ok(false);
            };
            let p = c.compress(&grad[s..e])?;
            payload::encode_into(&p, &mut out[..w]).inspect_err(|_| c.undo_compress())?;
            out[w..].fill(0);
            Ok(true)
        };
        let done: Vec<Result<bool>> = if self.dim >= PAR_MIN && crate::parallel::num_threads() > 1 {
            crate::parallel::install(|| {
                self.local
                    .par_iter_mut()
                    .zip(slots_out.par_chunks_mut(slot))
                    .zip(self.bounds.par_iter())
                    .zip(self.wire.par_iter())
                    .map(|(((c, out), &b), &w)| one(c, out, b, w))
                    .collect()
            })
        } else {
            let mut v = Vec::new();
            let items = self
                .local
                .iter_mut()
                .zip(slots_out.chunks_mut(slot))
                .zip(self.bounds.iter())
                .zip(self.wire.iter());
            for (((c, out), &b), &w) in items {
                v.push(one(c, out, b, w));
                if v.last().is_some_and(|r| r.is_err()) {
                    break;
                }
            }
            v
        };
        if let Some(pos) = done.iter().position(|r| r.is_err()) {
            for (c, r) in self.local.iter_mut().zip(&done) {
                if let (Some(c), Ok(true)) = (c.as_mut(), r) {
                    c.undo_compress();
                }
            }
            let err = done
                .into_iter()
                .nth(pos)
                .and_then(|r| r.err())
                .expect("an error");
            return Err(match err {
                // the index in the whole bucket
                Error::NonFinite { .. } => crate::check_finite(grad, "grad").err().unwrap_or(err),
                err => err,
            });
        }
        Ok(())
    }

    /// Phase 2 (the owner's part): decodes the `world` payloads of this
    /// rank's region in `received` (`world * slot_bytes()` bytes, row `i`
    /// from rank `i`), sums them in rank order, and re-compresses the sum
    /// (plus the owner residual) into `owner_out` (`owner_slot_bytes()`
    /// bytes, zero-padded), updating the owner residual. Errors: lengths
    /// (`received`, `owner_out`), a row that is not a valid payload of this
    /// region (`TRITTER_ERR_INVALID_DATA`/shape naming `received` and the
    /// row), a sum that is not finite (naming `received`); the state and
    /// `owner_out` are unchanged on error.
    pub fn reduce(&mut self, received: &[u8], owner_out: &mut [u8]) -> Result<()> {
        check_slots("received", received.len(), self.world, self.slot, "slot")?;
        if owner_out.len() != self.owner_slot {
            return Err(Error::shape(
                "owner_out",
                format!(
                    "expected {} bytes (the owner slot), got {}",
                    self.owner_slot,
                    owner_out.len()
                ),
            ));
        }
        let Some(owner) = self.owner.as_mut() else {
            owner_out.fill(0);
            return Ok(());
        };
        let w = self.wire[self.rank];
        // One thread: parsing the rows on the pool and adding their entries
        // in rank order afterwards measured 1.6x slower at 8 ranks (2 cores).
        self.acc.fill(0.0);
        for i in 0..self.world {
            let row = &received[i * self.slot..i * self.slot + w];
            payload::decompress_apply(row, &mut self.acc, |a, v| a + v)
                .map_err(|e| relabel(e, "received", i))?;
        }
        let p = owner.compress(&self.acc).map_err(|e| match e {
            Error::NonFinite { index, .. } => Error::data(
                "received",
                format!("the sum of the received payloads is not finite at region element {index}"),
            ),
            e => e,
        })?;
        let ow = self.owner_wire[self.rank];
        payload::encode_into(&p, &mut owner_out[..ow])?;
        owner_out[ow..].fill(0);
        Ok(())
    }

    /// Phase 2 (every rank): decodes the `world` owner payloads in
    /// `gathered` (`world * owner_slot_bytes()` bytes, row `j` from rank
    /// `j`) into `out` (`dim` floats): region `j` = owner `j`'s decoded sum
    /// divided by `world`. Errors: lengths (`gathered`; `out`, unchanged),
    /// a row that is not a valid owner payload of its region (naming
    /// `gathered` and the row; `out` is then zeroed).
    pub fn decode(&self, gathered: &[u8], out: &mut [f32]) -> Result<()> {
        check_slots(
            "gathered",
            gathered.len(),
            self.world,
            self.owner_slot,
            "owner_slot",
        )?;
        if out.len() != self.dim {
            return Err(Error::shape(
                "out",
                format!("expected {} elements, got {}", self.dim, out.len()),
            ));
        }
        let n = self.world as f32;
        // region j is out's chunk j of `l` floats (the trailing regions may be
        // short or empty)
        let l = self.dim.div_ceil(self.world);
        debug_assert!(self
            .bounds
            .iter()
            .enumerate()
            .all(|(j, &(s, e))| s == self.dim.min(j * l) && e == self.dim.min((j + 1) * l)));
        let one = |(j, o): (usize, &mut [f32])| -> Result<()> {
            o.fill(0.0);
            let row = &gathered[j * self.owner_slot..j * self.owner_slot + self.owner_wire[j]];
            payload::decompress_div(row, o, n).map_err(|e| relabel(e, "gathered", j))
        };
        let err = if self.dim >= PAR_MIN && crate::parallel::num_threads() > 1 {
            let done: Vec<Result<()>> =
                crate::parallel::install(|| out.par_chunks_mut(l).enumerate().map(one).collect());
            done.into_iter().find_map(|r| r.err())
        } else {
            out.chunks_mut(l).enumerate().map(one).find_map(|r| r.err())
        };
        match err {
            Some(e) => {
                out.fill(0.0);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Writes this rank's regional residuals (`local_out`, `dim` floats)
    /// and its owner residual placed at the owned region (`owner_out`,
    /// `dim` floats, zero elsewhere). Errors: lengths; error feedback off in
    /// either configuration (`InvalidState`).
    pub fn residuals(&self, local_out: &mut [f32], owner_out: &mut [f32]) -> Result<()> {
        for (buf, name) in [(&*local_out, "local_out"), (&*owner_out, "owner_out")] {
            if buf.len() != self.dim {
                return Err(Error::shape(
                    name,
                    format!("expected {} elements, got {}", self.dim, buf.len()),
                ));
            }
        }
        let no_ef = |c: &Compressor| !c.config().error_feedback;
        if self.local.iter().flatten().any(no_ef) || self.owner.as_ref().is_some_and(no_ef) {
            return Err(Error::InvalidState(
                "the region exchange keeps no residual (error feedback is off)".into(),
            ));
        }
        for (c, &(s, e)) in self.local.iter().zip(&self.bounds) {
            if let Some(c) = c {
                local_out[s..e].copy_from_slice(c.residual());
            }
        }
        owner_out.fill(0.0);
        if let Some(c) = &self.owner {
            let (s, e) = self.bounds[self.rank];
            owner_out[s..e].copy_from_slice(c.residual());
        }
        Ok(())
    }
}

/// `len` must be `world * slot` bytes (`what` names the slot).
fn check_slots(arg: &'static str, len: usize, world: usize, slot: usize, what: &str) -> Result<()> {
    let need = world * slot;
    if len == need {
        return Ok(());
    }
    Err(Error::shape(
        arg,
        format!("expected world * {what} = {world} * {slot} = {need} bytes, got {len}"),
    ))
}

/// A received row's error, named after the buffer and the row.
fn relabel(e: Error, arg: &'static str, row: usize) -> Error {
    match e {
        Error::InvalidData { msg, .. } => Error::data(arg, format!("row {row}: {msg}")),
        Error::ShapeMismatch { msg, .. } => Error::data(
            arg,
            format!("row {row}: a payload of another region or bucket ({msg})"),
        ),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::super::{payload, Compressor, CompressorConfig, Method};
    use super::*;

    fn cfg(method: Method, ratio: f64, v: usize, seed: u64) -> CompressorConfig {
        CompressorConfig {
            method,
            ratio,
            value_bits: v,
            seed,
            worker: 0,
            ..CompressorConfig::default()
        }
    }

    fn grad(seed: u64, n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let a = rng::uniform_f64(seed, 2 * i as u64).max(1e-300);
                let b = rng::uniform_f64(seed, 2 * i as u64 + 1);
                (0.1 * (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()) as f32
            })
            .collect()
    }

    /// Bytes of one step: per rank (and region) payloads, owner payloads.
    type Rows = Vec<Vec<u8>>;

    /// The reference: separate compressors, dense decodes and dense sums.
    struct Reference {
        local: Vec<Vec<Option<Compressor>>>,
        owner: Vec<Option<Compressor>>,
        bounds: Vec<(usize, usize)>,
    }

    impl Reference {
        fn new(n: usize, world: usize, local: CompressorConfig, owner: CompressorConfig) -> Self {
            let bounds = region_bounds(n, world);
            let mk = |len: usize, c: CompressorConfig| {
                (len > 0).then(|| Compressor::new(len, c).unwrap())
            };
            let local = (0..world)
                .map(|r| {
                    bounds
                        .iter()
                        .enumerate()
                        .map(|(j, &(s, e))| {
                            let seed = rng::derive(local.seed, j as u64);
                            mk(
                                e - s,
                                CompressorConfig {
                                    seed,
                                    worker: r as u64,
                                    ..local
                                },
                            )
                        })
                        .collect()
                })
                .collect();
            let owner = bounds
                .iter()
                .enumerate()
                .map(|(r, &(s, e))| {
                    mk(
                        e - s,
                        CompressorConfig {
                            worker: r as u64,
                            ..owner
                        },
                    )
                })
                .collect();
            Reference {
                local,
                owner,
                bounds,
            }
        }
        /// One step: per rank phase-1 payloads, per owner payload, the update.
        fn step(&mut self, grads: &[Vec<f32>]) -> (Vec<Rows>, Rows, Vec<f32>) {
            let world = grads.len();
            let n = grads[0].len();
            let p1: Vec<Rows> = (0..world)
                .map(|r| {
                    self.bounds
                        .iter()
                        .enumerate()
                        .map(|(j, &(s, e))| match self.local[r][j].as_mut() {
                            Some(c) => c.compress(&grads[r][s..e]).unwrap().to_bytes(),
                            None => Vec::new(),
                        })
                        .collect()
                })
                .collect();
            let mut owners = Vec::new();
            let mut update = vec![0f32; n];
            for (j, &(s, e)) in self.bounds.iter().enumerate() {
                let Some(c) = self.owner[j].as_mut() else {
                    owners.push(Vec::new());
                    continue;
                };
                let mut acc = vec![0f32; e - s];
                let mut d = vec![0f32; e - s];
                for row in &p1 {
                    payload::decompress_into(&row[j], &mut d).unwrap();
                    for (a, v) in acc.iter_mut().zip(&d) {
                        *a += v;
                    }
                }
                let p = c.compress(&acc).unwrap().to_bytes();
                payload::decompress_into(&p, &mut d).unwrap();
                for (u, v) in update[s..e].iter_mut().zip(&d) {
                    *u = v / world as f32;
                }
                owners.push(p);
            }
            (p1, owners, update)
        }
    }

    fn exchange(
        n: usize,
        world: usize,
        local: CompressorConfig,
        owner: CompressorConfig,
    ) -> Vec<RegionExchange> {
        (0..world)
            .map(|r| {
                let l = CompressorConfig {
                    worker: r as u64,
                    ..local
                };
                let o = CompressorConfig {
                    worker: r as u64,
                    ..owner
                };
                RegionExchange::new(n, world, r, l, o, None).unwrap()
            })
            .collect()
    }

    /// Runs one step of every rank through the fused calls (the all-to-all
    /// and all-gather done by slicing); returns the slots, owner slots and
    /// every rank's update.
    fn fused_step(ex: &mut [RegionExchange], grads: &[Vec<f32>]) -> (Rows, Rows, Vec<Vec<f32>>) {
        let world = ex.len();
        let slot = ex[0].slot_bytes();
        let oslot = ex[0].owner_slot_bytes();
        let slots: Rows = ex
            .iter_mut()
            .zip(grads)
            .map(|(x, g)| {
                let mut s = vec![0xAAu8; world * slot];
                x.compress(g, &mut s).unwrap();
                s
            })
            .collect();
        let owners: Rows = ex
            .iter_mut()
            .enumerate()
            .map(|(r, x)| {
                let recv: Vec<u8> = slots
                    .iter()
                    .flat_map(|s| s[r * slot..(r + 1) * slot].to_vec())
                    .collect();
                let mut o = vec![0x55u8; oslot];
                x.reduce(&recv, &mut o).unwrap();
                o
            })
            .collect();
        let gathered: Vec<u8> = owners.concat();
        let updates = ex
            .iter()
            .map(|x| {
                let mut u = vec![1f32; x.dim()];
                x.decode(&gathered, &mut u).unwrap();
                u
            })
            .collect();
        (slots, owners, updates)
    }

    #[test]
    fn threaded_regions_have_the_bits_of_one_thread() {
        // buckets from PAR_MIN run their regions on the crate's threads
        let cases = [
            (Method::QTopK, 32.0, 3, Method::QTopK, 32.0),
            (Method::Ternary, 1.0, 2, Method::QTopK, 40.0),
        ];
        for &(lm, lr, v, om, or) in &cases {
            for &(n, world) in &[(PAR_MIN + 4099, 3usize), (PAR_MIN + 1, 8)] {
                let local = cfg(lm, lr, v, 5);
                let owner = cfg(om, or, v, 6);
                let grads: Vec<Vec<Vec<f32>>> = (0..2u64)
                    .map(|t| (0..world).map(|r| grad(t * 17 + r as u64, n)).collect())
                    .collect();
                let mut first = None;
                for threads in [1usize, 2, 3] {
                    crate::parallel::set_num_threads(threads);
                    let mut ex = exchange(n, world, local, owner);
                    let steps: Vec<_> = grads.iter().map(|g| fused_step(&mut ex, g)).collect();
                    let bits = |u: &Vec<Vec<f32>>| -> Vec<Vec<u32>> {
                        u.iter()
                            .map(|x| x.iter().map(|v| v.to_bits()).collect())
                            .collect()
                    };
                    let got: Vec<_> = steps
                        .iter()
                        .map(|(a, b, u)| (a.clone(), b.clone(), bits(u)))
                        .collect();
                    match &first {
                        None => first = Some(got),
                        Some(f) => assert!(f == &got, "{lm:?} n {n} N {world}: {threads} threads"),
                    }
                    // a bad value in a middle region: the error names it, the
                    // state is unchanged (the next step has the same bytes)
                    let at = n / 2 + 3;
                    let mut gn = grads[0][0].clone();
                    gn[at] = f32::NAN;
                    let twin = ex[0].clone();
                    let mut s = vec![0u8; world * ex[0].slot_bytes()];
                    let err = ex[0].compress(&gn, &mut s).unwrap_err().to_string();
                    assert!(err.contains(&format!("{at}")), "{err}");
                    let (mut s1, mut s2) = (s.clone(), s.clone());
                    twin.clone().compress(&grads[1][0], &mut s1).unwrap();
                    ex[0].compress(&grads[1][0], &mut s2).unwrap();
                    assert_eq!(s1, s2, "{threads} threads: state changed by a failed call");
                    // two corrupt gathered rows: the first is named, out is zeroed
                    let mut gathered = steps[0].1.concat();
                    let os = ex[0].owner_slot_bytes();
                    for row in [world - 1, 1] {
                        gathered[row * os + 50] ^= 0x10;
                    }
                    let mut u = vec![1f32; n];
                    let err = ex[0].decode(&gathered, &mut u).unwrap_err().to_string();
                    assert!(err.contains("row 1"), "{err}");
                    assert!(u.iter().all(|&x| x == 0.0));
                    // two corrupt received rows: the first is named, the
                    // owner state unchanged
                    let sl = ex[0].slot_bytes();
                    let mut recv = vec![0u8; world * sl];
                    for (i, x) in ex.iter_mut().enumerate() {
                        let mut s = vec![0u8; world * sl];
                        x.compress(&grads[0][i], &mut s).unwrap();
                        recv[i * sl..(i + 1) * sl].copy_from_slice(&s[..sl]);
                    }
                    let good = recv.clone();
                    for row in [world - 1, 1] {
                        recv[row * sl + 60] ^= 0x01;
                    }
                    let twin = ex[0].clone();
                    let mut o = vec![0u8; os];
                    let err = ex[0].reduce(&recv, &mut o).unwrap_err().to_string();
                    assert!(err.contains("`received`") && err.contains("row 1"), "{err}");
                    let (mut o1, mut o2) = (o.clone(), o.clone());
                    twin.clone().reduce(&good, &mut o1).unwrap();
                    ex[0].reduce(&good, &mut o2).unwrap();
                    assert_eq!(
                        o1, o2,
                        "{threads} threads: owner state changed by a failed call"
                    );
                }
                crate::parallel::set_num_threads(0);
            }
        }
    }

    #[test]
    fn fused_exchange_has_the_bits_of_the_per_region_reference() {
        let cases = [
            (Method::QTopK, 32.0, 2, Method::QTopK, 32.0),
            (Method::QTopK, 16.0, 3, Method::QTopK, 64.0),
            (Method::TopK, 20.0, 2, Method::TopK, 20.0),
            (Method::Ternary, 1.0, 2, Method::QTopK, 40.0),
        ];
        for &(lm, lr, v, om, or) in &cases {
            for &(n, world) in &[
                (1usize, 1usize),
                (3, 4),
                (257, 2),
                (1000, 3),
                (4099, 8),
                (70, 8),
            ] {
                let local = cfg(lm, lr, v, 11);
                let owner = cfg(om, or, v, 99);
                let mut reference = Reference::new(n, world, local, owner);
                let mut ex = exchange(n, world, local, owner);
                for step in 0..4u64 {
                    let grads: Vec<Vec<f32>> =
                        (0..world).map(|r| grad(step * 131 + r as u64, n)).collect();
                    let (p1, po, upd) = reference.step(&grads);
                    let (slots, owners, updates) = fused_step(&mut ex, &grads);
                    let slot = ex[0].slot_bytes();
                    for r in 0..world {
                        for (j, p) in p1[r].iter().enumerate() {
                            let s = &slots[r][j * slot..(j + 1) * slot];
                            assert_eq!(
                                &s[..p.len()],
                                &p[..],
                                "{lm:?} n {n} N {world} step {step}: rank {r} region {j}"
                            );
                            assert!(s[p.len()..].iter().all(|&b| b == 0), "padding");
                        }
                        assert_eq!(&owners[r][..po[r].len()], &po[r][..], "owner {r}");
                        assert!(owners[r][po[r].len()..].iter().all(|&b| b == 0));
                        let same = updates[r]
                            .iter()
                            .zip(&upd)
                            .all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(
                            same,
                            "{lm:?} n {n} N {world} step {step}: update of rank {r}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn error_feedback_conserves_the_gradient_sum() {
        let (n, world) = (1500, 4);
        let local = cfg(Method::QTopK, 32.0, 2, 5);
        let mut ex = exchange(n, world, local, local);
        let mut total_g = vec![0f64; n];
        let mut total_u = vec![0f64; n];
        for step in 0..6u64 {
            let grads: Vec<Vec<f32>> = (0..world)
                .map(|r| grad(1000 + step * 7 + r as u64, n))
                .collect();
            for g in &grads {
                for (t, &v) in total_g.iter_mut().zip(g) {
                    *t += v as f64;
                }
            }
            let (_, _, updates) = fused_step(&mut ex, &grads);
            for (t, &u) in total_u.iter_mut().zip(&updates[0]) {
                *t += world as f64 * u as f64;
            }
        }
        let mut resid = vec![0f64; n];
        let (mut lo, mut ow) = (vec![0f32; n], vec![0f32; n]);
        for x in &ex {
            x.residuals(&mut lo, &mut ow).unwrap();
            for i in 0..n {
                resid[i] += lo[i] as f64 + ow[i] as f64;
            }
        }
        let worst = (0..n)
            .map(|i| (total_g[i] - total_u[i] - resid[i]).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-4, "conservation off by {worst}");
        // and the exchange did send something
        assert!(total_u.iter().any(|&u| u != 0.0));
    }

    #[test]
    fn bad_input_is_an_error_and_changes_nothing() {
        let local = cfg(Method::QTopK, 32.0, 2, 1);
        let e = |r: Result<RegionExchange>| r.unwrap_err().to_string();
        assert!(e(RegionExchange::new(0, 2, 0, local, local, None)).contains("`dim`"));
        assert!(e(RegionExchange::new(10, 0, 0, local, local, None)).contains("`world`"));
        assert!(e(RegionExchange::new(
            10,
            MAX_WORLD + 1,
            0,
            local,
            local,
            None
        ))
        .contains("`world`"));
        assert!(e(RegionExchange::new(10, 2, 2, local, local, None)).contains("`rank`"));
        assert!(
            e(RegionExchange::new(10, 2, 0, local, local, Some(&[1]))).contains("`region_seeds`")
        );
        let bad = CompressorConfig {
            ratio: 0.5,
            ..local
        };
        assert!(e(RegionExchange::new(10, 2, 0, bad, local, None)).contains("`ratio`"));

        let (n, world) = (600, 3);
        let mut ex = exchange(n, world, local, local);
        let slot = ex[0].slot_bytes();
        let oslot = ex[0].owner_slot_bytes();
        let g = grad(3, n);
        let mut s = vec![0u8; world * slot];
        assert!(ex[0]
            .compress(&g[1..], &mut s)
            .unwrap_err()
            .to_string()
            .contains("`grad`"));
        assert!(ex[0]
            .compress(&g, &mut s[1..])
            .unwrap_err()
            .to_string()
            .contains("`slots_out`"));
        let mut gn = g.clone();
        gn[599] = f32::NAN;
        assert!(ex[0]
            .compress(&gn, &mut s)
            .unwrap_err()
            .to_string()
            .contains("`grad`"));
        // A failed call changes nothing, wherever the bad value is (regions
        // before it were compressed and are taken back): same residuals,
        // and the next good step writes the same bytes as an untouched copy.
        ex[0].compress(&g, &mut s).unwrap(); // a residual to keep
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        let (mut c, mut d) = (vec![0f32; n], vec![0f32; n]);
        for (at, bad) in [
            (0, f32::NAN),
            (200, f32::INFINITY),
            (399, f32::NAN),
            (599, f32::NEG_INFINITY),
        ] {
            let before = ex[0].clone();
            let mut gn = g.clone();
            gn[at] = bad;
            let err = ex[0].compress(&gn, &mut s).unwrap_err().to_string();
            assert!(
                err.contains("`grad`") && err.contains(&format!("{at}")),
                "{err}"
            );
            before.residuals(&mut a, &mut b).unwrap();
            ex[0].residuals(&mut c, &mut d).unwrap();
            assert_eq!(a, c, "bad value at {at}");
            let (mut s1, mut s2) = (vec![0u8; world * slot], vec![0u8; world * slot]);
            let mut twin = before.clone();
            twin.compress(&g, &mut s1).unwrap();
            let mut again = ex[0].clone();
            again.compress(&g, &mut s2).unwrap();
            assert_eq!(s1, s2, "bad value at {at}");
        }

        // corrupt received rows: named, the owner residual unchanged
        let mut slots = Vec::new();
        for x in ex.iter_mut() {
            let mut s = vec![0u8; world * slot];
            x.compress(&grad(9, n), &mut s).unwrap();
            slots.push(s);
        }
        let recv: Vec<u8> = slots.iter().flat_map(|s| s[..slot].to_vec()).collect();
        let mut o = vec![7u8; oslot];
        ex[0].residuals(&mut a, &mut b).unwrap();
        for flip in [0usize, 10, 45, slot + 50, 2 * slot + 3] {
            let mut r = recv.clone();
            r[flip] ^= 0x10;
            let msg = ex[0].reduce(&r, &mut o).unwrap_err().to_string();
            assert!(msg.contains("`received`") && msg.contains("row"), "{msg}");
            assert!(o.iter().all(|&b| b == 7), "owner_out written on error");
        }
        assert!(ex[0]
            .reduce(&recv[1..], &mut o)
            .unwrap_err()
            .to_string()
            .contains("`received`"));
        assert!(ex[0]
            .reduce(&recv, &mut o[1..])
            .unwrap_err()
            .to_string()
            .contains("`owner_out`"));
        ex[0].residuals(&mut c, &mut d).unwrap();
        assert_eq!((&a, &b), (&c, &d), "a failed reduce changed a residual");
        ex[0].reduce(&recv, &mut o).unwrap();

        // decode: a corrupt gathered row zeroes out
        let gathered = vec![0u8; world * oslot];
        let mut out = vec![1f32; n];
        let msg = ex[0].decode(&gathered, &mut out).unwrap_err().to_string();
        assert!(msg.contains("`gathered`") && msg.contains("row 0"), "{msg}");
        assert!(out.iter().all(|&v| v == 0.0));
        let mut out = vec![1f32; n - 1];
        assert!(ex[0]
            .decode(&gathered, &mut out)
            .unwrap_err()
            .to_string()
            .contains("`out`"));
        assert!(
            out.iter().all(|&v| v == 1.0),
            "out changed on a shape error"
        );
    }

    #[test]
    fn a_non_finite_sum_is_an_error_naming_received() {
        // two valid top-k payloads whose values overflow when summed
        let (n, world) = (8, 2);
        let local = cfg(Method::TopK, 8.0, 2, 1);
        let mut ex = exchange(n, world, local, local);
        let big = vec![3.0e38f32; n];
        let slot = ex[0].slot_bytes();
        let mut slots = Vec::new();
        for x in ex.iter_mut() {
            let mut s = vec![0u8; world * slot];
            x.compress(&big, &mut s).unwrap();
            slots.push(s);
        }
        let recv: Vec<u8> = slots.iter().flat_map(|s| s[..slot].to_vec()).collect();
        let mut o = vec![0u8; ex[0].owner_slot_bytes()];
        let msg = ex[0].reduce(&recv, &mut o).unwrap_err().to_string();
        assert!(
            msg.contains("`received`") && msg.contains("not finite"),
            "{msg}"
        );
    }

    #[test]
    fn bounds_cover_the_bucket() {
        for &(n, w) in &[(1usize, 1usize), (1, 4), (7, 3), (8, 4), (9, 4), (1000, 7)] {
            let b = region_bounds(n, w);
            assert_eq!(b.len(), w);
            assert_eq!(b[0].0, 0);
            assert_eq!(b[w - 1].1, n);
            for k in 1..w {
                assert_eq!(b[k - 1].1, b[k].0);
            }
            let l = n.div_ceil(w);
            assert!(b.iter().all(|&(s, e)| e - s <= l));
        }
    }
}
