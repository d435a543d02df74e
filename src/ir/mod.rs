//! The graph IR every importer produces and every target consumes.

pub mod compare;
pub mod dtype;
pub mod error;
pub mod eval;
pub mod graph;
pub mod infer;
pub mod meta;
pub mod ops;
pub mod patch;
pub mod quant;
pub mod shape;
pub mod tensor;
pub mod text;
pub mod verify;
pub mod weights;

pub use dtype::{DType, GgmlType};
pub use error::{Error, Result};
pub use graph::{
    Fact, Graph, Node, NodeId, QuantParams, SymId, Value, ValueDef, ValueId, WeightId,
};
pub use ops::{Op, OpKind};
pub use shape::{Dim, Shape, Symbols};
pub use tensor::Tensor;
pub use weights::{Weight, WeightRole, WeightStore};
