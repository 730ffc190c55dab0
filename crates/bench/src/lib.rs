//! The benchmarks live in `benches/figures/`; this crate has no library code. `cargo bench` runs them.
