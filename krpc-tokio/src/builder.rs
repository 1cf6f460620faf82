//! [`Builder`]: socket, seed and bootstrap host names.

use std::io;
use std::path::Path;

use krpc_core::{Config, Endpoint, Instant, SavedState};
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
    state: Option<SavedState>,
}

impl Builder {
    /// A builder for a node with this configuration.
    pub fn new(config: Config) -> Builder {
        Builder { config, seed: None, hosts: Vec::new(), state: None }
    }

    /// Seeds the engine's RNG (node id, transaction ids) for reproducible runs; by default
    /// the seed comes from the operating system's RNG.
    pub fn seed(mut self, seed: [u8; 32]) -> Builder {
        self.seed = Some(seed);
        self
    }

    /// Restarts from a saved state ([`Rpc::save_state`]): the node keeps its id and starts
    /// with the saved nodes, each questionable until it answers
    /// ([`Endpoint::restore`](krpc_core::Endpoint::restore)). If the state holds nodes and
    /// no bootstrap node is given, the node rejoins through them at once (a background
    /// [`bootstrap`](Rpc::bootstrap)); with bootstrap nodes, call `bootstrap` as usual.
    pub fn state(mut self, state: SavedState) -> Builder {
        self.state = Some(state);
        self
    }

    /// Restarts from a state file written by [`save_state_file`](crate::save_state_file)
    /// (or [`Rpc::save_state_file`]), as [`state`](Self::state) does. The file is read
    /// here. No file: a fresh start. A file that cannot be read or is not a state (garbage,
    /// truncated, another format version): a fresh start too, with a warning-level
    /// `tracing` event; use [`load_state_file`](crate::load_state_file) to see the error
    /// yourself.
    pub fn state_file(mut self, path: impl AsRef<Path>) -> Builder {
        let path = path.as_ref();
        self.state = match crate::load_state_file(path) {
            Ok(state) => Some(state),
            Err(error) if error.is_missing() => None,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "state file ignored; starting fresh");
                None
            }
        };
        self
    }

    /// Adds a bootstrap node as `host:port` (`router.bittorrent.com:6881`, `[::1]:6881`).
    /// Every address it resolves to joins `Config::bootstrap`. A name that does not resolve
    /// is skipped with a warning-level `tracing` event as long as another one resolves (a
    /// list of routers where one is gone still works); when none does, the build fails with
    /// the first resolver error. Nothing is resolved unless given here: pass
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
        let mut first_error = None;
        let mut resolved_any = false;
        for host in self.hosts {
            let resolved = lookup_host(host.as_str()).await.map(|addrs| addrs.collect::<Vec<_>>());
            let none = || io::Error::new(io::ErrorKind::NotFound, "no address");
            let addrs = resolved
                .and_then(|addrs| if addrs.is_empty() { Err(none()) } else { Ok(addrs) })
                .map_err(|error| io::Error::new(error.kind(), format!("resolving bootstrap host {host}: {error}")));
            let addrs = match addrs {
                Ok(addrs) => addrs,
                Err(error) => {
                    tracing::warn!(%error, "bootstrap host skipped");
                    first_error.get_or_insert(error);
                    continue;
                }
            };
            resolved_any = true;
            tracing::debug!(%host, ?addrs, "bootstrap host resolved");
            for addr in addrs {
                if !self.config.bootstrap.contains(&addr) {
                    self.config.bootstrap.push(addr);
                }
            }
        }
        if let (false, Some(error)) = (resolved_any, first_error) {
            return Err(error);
        }
        let mut seed = [0; 32];
        match self.seed {
            Some(given) => seed = given,
            None => getrandom::fill(&mut seed).map_err(io::Error::other)?,
        }
        let origin = tokio::time::Instant::now();
        let no_hosts = self.config.bootstrap.is_empty();
        let endpoint = match &self.state {
            Some(state) => Endpoint::restore(self.config, seed, Instant::ZERO, state),
            None => Endpoint::new(self.config, seed, Instant::ZERO),
        };
        let mut endpoint = endpoint.map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error))?;
        // A restarted node with no bootstrap host rejoins through the nodes it saved, at
        // once: nobody else would start it. With hosts, the application bootstraps as usual.
        // The task sends the lookup's first queries as it starts; its events are nobody's.
        let restored: usize = endpoint.routing_tables().iter().map(|table| table.len()).sum();
        if no_hosts && restored > 0 {
            match endpoint.bootstrap(Instant::ZERO) {
                Ok(_) => tracing::debug!(restored, "rejoining through the saved nodes"),
                Err(error) => tracing::debug!(%error, "cannot rejoin through the saved nodes"),
            }
        }
        Ok(Rpc::start(endpoint, socket, local_addr, origin))
    }
}
