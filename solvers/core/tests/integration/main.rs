//! The core crate's integration tests, one test binary (one link instead of one per file):
//! gmsh meshes and the input guards.

mod gmsh_meshes;
mod guards;
