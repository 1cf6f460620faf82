//! Which addresses may be queried.

use core::net::{IpAddr, SocketAddr};

use crate::wire::canonical_ip;

/// Which addresses learned from other nodes (`nodes`, `nodes6`) a lookup may query.
///
/// Addresses that can never be a DHT node (unspecified, broadcast, multicast, `0.0.0.0/8`,
/// port 0) are refused under every policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPolicy {
    /// Only globally routable addresses: loopback, private, link-local and shared
    /// (100.64/10) ranges are refused. Right for the public DHT, where such entries are
    /// either stale NAT leftovers or an attempt to make us scan someone's LAN.
    Public,
    /// Every address except the never-valid ones. Right for test swarms on loopback or a LAN.
    Any,
    /// `Any` when every bootstrap node is itself on a loopback or private address (or there
    /// are none), else `Public`. The default: test networks work out of the box and the
    /// public DHT is filtered.
    Auto,
}

/// Addresses that can never be a DHT node: no query is ever sent there, whatever the policy.
pub(crate) fn is_never_valid(addr: &SocketAddr) -> bool {
    if addr.port() == 0 {
        return true;
    }
    match canonical_ip(addr.ip()) {
        IpAddr::V4(ip) => ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.octets()[0] == 0,
        IpAddr::V6(ip) => ip.is_unspecified() || ip.is_multicast(),
    }
}

/// Loopback, private, link-local, shared (CGNAT), unique-local: reachable only nearby.
pub(crate) fn is_local(ip: IpAddr) -> bool {
    match canonical_ip(ip) {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || (o[0] == 100 && (o[1] & 0xc0) == 64)
        }
        IpAddr::V6(ip) => {
            let s = ip.segments();
            ip.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Resolves [`AddressPolicy::Auto`] against the bootstrap list.
pub(crate) fn effective_policy(policy: AddressPolicy, bootstrap: &[SocketAddr]) -> AddressPolicy {
    match policy {
        AddressPolicy::Auto if bootstrap.iter().all(|a| is_local(a.ip())) => AddressPolicy::Any,
        AddressPolicy::Auto => AddressPolicy::Public,
        p => p,
    }
}

/// May a lookup query this address, learned from another node?
pub(crate) fn may_query_learned(addr: &SocketAddr, policy: AddressPolicy) -> bool {
    !is_never_valid(addr) && (policy == AddressPolicy::Any || !is_local(addr.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn never_valid_addresses_are_refused_under_every_policy() {
        for bad in ["0.0.0.0:1", "0.1.2.3:1", "255.255.255.255:1", "224.0.0.1:1", "1.2.3.4:0", "[::]:1", "[ff02::1]:1"]
        {
            assert!(!may_query_learned(&a(bad), AddressPolicy::Any), "{bad}");
        }
        assert!(may_query_learned(&a("1.2.3.4:1"), AddressPolicy::Public));
    }

    #[test]
    fn local_addresses_depend_on_the_policy() {
        for local in
            ["127.0.0.1:1", "10.1.1.1:1", "192.168.0.1:1", "172.16.0.1:1", "100.64.0.1:1", "[::1]:1", "[fd00::1]:1"]
        {
            assert!(!may_query_learned(&a(local), AddressPolicy::Public), "{local}");
            assert!(may_query_learned(&a(local), AddressPolicy::Any), "{local}");
        }
    }

    #[test]
    fn auto_policy_follows_the_bootstrap_nodes() {
        assert_eq!(effective_policy(AddressPolicy::Auto, &[]), AddressPolicy::Any);
        assert_eq!(effective_policy(AddressPolicy::Auto, &[a("127.0.0.1:6881")]), AddressPolicy::Any);
        assert_eq!(effective_policy(AddressPolicy::Auto, &[a("127.0.0.1:1"), a("8.8.8.8:1")]), AddressPolicy::Public);
        assert_eq!(effective_policy(AddressPolicy::Public, &[]), AddressPolicy::Public);
    }
}
