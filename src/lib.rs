//! jko
