//! krpc-std: the blocking driver for [`krpc_core`] on `std::net`.
//!
//! The driver is being built (see the project's issue list); today this crate only re-exports
//! the engine so that the workspace layout is final.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub use krpc_core as core;
