//! Formulas in x, y, z written in configs (`initial.kind = "expression"`,
//! `potential = { kind = "expression", expr = "..." }`), evaluated at cell centres.
//!
//! Parsed by the `exmex` crate with its float operators (`+ - * / ^`, `sin cos tan asin acos
//! atan sinh cosh tanh exp ln log log2 log10 sqrt cbrt abs signum floor ceil round min max`,
//! constants `PI`/`π`, `E`, `TAU`), plus the constant `pi`, and numbers in scientific notation
//! (`1.5e-3`). The variables are the coordinates x, y, z (as many as the mesh has axes); any
//! other name is an error that lists what is allowed.
//!
//! ```rust
//! use jko::expression::Expression;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let f = Expression::parse("exp(-x^2/2) * cos(pi*y) + 1e-3", 2, "potential.expr")?;
//! assert!((f.eval(&[0.0, 1.0]) - (-1.0 + 1e-3)).abs() < 1e-15);
//! let err = Expression::parse("x + w", 2, "potential.expr").unwrap_err();
//! assert!(err.to_string().contains("`w`"), "{err}");
//! # Ok(())
//! # }
//! ```

use crate::error::RunError;
use exmex::prelude::*;
use exmex::{FloatOpsFactory, MakeOperators, Operator};
use jko_core::{InputError, Mesh};
use ndarray::Array1;

mod literal {
    use exmex::MatchLiteral;
    // Decimal numbers with an optional exponent (exmex's default takes no exponent).
    exmex::literal_matcher_from_pattern!(
        Scientific,
        r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
    );
}

/// exmex's float operators plus `pi`.
#[derive(Clone, Debug)]
struct Operators;

impl MakeOperators<f64> for Operators {
    fn make<'a>() -> Vec<Operator<'a, f64>> {
        let mut ops = FloatOpsFactory::<f64>::make();
        ops.push(Operator::make_constant("pi", std::f64::consts::PI));
        ops
    }
}

type Flat = FlatEx<f64, Operators, literal::Scientific>;

/// A parsed formula of the coordinates (see the module docs for the syntax).
///
/// ```rust
/// use jko::expression::Expression;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let f = Expression::parse("sqrt(x^2 + y^2)", 2, "initial.expr")?;
/// assert_eq!(f.eval(&[3.0, 4.0]), 5.0);
/// assert_eq!(f.text(), "sqrt(x^2 + y^2)");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Expression {
    text: String,
    flat: Flat,
    /// For each variable of `flat` (exmex orders them alphabetically), its axis.
    axes: Vec<usize>,
}

impl Expression {
    /// Parse `text` as a formula of the first `dim` coordinates; `key` names the config key in
    /// errors.
    ///
    /// # Errors
    /// [`RunError::Config`] naming `key`: a syntax error, or a name that is neither a
    /// coordinate of the mesh nor a known function or constant.
    ///
    /// ```rust
    /// use jko::expression::Expression;
    ///
    /// let err = Expression::parse("z + 1", 2, "initial.expr").unwrap_err();
    /// assert!(err.to_string().contains("x, y"), "{err}");
    /// assert!(Expression::parse("sin(", 1, "initial.expr").is_err());
    /// ```
    pub fn parse(text: &str, dim: usize, key: &str) -> Result<Expression, RunError> {
        let flat = Flat::parse(text)
            .map_err(|e| RunError::config(key, format!("cannot parse `{text}`: {e}")))?;
        let names = ["x", "y", "z"];
        let allowed = &names[..dim.min(3)];
        let mut axes = Vec::new();
        for v in flat.var_names() {
            match allowed.iter().position(|n| n == v) {
                Some(a) => axes.push(a),
                None => {
                    return Err(RunError::config(
                        key,
                        format!(
                            "`{v}` in `{text}` is not a coordinate of this {dim}D mesh ({}) nor \
                             a known constant or function (pi, e, exp, ln, sqrt, sin, cos, ...)",
                            allowed.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(Expression {
            text: text.to_string(),
            flat,
            axes,
        })
    }

    /// The formula as written.
    ///
    /// ```rust
    /// # use jko::expression::Expression;
    /// assert_eq!(Expression::parse("2*x", 1, "k").unwrap().text(), "2*x");
    /// ```
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value at the point `x` (NaN where the formula is undefined there).
    ///
    /// ```rust
    /// # use jko::expression::Expression;
    /// let f = Expression::parse("y - x", 2, "k").unwrap();
    /// assert_eq!(f.eval(&[1.0, 3.0]), 2.0);
    /// ```
    pub fn eval(&self, x: &[f64]) -> f64 {
        let vars: Vec<f64> = self.axes.iter().map(|&a| x[a]).collect();
        self.flat.eval(&vars).unwrap_or(f64::NAN)
    }

    /// Values at the cell centres of `mesh`.
    ///
    /// # Errors
    /// [`RunError::Input`] ([`InputError::NonFinite`]) naming `what` and the first cell where
    /// the value is not finite.
    ///
    /// ```rust
    /// use jko::expression::Expression;
    /// use jko_core::Mesh;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mesh = Mesh::grid(&[2], &[0.0], &[1.0])?;
    /// let f = Expression::parse("4*x", 1, "k")?;
    /// assert_eq!(f.on_mesh(&mesh, "k")?.to_vec(), vec![1.0, 3.0]);
    /// let g = Expression::parse("ln(x - 0.5)", 1, "k")?;
    /// assert!(g.on_mesh(&mesh, "k").unwrap_err().to_string().contains("index 0"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn on_mesh(&self, mesh: &Mesh, what: &str) -> Result<Array1<f64>, RunError> {
        let values = mesh.sample(|x| self.eval(x));
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(InputError::NonFinite {
                what: format!("{what} `{}`", self.text),
                index,
                value,
            }
            .into());
        }
        Ok(values)
    }
}

/// Whether `literal` matches the number syntax (for tests of the matcher).
#[cfg(test)]
fn is_number(text: &str) -> Option<&str> {
    <literal::Scientific as exmex::MatchLiteral>::is_literal(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_constants_and_functions() {
        assert_eq!(is_number("1.5e-3*x"), Some("1.5e-3"));
        assert_eq!(is_number(".5"), Some(".5"));
        let f = Expression::parse("2.5E+2 + pi + PI + e - E + sqrt(4) + abs(-1)", 1, "k").unwrap();
        let want = 250.0 + 2.0 * std::f64::consts::PI + 2.0 + 1.0;
        assert!((f.eval(&[0.0]) - want).abs() < 1e-12);
        // The Fokker–Planck exact solution of issue 19 at t = 0, x = 0.3.
        let u = Expression::parse(
            "exp(x/2)*(pi*cos(pi*x) + 0.5*sin(pi*x)) + pi*exp(x - 0.5)",
            2,
            "k",
        )
        .unwrap();
        let x: f64 = 0.3;
        let pi = std::f64::consts::PI;
        let want =
            (x / 2.0).exp() * (pi * (pi * x).cos() + 0.5 * (pi * x).sin()) + pi * (x - 0.5).exp();
        assert!((u.eval(&[x, 0.9]) - want).abs() < 1e-13);
    }
}
