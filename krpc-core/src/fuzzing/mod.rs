//! The checks behind the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the library so that
//! the corpus replay test (`krpc-core/tests/fuzz_corpus.rs`) runs exactly the same code on
//! every committed corpus file in a normal `cargo test`. Not a stable API: compiled only with
//! the non-default `fuzzing` feature, which `fuzz/Cargo.toml` and krpc-core's own tests (a
//! dev-dependency of the crate on itself) turn on.
//!
//! Each `check_*` function takes one fuzzer input, runs the scenario it describes and panics
//! when an invariant is broken. Inputs are read as a stream of choices (past the end every
//! choice is zero), so every byte string is a valid scenario.
//!
//! | target | function | what it drives |
//! |---|---|---|
//! | `decode` | [`check_decode`] | the decoder and canonical re-encoding |
//! | `endpoint` | [`check_endpoint`] | one [`Endpoint`](crate::Endpoint): datagrams, clock, commands |
//! | `routing` | [`check_routing`] | a [`RoutingTable`](crate::routing::RoutingTable) against a model |
//! | `sim` | [`check_sim`] | 3–8 endpoints on a lossy in-memory network |

mod craft;
mod endpoint;
mod input;
mod routing;
mod sim;
mod watch;

pub use self::endpoint::{check_endpoint, trace_endpoint};
pub use self::routing::check_routing;
pub use self::sim::{check_sim, trace_sim};
pub use crate::wire::fuzzing::check_decode;

/// The check of the target named `target` (the name of its corpus folder), if there is one.
pub fn check_for(target: &str) -> Option<fn(&[u8])> {
    match target {
        "decode" => Some(|data| {
            let _ = check_decode(data);
        }),
        "endpoint" => Some(check_endpoint),
        "routing" => Some(check_routing),
        "sim" => Some(check_sim),
        _ => None,
    }
}
