//! Node addresses: private or public-looking, and several nodes behind one IP.
//!
//! # Public-looking addresses
//! By default node `i` lives at 10/8 plus a scramble of `i + 1`, a private range the engine
//! treats as a LAN: its diversity rules (one routing-table entry per IP, one per /24 in a
//! bucket, one lookup candidate per /24; `Config::restrict_routing_ips` and friends) and its
//! per-IP rate limits exempt loopback and private sources. With [`Scenario::public_ips`] the
//! same scramble lands in [`PUBLIC_NET`] (11.0.0.0/8), which the engine takes for the public
//! Internet, so those rules apply as they do on the real DHT. Nothing is ever sent there: the
//! simulator delivers datagrams in memory.
//!
//! # Shared IPs
//! Behind a carrier-grade NAT, a home router with several clients, or on a seedbox, several
//! DHT nodes share one public IP address and differ by port. [`SharedIps`] puts a share of the
//! nodes in such groups of 2 to `max` nodes. A group is a run of consecutive node indices
//! `leader..leader + n`; member `leader + o` lives at the leader's IP, port `6881 + o`, so
//! [`index_of`](super::index_of) stays arithmetic (IP gives the leader, port the offset) and
//! needs no table. Node ids are drawn independently of indices, so neighbours by index are
//! not neighbours in the id space.
//!
//! The seeds of a join build keep an IP of their own (bootstrap routers are single hosts), as do
//! nodes that join later (churn): over a run of an hour with Mainline sessions (a mean of about
//! 22 hours) few of them replace the initial population.
//!
//! A NAT belongs to an IP: the nodes of a group are all NATed or none (see
//! [`nat`](super::nat)), and a NAT's permission for a remote covers the remote's IP, every port
//! of it (address-dependent filtering).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::link::{below, chance};
use super::{Build, Scenario, Sim, attack};

/// The port of a node with an IP of its own, and of the first node of a group.
pub const PORT: u16 = 6881;
/// The most nodes one IP may hold (ports `PORT..PORT + MAX_PER_IP`).
pub const MAX_PER_IP: usize = 64;
/// Where node addresses are by default: 10.0.0.0/8 (private, exempt from the diversity rules).
pub const PRIVATE_NET: u32 = 0x0a00_0000;
/// Where they are with [`Scenario::public_ips`]: 11.0.0.0/8, an ordinary public range.
pub const PUBLIC_NET: u32 = 0x0b00_0000;

/// A share of the nodes behind shared IPs (`simulate --shared-ip FRACTION[:MAX]`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharedIps {
    /// Share of the nodes that share their IP with at least one other node.
    pub fraction: f64,
    /// Most nodes on one IP (2 to [`MAX_PER_IP`]); a group's size is uniform in `2..=max`.
    pub max: usize,
}

impl SharedIps {
    /// `--profile mainline`'s assumption: 10% of the nodes share their IP, up to 4 per IP (see
    /// `docs/simulation.md`, "Several nodes behind one IP").
    pub const MAINLINE: SharedIps = SharedIps { fraction: 0.1, max: 4 };

    /// Parses `FRACTION[:MAX]` (MAX defaults to 4).
    pub fn parse(s: &str) -> Result<SharedIps, String> {
        let (f, m) = s.split_once(':').unwrap_or((s, "4"));
        let fraction: f64 = f.trim().parse().map_err(|e| format!("{f}: {e}"))?;
        let max: usize = m.trim().parse().map_err(|e| format!("{m}: {e}"))?;
        if !(0.0..=1.0).contains(&fraction) || !(2..=MAX_PER_IP).contains(&max) {
            return Err(format!("--shared-ip wants FRACTION in 0..1 and MAX in 2..={MAX_PER_IP}"));
        }
        Ok(SharedIps { fraction, max })
    }
}

/// Where every node lives: the address layout of one run.
#[derive(Clone, Debug, Default)]
pub struct Ips {
    public: bool,
    /// Per node of the initial population: its offset in its group (0 for a node alone on its
    /// IP and for a group's first node). Nodes beyond it have an IP of their own.
    offset: Vec<u8>,
}

impl Ips {
    /// Draws the groups of `scenario` (from their own random stream, so that a scenario
    /// without shared IPs draws everything else exactly as before).
    pub fn new(scenario: &Scenario) -> Ips {
        let mut offset = vec![0u8; scenario.nodes];
        if let Some(shared) = scenario.shared_ips.filter(|s| s.fraction > 0.0) {
            let seeds = match scenario.build {
                Build::Join { seeds, .. } => seeds.max(1),
                Build::Preseed => 0,
            };
            let max = shared.max.clamp(2, MAX_PER_IP);
            // Start a group at a node with probability p: with groups of mean size m, a share
            // f = p·m / (p·m + 1 − p) of the nodes is grouped, so p = f / (m·(1 − f) + f).
            let mean = (2 + max) as f64 / 2.0;
            let f = shared.fraction.min(1.0);
            let p = f / (mean * (1.0 - f) + f);
            let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x1b50_0000_0000_0005);
            let mut i = seeds;
            while i < scenario.nodes {
                if chance(&mut rng, p) {
                    let size = (2 + below(&mut rng, max - 1)).min(scenario.nodes - i);
                    for o in 0..size {
                        offset[i + o] = o as u8;
                    }
                    i += size;
                } else {
                    i += 1;
                }
            }
        }
        Ips { public: scenario.public_ips, offset }
    }

    /// Whether addresses are public-looking.
    pub fn public(&self) -> bool {
        self.public
    }

    /// The first node of node `i`'s IP: `i` itself when it has an IP of its own. The NAT and
    /// everything else that belongs to an IP is keyed by it.
    pub fn host(&self, i: u32) -> u32 {
        i - u32::from(self.offset.get(i as usize).copied().unwrap_or(0))
    }

    /// The address of node `i`.
    pub fn addr(&self, i: u32) -> SocketAddr {
        if i >= attack::ATTACKER_BASE {
            return attack::attacker_addr(i - attack::ATTACKER_BASE);
        }
        let o = self.offset.get(i as usize).copied().unwrap_or(0);
        let host = i - u32::from(o);
        let net = if self.public { PUBLIC_NET } else { PRIVATE_NET };
        SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(net | attack::scramble24(host + 1)), PORT + u16::from(o)))
    }

    /// Nodes of the initial population per IP: how many IPs hold 1, 2, … nodes (index = nodes
    /// on the IP).
    pub fn histogram(&self) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut i = 0;
        while i < self.offset.len() {
            let mut n = 1;
            while i + n < self.offset.len() && self.offset[i + n] as usize == n {
                n += 1;
            }
            if sizes.len() <= n {
                sizes.resize(n + 1, 0);
            }
            sizes[n] += 1;
            i += n;
        }
        sizes
    }

    /// Nodes of the initial population that share their IP.
    pub fn shared_nodes(&self) -> usize {
        self.histogram().iter().enumerate().skip(2).map(|(n, ips)| n * ips).sum()
    }
}

/// The node at `addr`, if it is a simulated node's address (either range, any group offset).
pub(super) fn index_of(addr: &SocketAddr) -> Option<u32> {
    match addr {
        SocketAddr::V4(v4) => {
            let ip = u32::from(*v4.ip());
            let net = ip & 0xff00_0000;
            let o = v4.port().checked_sub(PORT).filter(|&o| usize::from(o) < MAX_PER_IP)?;
            let host = ip & 0x00ff_ffff;
            ((net == PRIVATE_NET || net == PUBLIC_NET) && host != 0)
                .then(|| attack::unscramble24(host) - 1 + u32::from(o))
        }
        SocketAddr::V6(_) => None,
    }
}

impl Sim {
    /// The address layout of this run.
    pub fn ips(&self) -> &Ips {
        &self.ips
    }

    /// The address of node `i` in this run.
    pub fn addr(&self, i: u32) -> SocketAddr {
        self.ips.addr(i)
    }

    /// Verified nodes the running engines' diversity rules kept out of their tables, summed.
    pub fn diversity_refused(&self) -> u64 {
        self.nodes.iter().filter_map(|n| n.ep.as_deref()).map(|ep| ep.stats().diversity_refused).sum()
    }

    /// Checks the engine's routing-table diversity rules from outside, in every running node's
    /// table: no IP twice in a table, no /24 twice in a bucket. They hold by construction
    /// unless the engine lets a replacement through unchecked.
    pub fn check_diversity(&self) -> Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(ep) = n.ep.as_deref() else { continue };
            let table = ep.routing_table();
            let mut ips: Vec<_> = table.iter().map(|c| c.addr().ip()).collect();
            ips.sort();
            if let Some(w) = ips.windows(2).find(|w| w[0] == w[1]) {
                return Err(format!("node {i} holds two entries at {}", w[0]));
            }
            for b in 0..table.bucket_count() {
                let mut subnets: Vec<u32> = table
                    .bucket_contacts(b)
                    .filter_map(|c| match c.addr() {
                        SocketAddr::V4(v4) => Some(u32::from(*v4.ip()) >> 8),
                        SocketAddr::V6(_) => None,
                    })
                    .collect();
                let len = subnets.len();
                subnets.sort_unstable();
                subnets.dedup();
                if subnets.len() != len {
                    return Err(format!("node {i}: bucket {b} holds two entries of one /24"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip_in_both_ranges_and_groups_share_an_ip() {
        for public in [false, true] {
            let scenario = Scenario {
                nodes: 5_000,
                shared_ips: Some(SharedIps { fraction: 0.3, max: 5 }),
                public_ips: public,
                ..Scenario::default()
            };
            let ips = Ips::new(&scenario);
            for i in 0..5_000 {
                assert_eq!(index_of(&ips.addr(i)), Some(i));
                assert_eq!(ips.addr(i).ip(), ips.addr(ips.host(i)).ip());
            }
            assert_eq!(index_of(&ips.addr(9_000_000)), Some(9_000_000), "beyond the population: alone");
        }
        assert_eq!(index_of(&"10.0.0.0:6881".parse().unwrap()), None);
        assert_eq!(index_of(&"12.1.2.3:6881".parse().unwrap()), None);
        assert_eq!(SharedIps::parse("0.1"), Ok(SharedIps { fraction: 0.1, max: 4 }));
        assert!(SharedIps::parse("0.1:1").is_err() && SharedIps::parse("2").is_err());
    }
}
