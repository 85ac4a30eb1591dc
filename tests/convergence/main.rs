//! Convergence and reference tests, one test binary: reference data from independent
//! computations and observed orders of convergence.

mod reference_data;
