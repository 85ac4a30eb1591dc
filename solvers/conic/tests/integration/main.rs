//! The conic backend's integration tests, one test binary (one optimised link of the backend
//! instead of one per file): convergence against exact flows, invariants, the multilevel
//! solver, regressions, and the solver through the `StepSolver` trait. The shared helpers are
//! in `tests/common/` (the examples include them too).

#[path = "../common/mod.rs"]
mod common;

mod convergence;
mod invariants;
mod multilevel;
mod regressions;
mod solver;
