//! [`Builder`]: configuration, socket, bootstrap resolution and seed, for either mode.

use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};

use krpc_core::{Config, DEFAULT_BOOTSTRAP};

use crate::{Driver, Error, Krpc};

/// Sets up a driver: [`spawn`](Self::spawn) for a [`Krpc`] handle with its own thread,
/// [`driver`](Self::driver) for a [`Driver`] to step yourself.
///
/// Defaults: [`Config::default`], a socket bound to `0.0.0.0:0`, the three BitTorrent routers
/// of [`DEFAULT_BOOTSTRAP`] as bootstrap hosts, a seed from the OS's random source.
///
/// ```
/// use krpc_std::{Builder, Config};
///
/// let config = Config { k: 8, ..Config::default() };
/// let krpc = Builder::new().config(config).bind(([127, 0, 0, 1], 0)).bootstrap(&[]).spawn()?;
/// assert!(krpc.local_addr().ip().is_loopback());
/// # Ok::<(), krpc_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Builder {
    config: Config,
    bind: SocketAddr,
    socket: Option<UdpSocket>,
    bootstrap: Vec<String>,
    seed: Option<[u8; 32]>,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder::new()
    }
}

impl Builder {
    /// A builder with the defaults above.
    pub fn new() -> Builder {
        Builder {
            config: Config::default(),
            bind: (Ipv4Addr::UNSPECIFIED, 0).into(),
            socket: None,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|h| h.to_string()).collect(),
            seed: None,
        }
    }

    /// The engine's configuration. Addresses already in `config.bootstrap` are kept; the
    /// resolved [`bootstrap`](Self::bootstrap) hosts are added to them.
    pub fn config(mut self, config: Config) -> Builder {
        self.config = config;
        self
    }

    /// The address to bind the socket to (port 0: any free port).
    pub fn bind(mut self, addr: impl Into<SocketAddr>) -> Builder {
        self.bind = addr.into();
        self
    }

    /// Uses an already bound socket instead of binding one (k-rpc's `krpcSocket`). The driver
    /// takes it over: it sets its blocking mode and read timeout.
    pub fn socket(mut self, socket: UdpSocket) -> Builder {
        self.socket = Some(socket);
        self
    }

    /// Bootstrap hosts as `host:port` or `[v6]:port`, resolved by [`spawn`](Self::spawn) and
    /// [`driver`](Self::driver); replaces the default routers (`&[]`: none). An IPv4 socket
    /// keeps only the IPv4 addresses a host resolves to.
    pub fn bootstrap(mut self, hosts: &[&str]) -> Builder {
        self.bootstrap = hosts.iter().map(|h| h.to_string()).collect();
        self
    }

    /// A fixed seed for the engine's randomness (node id, transaction ids), for reproducible
    /// runs. Without it the seed comes from the OS.
    pub fn seed(mut self, seed: [u8; 32]) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Binds the socket (unless one was given), resolves the bootstrap hosts and builds the
    /// engine, for a caller-driven loop.
    pub fn driver(self) -> Result<Driver, Error> {
        let Builder { mut config, bind, socket, bootstrap, seed } = self;
        let socket = match socket {
            Some(socket) => socket,
            None => bind_socket(bind)?,
        };
        let v4 = socket.local_addr()?.is_ipv4();
        for host in &bootstrap {
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

    /// As [`driver`](Self::driver), then starts the driver's thread.
    pub fn spawn(self) -> Result<Krpc, Error> {
        Krpc::start(self.driver()?)
    }
}

#[allow(clippy::disallowed_methods)] // the driver, not the engine, opens sockets
fn bind_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
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
