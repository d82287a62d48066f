//! Gradients: compression for data-parallel training ([`compress`]), ternary
//! gradient accumulation ([`accumulate`]) and deterministic gradient
//! prediction ([`predict`]).

pub mod accumulate;
pub mod compress;
pub mod predict;
