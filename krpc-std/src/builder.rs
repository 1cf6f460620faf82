//! [`Builder`]: bootstrap host names, seed and socket, for either mode.

use std::io::{self, ErrorKind};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::path::Path;

use krpc_core::{Config, SavedState};

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
    state: Option<SavedState>,
}

impl Builder {
    /// A builder for a node with this configuration.
    pub fn new(config: Config) -> Builder {
        Builder { config, seed: None, hosts: Vec::new(), state: None }
    }

    /// A fixed seed for the engine's randomness (node id, transaction ids), for reproducible
    /// runs. Without it the seed comes from the OS.
    pub fn seed(mut self, seed: [u8; 32]) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Restarts from a saved state ([`Krpc::save_state`]): the node keeps its id and starts
    /// with the saved nodes, each questionable until it answers
    /// ([`Endpoint::restore`](krpc_core::Endpoint::restore)). If the state holds nodes and
    /// no bootstrap node is given, the node rejoins through them at once (a background
    /// [`bootstrap`](Krpc::bootstrap)); with bootstrap nodes, call `bootstrap` as usual.
    pub fn state(mut self, state: SavedState) -> Builder {
        self.state = Some(state);
        self
    }

    /// Restarts from a state file written by [`save_state_file`](crate::save_state_file)
    /// (or [`Krpc::save_state_file`]), as [`state`](Self::state) does. The file is read
    /// here. No file: a fresh start. A file that cannot be read or is not a state (garbage,
    /// truncated, another format version): a fresh start too, with a warning-level
    /// `tracing` event; use [`load_state_file`](crate::load_state_file) to see the error
    /// yourself.
    pub fn state_file(mut self, path: impl AsRef<Path>) -> Builder {
        self.state = crate::state::load_or_warn(path.as_ref());
        self
    }

    /// Adds a bootstrap node as `host:port` (`router.bittorrent.com:6881`, `[::1]:6881`),
    /// resolved when the node starts; its addresses join `Config::bootstrap`. A host that
    /// does not resolve, or has no address the socket can reach (an IPv4 socket keeps only
    /// IPv4 addresses), is skipped with a warning-level `tracing` event as long as another
    /// one resolves: a list of routers where one is gone still works. When none does, the
    /// build fails with [`Error::Resolve`] for the first.
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
        let Builder { mut config, seed, hosts, state } = self;
        let v4 = socket.local_addr()?.is_ipv4();
        let mut first_error = None;
        let mut resolved_any = false;
        for host in &hosts {
            match resolve(host, v4) {
                Ok(addrs) => {
                    resolved_any = true;
                    for addr in addrs {
                        if !config.bootstrap.contains(&addr) {
                            config.bootstrap.push(addr);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "bootstrap host skipped");
                    first_error.get_or_insert(error);
                }
            }
        }
        if let (false, Some(error)) = (resolved_any, first_error) {
            return Err(error);
        }
        let seed = match seed {
            Some(seed) => seed,
            None => {
                let mut seed = [0; 32];
                getrandom::fill(&mut seed).map_err(io::Error::from)?;
                seed
            }
        };
        Driver::new(socket, config, seed, state.as_ref())
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
