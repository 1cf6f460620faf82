//! [`Builder`]: bootstrap host names, seed and socket, for either mode.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};

use krpc_core::Config;

use crate::{Driver, Error, Krpc};

impl Krpc {
    /// Binds a UDP socket to `addr` and starts a node on it, seeded from the OS RNG (k-rpc's
    /// `krpc(opts)` + `bind`). Bootstrap host names, a fixed seed, your own socket:
    /// [`Krpc::builder`].
    pub fn bind(addr: impl ToSocketAddrs, config: Config) -> Result<Krpc, Error> {
        Builder::new(config).bind(addr)
    }

    /// A [`Builder`] for what `bind` does not take.
    pub fn builder(config: Config) -> Builder {
        Builder::new(config)
    }
}

/// Builds a driver: resolves bootstrap host names, draws the seed, takes or binds the socket,
/// then either starts the driver's thread ([`bind`](Self::bind), [`socket`](Self::socket): a
/// [`Krpc`] handle) or hands the [`Driver`] to step yourself
/// ([`bind_driver`](Self::bind_driver), [`socket_driver`](Self::socket_driver)).
///
/// The same shape as krpc-tokio's builder: `Builder::new(config)` (or `Krpc::builder`),
/// `seed`, `bootstrap_host(s)`, then a socket. Nothing is resolved unless given: the
/// bootstrap nodes are `config.bootstrap` plus the hosts named here; pass
/// [`DEFAULT_BOOTSTRAP`](krpc_core::DEFAULT_BOOTSTRAP) to
/// [`bootstrap_hosts`](Self::bootstrap_hosts) for the public DHT. The seed comes from the OS's
/// random source unless given.
///
/// ```
/// use krpc_std::{Builder, Config};
///
/// let config = Config { k: 8, ..Config::default() };
/// let krpc = Builder::new(config).seed([7; 32]).bind("127.0.0.1:0")?;
/// assert!(krpc.local_addr().ip().is_loopback());
/// # Ok::<(), krpc_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Builder {
    config: Config,
    seed: Option<[u8; 32]>,
    hosts: Vec<String>,
}

impl Builder {
    /// A builder for a node with this configuration.
    pub fn new(config: Config) -> Builder {
        Builder { config, seed: None, hosts: Vec::new() }
    }

    /// A fixed seed for the engine's randomness (node id, transaction ids), for reproducible
    /// runs. Without it the seed comes from the OS.
    pub fn seed(mut self, seed: [u8; 32]) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Adds a bootstrap node as `host:port` (`router.bittorrent.com:6881`, `[::1]:6881`),
    /// resolved when the node starts; its addresses join `Config::bootstrap`. A host that
    /// does not resolve fails the build, and so does one with no address the socket can
    /// reach (an IPv4 socket keeps only IPv4 addresses).
    pub fn bootstrap_host(mut self, host: impl Into<String>) -> Builder {
        self.hosts.push(host.into());
        self
    }

    /// Adds several bootstrap hosts (see [`bootstrap_host`](Self::bootstrap_host)).
    pub fn bootstrap_hosts(self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Builder {
        hosts.into_iter().fold(self, Builder::bootstrap_host)
    }

    /// Binds a UDP socket to `addr` and starts the node on its own thread.
    pub fn bind(self, addr: impl ToSocketAddrs) -> Result<Krpc, Error> {
        Krpc::start(self.bind_driver(addr)?)
    }

    /// Starts the node on its own thread, on an already bound socket (k-rpc's `krpcSocket`).
    /// The driver takes it over: it sets its blocking mode and read timeout.
    pub fn socket(self, socket: UdpSocket) -> Result<Krpc, Error> {
        Krpc::start(self.socket_driver(socket)?)
    }

    /// Binds a UDP socket to `addr` and returns the [`Driver`], for a caller-driven loop.
    pub fn bind_driver(self, addr: impl ToSocketAddrs) -> Result<Driver, Error> {
        self.socket_driver(bind_socket(addr)?)
    }

    /// The [`Driver`] on an already bound socket, for a caller-driven loop.
    pub fn socket_driver(self, socket: UdpSocket) -> Result<Driver, Error> {
        let Builder { mut config, seed, hosts } = self;
        let v4 = socket.local_addr()?.is_ipv4();
        for host in &hosts {
            for addr in resolve(host, v4)? {
                if !config.bootstrap.contains(&addr) {
                    config.bootstrap.push(addr);
                }
            }
        }
        let seed = match seed {
            Some(seed) => seed,
            None => {
                let mut seed = [0; 32];
                getrandom::fill(&mut seed).map_err(io::Error::from)?;
                seed
            }
        };
        Driver::new(socket, config, seed)
    }
}

#[allow(clippy::disallowed_methods)] // the driver, not the engine, opens sockets
fn bind_socket(addr: impl ToSocketAddrs) -> io::Result<UdpSocket> {
    UdpSocket::bind(addr)
}

fn resolve(host: &str, v4_only: bool) -> Result<Vec<SocketAddr>, Error> {
    let error = |source| Error::Resolve { host: host.to_string(), source };
    let addrs: Vec<SocketAddr> = host.to_socket_addrs().map_err(error)?.filter(|a| a.is_ipv4() || !v4_only).collect();
    if addrs.is_empty() {
        return Err(error(io::Error::new(ErrorKind::NotFound, "no address this socket can reach")));
    }
    Ok(addrs)
}
