//! NATs in the simulated network: a share of the nodes sit behind an address-restricted NAT.
//!
//! # Model
//! A NATed node's datagrams leave as usual (the mapping keeps the node's own address and
//! port). Inbound, the NAT lets a datagram in
//! only from an IP the node sent to within [`MAPPING_LIFETIME`] (RFC 4787's
//! "address-dependent filtering", what most home routers do): replies come back, so do
//! queries from the nodes it just queried, and nothing else. A node's own datagrams refresh
//! the permission for their destination.
//!
//! A NAT belongs to an IP ([`ips`](super::ips)): the nodes that share an IP are all behind it
//! or none is, whatever their own draws say (the first node's draw decides), and a permission
//! covers the remote's IP, whatever its port. Each node keeps its own permissions, as each
//! socket behind a real NAT has its own mapping.
//!
//! The lifetime is 3 minutes, Linux's for an answered UDP flow (`nf_conntrack_udp_timeout_stream`
//! 180 s; RFC 4787 asks for at least 2 minutes), below the engine's 10-minute memory of the
//! addresses it sent to: no query that came through a permission counts as unsolicited.
//!
//! The seeds of a join build are never NATed (bootstrap routers are public), nor are nodes
//! that join later (churn). Membership comes from its own random stream, so a scenario without
//! NATs draws exactly what it drew before.

use std::collections::HashMap;
use std::time::Duration;

use krpc_core::{Config, Instant};
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

use super::ips::Ips;
use super::link::chance;
use super::{Build, Scenario};

/// How long a NAT keeps letting in datagrams from an IP after the node last sent to it.
pub const MAPPING_LIFETIME: Duration = Duration::from_secs(180);

/// Who is behind a NAT, and what each NAT lets in.
#[derive(Debug, Default)]
pub struct Nats {
    behind: Vec<bool>,
    /// Per NATed node: the IPs it sent to (as [`Ips::host`](super::ips::Ips::host) indices),
    /// and when it last did.
    permissions: HashMap<u32, HashMap<u32, Instant>>,
    /// Inbound datagrams the NATs dropped.
    pub dropped: u64,
}

impl Nats {
    /// Draws which of the scenario's nodes are NATed (`scenario.nat` of the non-seeds; one
    /// draw per IP).
    pub fn new(scenario: &Scenario, ips: &Ips) -> Nats {
        if scenario.nat <= 0.0 {
            return Nats::default();
        }
        let seeds = match scenario.build {
            Build::Join { seeds, .. } => seeds.max(1),
            Build::Preseed => 0,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(scenario.seed ^ 0x4a70_0000_0000_0004);
        let mut behind: Vec<bool> = (0..scenario.nodes).map(|i| chance(&mut rng, scenario.nat) && i >= seeds).collect();
        for i in 0..behind.len() {
            behind[i] = behind[ips.host(i as u32) as usize];
        }
        Nats { behind, ..Nats::default() }
    }

    /// Whether node `i` is behind a NAT.
    pub fn is_behind(&self, i: u32) -> bool {
        self.behind.get(i as usize).copied().unwrap_or(false)
    }

    /// How many nodes are.
    pub fn count(&self) -> usize {
        self.behind.iter().filter(|b| **b).count()
    }

    /// The engine configuration of node `i`: a seed (bootstrap router) is a full node even
    /// when the scenario's nodes are adaptive.
    pub fn configure(&self, i: u32, scenario: &Scenario, config: &mut Config) {
        if let Build::Join { seeds, .. } = scenario.build {
            if (i as usize) < seeds.max(1) {
                config.adaptive_read_only = false;
            }
        }
    }

    /// Node `from` sent a datagram to IP `to` (a host index): its NAT lets `to` in for a
    /// while.
    pub fn sent(&mut self, from: u32, to: u32, now: Instant) {
        if !self.is_behind(from) {
            return;
        }
        let table = self.permissions.entry(from).or_default();
        table.insert(to, now);
        // Forget expired permissions now and then, so that memory follows the live ones.
        if table.len() > 256 && table.len().is_power_of_two() {
            table.retain(|_, at| now.saturating_duration_since(*at) < MAPPING_LIFETIME);
        }
    }

    /// Does node `to`'s NAT let in a datagram from IP `from` (a host index)?
    pub fn admits(&mut self, to: u32, from: u32, now: Instant) -> bool {
        if !self.is_behind(to) {
            return true;
        }
        let open = self
            .permissions
            .get(&to)
            .and_then(|t| t.get(&from))
            .is_some_and(|at| now.saturating_duration_since(*at) < MAPPING_LIFETIME);
        if !open {
            self.dropped += 1;
        }
        open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nat_admits_only_the_ips_its_node_sent_to_within_the_lifetime() {
        let scenario = Scenario { nodes: 1_000, nat: 0.3, ..Scenario::default() };
        let mut nats = Nats::new(&scenario, &Ips::new(&scenario));
        let share = nats.count() as f64 / 1_000.0;
        assert!((0.25..0.35).contains(&share), "{share}");
        let natted = (0..1_000).find(|&i| nats.is_behind(i)).unwrap();
        let public = (0..1_000).find(|&i| !nats.is_behind(i)).unwrap();
        let t0 = Instant::from_millis(1_000);
        assert!(nats.admits(public, natted, t0), "no NAT in front of a public node");
        assert!(!nats.admits(natted, public, t0), "unsolicited");
        nats.sent(natted, public, t0);
        assert!(nats.admits(natted, public, t0 + (MAPPING_LIFETIME - Duration::from_millis(1))));
        assert!(!nats.admits(natted, public, t0 + MAPPING_LIFETIME), "the mapping expired");
        assert_eq!(nats.dropped, 2);
    }
}
