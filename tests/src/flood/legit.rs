//! The legitimate side: a few DHT nodes (krpc-std, `Config::dht()`) on their own loopback
//! addresses that join through the server, and clients, each on its own loopback address,
//! that keep pinging the server and running `find_node`/`get_peers` lookups through it while
//! the flood runs, counting what succeeds.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use krpc_core::{Config, NodeId, Query};
use krpc_std::{Builder, Krpc};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

/// The `i`-th client's address: 127.0.0.2, 127.0.0.3, ...
pub fn client_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 100) as u8)
}

/// The `i`-th other node's address: 127.0.1.1, 127.0.1.2, ...
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, 1 + (i % 200) as u8)
}

/// Successes and failures of one kind of operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Operations that succeeded.
    pub ok: u64,
    /// Operations that failed, by reason.
    pub failed: BTreeMap<String, u64>,
}

impl Tally {
    /// Operations that failed, every reason.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum()
    }

    /// Operations, all together.
    pub fn total(&self) -> u64 {
        self.ok + self.failures()
    }

    fn fail(&mut self, reason: impl Into<String>) {
        *self.failed.entry(reason.into()).or_default() += 1;
    }

    fn add(&mut self, other: &Tally) {
        self.ok += other.ok;
        for (reason, n) in &other.failed {
            *self.failed.entry(reason.clone()).or_default() += n;
        }
    }
}

/// What the legitimate clients saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Legit {
    /// `ping`s of the server: success is its answer.
    pub pings: Tally,
    /// `find_node` lookups, starting from the client's routing table, for targets that share
    /// their first 8 bytes with the server's id (so that the server is the nearest node the
    /// client knows and is always asked): success is a lookup that the server answered.
    pub find_nodes: Tally,
    /// `get_peers` lookups for such info-hashes, likewise.
    pub get_peers: Tally,
    /// Answers from the other nodes during those lookups (they are not under attack; this
    /// shows the lookups went beyond the server).
    pub other_node_answers: u64,
    /// Round-trip times of the successful pings, in microseconds, as seen by the client
    /// (through its driver thread).
    pub ping_rtt_us: Vec<u64>,
}

impl Legit {
    /// Operations of every kind.
    pub fn total(&self) -> u64 {
        self.pings.total() + self.find_nodes.total() + self.get_peers.total()
    }

    /// Successful operations of every kind.
    pub fn ok(&self) -> u64 {
        self.pings.ok + self.find_nodes.ok + self.get_peers.ok
    }

    /// Successes over operations (1 when there were none).
    pub fn success_rate(&self) -> f64 {
        if self.total() == 0 { 1.0 } else { self.ok() as f64 / self.total() as f64 }
    }

    /// The `q`-quantile (0 to 1) of the ping round-trip times, in microseconds.
    pub fn ping_rtt_quantile(&self, q: f64) -> Option<u64> {
        let mut sorted = self.ping_rtt_us.clone();
        sorted.sort_unstable();
        let last = sorted.len().checked_sub(1)?;
        sorted.get(((last as f64) * q.clamp(0.0, 1.0)).round() as usize).copied()
    }

    fn add(&mut self, other: &Legit) {
        self.pings.add(&other.pings);
        self.find_nodes.add(&other.find_nodes);
        self.get_peers.add(&other.get_peers);
        self.other_node_answers += other.other_node_answers;
        self.ping_rtt_us.extend_from_slice(&other.ping_rtt_us);
    }
}

/// How the legitimate clients behave.
#[derive(Clone, Copy, Debug)]
pub struct Behaviour {
    /// Operations per second of each client (a ping or a lookup each).
    pub rate: f64,
    /// One operation in this many is a lookup (alternately `find_node` and `get_peers`), the
    /// others are pings.
    pub lookup_every: u32,
}

/// The server's legitimate neighbours: other nodes and clients, all joined through it.
#[derive(Debug)]
pub struct Network {
    server: SocketAddr,
    nodes: Vec<Krpc>,
    clients: Vec<Krpc>,
}

fn node(ip: Ipv4Addr, server: SocketAddr, seed: u64) -> Result<Krpc, String> {
    let mut key = [0u8; 32];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut key);
    let config = Config { bootstrap: vec![server], ..Config::dht() };
    let krpc = Builder::new(config)
        .seed(key)
        .bind((ip, 0))
        .map_err(|error| format!("cannot start a node on {ip}: {error}"))?;
    let joined = krpc.bootstrap().map_err(|error| format!("{ip} cannot join through {server}: {error}"))?;
    if joined.replies == 0 {
        return Err(format!("{ip}: nobody answered the bootstrap through {server}"));
    }
    Ok(krpc)
}

impl Network {
    /// Starts `nodes` other nodes, then `clients` clients, each joining through `server`, and
    /// checks that every client has the server in its routing table and gets an answer to a
    /// ping. Every address is on loopback.
    pub fn start(server: SocketAddr, nodes: usize, clients: usize, seed: u64) -> Result<Network, String> {
        if !server.ip().is_loopback() {
            return Err(format!("{server} is not a loopback address"));
        }
        let mut network = Network { server, nodes: Vec::new(), clients: Vec::new() };
        for i in 0..nodes {
            network.nodes.push(node(node_ip(i), server, seed ^ (0x0de0 + i as u64))?);
        }
        for i in 0..clients {
            let client = node(client_ip(i), server, seed ^ (0xc1e0 + i as u64))?;
            let table = client.routing_table().map_err(|error| error.to_string())?;
            if !table.iter().any(|contact| contact.addr() == server) {
                return Err(format!("client {} does not have the server in its routing table", client_ip(i)));
            }
            client
                .query(server, Query::ping())
                .map_err(|error| format!("first ping from {}: {error}", client_ip(i)))?;
            network.clients.push(client);
        }
        // Whether the other nodes made it into the clients' tables through the server is up
        // to the server's routing; lookups count the answers they get from them.
        Ok(network)
    }

    /// Runs every client on its own thread until `stop` is set; returns their tallies, all
    /// together. Operations started before `stop` run to their end.
    /// `server_id` is the server's node id.
    pub fn run(
        &self,
        server_id: NodeId,
        behaviour: Behaviour,
        seed: u64,
        stop: &Arc<AtomicBool>,
    ) -> Result<LegitRun, String> {
        let mut threads = Vec::new();
        for (i, client) in self.clients.iter().enumerate() {
            let (client, stop) = (client.clone(), stop.clone());
            let server = (self.server, server_id);
            let rng = ChaCha8Rng::seed_from_u64(seed ^ (0x5eed_0000 + i as u64));
            let thread = std::thread::Builder::new()
                .name(format!("legit-{i}"))
                .spawn(move || client_loop(&client, server, behaviour, rng, &stop))
                .map_err(|error| format!("cannot start a client thread: {error}"))?;
            threads.push(thread);
        }
        Ok(LegitRun { threads })
    }

    /// Pings the server `n` times from every client, one after the other; returns (answered,
    /// asked).
    pub fn check(&self, n: usize) -> (u64, u64) {
        let mut answered = 0;
        for client in &self.clients {
            for _ in 0..n {
                answered += u64::from(client.query(self.server, Query::ping()).is_ok());
            }
        }
        (answered, (self.clients.len() * n) as u64)
    }

    /// Stops every node and client.
    pub fn shutdown(self) {
        for krpc in self.clients.iter().chain(&self.nodes) {
            krpc.shutdown();
        }
    }
}

/// Clients at work (see [`Network::run`]).
#[derive(Debug)]
pub struct LegitRun {
    threads: Vec<JoinHandle<Legit>>,
}

impl LegitRun {
    /// Waits for every client to stop (set the `stop` flag first); their tallies together.
    pub fn join(self) -> Result<Legit, String> {
        let mut all = Legit::default();
        for thread in self.threads {
            all.add(&thread.join().map_err(|_| "a client thread panicked".to_string())?);
        }
        Ok(all)
    }
}

#[allow(clippy::disallowed_methods)] // a load generator reads the real clock
fn now() -> Instant {
    Instant::now()
}

#[allow(clippy::disallowed_methods)] // a load generator waits on the real clock
fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

fn client_loop(
    client: &Krpc,
    (server, server_id): (SocketAddr, NodeId),
    behaviour: Behaviour,
    mut rng: ChaCha8Rng,
    stop: &AtomicBool,
) -> Legit {
    let mut legit = Legit::default();
    let period = Duration::from_secs_f64(1.0 / behaviour.rate.max(0.001));
    let lookup_every = u64::from(behaviour.lookup_every.max(1));
    let mut due = now();
    let mut op = 0u64;
    while !stop.load(Ordering::Relaxed) {
        op += 1;
        if op % lookup_every == 0 {
            let mut target = [0u8; 20];
            rng.fill_bytes(&mut target);
            target[..8].copy_from_slice(&server_id.as_bytes()[..8]);
            let target = NodeId::from_array(target);
            let find_node = (op / lookup_every) % 2 == 1;
            let query = if find_node { Query::find_node(&target) } else { Query::get_peers(&target) };
            let (mut server_answered, mut others) = (false, 0);
            let result = client.closest(target, query, |reply| {
                if reply.from() == server {
                    server_answered = true;
                } else {
                    others += 1;
                }
                ControlFlow::Continue(())
            });
            legit.other_node_answers += others;
            let tally = if find_node { &mut legit.find_nodes } else { &mut legit.get_peers };
            match result {
                Ok(_) if server_answered => tally.ok += 1,
                Ok(_) => tally.fail("the server did not answer"),
                Err(error) => tally.fail(error.to_string()),
            }
        } else {
            let sent = now();
            match client.query(server, Query::ping()) {
                Ok(_) => {
                    legit.pings.ok += 1;
                    legit.ping_rtt_us.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                Err(error) => legit.pings.fail(error.to_string()),
            }
        }
        // Pace; after a slow operation (a timeout), start again from now rather than catch up.
        due = (due + period).max(now());
        let wait = due.saturating_duration_since(now());
        if !wait.is_zero() {
            sleep(wait);
        }
    }
    legit
}
