//! The elementwise operators of the program evaluator ([`crate::eval`]):
//! NumPy's ufuncs of one and two operands.

/// Elementwise functions of one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnaryOp {
    /// `-x` (wraps for integers, as NumPy).
    Neg,
    /// `|x|`.
    Abs,
    /// Square root (float result).
    Sqrt,
    /// `e^x` (float result).
    Exp,
    /// Natural logarithm (float result).
    Log,
    /// `ln(1 + x)`, accurate near 0 (float result).
    Log1p,
    /// True where the value is NaN (bool result).
    IsNan,
    /// Logical not of a bool operand.
    Not,
}

/// Elementwise functions of two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// True division `a / b` (float result, as NumPy's `/`).
    Div,
    /// `a ** b`.
    Pow,
    /// Elementwise maximum, NaN-propagating (`np.maximum`).
    Maximum,
    /// Elementwise minimum, NaN-propagating (`np.minimum`).
    Minimum,
    /// `a == b`.
    Eq,
    /// `a != b`.
    Ne,
    /// `a < b`.
    Lt,
    /// `a <= b`.
    Le,
    /// `a > b`.
    Gt,
    /// `a >= b`.
    Ge,
    /// Logical and of bool operands.
    And,
    /// Logical or of bool operands.
    Or,
}

impl BinaryOp {
    /// The operator as written in NumPy code (`+`, `<=`, `maximum`, ...).
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Pow => "**",
            BinaryOp::Maximum => "maximum",
            BinaryOp::Minimum => "minimum",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::And => "&",
            BinaryOp::Or => "|",
        }
    }

    /// True for `==`, `!=`, `<`, `<=`, `>`, `>=` (bool results).
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge
        )
    }
}
