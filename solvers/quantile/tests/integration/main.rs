//! The quantile backend's integration tests, one test binary (one link instead of one per
//! file): convergence against exact solutions and the solver through the `StepSolver` trait.

mod convergence;
mod solver;
