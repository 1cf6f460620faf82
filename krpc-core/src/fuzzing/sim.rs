//! The `sim` fuzz target: three to eight endpoints on an in-memory network whose faults the
//! input chooses (drops, duplicates, reordering, delays, corruption), with commands issued on
//! any node and the clock moved by the input. Every node is checked after every step as in
//! the `endpoint` target; at the end the network is left to settle, every command must have
//! ended, and every node is closed.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use super::craft::{COMMANDS, Pool, clock_step, command};
use super::endpoint::{read_config, read_seed};
use super::input::Input;
use super::watch::{Out, Watched};
use crate::transaction::same_endpoint;
use crate::{Endpoint, Instant, NodeInfo};

/// Steps per input at most.
const MAX_STEPS: usize = 300;

/// Datagrams on the wire at most; beyond it the oldest is lost.
const MAX_WIRE: usize = 256;

/// Iterations allowed for the network to settle at the end.
const SETTLE_STEPS: usize = 20_000;

#[derive(Clone, Debug)]
struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
    due: Instant,
}

struct Net<'t> {
    nodes: Vec<Watched>,
    addrs: Vec<SocketAddr>,
    wire: Vec<Packet>,
    clock: Instant,
    latency: Duration,
    trace: Option<&'t mut dyn FnMut(&str)>,
}

impl Net<'_> {
    fn say(&mut self, line: impl FnOnce() -> String) {
        if let Some(t) = self.trace.as_mut() {
            t(&line());
        }
    }

    fn node_at(&self, addr: &SocketAddr) -> Option<usize> {
        self.addrs.iter().position(|a| same_endpoint(a, addr))
    }

    fn send(&mut self, from: usize, out: Vec<Out>) {
        for o in out {
            if self.wire.len() >= MAX_WIRE {
                self.wire.remove(0);
            }
            let due = self.clock + self.latency;
            self.wire.push(Packet { from: self.addrs[from], to: o.to, bytes: o.bytes, due });
        }
    }

    /// Drains node `i` and puts what it sent on the wire.
    fn drain(&mut self, i: usize, after_timeout: bool) {
        let now = self.clock.max(self.nodes[i].latest());
        let out = self.nodes[i].drain(now, after_timeout);
        if let (Some(t), Some(j)) = (self.trace.as_mut(), self.nodes[i].journal.as_mut()) {
            for line in j.drain(..) {
                t(&format!("node {i} {line}"));
            }
        }
        self.send(i, out);
    }

    fn drain_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.drain(i, false);
        }
    }

    /// Delivers one datagram: at its due time when `on_time` (the clock moves there), else
    /// at once (overtaking the ones before it).
    fn deliver(&mut self, index: usize, on_time: bool) {
        if index >= self.wire.len() {
            return;
        }
        let p = self.wire.remove(index);
        if on_time {
            self.clock = self.clock.max(p.due);
        }
        let clock = self.clock;
        self.say(|| format!("{clock:?} deliver {} -> {} ({} bytes)", p.from, p.to, p.bytes.len()));
        if let Some(to) = self.node_at(&p.to) {
            let now = self.clock;
            self.nodes[to].ep.handle_datagram(now, p.from, &p.bytes);
            self.nodes[to].saw(now);
            self.drain(to, false);
        }
    }

    /// Moves the clock to `to` and fires every node's timers.
    fn advance(&mut self, to: Instant) {
        self.clock = self.clock.max(to);
        let now = self.clock;
        self.say(|| format!("{now:?} timers"));
        for i in 0..self.nodes.len() {
            self.nodes[i].ep.handle_timeout(now);
            self.nodes[i].saw(now);
            self.drain(i, true);
        }
    }

    /// The next instant something happens: a datagram falls due or a timer fires.
    fn next_event(&mut self) -> Option<Instant> {
        let wire = self.wire.iter().map(|p| p.due).min();
        let timers = self.nodes.iter_mut().filter_map(|n| n.ep.poll_timeout()).min();
        match (wire, timers) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pending(&self) -> usize {
        self.nodes.iter().map(|n| n.pending()).sum()
    }

    /// Delivers everything, in order and without loss, and lets timers fire, until no
    /// command is left running.
    fn settle(&mut self) {
        // A crawl among nodes that answer never ends by itself (they are asked again after
        // their interval): its caller ends it, as an application would.
        for n in self.nodes.iter_mut() {
            n.stop_crawls();
        }
        for _ in 0..SETTLE_STEPS {
            if self.pending() == 0 {
                return;
            }
            let due = self.wire.iter().enumerate().min_by_key(|(_, p)| p.due).map(|(i, p)| (i, p.due));
            let timer = self.nodes.iter_mut().filter_map(|n| n.ep.poll_timeout()).min();
            match (due, timer) {
                (Some((i, d)), t) if t.is_none_or(|t| d <= t) => self.deliver(i, true),
                (_, Some(t)) => self.advance(t),
                _ => break,
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            assert_eq!(n.pending(), 0, "node {i}: commands never ended");
        }
    }
}

/// Runs one input; panics on any invariant violation on any node.
pub fn check_sim(data: &[u8]) {
    run(data, None);
}

/// [`check_sim`], describing every step, datagram and event to `trace` (for debugging a
/// failing input).
pub fn trace_sim(data: &[u8], trace: &mut dyn FnMut(&str)) {
    run(data, Some(trace));
}

fn run(data: &[u8], mut trace: Option<&mut dyn FnMut(&str)>) {
    let mut input = Input::new(data);
    let count = 3 + input.below(6);
    let v6 = input.below(4) == 0;
    let addrs: Vec<SocketAddr> = (0..count)
        .map(|i| {
            let ip = if v6 && i % 2 == 1 {
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16 + 1))
            } else {
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, i as u8 + 1))
            };
            SocketAddr::new(ip, 6881)
        })
        .collect();
    let base = read_config(&mut input, &[]);
    let bootstrap_mask = input.u8();
    let shared_id = input.below(8) == 0;
    // Round trips may exceed the query timeout: then no query is ever answered in time.
    let latency = Duration::from_millis(input.below(300) as u64);
    let clock = Instant::from_millis(u64::from(input.u16()));
    let mut nodes = Vec::new();
    let mut first_id = None;
    for i in 0..count {
        let mut config = base.clone();
        config.bootstrap =
            (0..count.min(3)).filter(|&b| b != i && bootstrap_mask & (1 << b) != 0).map(|b| addrs[b]).collect();
        if shared_id && i == count - 1 {
            config.id = first_id;
        }
        let seed = read_seed(&mut input);
        let ep = match Endpoint::new(config, seed, clock) {
            Ok(ep) => ep,
            Err(e) => panic!("the harness built an invalid configuration: {e}"),
        };
        first_id.get_or_insert(*ep.id());
        if let Some(t) = trace.as_mut() {
            t(&format!("node {i} at {} id {:?}: {:?}", addrs[i], ep.id(), ep.config()));
        }
        let mut w = Watched::new(ep, 1500, clock);
        if trace.is_some() {
            w.journal = Some(Vec::new());
        }
        nodes.push(w);
    }
    let mut pool_addrs = addrs.clone();
    pool_addrs.push(SocketAddr::from(([1, 2, 3, 4], 6881)));
    pool_addrs.push(SocketAddr::from(([10, 0, 0, 1], 0)));
    let pool = Pool { addrs: pool_addrs, ordinary: count, id_len: base.id_len };
    let mut net = Net { nodes, addrs, wire: Vec::new(), clock, latency, trace };
    net.drain_all();
    let mut steps = 0;
    while !input.is_empty() && steps < MAX_STEPS {
        steps += 1;
        let pick = |input: &mut Input<'_>, net: &Net<'_>| {
            if input.bool() { 0 } else { input.below(net.wire.len()) }
        };
        match input.below(14) {
            0..=3 => {
                // Deliver: usually the oldest datagram, sometimes another (reordering).
                let i = pick(&mut input, &net);
                let on_time = input.below(4) != 0;
                net.deliver(i, on_time);
            }
            4 => {
                let i = pick(&mut input, &net);
                if i < net.wire.len() {
                    let p = net.wire.remove(i);
                    net.say(|| format!("drop {} -> {}", p.from, p.to));
                }
            }
            5 => {
                let i = pick(&mut input, &net);
                if let Some(p) = net.wire.get(i).cloned() {
                    if net.wire.len() < MAX_WIRE {
                        net.wire.push(Packet { due: p.due + Duration::from_millis(u64::from(input.u8())), ..p });
                    }
                }
            }
            6 => {
                let i = pick(&mut input, &net);
                let delay = Duration::from_millis(u64::from(input.u16()));
                if let Some(p) = net.wire.get_mut(i) {
                    p.due += delay;
                }
            }
            7 => {
                let i = pick(&mut input, &net);
                let (at, x) = (input.u16(), input.u8() | 1);
                if let Some(p) = net.wire.get_mut(i) {
                    if !p.bytes.is_empty() {
                        let at = usize::from(at) % p.bytes.len();
                        p.bytes[at] ^= x;
                    }
                }
            }
            8 => {
                // Run the network up to its next event.
                if let Some(t) = net.next_event() {
                    let due: Vec<usize> =
                        net.wire.iter().enumerate().filter(|(_, p)| p.due <= t).map(|(i, _)| i).collect();
                    if due.is_empty() {
                        net.advance(t);
                    } else {
                        net.deliver(due[0], true);
                    }
                }
            }
            9 => {
                let to = clock_step(&mut input, net.clock);
                net.advance(to);
            }
            10 => {
                // The application of node j answers the queries it was handed, from its table.
                let j = input.below(count);
                let w = &mut net.nodes[j];
                w.app_replied = true;
                let queries: Vec<_> = core::mem::take(&mut w.reply_tos);
                for to in queries {
                    let nodes: Vec<NodeInfo> = w.ep.routing_table().closest(w.ep.id(), 8).to_vec();
                    let _ = w.ep.respond(&to, crate::wire::Dictionary::new(), &nodes);
                }
                net.drain(j, false);
            }
            _ => {
                let j = input.below(count);
                let which = input.below(COMMANDS);
                let which = if which == COMMANDS - 1 && input.below(4) != 0 { 0 } else { which };
                let at = net.clock;
                net.say(|| format!("{at:?} node {j}: command {which}"));
                command(&mut input, &mut net.nodes[j], &pool, at, which);
                net.drain(j, false);
            }
        }
    }
    net.settle();
    let now = net.clock;
    for n in &mut net.nodes {
        let now = now.max(n.latest());
        n.close(now);
    }
}
