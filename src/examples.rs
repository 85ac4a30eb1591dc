//! Built-in example configs (`jko example NAME`), kept as TOML files in `data/examples/`.
//! `jko example` lists them; `jko example NAME > NAME.toml` writes one to start from.

/// The built-in examples: (name, one-line description, TOML text of the config). Every one
/// parses as a [`crate::config::Config`] and runs with `jko run`.
pub const EXAMPLES: &[(&str, &str, &str)] = &[
    (
        "ou-1d",
        "Fokker-Planck / Ornstein-Uhlenbeck in 1D from N(1, 0.5^2)",
        include_str!("../data/examples/ou-1d.toml"),
    ),
    (
        "ou-2d",
        "Fokker-Planck / Ornstein-Uhlenbeck in 2D from an off-centre Gaussian",
        include_str!("../data/examples/ou-2d.toml"),
    ),
    (
        "porous-1d",
        "porous medium m = 2 from a Barenblatt profile",
        include_str!("../data/examples/porous-1d.toml"),
    ),
    (
        "porous-2d",
        "porous medium m = 2 in 2D from a Barenblatt profile",
        include_str!("../data/examples/porous-2d.toml"),
    ),
    (
        "quartic-1d",
        "Langevin dynamics in the quartic potential x^4/4 (no closed form)",
        include_str!("../data/examples/quartic-1d.toml"),
    ),
    (
        "crowd-2d",
        "crowd motion: congestion rho <= 1 towards an exit, around an obstacle",
        include_str!("../data/examples/crowd-2d.toml"),
    ),
];

/// The TOML text of the built-in example `name` (None for an unknown name).
///
/// ```rust
/// use jko::config::Config;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = Config::from_toml(jko::examples::example("ou-1d").unwrap())?;
/// assert_eq!(config.mesh.cells.len(), 1);
/// assert_eq!(config.solver.name(), "conic");
/// assert!(jko::examples::example("no-such-example").is_none());
/// # Ok(())
/// # }
/// ```
pub fn example(name: &str) -> Option<&'static str> {
    EXAMPLES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, t)| *t)
}
