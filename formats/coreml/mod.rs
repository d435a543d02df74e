//! The Core ML target: `.mlpackage` ML Programs.

pub mod blob;
pub mod package;
pub mod proto;
