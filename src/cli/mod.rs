//! The pieces of the `edgeconv` command behind the argument parsing in `main.rs`.

pub mod convert;
pub mod inputs;
pub mod inspect;
pub mod load;
pub mod progress_bar;
pub mod quantize;
pub mod run;
