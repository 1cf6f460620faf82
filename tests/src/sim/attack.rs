//! Attackers in the simulator (Sybil and eclipse), the address layout that keeps honest nodes
//! on realistically many subnets, and the reflection measurement.
//!
//! # Attackers
//! An attacker is not an engine: the simulator crafts its answers. It answers `ping` (so that it
//! enters routing tables), and `find_node`/`get_peers` with the attacker nodes nearest the
//! target and nothing else: never `values`, never a peer, never a stored item. It is on one of a
//! few /24s the attack controls, so the routing-table and lookup diversity of the engine
//! (`restrict_routing_ips`, libtorrent's defence) are what stands between it and the lookups.
//!
//! * [`AttackKind::Sybil`]: a share of all node ids is the attackers', on N /24s. Pre-seeded
//!   routing tables draw their contacts from the whole population, attackers included (the
//!   engine's diversity check refuses what it refuses).
//! * [`AttackKind::Eclipse`]: when a lookup target is drawn, N attacker ids from one fresh /24,
//!   closer to the target than any honest node, appear and insert themselves into the tables of
//!   the honest nodes nearest the target (as an attacker that queries them would).
//!
//! Success of a measured lookup in an attack run: it received `values` from an honest node. The
//! k honest nodes nearest each target hold the value (a `get_peers` reaching one of them is
//! answered with a peer), which is what an announce to the target would have left behind.
//!
//! # Addresses
//! Honest node `i` lives at 10/8 + a bijective scramble of the 24-bit number `i + 1`, port 6881:
//! 100,000 honest nodes occupy all 65,536 /24s of 10/8 (one or two each), so the engine's
//! one-per-/24 rules do not penalise them. Attacker addresses are in 172.16.0.0/12 with ports
//! from [`ATTACKER_PORT`]: /24 number `s` is `172.16.0.0 + s·256`, so one /24 holds up to 254
//! attacker IPs and many ports each (a Sybil attack on few /24s needs thousands of nodes per /24).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use krpc_core::wire::{Dictionary, Entry, Insert, Message, ResponseOut};
use krpc_core::{Config, Endpoint, IncomingQuery, Instant, NodeId, NodeInfo};
use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

use super::link::{below, chance};
use super::oracle::Oracle;
use super::{EPOCH, Sim};

/// Node indices at or above this are attackers (`index - ATTACKER_BASE` is the attacker's
/// address code).
pub const ATTACKER_BASE: u32 = 0x8000_0000;
/// The first port attackers use.
pub const ATTACKER_PORT: u16 = 7000;
/// Ports per attacker IP: 254 · 512 attackers fit in one /24.
const ATTACKER_PORTS: u32 = 512;
/// An eclipse reaches the tables of this many times k honest nodes nearest the target.
const ECLIPSE_VICTIMS: usize = 16;
/// /24s in 172.16.0.0/12.
const ATTACKER_SUBNETS: u32 = 4096;
const ATTACKER_NET: u32 = 0xac10_0000; // 172.16.0.0

/// The attack of a scenario.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttackKind {
    /// `fraction` of all node ids are attackers', on `subnets` /24s.
    Sybil {
        /// Share of all node ids (honest and attackers) run by attackers.
        fraction: f64,
        /// /24s they are on.
        subnets: usize,
    },
    /// For every lookup target, `per_target` attacker ids from one /24 sit nearest to it.
    Eclipse {
        /// Attackers per target.
        per_target: usize,
    },
}

/// An attack and whether the engines run their defences against it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attack {
    /// What the attackers do.
    pub kind: AttackKind,
    /// Defences on: routing-table and lookup diversity, applied to the simulator's private
    /// addresses too (see [`configure`]). Off: both off.
    pub defences: bool,
}

/// Sets the engine's defences against Sybil and eclipse attacks on or off: routing-table
/// diversity (`restrict_routing_ips`) and lookup diversity (`restrict_search_ips`). On, they
/// apply to private addresses too (`restrict_local_ips`): every simulated node has one.
pub fn configure(config: &mut Config, defences: bool) {
    config.restrict_routing_ips = defences;
    config.restrict_search_ips = defences;
    config.restrict_local_ips = defences;
}

// ---------------------------------------------------------------------------------------------
// Addresses

const MASK24: u32 = 0x00ff_ffff;
/// Odd, so multiplying by it is a bijection modulo 2^24.
const MUL: u32 = 0x009e_3779 | 1;

/// The inverse of an odd number modulo 2^24 (Newton's iteration doubles the correct bits).
const fn inverse24(a: u32) -> u32 {
    let mut x = a; // correct to 3 bits for any odd a
    let mut i = 0;
    while i < 5 {
        x = x.wrapping_mul(2u32.wrapping_sub(a.wrapping_mul(x)));
        i += 1;
    }
    x & MASK24
}
const MUL_INV: u32 = inverse24(MUL);

/// A bijection of the 24-bit numbers that keeps 0 at 0 and spreads consecutive numbers over
/// the whole space (xorshift, odd multiply, xorshift).
pub fn scramble24(x: u32) -> u32 {
    let mut x = x & MASK24;
    x ^= x >> 12;
    x = x.wrapping_mul(MUL) & MASK24;
    x ^= x >> 12;
    x
}

/// The inverse of [`scramble24`].
pub fn unscramble24(x: u32) -> u32 {
    let mut x = x & MASK24;
    x ^= x >> 12; // a 12-bit xorshift of a 24-bit number is its own inverse
    x = x.wrapping_mul(MUL_INV) & MASK24;
    x ^= x >> 12;
    x
}

/// The address of the attacker with address code `code`: `(port offset << 20) | (subnet << 8)
/// | host`, host in 1..=254.
pub fn attacker_addr(code: u32) -> SocketAddr {
    let host_and_subnet = code & 0x000f_ffff;
    let port = ATTACKER_PORT + (code >> 20) as u16;
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ATTACKER_NET + host_and_subnet), port))
}

/// The address code of the attacker at `addr`, if it is an attacker's address.
pub fn attacker_code(addr: &SocketAddr) -> Option<u32> {
    let SocketAddr::V4(v4) = addr else { return None };
    let ip = u32::from(*v4.ip());
    let port = u32::from(v4.port());
    let host = ip & 0xff;
    let in_net = ip & 0xfff0_0000 == ATTACKER_NET;
    let port_ok = (u32::from(ATTACKER_PORT)..u32::from(ATTACKER_PORT) + ATTACKER_PORTS).contains(&port);
    (in_net && port_ok && (1..=254).contains(&host))
        .then(|| ((port - u32::from(ATTACKER_PORT)) << 20) | (ip & 0x000f_ffff))
}

/// The address code of the `n`-th attacker of `subnet`.
fn code_for(subnet: u32, n: u32) -> u32 {
    let host = n % 254 + 1;
    let port = (n / 254) % ATTACKER_PORTS;
    (port << 20) | ((subnet % ATTACKER_SUBNETS) << 8) | host
}

// ---------------------------------------------------------------------------------------------
// The attackers' state

/// Every attacker of a run: ids, addresses, and what they did.
pub struct Attackers {
    attack: Attack,
    /// Attacker ids, indexed by position.
    oracle: Oracle,
    /// Position → address code.
    codes: Vec<u32>,
    /// Position → id.
    ids: Vec<NodeId>,
    /// Address code → position.
    by_code: HashMap<u32, u32>,
    rng: ChaCha8Rng,
    /// The next /24 an eclipse uses.
    next_subnet: u32,
    /// Queries attackers answered.
    pub answered: u64,
}

impl Attackers {
    /// The attackers of `attack` in a scenario with `honest` honest nodes, drawn from `seed`
    /// (their own stream: the honest population is the same with and without them).
    pub fn new(attack: Attack, honest: usize, seed: u64) -> Attackers {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5b11_0000_0000_0004);
        let mut a = Attackers {
            attack,
            oracle: Oracle::default(),
            codes: Vec::new(),
            ids: Vec::new(),
            by_code: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(0),
            next_subnet: 0,
            answered: 0,
        };
        if let AttackKind::Sybil { fraction, subnets } = attack.kind {
            let f = fraction.clamp(0.0, 0.99);
            let count = (honest as f64 * f / (1.0 - f)).round() as usize;
            let subnets = subnets.clamp(1, ATTACKER_SUBNETS as usize) as u32;
            for n in 0..count as u32 {
                let mut b = [0u8; 20];
                rng.fill_bytes(&mut b);
                a.push(NodeId::from_array(b), code_for(n % subnets, n / subnets));
            }
            a.oracle = Oracle::new(&a.ids);
            a.next_subnet = subnets;
        }
        a.rng = rng;
        a
    }

    fn push(&mut self, id: NodeId, code: u32) -> u32 {
        let pos = self.ids.len() as u32;
        self.ids.push(id);
        self.codes.push(code);
        self.by_code.insert(code, pos);
        pos
    }

    /// The attack.
    pub fn attack(&self) -> Attack {
        self.attack
    }

    /// How many attackers exist.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Whether there are none (yet).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// The id of the attacker with this address code.
    pub fn id_of(&self, code: u32) -> Option<NodeId> {
        self.by_code.get(&code).map(|&p| self.ids[p as usize])
    }

    /// The `count` attackers nearest `target`.
    fn nearest(&self, target: &NodeId, count: usize) -> Vec<NodeInfo> {
        self.oracle
            .closest(target, count, |_| true)
            .into_iter()
            .map(|p| NodeInfo::new(self.ids[p as usize], attacker_addr(self.codes[p as usize])))
            .collect()
    }

    /// The attacker's answer to `bytes`, a datagram sent to attacker `code`; `None` for
    /// anything but a query it knows.
    fn answer(&mut self, code: u32, bytes: &[u8], count: usize) -> Option<Vec<u8>> {
        let own = self.id_of(code)?;
        let msg = Message::decode(bytes).ok()?;
        let q = msg.as_query()?;
        let target = match q.method {
            b"ping" => None,
            b"find_node" => Some(q.args.target()?),
            b"get_peers" => Some(q.args.info_hash()?),
            _ => return None,
        };
        let nodes = target.map(|t| self.nearest(&t, count)).unwrap_or_default();
        let token = [0x5bu8; 4];
        let mut extra = vec![Entry { key: b"id", value: Insert::Bytes(own.as_bytes()), replace: true }];
        if target.is_some() {
            extra.push(Entry { key: b"nodes", value: Insert::NodesV4(&nodes), replace: true });
        }
        if q.method == b"get_peers" {
            extra.push(Entry { key: b"token", value: Insert::Bytes(&token), replace: true });
        }
        let values = Dictionary::new();
        let out =
            ResponseOut { transaction_id: msg.transaction_id, values: &values, extra: &extra, ip: None, version: None };
        let mut buf = vec![0u8; 1500];
        let len = out.encode(&mut buf).ok()?;
        buf.truncate(len);
        self.answered += 1;
        Some(buf)
    }
}

// ---------------------------------------------------------------------------------------------
// The simulator's side

impl Sim {
    /// The attackers, if the scenario has an attack.
    pub fn attackers(&self) -> Option<&Attackers> {
        self.attackers.as_ref()
    }

    /// Whether `j` is the attacker `id`, at its address (for the routing-table checks).
    pub(super) fn is_attacker(&self, j: u32, id: &NodeId) -> bool {
        j >= ATTACKER_BASE && self.attackers.as_ref().and_then(|a| a.id_of(j - ATTACKER_BASE)).is_some_and(|a| a == *id)
    }

    /// A datagram from node `from` to attacker `code`: the attacker answers it, the answer
    /// crossing the link back (its own latency and loss).
    pub(super) fn deliver_to_attacker(&mut self, from: u32, code: u32, bytes: &[u8], latency: Duration, lost: bool) {
        if lost {
            self.stats.lost += 1;
            return;
        }
        let count = self.scenario.answer_k.unwrap_or(self.scenario.engine.k);
        let Some(reply) = self.attackers.as_mut().and_then(|a| a.answer(code, bytes, count)) else {
            self.stats.to_nobody += 1;
            return;
        };
        if chance(&mut self.net_rng, self.scenario.link.loss) {
            self.stats.lost += 1;
            return;
        }
        let back = self.scenario.link.latency.sample(&mut self.net_rng);
        let at = self.now + latency + back;
        self.enqueue(at, ATTACKER_BASE + code, from, &reply);
    }

    /// Pre-seeding one bucket of a routing table: of the k contacts drawn from the whole
    /// population of the bucket's range, how many are attackers (a hypergeometric draw), and
    /// those inserted first. Returns how many the table took (its diversity rule may refuse
    /// some); the honest draw fills the rest.
    pub(super) fn preseed_attackers(
        &mut self,
        ep: &mut Endpoint,
        now: Instant,
        prefix: &NodeId,
        bits: usize,
        honest: usize,
        k: usize,
    ) -> usize {
        let Some(att) = self.attackers.as_ref() else { return 0 };
        let range = att.oracle.with_prefix(prefix, bits);
        if range.is_empty() {
            return 0;
        }
        let (mut a, mut h) = (range.len(), honest);
        let mut m = 0;
        for _ in 0..k.min(a + h) {
            if chance(&mut self.build_rng, a as f64 / (a + h) as f64) {
                m += 1;
                a -= 1;
            } else {
                h -= 1;
            }
        }
        let mut picked: Vec<u32> = Vec::with_capacity(m);
        let mut attempts = 0;
        while picked.len() < m && attempts < 16 * k {
            attempts += 1;
            let p = range[below(&mut self.build_rng, range.len())].1;
            if !picked.contains(&p) {
                picked.push(p);
            }
        }
        let mut taken = 0;
        for p in picked {
            let node = NodeInfo::new(att.ids[p as usize], attacker_addr(att.codes[p as usize]));
            if ep.insert_node(now, node) {
                taken += 1;
            }
            while ep.poll_event().is_some() {}
        }
        taken
    }

    /// An eclipse: `per_target` attackers from one fresh /24, nearer to `target` than any honest
    /// node (they share its first 120 bits), insert themselves into the tables of the 16k honest
    /// nodes nearest the target, as attackers querying those nodes would.
    pub(super) fn eclipse(&mut self, target: &NodeId) {
        let Some(att) = self.attackers.as_mut() else { return };
        let AttackKind::Eclipse { per_target } = att.attack.kind else { return };
        let subnet = att.next_subnet;
        att.next_subnet += 1;
        let mut fresh = Vec::with_capacity(per_target);
        for n in 0..per_target as u32 {
            let mut b = [0u8; 20];
            b[..15].copy_from_slice(&target.as_bytes()[..15]);
            att.rng.fill_bytes(&mut b[15..]);
            let id = NodeId::from_array(b);
            let code = code_for(subnet, n);
            let pos = att.push(id, code);
            att.oracle.insert(&id, pos);
            fresh.push(NodeInfo::new(id, attacker_addr(code)));
        }
        let victims = self.true_closest(target, ECLIPSE_VICTIMS * self.scenario.engine.k);
        let now = self.now;
        for i in victims {
            let Some(ep) = self.nodes[i as usize].ep.as_mut() else { continue };
            for node in &fresh {
                ep.insert_node(now, *node);
            }
            self.touch(i);
        }
    }

    /// An honest node's answer in an attack run: a `get_peers` for a target it is one of the k
    /// honest nodes nearest to is answered with a peer (the value), the rest as usual. Returns
    /// false when the query is not one it answers here.
    pub(super) fn answer_holder(&self, i: u32, ep: &mut Endpoint, q: &IncomingQuery, count: usize) -> bool {
        if (self.attackers.is_none() && !self.scenario.holders) || q.method() != b"get_peers" {
            return false;
        }
        let Some(hash) = q.args().info_hash() else { return false };
        if !self.true_closest(&hash, self.scenario.engine.k).contains(&i) {
            return false;
        }
        // `values`: one compact peer, the address of a seeder of this torrent.
        let token = super::answer::token_for(q);
        let mut raw = b"d5:token4:".to_vec();
        raw.extend_from_slice(&token);
        raw.extend_from_slice(b"6:valuesl6:");
        raw.extend_from_slice(&[192, 0, 2, 1, 0x1a, 0xe1]);
        raw.extend_from_slice(b"ee");
        let values = Dictionary::from_bencode(&raw).unwrap_or_default();
        let nodes = super::answer::answer_nodes(ep, &hash, count, self.now);
        let _ = ep.respond(q.reply_to(), values, &nodes);
        true
    }
}

/// The attackers of a scenario, if it has an attack.
pub(super) fn attackers_for(attack: Option<Attack>, honest: usize, seed: u64) -> Option<Attackers> {
    attack.map(|a| Attackers::new(a, honest, seed))
}

// ---------------------------------------------------------------------------------------------
// Reflection

/// What a spoofed victim received from reflectors.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reflection {
    /// Reflectors (our nodes, default configuration).
    pub reflectors: usize,
    /// Spoofed queries the attacker sent.
    pub queries: u64,
    /// Bytes the attacker sent.
    pub attacker_bytes: u64,
    /// Datagrams the reflectors sent to the victim (answers and verification pings).
    pub victim_datagrams: u64,
    /// Bytes the victim received.
    pub victim_bytes: u64,
}

impl Reflection {
    /// Bytes received by the victim per byte sent by the attacker (UDP payloads).
    pub fn factor(&self) -> f64 {
        self.victim_bytes as f64 / self.attacker_bytes.max(1) as f64
    }
}

/// The method a reflection run spoofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReflectedQuery {
    /// `ping`: the smallest answer.
    Ping,
    /// `find_node`: k nodes in the answer.
    FindNode,
    /// `get_peers`: k nodes and a token.
    GetPeers,
}

/// Reflection: an attacker sends `per_reflector` queries per second for `seconds` to each of
/// `reflectors` engines with `config`, every one with the victim's address as its source. The
/// reflectors' tables are full of contacts (so answers carry k nodes); whatever they send to
/// the victim is counted, answers and their own verification pings alike.
pub fn reflection(
    config: &Config,
    method: ReflectedQuery,
    reflectors: usize,
    per_reflector: u32,
    seconds: u32,
    seed: u64,
) -> Reflection {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4ef1_0000_0000_0005);
    // A public address: limits count it per IP, as they would a real victim.
    let victim = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(12, 0, 0, 1), 6881));
    let mut out = Reflection { reflectors, ..Reflection::default() };
    let mut buf = vec![0u8; 2048];
    let mut query = vec![0u8; 512];
    let start = EPOCH;
    for r in 0..reflectors as u32 {
        let mut seed_bytes = [0u8; 32];
        seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
        seed_bytes[8..12].copy_from_slice(&r.to_le_bytes());
        let mut ep =
            match Endpoint::new(Config { id: None, bootstrap: Vec::new(), ..config.clone() }, seed_bytes, start) {
                Ok(ep) => ep,
                Err(e) => panic!("reflector configuration: {e}"),
            };
        // A full-looking table: 200 contacts at public-looking, distinct addresses.
        for n in 0..200u32 {
            let mut b = [0u8; 20];
            rng.fill_bytes(&mut b);
            let ip = Ipv4Addr::from(0x0b00_0000 + scramble24(n * 4099 + r + 1));
            ep.insert_node(start, NodeInfo::new(NodeId::from_array(b), SocketAddr::V4(SocketAddrV4::new(ip, 6881))));
            while ep.poll_event().is_some() {}
            while ep.poll_transmit(start, &mut buf).is_some() {}
        }
        let mut attacker_id = [0u8; 20];
        rng.fill_bytes(&mut attacker_id);
        let total = per_reflector * seconds;
        let gap = Duration::from_secs(1) / per_reflector.max(1);
        for n in 0..total {
            let now = start + gap * n;
            let mut target = [0u8; 20];
            rng.fill_bytes(&mut target);
            let len = spoofed_query(&mut query, method, n, &attacker_id, &target);
            out.queries += 1;
            out.attacker_bytes += len as u64;
            ep.handle_datagram(now, victim, &query[..len]);
            loop {
                ep.handle_timeout(now);
                let mut moved = false;
                while let Some(t) = ep.poll_transmit(now, &mut buf) {
                    moved = true;
                    if t.destination == victim {
                        out.victim_datagrams += 1;
                        out.victim_bytes += t.len as u64;
                    }
                }
                while let Some(e) = ep.poll_event() {
                    moved = true;
                    if let krpc_core::Event::Query(q) = e {
                        // The default application: answers from the routing table.
                        super::answer::answer_from_routing_table(&mut ep, &q, config.k);
                    }
                }
                if !moved {
                    break;
                }
            }
        }
    }
    out
}

/// Writes a spoofed query into `buf` and returns its length.
fn spoofed_query(buf: &mut [u8], method: ReflectedQuery, n: u32, id: &[u8; 20], target: &[u8; 20]) -> usize {
    let mut raw = Vec::with_capacity(128);
    raw.extend_from_slice(b"d1:ad2:id20:");
    raw.extend_from_slice(id);
    match method {
        ReflectedQuery::Ping => {}
        ReflectedQuery::FindNode => {
            raw.extend_from_slice(b"6:target20:");
            raw.extend_from_slice(target);
        }
        ReflectedQuery::GetPeers => {
            raw.extend_from_slice(b"9:info_hash20:");
            raw.extend_from_slice(target);
        }
    }
    raw.extend_from_slice(b"e1:q");
    raw.extend_from_slice(match method {
        ReflectedQuery::Ping => b"4:ping",
        ReflectedQuery::FindNode => b"9:find_node",
        ReflectedQuery::GetPeers => b"9:get_peers",
    });
    raw.extend_from_slice(b"1:t4:");
    raw.extend_from_slice(&n.to_be_bytes());
    raw.extend_from_slice(b"1:y1:qe");
    let len = raw.len().min(buf.len());
    buf[..len].copy_from_slice(&raw[..len]);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scramble_is_a_bijection_that_spreads_neighbours() {
        for x in (0..MASK24).step_by(997).chain([0, 1, 2, MASK24]) {
            assert_eq!(unscramble24(scramble24(x)), x);
        }
        assert_eq!(scramble24(0), 0);
        // 100,000 consecutive numbers land on many /24s (the top 16 of the 24 bits).
        let mut subnets: Vec<u32> = (1..=100_000).map(|x| scramble24(x) >> 8).collect();
        subnets.sort_unstable();
        subnets.dedup();
        assert!(subnets.len() > 60_000, "{}", subnets.len());
    }

    #[test]
    fn attacker_addresses_round_trip_and_share_their_subnet() {
        for (s, n) in [(0, 0), (3, 253), (3, 254), (4095, 254 * 511 + 3)] {
            let code = code_for(s, n);
            assert_eq!(attacker_code(&attacker_addr(code)), Some(code));
        }
        let a = attacker_addr(code_for(7, 1));
        let b = attacker_addr(code_for(7, 900));
        let (SocketAddr::V4(a), SocketAddr::V4(b)) = (a, b) else { unreachable!() };
        assert_eq!(a.ip().octets()[..3], b.ip().octets()[..3]);
        assert_eq!(attacker_code(&"10.0.0.1:6881".parse().unwrap_or_else(|_| unreachable!())), None);
    }
}
