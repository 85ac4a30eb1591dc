//! The `jko` binary and its tools, one test binary (one link instead of one per file): bad
//! input on the command line, `jko compare` (and `--check`), `jko convergence`, datasets, the
//! surrogate check in the driver, kill and resume, plots (of grids and of gmsh meshes).

mod cli;
mod compare;
mod convergence;
mod dataset;
mod flow_driver;
mod kill_resume;
mod mesh_plot;
mod plot;
