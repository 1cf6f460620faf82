//! The `endpoint` fuzz target: one [`Endpoint`] driven through an arbitrary sequence of
//! datagrams (raw bytes, replies echoing its recent queries, queries from peers), clock steps
//! and commands, with every invariant of [`Watched::drain`](super::watch::Watched::drain)
//! checked after each step and, at the end, every command's final event.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::craft::{COMMANDS, Pool, address_pool, clock_step, command, query, reply};
use super::input::{Input, mix};
use super::watch::Watched;
use crate::AddressPolicy;
use crate::dht::{PeerStoreLimits, SecureIdPolicy, UnknownMethods};
use crate::{Config, Endpoint, Instant};

/// Steps per input at most (longer inputs are cut), so one input stays fast.
const MAX_STEPS: usize = 400;

/// Reads a configuration: [`Config::default`] or [`Config::dht`], optionally with small caps
/// and other knobs turned, so that limits are reached within a short input.
pub(crate) fn read_config(input: &mut Input<'_>, bootstrap_pool: &[core::net::SocketAddr]) -> Config {
    let flags = input.u8();
    let mut c = if flags & 1 == 1 { Config::dht() } else { Config::default() };
    if flags & 2 != 0 {
        c.k = 1 + input.below(8);
        c.concurrency = 1 + input.below(8);
        c.lookup_parallelism = match input.below(3) {
            0 => None,
            _ => Some(1 + input.below(4)),
        };
        c.lookup_retries = input.below(3) as u8;
        c.lookup_soft_timeout = match input.below(3) {
            0 => None,
            1 => Some(Duration::from_millis(500)),
            _ => Some(Duration::from_millis(1 + input.below(5000) as u64)),
        };
        c.timeout = Duration::from_millis(1 + input.below(4000) as u64);
        c.max_queued_queries = 1 + input.below(8);
        c.max_lookups = 1 + input.below(4);
        c.max_lookup_candidates = c.k + input.below(24);
        c.max_queued_transmits = 1 + input.below(8);
        c.max_queued_events = 1 + input.below(16);
        c.bucket_refresh = Duration::from_secs(30 + input.below(1200) as u64);
        // 0 to 4 wide buckets, taken from a value already read so that every committed
        // corpus input reads on as before.
        c.wide_buckets = (c.bucket_refresh.as_secs() % 5) as u8;
    }
    // Bits 2–3 of `flags` were unused: taking the path count from them leaves the meaning of
    // every committed corpus input as it was.
    c.lookup_disjoint_paths = 1 + usize::from((flags >> 2) & 3);
    c.lookup_final_round = flags & 0x10 == 0;
    // Bits 5–6 were unused too; 0 keeps the default.
    c.lookup_neighbourhood = [2, 0, 1, 4][usize::from((flags >> 5) & 3)];
    let knobs = input.u8();
    c.answer_pings = knobs & 1 == 0;
    c.auto_ping_swap = knobs & 2 == 0;
    c.verify_queriers = knobs & 4 == 0;
    c.read_only = knobs & 0x18 == 0x18;
    c.send_ip = knobs & 0x20 == 0;
    if knobs & 0x40 != 0 {
        c.version = None;
    }
    // Adaptive read-only mode (with the node layer): the mode switches and the probe.
    c.adaptive_read_only = knobs & 0x80 != 0;
    let more = input.u8();
    c.address_policy = [AddressPolicy::Auto, AddressPolicy::Any, AddressPolicy::Public][usize::from(more % 3)];
    c.id_len = match (more >> 2) & 7 {
        0 => 2,
        1 => 1,
        _ => 20,
    };
    if more & 0x20 != 0 {
        c.id = Some(input.raw_id(c.id_len));
    }
    if more & 0x40 != 0 {
        c.max_datagram_len = 64 + input.below(2048);
    }
    let mask = input.u16();
    for (i, addr) in bootstrap_pool.iter().enumerate() {
        if mask & (1 << (i % 16)) != 0 {
            c.bootstrap.push(*addr);
        }
    }
    // `Config::validate` refuses bootstrap addresses that can never be a node; the harness
    // checks that it does, then keeps the others.
    let never_valid = |a: &core::net::SocketAddr| crate::address::is_never_valid(a);
    if c.bootstrap.iter().any(never_valid) {
        assert_eq!(c.validate(), Err(crate::ConfigError::BootstrapAddress), "{:?} accepted", c.bootstrap);
        c.bootstrap.retain(|a| !never_valid(a));
    }
    if let Some(d) = c.dht.as_mut() {
        if more & 0x80 != 0 {
            d.unknown_methods = if input.bool() { UnknownMethods::Deliver } else { UnknownMethods::Reply204 };
            if input.below(4) == 0 {
                d.application_methods = vec![b"get_peers".to_vec()];
            }
            d.reply_nodes = 1 + input.below(8);
            d.max_values_v4 = input.below(101);
            d.max_values_v6 = input.below(26);
            d.max_reply_len = 256 + input.below(1300);
            d.peer_store = PeerStoreLimits {
                max_peers_per_hash: input.below(8),
                max_peers: input.below(16),
                max_hashes: input.below(4),
                max_peers_per_ip: input.below(4),
                ttl: Duration::from_secs(1 + input.below(3600) as u64),
            };
        }
        d.secure_id = [SecureIdPolicy::Prefer, SecureIdPolicy::Off, SecureIdPolicy::Enforce][input.below(3)];
    }
    c
}

/// A seed for the endpoint's RNG.
pub(crate) fn read_seed(input: &mut Input<'_>) -> [u8; 32] {
    let s = input.u64();
    let mut seed = [0u8; 32];
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(s ^ i as u64).to_le_bytes());
    }
    seed
}

/// Runs one input; panics on any invariant violation.
pub fn check_endpoint(data: &[u8]) {
    run(data, None);
}

/// [`check_endpoint`], describing every step, datagram and event to `trace` (for debugging
/// a failing input).
pub fn trace_endpoint(data: &[u8], trace: &mut dyn FnMut(&str)) {
    run(data, Some(trace));
}

fn flush(w: &mut Watched, trace: &mut Option<&mut dyn FnMut(&str)>) {
    if let (Some(t), Some(j)) = (trace.as_mut(), w.journal.as_mut()) {
        for line in j.drain(..) {
            t(&line);
        }
    }
}

fn run(data: &[u8], mut trace: Option<&mut dyn FnMut(&str)>) {
    let mut input = Input::new(data);
    let addrs = address_pool();
    let config = read_config(&mut input, &addrs);
    let seed = read_seed(&mut input);
    let buf_len = if input.below(8) == 0 { 40 + input.below(1500) } else { 1500 };
    let pool = Pool { addrs, ordinary: 10, id_len: config.id_len };
    let mut clock = Instant::from_millis(u64::from(input.u16()));
    let ep = match Endpoint::new(config, seed, clock) {
        Ok(ep) => ep,
        Err(e) => panic!("the harness built an invalid configuration: {e}"),
    };
    let mut w = Watched::new(ep, buf_len, clock);
    if trace.is_some() {
        w.journal = Some(Vec::new());
        let (id, config) = (*w.ep.id(), w.ep.config().clone());
        w.note(|| format!("id {id:?}, buffer {buf_len}: {config:?}"));
    }
    w.drain(clock, false);
    flush(&mut w, &mut trace);
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        steps += 1;
        // Usually now; sometimes an earlier instant, which the engine must treat as now.
        let at = if input.below(16) == 0 {
            clock.saturating_sub(Duration::from_millis(u64::from(input.u16())))
        } else {
            clock
        };
        let mut after_timeout = false;
        let datagram = match input.below(9) {
            0 => {
                let from = pool.addr(&mut input, &w);
                let len = input.below(700);
                Some((from, input.bytes(len).to_vec()))
            }
            1 | 2 => reply(&mut input, &w, &pool),
            3 => query(&mut input, &w, &pool),
            4 => {
                clock = clock_step(&mut input, clock);
                w.note(|| format!("{clock:?} handle_timeout"));
                w.ep.handle_timeout(clock);
                after_timeout = true;
                None
            }
            5 => {
                // Sleep until the deadline the endpoint asked for.
                if let Some(t) = w.ep.poll_timeout() {
                    clock = clock.max(t);
                }
                w.note(|| format!("{clock:?} handle_timeout (deadline)"));
                w.ep.handle_timeout(clock);
                after_timeout = true;
                None
            }
            _ => {
                let which = input.below(COMMANDS);
                // `close` is rare: most inputs should end with the liveness check.
                let which = if which == COMMANDS - 1 && input.below(8) != 0 { 0 } else { which };
                w.note(|| format!("{at:?} command {which}"));
                command(&mut input, &mut w, &pool, at, which);
                None
            }
        };
        if let Some((from, bytes)) = datagram {
            w.note(|| format!("{at:?} datagram from {from}: {:?}", crate::wire::Message::decode(&bytes)));
            w.ep.handle_datagram(at, from, &bytes);
        }
        let now = if after_timeout { clock } else { at };
        flush(&mut w, &mut trace);
        w.drain(now, after_timeout);
        flush(&mut w, &mut trace);
    }
    if !w.ep.is_closed() {
        clock = w.quiesce(clock.max(w.latest()));
    }
    w.close(clock.max(w.latest()));
    // A closed endpoint refuses commands and ignores input.
    let now = w.latest();
    assert_eq!(w.ep.bootstrap(now), Err(crate::CommandError::Closed));
    w.ep.handle_datagram(now, pool.addrs[0], b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe");
    w.ep.handle_timeout(now);
    w.drain(now, false);
}
