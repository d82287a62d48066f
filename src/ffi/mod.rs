//! The C ABI: the only `extern "C"` code in the crate.
//!
//! Every export validates its arguments, converts them to safe Rust types,
//! calls one safe core function and maps its error to a [`tritter_status_t`]
//! status. The last error's message (naming the argument) is kept per thread
//! and read with `tritter_last_error()`. Every body runs inside a panic
//! boundary ([`status::guard`]): a panic becomes `TRITTER_ERR_INTERNAL`.
//!
//! Files: `status.rs` (codes, last error, panic boundary), `args.rs` (pointer
//! and size validation), `dlpack.rs` (borrowed DLPack tensor views),
//! `handle.rs` (opaque handle boxing), `runtime.rs` (version, threads), then
//! one file per domain.
#![allow(non_camel_case_types)]
// Every status-returning export carries `#[must_use]` although the status
// type already does: cbindgen turns the function attribute into
// `TRITTER_MUST_USE` (warn_unused_result) for C callers (tests/header.rs
// checks that none lacks it).
#![allow(clippy::double_must_use)]

pub mod args;
pub mod dlpack;
pub mod handle;
pub mod runtime;
pub mod status;

pub mod grad;
pub mod infer;
pub mod io;
pub mod precision;
pub mod predict;
pub mod ternary;
pub mod train;
pub mod vsa;

pub use status::tritter_status_t;
