//! The engine's integration tests, one test binary (one link of the engine and every backend
//! instead of one per file): the conformance suite every registered backend runs through the
//! driver, the built-in examples, resource limits, resume, VTK output, fuzzing regressions and
//! the property tests. The shared cases, march loop and L1 are in `tests/kit/`. The slow
//! convergence studies are the `convergence` binary (`tests/convergence/`).

#[path = "../kit/mod.rs"]
mod kit;

mod conformance;
mod examples;
mod fuzz_regressions;
mod limits;
mod properties;
mod resume;
mod vtk;
