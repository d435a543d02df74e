//! The library's error type. Every error is located (file and byte offset, or
//! node and op) and maps to one of the documented exit codes.

use std::path::PathBuf;

/// Exit codes of the `edgeconv` command (documented in the README).
pub mod exit {
    pub const OK: i32 = 0;
    /// A check failed: accuracy or size budget, coverage gate.
    pub const CHECK_FAILED: i32 = 1;
    /// Bad input or usage: unreadable or malformed files, wrong shapes, bad flags.
    pub const BAD_INPUT: i32 = 2;
    /// The request needs an op, dtype or feature that is not supported.
    pub const UNSUPPORTED: i32 = 3;
}

/// One unsupported thing, located at a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    pub node: String,
    pub op: String,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed file, located at a byte offset.
    #[error("{}: at byte {offset}: {msg}", path.display())]
    Parse {
        path: PathBuf,
        offset: u64,
        msg: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A graph that is structurally wrong or whose values do not fit an op.
    #[error("node '{node}' ({op}): {msg}")]
    Node {
        node: String,
        op: String,
        msg: String,
    },
    /// A graph-level problem not tied to one node (cycles, dangling outputs).
    #[error("graph: {0}")]
    Graph(String),
    /// Bad user-supplied data or arguments.
    #[error("{0}")]
    Input(String),
    #[error("{} unsupported:\n{}", plural(.0.len()), list_unsupported(.0))]
    Unsupported(Vec<Unsupported>),
    /// A node, graph or unsupported-op error inside a model file, located by the file's path.
    #[error("{}: {source}", path.display())]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<Error>,
    },
    /// A check the user asked for did not pass.
    #[error("check failed: {0}")]
    CheckFailed(String),
}

fn plural(n: usize) -> String {
    if n == 1 {
        "1 node is".to_string()
    } else {
        format!("{n} nodes are")
    }
}

fn list_unsupported(items: &[Unsupported]) -> String {
    items
        .iter()
        .map(|u| format!("  node '{}' ({}): {}", u.node, u.op, u.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Parse { .. }
            | Error::Io { .. }
            | Error::Node { .. }
            | Error::Graph(_)
            | Error::Input(_) => exit::BAD_INPUT,
            Error::Unsupported(_) => exit::UNSUPPORTED,
            Error::CheckFailed(_) => exit::CHECK_FAILED,
            Error::InFile { source, .. } => source.exit_code(),
        }
    }

    /// Locates a node, graph or unsupported-op error in the file it came from;
    /// errors that already name a file are returned as they are.
    pub fn in_file(self, path: impl Into<PathBuf>) -> Error {
        match self {
            Error::Node { .. } | Error::Graph(_) | Error::Unsupported(_) => Error::InFile {
                path: path.into(),
                source: Box::new(self),
            },
            other => other,
        }
    }

    pub fn parse(path: impl Into<PathBuf>, offset: u64, msg: impl Into<String>) -> Error {
        Error::Parse {
            path: path.into(),
            offset,
            msg: msg.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub fn node(node: impl Into<String>, op: impl Into<String>, msg: impl Into<String>) -> Error {
        Error::Node {
            node: node.into(),
            op: op.into(),
            msg: msg.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
