//! An in-memory DHT of N engines on a virtual network: the nodes bootstrap from one seed,
//! then run lookups toward random targets, and the result is compared with the true closest
//! nodes. No sockets, no real time: the whole run is a function of the seed.
//!
//! `cargo run --release -p krpc-core --example swarm -- [NODES] [LOOKUPS] [SEED]`
#![allow(clippy::print_stdout, clippy::disallowed_methods, clippy::type_complexity)] // a demo binary: it prints and times itself

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use krpc_core::wire::Dictionary;
use krpc_core::{Config, Endpoint, Event, Instant, NodeId, Query};

struct Net {
    nodes: Vec<Endpoint>,
    addrs: Vec<SocketAddr>,
    index: BTreeMap<SocketAddr, usize>,
    /// (delivery time, sequence, to, from, bytes)
    in_flight: BinaryHeap<Reverse<(Instant, u64, usize, SocketAddr, Vec<u8>)>>,
    seq: u64,
    now: Instant,
    queries: u64,
}

impl Net {
    fn new(n: usize, k: usize, seed: u64) -> Net {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| {
                SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, (i >> 16) as u8, (i >> 8) as u8, i as u8), 6881))
            })
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let mut s = [0u8; 32];
                s[..8].copy_from_slice(&seed.to_le_bytes());
                s[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                let config = Config { k, bootstrap: vec![addrs[0]], lookup_parallelism: Some(4), ..Config::default() };
                Endpoint::new(config, s, Instant::ZERO).expect("valid config")
            })
            .collect();
        let index = addrs.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        Net { nodes, addrs, index, in_flight: BinaryHeap::new(), seq: 0, now: Instant::ZERO, queries: 0 }
    }

    /// Latency 20–120 ms, derived from the pair and a counter so the run stays deterministic.
    fn latency(&mut self, a: usize, b: usize) -> Duration {
        self.seq += 1;
        let h = (a as u64 * 31 + b as u64 * 17 + self.seq * 7919) % 100;
        Duration::from_millis(20 + h)
    }

    fn drain(&mut self, i: usize, events: &mut Vec<(usize, Event)>) {
        let mut buf = [0u8; 1500];
        while let Some(t) = self.nodes[i].poll_transmit(self.now, &mut buf) {
            if let Some(&to) = self.index.get(&t.destination) {
                let at = self.now + self.latency(i, to);
                self.in_flight.push(Reverse((at, self.seq, to, self.addrs[i], buf[..t.len].to_vec())));
            }
        }
        while let Some(e) = self.nodes[i].poll_event() {
            // Answer find_node and get_peers with our closest nodes, as a k-rpc application does.
            if let Event::Query(q) = &e {
                let args = q.args();
                if let Some(target) = args.target().or(args.info_hash()) {
                    let nodes = self.nodes[i].routing_table().closest(&target, 8);
                    let _ = self.nodes[i].respond(q.reply_to(), Dictionary::new(), &nodes);
                    continue;
                }
            }
            events.push((i, e));
        }
        if self.nodes[i].poll_timeout() == Some(self.now) {
            // Answers queued by the loop above.
            let mut buf = [0u8; 1500];
            while let Some(t) = self.nodes[i].poll_transmit(self.now, &mut buf) {
                if let Some(&to) = self.index.get(&t.destination) {
                    let at = self.now + self.latency(i, to);
                    self.in_flight.push(Reverse((at, self.seq, to, self.addrs[i], buf[..t.len].to_vec())));
                }
            }
        }
    }

    /// Runs until `until` returns true or nothing is left to do.
    fn run(&mut self, events: &mut Vec<(usize, Event)>, mut until: impl FnMut(&[(usize, Event)]) -> bool) {
        for i in 0..self.nodes.len() {
            self.drain(i, events);
        }
        while !until(events) {
            let idle =
                self.in_flight.is_empty() && self.nodes.iter().all(|n| n.operations() == 0 && n.in_flight() == 0);
            if idle {
                break;
            }
            let next_packet = self.in_flight.peek().map(|Reverse(p)| p.0);
            let next_timer = self.nodes.iter_mut().filter_map(|n| n.poll_timeout()).min();
            let Some(next) = [next_packet, next_timer].into_iter().flatten().min() else { break };
            self.now = self.now.max(next);
            while self.in_flight.peek().is_some_and(|Reverse(p)| p.0 <= self.now) {
                let Reverse((_, _, to, from, bytes)) = self.in_flight.pop().expect("peeked");
                self.nodes[to].handle_datagram(self.now, from, &bytes);
                self.drain(to, events);
            }
            for i in 0..self.nodes.len() {
                if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                    self.nodes[i].handle_timeout(self.now);
                    self.drain(i, events);
                }
            }
        }
    }
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let n = args.first().copied().unwrap_or(200) as usize;
    let lookups = args.get(1).copied().unwrap_or(50) as usize;
    let seed = args.get(2).copied().unwrap_or(1);
    let k = 8;
    let started = std::time::Instant::now();
    let mut net = Net::new(n, k, seed);
    let mut events = Vec::new();

    // Everyone joins through node 0, a few at a time.
    for i in 1..n {
        let now = net.now;
        net.nodes[i].bootstrap(now).expect("bootstrap starts");
        net.drain(i, &mut events);
        if i % 20 == 0 || i == n - 1 {
            net.run(&mut events, |_| false);
        }
    }
    let table_sizes: Vec<usize> = net.nodes.iter().map(|e| e.routing_table().len()).collect();
    println!(
        "{n} nodes joined in {:.1} s of virtual time; routing tables hold {}..{} nodes (mean {:.1})",
        net.now.as_duration().as_secs_f64(),
        table_sizes.iter().min().unwrap_or(&0),
        table_sizes.iter().max().unwrap_or(&0),
        table_sizes.iter().sum::<usize>() as f64 / n as f64
    );

    let mut queries = Vec::new();
    let mut recalls = Vec::new();
    let mut times = Vec::new();
    for l in 0..lookups {
        let mut t = [0u8; 20];
        for (j, b) in t.iter_mut().enumerate() {
            *b = (seed as usize * 131 + l * 7 + j * 13 + (l * j) % 251) as u8;
        }
        let target = NodeId::from_array(t);
        let from = (l * 7919) % n;
        let before: u64 = net.nodes.iter().map(|e| e.stats().queries_out).sum();
        let start = net.now;
        events.clear();
        let now = net.now;
        let op = net.nodes[from].closest(now, target, Query::get_peers(&target)).expect("lookup starts");
        net.drain(from, &mut events);
        net.run(&mut events, |ev| ev.iter().any(|(_, e)| matches!(e, Event::LookupDone { op: o, .. } if *o == op)));
        let after: u64 = net.nodes.iter().map(|e| e.stats().queries_out).sum();
        let Some(found) = events.iter().find_map(|(_, e)| match e {
            Event::LookupDone { op: o, closest, .. } if *o == op => Some(closest.clone()),
            _ => None,
        }) else {
            continue;
        };
        let mut truth: Vec<NodeId> = net.nodes.iter().map(|e| *e.id()).collect();
        truth.sort_by(|a, b| target.cmp_distance(a, b));
        truth.truncate(k);
        let hit = found.iter().filter(|f| truth.contains(&f.node.id)).count();
        // The querier itself is never in its own result; count it as found when it belongs.
        let own = truth.contains(net.nodes[from].id()) as usize;
        recalls.push((hit + own) as f64 / k as f64);
        queries.push(after - before);
        times.push((net.now - start).as_millis() as u64);
    }
    net.queries = queries.iter().sum();
    queries.sort_unstable();
    times.sort_unstable();
    let pct = |v: &[u64], p: f64| v.get(((v.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    println!("lookups            {}", queries.len());
    println!("queries per lookup median {}  p90 {}", pct(&queries, 0.5), pct(&queries, 0.9));
    println!("virtual time (ms)  median {}  p90 {}", pct(&times, 0.5), pct(&times, 0.9));
    println!("recall of true {k} closest  {:.3}", recalls.iter().sum::<f64>() / recalls.len().max(1) as f64);
    println!("wall time          {:.2} s", started.elapsed().as_secs_f64());
}
