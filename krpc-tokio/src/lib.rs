//! krpc-tokio: the asynchronous driver for [`krpc_core`] (a UDP socket and a clock on tokio).
//!
//! The driver is being built (see the project's issue list); today this crate only re-exports
//! the engine so that the workspace layout is final.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use krpc_core as core;
