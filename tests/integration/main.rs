//! The engine's integration tests, one test binary (one link of the engine and every backend
//! instead of one per file): the conformance suite every registered backend runs through the
//! driver, the built-in examples, resource limits, resume, VTK output, fuzzing regressions, the
//! property tests, runs on gmsh meshes and the scores of computed iterates. The shared cases,
//! march loop and L1 are in `tests/kit/`. The slow convergence studies are the `convergence`
//! binary (`tests/convergence/`).

#[path = "../kit/mod.rs"]
mod kit;

mod conformance;
mod examples;
mod fuzz_regressions;
mod limits;
mod meshes;
mod properties;
mod resume;
mod score;
mod vtk;
