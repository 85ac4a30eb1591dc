//! Command-line helpers shared by the examples.
// Each example compiles this module on its own and uses only some of the helpers.
#![allow(dead_code)]

/// The grid sizes given as arguments, or `default` when there are none.
pub fn sizes_from_args(default: &[usize]) -> Vec<usize> {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|s| s.parse().ok())
        .collect();
    if sizes.is_empty() {
        default.to_vec()
    } else {
        sizes
    }
}

/// The environment variable `name` parsed, or `default` when unset or unparsable.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// GMRES products of a step, from the step's note "newton I iterations, P GMRES products, …".
pub fn gmres_products(notes: &[String]) -> usize {
    notes
        .iter()
        .find_map(|n| {
            let words: Vec<&str> = n.strip_prefix("newton ")?.split_whitespace().collect();
            words.get(2)?.parse().ok()
        })
        .unwrap_or(0)
}
