//! [`Outputs`]: the sets of expressions `compute` takes (one expression, a
//! slice or vector, or a tuple of up to eight), and what it returns for
//! each.

use outcore_kernels::AnyArray;

use crate::expr::Expr;

/// A set of expressions computed together (in as few passes as possible).
pub trait Outputs {
    /// What computing them returns.
    type Values;
    /// The expressions, in order.
    fn exprs(&self) -> Vec<Expr>;
    /// Builds the return value from the computed arrays (same order).
    fn values(values: Vec<AnyArray>) -> Self::Values;
}

impl Outputs for &Expr {
    type Values = AnyArray;
    fn exprs(&self) -> Vec<Expr> {
        vec![(*self).clone()]
    }
    fn values(mut v: Vec<AnyArray>) -> AnyArray {
        v.remove(0)
    }
}

impl Outputs for Expr {
    type Values = AnyArray;
    fn exprs(&self) -> Vec<Expr> {
        vec![self.clone()]
    }
    fn values(mut v: Vec<AnyArray>) -> AnyArray {
        v.remove(0)
    }
}

impl Outputs for &[Expr] {
    type Values = Vec<AnyArray>;
    fn exprs(&self) -> Vec<Expr> {
        self.to_vec()
    }
    fn values(v: Vec<AnyArray>) -> Vec<AnyArray> {
        v
    }
}

impl Outputs for Vec<Expr> {
    type Values = Vec<AnyArray>;
    fn exprs(&self) -> Vec<Expr> {
        self.clone()
    }
    fn values(v: Vec<AnyArray>) -> Vec<AnyArray> {
        v
    }
}

macro_rules! tuple_outputs {
    ($($name:ident),+) => {
        impl<$($name: std::borrow::Borrow<Expr>),+> Outputs for ($($name,)+) {
            type Values = ($(tuple_outputs!(@any $name),)+);
            #[allow(non_snake_case)] // the tuple's type parameters name its parts
            fn exprs(&self) -> Vec<Expr> {
                let ($($name,)+) = self;
                vec![$($name.borrow().clone()),+]
            }
            fn values(v: Vec<AnyArray>) -> Self::Values {
                let mut it = v.into_iter();
                ($(tuple_outputs!(@next it $name),)+)
            }
        }
    };
    (@any $name:ident) => { AnyArray };
    (@next $it:ident $name:ident) => { $it.next().expect("one value per expression") };
}

tuple_outputs!(A);
tuple_outputs!(A, B);
tuple_outputs!(A, B, C);
tuple_outputs!(A, B, C, D);
tuple_outputs!(A, B, C, D, E);
tuple_outputs!(A, B, C, D, E, F);
tuple_outputs!(A, B, C, D, E, F, G);
tuple_outputs!(A, B, C, D, E, F, G, H);
