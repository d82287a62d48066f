//! One fuzz target per decoder, and the invariants each checks.
//!
//! Shared by the cargo-fuzz binaries (`fuzz/fuzz_targets/*.rs`) and the
//! seeded mutation test of the library (`tests/fuzz_mutation.rs`, which
//! includes this file with `#[path]`). Every target drives the C entry
//! points (so the argument checks and the panic boundary are in the path)
//! and panics when an invariant breaks:
//!
//! * no call ever reports `TRITTER_ERR_INTERNAL` (a caught panic is a bug);
//! * a rejected input gets the documented status (`INVALID_DATA` /
//!   `SHAPE_MISMATCH`), never OK with garbage;
//! * an accepted input round-trips byte for byte through its encoder, and
//!   decodes to finite values (payloads);
//! * for payloads, `payload_sum(p, p)` either succeeds with a payload that
//!   itself validates and decodes finite, or refuses with the documented
//!   status; writing the sum over an input gives the same bytes.
//!
//! Adding a target (e.g. a file-format reader): write `pub fn name(data: &[u8])`
//! here with its invariants, add it and its seed inputs to [`TARGETS`], and add
//! `fuzz_targets/name.rs` plus a `[[bin]]` in `fuzz/Cargo.toml` (see README.md).

use tritter_accel::ffi::grad::{
    tritter_grad_decompress, tritter_grad_payload_info, tritter_grad_payload_info_t,
    tritter_grad_payload_sum,
};
use tritter_accel::ffi::status::tritter_status_t::{self, *};
use tritter_accel::ffi::ternary::{
    tritter_pack, tritter_ternary_matrix_export_packed, tritter_ternary_matrix_free,
    tritter_ternary_matrix_from_packed, tritter_unpack, TRITTER_GRANULARITY_PER_TENSOR,
    TRITTER_LAYOUT_2BIT, TRITTER_LAYOUT_BASE3,
};
use tritter_accel::grad::compress::{payload, Compressed, Compressor, CompressorConfig, Method};

/// A fuzz target: name, check function, seed inputs.
pub type Target = (&'static str, fn(&[u8]), fn() -> Vec<Vec<u8>>);

/// Every target, with the valid inputs its mutations start from.
pub const TARGETS: &[Target] = &[
    ("payload", payload, seeds_payload),
    ("payload_sketch", payload_sketch, seeds_sketch),
    ("payload_ternary", payload_ternary, seeds_ternary),
    ("payload_topk", payload_topk, seeds_topk),
    ("payload_projection", payload_projection, seeds_projection),
    ("payload_qtopk", payload_qtopk, seeds_qtopk),
    ("unpack_2bit", unpack_2bit, seeds_2bit),
    ("unpack_base3", unpack_base3, seeds_base3),
];

/// Payloads this large are only validated, not decoded (a header may claim
/// any `dim`; decoding needs a `dim`-float output).
const DECODE_LIMIT: usize = 1 << 20;

fn last_error() -> String {
    let p = tritter_accel::ffi::status::tritter_last_error();
    // SAFETY: the library returns a valid NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_string_lossy()
        .into_owned()
}

/// Panics on `TRITTER_ERR_INTERNAL` (a caught panic) and on any status
/// outside `allowed`.
fn expect(st: tritter_status_t, allowed: &[tritter_status_t], what: &str) {
    assert!(
        st != TRITTER_ERR_INTERNAL && (st == TRITTER_OK || allowed.contains(&st)),
        "{what}: {st:?}: {}",
        last_error()
    );
}

// ---- payloads ----

/// The whole byte string as a payload (header parsing, sizes, CRC).
pub fn payload(data: &[u8]) {
    check_payload(data);
}

/// `data` = `dim` (u32) `a` (u32) `b` (u32) `seed` (u64) then the body; the
/// target writes a valid header and CRC around it, so every input reaches
/// the parameter and body validation of `method`.
fn framed(method: Method, data: &[u8]) {
    if data.len() < 20 {
        return;
    }
    let u32_at = |o: usize| u32::from_le_bytes(data[o..o + 4].try_into().unwrap());
    let body = &data[20..];
    let mut p = Vec::with_capacity(payload::OVERHEAD + body.len());
    p.extend_from_slice(&payload::MAGIC);
    p.extend_from_slice(&payload::VERSION.to_le_bytes());
    p.extend_from_slice(&[method.code() as u8, 0]);
    p.extend_from_slice(&(u32_at(0) as u64).to_le_bytes());
    p.extend_from_slice(&data[12..20]);
    p.extend_from_slice(&u32_at(4).to_le_bytes());
    p.extend_from_slice(&u32_at(8).to_le_bytes());
    p.extend_from_slice(&(body.len() as u64).to_le_bytes());
    p.extend_from_slice(body);
    let crc = payload::crc32(&p);
    p.extend_from_slice(&crc.to_le_bytes());
    check_payload(&p);
}

/// The framed input of a payload (the inverse of [`framed`]).
fn unframe(p: &[u8]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&p[8..12]); // dim (low 32 bits)
    d.extend_from_slice(&p[24..32]); // a, b
    d.extend_from_slice(&p[16..24]); // seed
    d.extend_from_slice(&p[payload::HEADER..p.len() - 4]);
    d
}

/// Count-sketch payloads.
pub fn payload_sketch(data: &[u8]) {
    framed(Method::CountSketch, data)
}
/// Ternary payloads.
pub fn payload_ternary(data: &[u8]) {
    framed(Method::Ternary, data)
}
/// Top-k payloads.
pub fn payload_topk(data: &[u8]) {
    framed(Method::TopK, data)
}
/// Projection payloads.
pub fn payload_projection(data: &[u8]) {
    framed(Method::Projection, data)
}
/// Quantized top-k payloads.
pub fn payload_qtopk(data: &[u8]) {
    framed(Method::QTopK, data)
}

fn info(p: &[u8]) -> (tritter_status_t, tritter_grad_payload_info_t) {
    let mut i = tritter_grad_payload_info_t::default();
    // SAFETY: valid slice and out-pointer.
    let st = unsafe { tritter_grad_payload_info(p.as_ptr(), p.len(), &mut i) };
    (st, i)
}

fn decode_finite(p: &[u8], dim: usize, what: &str) {
    if dim > DECODE_LIMIT {
        return;
    }
    let mut out = vec![f32::NAN; dim];
    // SAFETY: valid slices.
    let st = unsafe { tritter_grad_decompress(p.as_ptr(), p.len(), out.as_mut_ptr(), dim) };
    expect(st, &[], what);
    if let Some(i) = out.iter().position(|v| !v.is_finite()) {
        panic!("{what}: a validated payload decodes to {} at {i}", out[i]);
    }
}

fn check_payload(p: &[u8]) {
    let (st, i) = info(p);
    expect(
        st,
        &[TRITTER_ERR_INVALID_DATA, TRITTER_ERR_OUT_OF_MEMORY],
        "payload_info",
    );
    if st != TRITTER_OK {
        // the decoder agrees with the validator
        let mut out = [0f32; 4];
        // SAFETY: valid slices.
        let st2 = unsafe { tritter_grad_decompress(p.as_ptr(), p.len(), out.as_mut_ptr(), 4) };
        assert_eq!(st2, st, "decompress and payload_info disagree");
        return;
    }
    assert_eq!(i.wire_bytes, p.len());
    // canonical: decoding and re-encoding gives the same bytes
    let c = Compressed::from_bytes(p).expect("payload_info accepted it");
    assert_eq!(c.to_bytes(), p, "re-encoding differs");
    decode_finite(p, i.dim, "decompress");

    // p + p: a valid payload that decodes finite, or a documented refusal
    let mut sum = vec![0u8; p.len()];
    // SAFETY: valid, disjoint slices.
    let st = unsafe {
        tritter_grad_payload_sum(
            p.as_ptr(),
            p.len(),
            p.as_ptr(),
            p.len(),
            sum.as_mut_ptr(),
            sum.len(),
        )
    };
    let linear = matches!(c.method(), Method::CountSketch | Method::Projection);
    if linear {
        expect(st, &[TRITTER_ERR_NON_FINITE], "payload_sum");
    } else {
        assert_eq!(
            st, TRITTER_ERR_INVALID_ARGUMENT,
            "sum of a non-linear payload"
        );
    }
    if st == TRITTER_OK {
        let (st3, i3) = info(&sum);
        expect(st3, &[], "payload_info of a sum");
        assert_eq!((i3.method, i3.dim, i3.seed), (i.method, i.dim, i.seed));
        decode_finite(&sum, i.dim, "decompress of a sum");
        // in place (sum_out == a) gives the same bytes
        let mut inplace = p.to_vec();
        let q = inplace.as_mut_ptr();
        // SAFETY: the documented aliasing (sum_out at the address of a).
        let st4 = unsafe { tritter_grad_payload_sum(q, p.len(), p.as_ptr(), p.len(), q, p.len()) };
        expect(st4, &[], "in-place payload_sum");
        assert_eq!(inplace, sum, "in-place sum differs");
    }
}

fn compressed(method: Method, dim: usize, ratio: f64, grad: &[f32]) -> Option<Vec<u8>> {
    let cfg = CompressorConfig {
        method,
        ratio,
        rows: 3,
        block: 8,
        error_feedback: false,
        seed: 11,
        ..Default::default()
    };
    let mut c = Compressor::new(dim, cfg).ok()?;
    Some(c.compress(grad).ok()?.to_bytes())
}

fn seed_grads() -> Vec<Vec<f32>> {
    let mut v = Vec::new();
    for (n, s) in [(1usize, 1u64), (7, 2), (33, 3), (100, 4)] {
        v.push(
            (0..n)
                .map(|i| {
                    let h = tritter_accel::rng::hash2(s, i as u64);
                    ((h >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
                })
                .collect(),
        );
    }
    // a large value next to small ones, and the f32 edge
    v.push(vec![1e-3, 3e38, -2.0, 0.0, 5.0, -1e-30, 7.5, 1.0]);
    v
}

fn seeds_method(method: Method) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for g in seed_grads() {
        for ratio in [1.0, 4.0] {
            // (a linear method refuses the 3e38 gradient: its sums overflow)
            out.extend(compressed(method, g.len(), ratio, &g));
        }
    }
    assert!(!out.is_empty(), "no seed payload for {method:?}");
    out
}

/// Valid payloads of every method.
pub fn seeds_payload() -> Vec<Vec<u8>> {
    Method::ALL.iter().flat_map(|&m| seeds_method(m)).collect()
}
fn seeds_framed(method: Method) -> Vec<Vec<u8>> {
    seeds_method(method).iter().map(|p| unframe(p)).collect()
}
/// Framed sketch payloads.
pub fn seeds_sketch() -> Vec<Vec<u8>> {
    seeds_framed(Method::CountSketch)
}
/// Framed ternary payloads.
pub fn seeds_ternary() -> Vec<Vec<u8>> {
    seeds_framed(Method::Ternary)
}
/// Framed top-k payloads.
pub fn seeds_topk() -> Vec<Vec<u8>> {
    seeds_framed(Method::TopK)
}
/// Framed projection payloads.
pub fn seeds_projection() -> Vec<Vec<u8>> {
    seeds_framed(Method::Projection)
}
/// Framed quantized top-k payloads.
pub fn seeds_qtopk() -> Vec<Vec<u8>> {
    seeds_framed(Method::QTopK)
}

// ---- packed ternary import ----

/// `data` = `cols` (u16 LE) then packed rows of `layout`; `rows` is how many
/// whole rows the bytes hold, plus one when data[2] is odd (a length
/// mismatch, which must be refused).
fn packed(layout: u32, data: &[u8]) {
    if data.len() < 3 {
        return;
    }
    let cols = u16::from_le_bytes([data[0], data[1]]) as usize % 2048;
    let bytes = &data[3..];
    let per = if layout == TRITTER_LAYOUT_2BIT { 4 } else { 5 };
    let rb = cols.div_ceil(per);
    // (cols == 0: any row count holds no bytes)
    let rows = bytes.len().checked_div(rb).unwrap_or(data[2] as usize % 4) + (data[2] & 1) as usize;
    let n = rows * cols;
    let mut t = vec![7i8; n];
    // SAFETY: valid slices.
    let st = unsafe {
        tritter_unpack(
            bytes.as_ptr(),
            bytes.len(),
            rows,
            cols,
            layout,
            t.as_mut_ptr(),
            n,
        )
    };
    expect(
        st,
        &[TRITTER_ERR_INVALID_DATA, TRITTER_ERR_SHAPE_MISMATCH],
        "unpack",
    );
    let mut m = std::ptr::null_mut();
    let scale = [1.0f32];
    // SAFETY: valid slices and out-pointer.
    let st_m = unsafe {
        tritter_ternary_matrix_from_packed(
            bytes.as_ptr(),
            bytes.len(),
            rows,
            cols,
            layout,
            scale.as_ptr(),
            1,
            TRITTER_GRANULARITY_PER_TENSOR,
            0,
            &mut m,
        )
    };
    assert_eq!(st_m, st, "unpack and matrix_from_packed disagree");
    if st != TRITTER_OK {
        assert!(m.is_null());
        return;
    }
    assert_eq!(rb * rows, bytes.len(), "accepted a wrong length");
    assert!(
        t.iter().all(|&v| (-1..=1).contains(&v)),
        "unpacked a non-trit"
    );
    // canonical: packing the trits again gives the same bytes, and so does
    // the matrix's export (decoded from its private layout)
    let mut again = vec![0u8; bytes.len()];
    // SAFETY: valid slices.
    let st = unsafe {
        tritter_pack(
            t.as_ptr(),
            rows,
            cols,
            layout,
            again.as_mut_ptr(),
            again.len(),
        )
    };
    expect(st, &[], "pack");
    assert_eq!(again, bytes, "pack(unpack(x)) != x");
    let mut exported = vec![0u8; bytes.len()];
    // SAFETY: a live matrix and a valid slice.
    let st = unsafe {
        tritter_ternary_matrix_export_packed(m, layout, exported.as_mut_ptr(), exported.len())
    };
    expect(st, &[], "export_packed");
    assert_eq!(exported, bytes, "matrix export differs from its import");
    // SAFETY: a live handle, freed once.
    unsafe { tritter_ternary_matrix_free(m) };
}

/// The canonical 2-bit layout (codes, padding, length).
pub fn unpack_2bit(data: &[u8]) {
    packed(TRITTER_LAYOUT_2BIT, data)
}
/// The base-3 layout (bytes <= 242, zero padding trits, length).
pub fn unpack_base3(data: &[u8]) {
    packed(TRITTER_LAYOUT_BASE3, data)
}

fn seeds_layout(layout: u32) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for (rows, cols) in [(1usize, 1usize), (2, 5), (3, 17), (4, 64), (1, 255)] {
        let t: Vec<i8> = (0..rows * cols)
            .map(|i| (tritter_accel::rng::hash2(9, i as u64) % 3) as i8 - 1)
            .collect();
        let per = if layout == TRITTER_LAYOUT_2BIT { 4 } else { 5 };
        let mut p = vec![0u8; rows * cols.div_ceil(per)];
        // SAFETY: valid slices.
        let st = unsafe { tritter_pack(t.as_ptr(), rows, cols, layout, p.as_mut_ptr(), p.len()) };
        assert_eq!(st, TRITTER_OK);
        let mut d = (cols as u16).to_le_bytes().to_vec();
        d.push(0);
        d.extend_from_slice(&p);
        out.push(d);
    }
    out
}
/// Valid 2-bit matrices.
pub fn seeds_2bit() -> Vec<Vec<u8>> {
    seeds_layout(TRITTER_LAYOUT_2BIT)
}
/// Valid base-3 matrices.
pub fn seeds_base3() -> Vec<Vec<u8>> {
    seeds_layout(TRITTER_LAYOUT_BASE3)
}
