//! Built-in example configs (`jko example NAME`), kept as TOML files in `data/examples/`.

/// (name, description, TOML text).
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

/// The TOML text of a built-in example.
pub fn example(name: &str) -> Option<&'static str> {
    EXAMPLES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, _, t)| *t)
}
