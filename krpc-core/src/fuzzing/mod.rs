//! The checks behind the fuzz targets (`fuzz/fuzz_targets/*.rs`), kept in the library so that
//! the corpus replay test (`krpc-core/tests/fuzz_corpus.rs`) runs exactly the same code on
//! every committed corpus file in a normal `cargo test`. Not a stable API.
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

pub use self::endpoint::{check_endpoint, check_endpoint_with, trace_endpoint};
pub use self::routing::check_routing;
pub use self::sim::{check_sim, check_sim_with, trace_sim};
pub use crate::wire::fuzzing::check_decode;

/// Known engine bugs the drivers steer around, so that fuzzing can go on past them until they
/// are fixed (each is described in `docs/security.md`, "Findings"). The reproducers under
/// `fuzz/regressions/` run with [`Avoid::NOTHING`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Avoid {
    /// Bootstrap addresses that can never be a node (multicast, broadcast): `Config::validate`
    /// accepts them and lookups send queries there.
    pub never_valid_bootstrap: bool,
    /// Internal pings (verifications of unknown queriers) may fill every query slot, not only
    /// the few extra ones meant for them, so a steady stream of them starves lookups and
    /// queries for good. In the simulation a round trip longer than the query timeout makes
    /// two nodes verify each other forever; avoided by keeping the latency below half the
    /// timeout.
    pub internal_ping_starvation: bool,
    /// With `lookup_adaptive_soft_timeout` the soft deadlines of lookup queries differ, but
    /// they are kept in a FIFO that is read as if sorted: a due deadline behind a later one is
    /// neither expired by `handle_timeout` nor reported by `poll_timeout` until the one in
    /// front goes. Avoided by allowing one extra wakeup after `handle_timeout(now)`.
    pub late_soft_deadlines: bool,
    /// An announce's second phase runs as an internal `query_all` whose successes are
    /// reported as `Event::Reply` under the internal operation's id, which no command
    /// returned. Avoided by not checking the id of `Reply` events.
    pub internal_op_replies: bool,
    /// The node layer fits only the `values` of a `get_peers` answer into `max_reply_len`;
    /// `nodes`, `nodes6` and the BEP 33 bloom filters come on top, so answers exceed the
    /// budget (1196 bytes for a 153-byte query with the defaults). Avoided by allowing that
    /// much more.
    pub oversized_node_replies: bool,
}

impl Avoid {
    /// Every known issue avoided: what the fuzz targets and the corpus replay use.
    pub const KNOWN: Avoid = Avoid {
        never_valid_bootstrap: true,
        internal_ping_starvation: true,
        late_soft_deadlines: true,
        internal_op_replies: true,
        oversized_node_replies: true,
    };
    /// [`Avoid::KNOWN`] minus the issues named in `names` (comma-separated field names), or
    /// [`Avoid::NOTHING`] for `all` or `1`: the value of `KRPC_FUZZ_STRICT` in the fuzz
    /// targets.
    pub fn except(names: &str) -> Avoid {
        let mut a = Avoid::KNOWN;
        for name in names.split(',').map(str::trim) {
            match name {
                "all" | "1" => a = Avoid::NOTHING,
                "never_valid_bootstrap" => a.never_valid_bootstrap = false,
                "internal_ping_starvation" => a.internal_ping_starvation = false,
                "late_soft_deadlines" => a.late_soft_deadlines = false,
                "internal_op_replies" => a.internal_op_replies = false,
                "oversized_node_replies" => a.oversized_node_replies = false,
                _ => {}
            }
        }
        a
    }

    /// Nothing avoided: what the regression reproducers need.
    pub const NOTHING: Avoid = Avoid {
        never_valid_bootstrap: false,
        internal_ping_starvation: false,
        late_soft_deadlines: false,
        internal_op_replies: false,
        oversized_node_replies: false,
    };
}

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
