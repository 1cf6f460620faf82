//! [`Builder`]: socket, seed and bootstrap host names.

use std::io;

use krpc_core::{Config, Endpoint, Instant};
use tokio::net::{ToSocketAddrs, UdpSocket, lookup_host};

use crate::Rpc;

impl Rpc {
    /// Binds a UDP socket to `addr` and starts a node on it, seeded from the OS RNG (k-rpc's
    /// `krpc(opts)` + `bind`). Bootstrap host names, a fixed seed, your own socket:
    /// [`Rpc::builder`].
    pub async fn bind(addr: impl ToSocketAddrs, config: Config) -> io::Result<Rpc> {
        Builder::new(config).bind(addr).await
    }

    /// A [`Builder`] for what `bind` does not take.
    pub fn builder(config: Config) -> Builder {
        Builder::new(config)
    }
}

/// Builds an [`Rpc`]: resolves bootstrap host names, draws the seed, takes or binds the
/// socket and starts the driver task on the current tokio runtime.
///
/// Every failure is an [`io::Error`]: the socket's (address in use, ...), the resolver's
/// (with the host name in its message), the OS RNG's, or an invalid [`Config`]
/// (`InvalidInput`, with the [`ConfigError`](krpc_core::ConfigError) inside).
///
/// # Example
/// Bring your own socket (k-rpc's `krpcSocket`), bootstrap from a host name, fixed seed:
/// ```
/// use krpc_tokio::{Config, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let router = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
/// let rpc = Rpc::builder(Config::default())
///     .bootstrap_host(format!("localhost:{}", router.local_addr().port()))
///     .seed([7; 32])
///     .socket(socket)
///     .await?;
/// let bootstrap = rpc.inspect(|endpoint| endpoint.config().bootstrap.clone()).await.unwrap();
/// assert!(bootstrap.iter().any(|addr| addr.port() == router.local_addr().port()));
/// # Ok(())
/// # }
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

    /// Seeds the engine's RNG (node id, transaction ids) for reproducible runs; by default
    /// the seed comes from the operating system's RNG.
    pub fn seed(mut self, seed: [u8; 32]) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Adds a bootstrap node as `host:port` (`router.bittorrent.com:6881`, `[::1]:6881`).
    /// Every address it resolves to joins `Config::bootstrap`; a name that does not resolve
    /// fails the build. Nothing is resolved unless given here: pass
    /// [`DEFAULT_BOOTSTRAP`](krpc_core::DEFAULT_BOOTSTRAP) to [`bootstrap_hosts`](Self::bootstrap_hosts)
    /// for the public DHT.
    pub fn bootstrap_host(mut self, host: impl Into<String>) -> Builder {
        self.hosts.push(host.into());
        self
    }

    /// Adds several bootstrap hosts (see [`bootstrap_host`](Self::bootstrap_host)).
    pub fn bootstrap_hosts(self, hosts: impl IntoIterator<Item = impl Into<String>>) -> Builder {
        hosts.into_iter().fold(self, Builder::bootstrap_host)
    }

    /// Binds a UDP socket to `addr` and starts the node.
    pub async fn bind(self, addr: impl ToSocketAddrs) -> io::Result<Rpc> {
        self.socket(UdpSocket::bind(addr).await?).await
    }

    /// Starts the node on an already bound standard socket (switched to non-blocking).
    pub async fn std_socket(self, socket: std::net::UdpSocket) -> io::Result<Rpc> {
        socket.set_nonblocking(true)?;
        self.socket(UdpSocket::from_std(socket)?).await
    }

    /// Starts the node on an already bound tokio socket.
    pub async fn socket(mut self, socket: UdpSocket) -> io::Result<Rpc> {
        let local_addr = socket.local_addr()?;
        for host in self.hosts {
            let resolved = lookup_host(host.as_str()).await.map(|addrs| addrs.collect::<Vec<_>>());
            let none = || io::Error::new(io::ErrorKind::NotFound, "no address");
            let addrs = resolved
                .and_then(|addrs| if addrs.is_empty() { Err(none()) } else { Ok(addrs) })
                .map_err(|error| io::Error::new(error.kind(), format!("resolving bootstrap host {host}: {error}")))?;
            tracing::debug!(%host, ?addrs, "bootstrap host resolved");
            for addr in addrs {
                if !self.config.bootstrap.contains(&addr) {
                    self.config.bootstrap.push(addr);
                }
            }
        }
        let mut seed = [0; 32];
        match self.seed {
            Some(given) => seed = given,
            None => getrandom::fill(&mut seed).map_err(io::Error::other)?,
        }
        let origin = tokio::time::Instant::now();
        let endpoint = Endpoint::new(self.config, seed, Instant::ZERO)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        Ok(Rpc::start(endpoint, socket, local_addr, origin))
    }
}
