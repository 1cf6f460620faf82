//! [`Rpc`]: the cloneable handle through which the application talks to the driver task.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use krpc_core::dht::MutableItem;
use krpc_core::dht::bep44::ed25519_dalek::SigningKey;
use krpc_core::routing::RoutingTable;
use krpc_core::{
    CrawlConfig, Endpoint, Event, LookupOutcome, NodeId, NodeInfo, OpId, Peer, PutOutcome, Query, Reply, SavedState,
};
use krpc_std::{ItemSummary, Scrape, put_outcome};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant as TokioInstant;
use tracing::{Span, debug_span};

use crate::LookupSummary;
use crate::command::{Command, Op, Request};
use crate::stream::{Crawl, GetMutable, GetPeers, Lookup, QueryAll, Replies, StopOnDrop, Subscription, query_all_end};
use crate::{Error, SHUT_DOWN, task};

#[derive(Debug)]
struct Shared {
    commands: mpsc::UnboundedSender<Command>,
    closed: watch::Receiver<()>,
    local_addr: SocketAddr,
    id: watch::Receiver<NodeId>,
    /// How many items a subscription holds (`max_queued_events`).
    capacity: usize,
    next_key: AtomicU64,
}

/// A KRPC node on a UDP socket: a cheap, cloneable handle (`Send + Sync`) to the one task
/// that owns the socket and the [`Endpoint`].
///
/// Every method sends a command to that task; results come back over channels, so no task
/// is spawned per query. Dropping the last `Rpc` (streams and [`Request`]s do not count)
/// stops the task like [`shutdown`](Self::shutdown).
///
/// # Example
/// ```
/// use krpc_tokio::{Config, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let a = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let b = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let reply = a.ping(b.local_addr()).await.unwrap(); // pings are answered by the engine
/// assert_eq!(reply.id(), Some(b.id()));
/// assert!(a.routing_table().await.unwrap().contains(&b.id()));
/// a.shutdown().await;
/// assert!(a.ping(b.local_addr()).await.unwrap_err().is_shut_down());
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Rpc {
    shared: Arc<Shared>,
}

fn method(query: &Query) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(query.method())
}

impl Rpc {
    /// Starts the driver task on the current runtime (for the [`Builder`](crate::Builder)).
    pub(crate) fn start(endpoint: Endpoint, socket: UdpSocket, local_addr: SocketAddr, origin: TokioInstant) -> Rpc {
        let capacity = endpoint.config().max_queued_events;
        let task::Started { commands, closed, id } = task::spawn(endpoint, socket, local_addr, origin);
        let next_key = AtomicU64::new(0);
        Rpc { shared: Arc::new(Shared { commands, closed, local_addr, id, capacity, next_key }) }
    }

    /// Our node id. With the node layer ([`Config::dht`](krpc_core::Config::dht)) it may
    /// change once, to an id bound to our public address (BEP 42); [`events`](Self::events)
    /// then carries [`Event::IdChanged`].
    pub fn id(&self) -> NodeId {
        *self.shared.id.borrow()
    }

    /// The socket's local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.local_addr
    }

    fn send(&self, command: Command) -> Result<(), Error> {
        self.shared.commands.send(command).map_err(|_| SHUT_DOWN)
    }

    /// Sends the command `make` builds around a reply channel, and waits for the reply.
    async fn call<R>(&self, make: impl FnOnce(oneshot::Sender<R>) -> Command) -> Result<R, Error> {
        let (sender, receiver) = oneshot::channel();
        self.send(make(sender))?;
        receiver.await.map_err(|_| SHUT_DOWN)
    }

    /// Starts an engine operation whose events arrive on the returned channel; the guard
    /// stops it when dropped.
    async fn op(&self, span: Span, op: Op) -> Result<(mpsc::UnboundedReceiver<Event>, StopOnDrop), Error> {
        let (receiver, guard, _) = self.op_with_id(span, op).await?;
        Ok((receiver, guard))
    }

    /// [`op`](Self::op), with the engine's id of the operation.
    async fn op_with_id(
        &self,
        span: Span,
        op: Op,
    ) -> Result<(mpsc::UnboundedReceiver<Event>, StopOnDrop, OpId), Error> {
        let (events, receiver) = mpsc::unbounded_channel();
        let key = self.shared.next_key.fetch_add(1, Ordering::Relaxed);
        let guard = StopOnDrop::new(key, self.shared.commands.downgrade());
        let id = self.call(|started| Command::Start { key, op, span, events, started }).await??;
        Ok((receiver, guard, id))
    }

    /// Sends `query` to one peer (k-rpc `query`). Dropping the future cancels the query.
    pub async fn query(&self, peer: impl Into<Peer>, query: Query) -> Result<Reply, Error> {
        let peer = peer.into();
        let span = debug_span!("query", to = %peer.addr, method = %method(&query));
        let (mut events, mut guard) = self.op(span, Op::Query { peer, query }).await?;
        let event = events.recv().await;
        guard.disarm();
        match event {
            Some(Event::QueryDone { result, .. }) => result.map_err(Error::Query),
            _ => Err(SHUT_DOWN),
        }
    }

    /// Pings `addr`.
    pub async fn ping(&self, addr: SocketAddr) -> Result<Reply, Error> {
        self.query(addr, Query::ping()).await
    }

    /// Sends `query` to every peer, each with its own token (k-rpc `queryAll`). The stream
    /// yields each successful reply; [`Replies::end`] then holds the count.
    pub async fn query_all(&self, peers: impl IntoIterator<Item = Peer>, query: Query) -> Result<QueryAll, Error> {
        let peers: Vec<Peer> = peers.into_iter().collect();
        let span = debug_span!("query_all", peers = peers.len(), method = %method(&query));
        let (events, guard) = self.op(span, Op::QueryAll { peers, query }).await?;
        Ok(Replies::new(events, guard, query_all_end))
    }

    /// Starts an iterative lookup toward `target`, sending `query` to each node visited
    /// (k-rpc `closest`). The stream yields each reply; [`Replies::end`] then holds the
    /// [`LookupSummary`]. Dropping the stream stops the lookup.
    pub async fn closest(&self, target: NodeId, query: Query) -> Result<Lookup, Error> {
        let span = debug_span!("closest", %target, method = %method(&query));
        let (events, guard) = self.op(span, Op::Closest { target, query }).await?;
        Ok(Replies::new(events, guard, LookupSummary::from_event))
    }

    /// A background lookup that only fills the routing table (k-rpc `populate`); resolves
    /// when it ends (with [`QueryError::ShutDown`](crate::QueryError::ShutDown) if the
    /// driver stopped first), and dropping the future stops it. To join the network, as k-rpc's
    /// README recommends: `rpc.populate(rpc.id(), Query::find_node(&rpc.id()))`.
    pub async fn populate(&self, target: NodeId, query: Query) -> Result<LookupSummary, Error> {
        let span = debug_span!("populate", %target, method = %method(&query));
        let (events, guard) = self.op(span, Op::Populate { target, query }).await?;
        let summary = Replies::new(events, guard, LookupSummary::from_event).finish().await;
        if summary.outcome == LookupOutcome::ShutDown { Err(SHUT_DOWN) } else { Ok(summary) }
    }

    /// Joins the network (BEP 5): a background lookup of our own id with `find_node`, the
    /// same as `populate(id, find_node(id))`. Resolves when it ends; dropping the future
    /// stops it.
    pub async fn bootstrap(&self) -> Result<LookupSummary, Error> {
        let span = debug_span!("bootstrap");
        let (events, guard) = self.op(span, Op::Bootstrap).await?;
        let summary = Replies::new(events, guard, LookupSummary::from_event).finish().await;
        if summary.outcome == LookupOutcome::ShutDown { Err(SHUT_DOWN) } else { Ok(summary) }
    }

    /// Looks for the nodes closest to `target` with `find_node`: the stream yields each
    /// reply; [`Replies::end`] then holds the [`LookupSummary`], whose `closest` are the
    /// nodes found, nearest first. Dropping the stream stops the lookup.
    pub async fn find_node(&self, target: NodeId) -> Result<Lookup, Error> {
        let span = debug_span!("find_node", %target);
        let (events, guard) = self.op(span, Op::FindNode(target)).await?;
        Ok(Replies::new(events, guard, LookupSummary::from_event))
    }

    /// Looks up peers for `info_hash` (BEP 5 `get_peers`): the stream yields every peer
    /// address the nodes on the way hold, each once; [`GetPeers::end`] then holds the
    /// [`LookupSummary`] with the closest nodes and their write tokens. Dropping the stream
    /// stops the lookup. Any node may ask; answering other nodes' `get_peers` takes the node
    /// layer ([`Config::dht`](krpc_core::Config::dht)).
    pub async fn get_peers(&self, info_hash: NodeId) -> Result<GetPeers, Error> {
        let span = debug_span!("get_peers", %info_hash);
        let (events, guard) = self.op(span, Op::GetPeers(info_hash)).await?;
        Ok(GetPeers::new(events, guard))
    }

    /// Announces that we have `info_hash` on `port` (`None`: the port our datagrams leave
    /// from, BEP 5's `implied_port`); `seed` marks us a seed (BEP 33). The engine looks the
    /// info hash up, then sends `announce_peer` to the closest nodes that gave a token.
    /// Resolves with the number of nodes that stored us; [`QueryError::NoNodes`](crate::QueryError::NoNodes)
    /// when no node gave a token, [`QueryError::AllFailed`](crate::QueryError::AllFailed)
    /// when none accepted. Dropping the future stops the lookup phase; `announce_peer`
    /// queries already sent run to their end.
    pub async fn announce(&self, info_hash: NodeId, port: Option<u16>, seed: bool) -> Result<usize, Error> {
        let span = debug_span!("announce", %info_hash, ?port, seed);
        let (mut events, mut guard) = self.op(span, Op::Announce { info_hash, port, seed }).await?;
        loop {
            match events.recv().await {
                Some(Event::Peers { .. }) => {}
                Some(Event::AnnounceDone { result, .. }) => {
                    guard.disarm();
                    return result.map_err(Error::Query);
                }
                // The engine registers the announce after its lookup has started; a lookup
                // with no node to ask ends at once, before that, and is reported as a plain
                // lookup. Nothing was asked, so nothing could store us.
                Some(Event::LookupDone { .. }) => {
                    guard.disarm();
                    return Err(Error::Query(krpc_core::QueryError::NoNodes));
                }
                _ => return Err(SHUT_DOWN),
            }
        }
    }

    /// Estimates the swarm of `info_hash` (BEP 33 scrape): a `get_peers` lookup with
    /// `scrape=1` that unites the seed and peer bloom filters of every node that answers with
    /// them. Resolves when the lookup ends; dropping the future stops it.
    pub async fn scrape(&self, info_hash: NodeId) -> Result<Scrape, Error> {
        let span = debug_span!("scrape", %info_hash);
        let (mut events, mut guard) = self.op(span, Op::Scrape(info_hash)).await?;
        let event = events.recv().await;
        guard.disarm();
        Scrape::from_event(event).map_err(Error::Query)
    }

    /// Crawls the DHT for the info-hashes its nodes store (BEP 51): `sample_infohashes` to
    /// nodes spread over the id space, each asked again only after the `interval` it gave,
    /// at most `config.rate` queries a second. The stream yields each info-hash once, as
    /// nodes answer; [`Crawl::stats`] counts nodes visited and queries. It ends when
    /// `config.max_info_hashes` have been found or no node is left to ask, which on a live DHT
    /// is never: [`Crawl::stop`] it, or drop it. Refused ([`Error::Refused`]) for a zero cap,
    /// rate or concurrency; [`QueryError::NoNodes`](crate::QueryError::NoNodes) when the node
    /// knows no node to start from.
    pub async fn crawl(&self, config: CrawlConfig) -> Result<Crawl, Error> {
        let span = debug_span!("crawl", rate = config.rate, max = config.max_info_hashes);
        let (events, guard, id) = self.op_with_id(span, Op::Crawl(config)).await?;
        Ok(Crawl::new(events, guard, id, self.shared.commands.downgrade()))
    }

    /// Stores an immutable item (BEP 44): `value` is bencoded (the string `hello` is
    /// `b"5:hello"`), at most 1000 bytes. The engine looks up SHA-1(`value`), then sends `put`
    /// to the closest nodes that gave a write token. Resolves with what they said:
    /// [`PutOutcome::stored`] counts the nodes that stored it, [`PutOutcome::errors`] lists
    /// each refusal. [`QueryError::NoNodes`](crate::QueryError::NoNodes) when no node gave a
    /// token; an invalid value is [`Error::Refused`] before anything is sent. Dropping the
    /// future stops the lookup phase; `put` queries already sent run to their end.
    ///
    /// # Example
    /// ```
    /// use krpc_tokio::{Config, Rpc, immutable_target};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await?;
    /// let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    /// let (a, b) = (Rpc::bind("127.0.0.1:0", config.clone()).await?, Rpc::bind("127.0.0.1:0", config).await?);
    /// let outcome = a.put_immutable(b"5:hello").await?;
    /// assert!(outcome.stored >= 1); // the seed, at least
    /// assert_eq!(outcome.target, immutable_target(b"5:hello"));
    /// assert_eq!(b.get_immutable(outcome.target).await?.as_deref(), Some(&b"5:hello"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_immutable(&self, value: impl AsRef<[u8]>) -> Result<PutOutcome, Error> {
        let value = value.as_ref().to_vec();
        let span = debug_span!("put_immutable", len = value.len());
        self.put(span, Op::PutImmutable(value)).await
    }

    /// Stores a signed mutable item (BEP 44; sign it with [`MutableItem::sign`]). With `cas`,
    /// nodes holding another `seq` refuse it with 301. Resolves `Ok` whenever some node
    /// answered: a node holding a higher `seq` refuses with 302, listed in
    /// [`PutOutcome::errors`] with its address; check [`PutOutcome::stored`]. Putting the same
    /// item again republishes it (no private key needed).
    pub async fn put_mutable(&self, item: MutableItem, cas: Option<i64>) -> Result<PutOutcome, Error> {
        let span = debug_span!("put_mutable", target = %item.target(), seq = item.seq, ?cas);
        self.put(span, Op::PutMutable { item, cas }).await
    }

    /// Read-modify-write of a mutable item (BEP 44): reads the highest `seq` on the nodes,
    /// signs `value` with `seq + 1` (1 if none was found) and puts it with `cas` = the `seq`
    /// read, so that a concurrent writer makes it fail with 301 instead of being overwritten.
    /// [`PutOutcome::seq`] is the `seq` stored.
    pub async fn put_mutable_next(
        &self,
        key: &SigningKey,
        salt: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<PutOutcome, Error> {
        let (salt, value) = (salt.as_ref().to_vec(), value.as_ref().to_vec());
        let span =
            debug_span!("put_mutable_next", target = %MutableItem::target_of(&key.verifying_key().to_bytes(), &salt));
        self.put(span, Op::PutMutableNext { key: Box::new(key.clone()), salt, value }).await
    }

    async fn put(&self, span: Span, op: Op) -> Result<PutOutcome, Error> {
        let (mut events, mut guard) = self.op(span, op).await?;
        loop {
            match events.recv().await {
                // A put's lookup surfaces no item today; were it to, the end still follows.
                Some(Event::ItemFound { .. }) => {}
                event => {
                    guard.disarm();
                    return put_outcome(event).map_err(Error::Query);
                }
            }
        }
    }

    /// Looks up an immutable item (BEP 44) by its target, SHA-1 of the bencoded value; a
    /// value is returned only if it hashes to `target`, and the first such ends the lookup.
    /// `None` when no node had it. Dropping the future stops the lookup.
    pub async fn get_immutable(&self, target: NodeId) -> Result<Option<Vec<u8>>, Error> {
        let span = debug_span!("get_immutable", %target);
        let (mut events, mut guard) = self.op(span, Op::GetImmutable(target)).await?;
        loop {
            match events.recv().await {
                Some(Event::ItemFound { .. }) => {}
                event => {
                    guard.disarm();
                    let summary = ItemSummary::from_event(event);
                    if summary.outcome == LookupOutcome::ShutDown {
                        return Err(SHUT_DOWN);
                    }
                    return Ok(summary.item.map(|item| item.value().to_vec()));
                }
            }
        }
    }

    /// Looks up the mutable item of `key` and `salt` (BEP 44; the salt is the reader's, never
    /// taken from a reply): the stream yields each item a node sends whose signature verifies
    /// and whose `seq` is at least `min_seq`; [`GetMutable::end`] then holds the one with the
    /// highest `seq`. Dropping the stream stops the lookup.
    ///
    /// # Example
    /// ```
    /// use krpc_tokio::ed25519_dalek::SigningKey;
    /// use krpc_tokio::{Config, MutableItem, Rpc};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await?;
    /// let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
    /// let (a, b) = (Rpc::bind("127.0.0.1:0", config.clone()).await?, Rpc::bind("127.0.0.1:0", config).await?);
    /// let key = SigningKey::from_bytes(&[7; 32]);
    /// assert_eq!(a.put_mutable_next(&key, "salt", "5:hello").await?.seq, Some(1));
    /// assert_eq!(a.put_mutable_next(&key, "salt", "5:world").await?.seq, Some(2));
    ///
    /// let public = key.verifying_key().to_bytes();
    /// let latest: Option<MutableItem> = b.get_mutable(public, "salt", None).await?.most_recent().await;
    /// assert_eq!(latest.map(|item| (item.seq, item.value)), Some((2, b"5:world".to_vec())));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get_mutable(
        &self,
        key: [u8; 32],
        salt: impl AsRef<[u8]>,
        min_seq: Option<i64>,
    ) -> Result<GetMutable, Error> {
        let salt = salt.as_ref().to_vec();
        let span = debug_span!("get_mutable", target = %MutableItem::target_of(&key, &salt), ?min_seq);
        let (events, guard) = self.op(span, Op::GetMutable { key, salt, min_seq }).await?;
        Ok(GetMutable::new(events, guard))
    }

    /// Our public address per family, `[IPv4, IPv6]`, as voted by the `ip` fields of
    /// replies (BEP 42); `None` until enough nodes agree (and always without the node layer).
    pub async fn external_address(&self) -> Result<[Option<IpAddr>; 2], Error> {
        self.inspect(|endpoint| endpoint.external_address()).await
    }

    /// The queries other nodes send us, each with its responder (k-rpc's `query` event).
    /// Only the latest subscription receives them; queries that arrive while no one
    /// listens, or while the stream is full, go unanswered.
    pub fn incoming(&self) -> Subscription<Request> {
        let (sender, receiver) = mpsc::channel(self.shared.capacity);
        let _ = self.send(Command::Incoming(sender));
        Subscription::new(receiver)
    }

    /// Routing-table events: [`Event::NodeAdded`], [`Event::NodeRemoved`],
    /// [`Event::NodeUpdated`], [`Event::IdChanged`] and, with `auto_ping_swap` off,
    /// [`Event::PingSwap`] (ping the offered nodes, [`swap`](Self::swap) out one that fails).
    /// Events beyond the stream's capacity (`max_queued_events`) are dropped.
    pub fn events(&self) -> Subscription<Event> {
        let (sender, receiver) = mpsc::channel(self.shared.capacity);
        let _ = self.send(Command::Subscribe(sender));
        Subscription::new(receiver)
    }

    /// Runs `f` on the engine inside the task: routing table, [`stats`](Endpoint::stats),
    /// configuration, operation counts.
    pub async fn inspect<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Endpoint) -> R + Send + 'static,
    ) -> Result<R, Error> {
        self.call(|reply| Command::Inspect(Box::new(move |endpoint| drop(reply.send(f(endpoint)))))).await
    }

    /// A snapshot of the routing table.
    pub async fn routing_table(&self) -> Result<RoutingTable, Error> {
        self.inspect(|endpoint| endpoint.routing_table().clone()).await
    }

    /// The `n` nodes of the routing table nearest to `target`, for a `find_node` or
    /// `get_peers` answer.
    pub async fn closest_nodes(&self, target: NodeId, n: usize) -> Result<Vec<NodeInfo>, Error> {
        self.inspect(move |endpoint| endpoint.routing_table().closest(&target, n).to_vec()).await
    }

    /// Answers an [`Event::PingSwap`]: `dead` leaves the table and `candidate` takes its
    /// place (k-rpc's `swap`). Returns whether it happened.
    pub async fn swap(&self, dead: NodeId, candidate: NodeInfo) -> Result<bool, Error> {
        self.call(|reply| Command::Swap { dead, candidate, reply }).await
    }

    /// Pings `addr`; it joins the routing table when it answers.
    pub async fn add_node(&self, addr: SocketAddr, id: Option<NodeId>) -> Result<(), Error> {
        Ok(self.call(|reply| Command::AddNode { addr, id, reply }).await??)
    }

    /// Inserts a node you vouch for (say, from a saved table); returns whether it is in.
    pub async fn insert_node(&self, node: NodeInfo) -> Result<bool, Error> {
        self.call(|reply| Command::InsertNode { node, reply }).await
    }

    /// Removes a node from the routing table; returns whether it was there.
    pub async fn remove_node(&self, id: NodeId) -> Result<bool, Error> {
        self.call(|reply| Command::RemoveNode { id, reply }).await
    }

    /// Our id and the nodes of our routing tables, best first, to restart from
    /// ([`Builder::state`](crate::Builder::state)).
    pub async fn save_state(&self) -> Result<SavedState, Error> {
        self.inspect(Endpoint::save_state).await
    }

    /// Writes [`save_state`](Self::save_state) to `path` with
    /// [`save_state_file`](crate::save_state_file): to a temporary file, synced, then
    /// renamed over `path`, which is never left half-written. The file is written on
    /// tokio's blocking pool. Fails with the driver's error if it has stopped.
    pub async fn save_state_file(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        let state = self.save_state().await.map_err(std::io::Error::other)?;
        let path = path.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || krpc_std::save_state_file(path, &state))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Stops the node, for every clone: each outstanding query, `query_all`, lookup and
    /// `populate` resolves with [`QueryError::ShutDown`](crate::QueryError::ShutDown), streams end, and later calls fail
    /// with it. Returns once the task has ended and the socket is closed.
    pub async fn shutdown(&self) {
        let _ = self.send(Command::Close);
        let _ = self.shared.closed.clone().changed().await;
    }
}
