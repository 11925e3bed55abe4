//! The outcore execution engine (in progress): lazy expressions, fused
//! kernels and reductions streamed through rayon.
