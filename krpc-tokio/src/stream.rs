//! What the task hands back: reply streams and subscriptions.

use std::collections::{HashSet, VecDeque};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_core::Stream;
use krpc_core::dht::{Item, MutableItem};
use krpc_core::{CrawlStats, Event, NodeId, OpId, QueryError, Reply};
use krpc_std::{ItemSummary, LookupSummary};
use tokio::sync::mpsc;

use crate::command::{Command, Key};

/// Stops a command when dropped, unless disarmed (the command ended).
#[derive(Debug)]
pub(crate) struct StopOnDrop {
    key: Key,
    commands: Option<mpsc::WeakUnboundedSender<Command>>,
}

impl StopOnDrop {
    pub(crate) fn new(key: Key, commands: mpsc::WeakUnboundedSender<Command>) -> Self {
        StopOnDrop { key, commands: Some(commands) }
    }

    pub(crate) fn disarm(&mut self) {
        self.commands = None;
    }

    fn stop(&mut self) {
        let key = self.key;
        if let Some(commands) = self.commands.take().and_then(|weak| weak.upgrade()) {
            let _ = commands.send(Command::Stop(key));
        }
    }
}

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `query_all`'s result from its last event.
pub(crate) fn query_all_end(event: Option<Event>) -> Result<usize, QueryError> {
    match event {
        Some(Event::QueryAllDone { result, .. }) => result,
        _ => Err(QueryError::ShutDown),
    }
}

/// The replies of a running [`closest`](crate::Rpc::closest) or
/// [`query_all`](crate::Rpc::query_all), as they arrive: a [`Stream`] (also usable through
/// [`next`](Self::next)) that ends with the command. Its result is then in [`end`](Self::end).
///
/// Dropping it before the end stops the command: no further queries are sent.
///
/// # Example
/// ```
/// use krpc_tokio::{Config, NodeId, Query, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let b = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// a.ping(b.local_addr()).await?; // now a knows b
///
/// let target = NodeId::from_array([7; 20]);
/// // b does not answer find_node (no one serves its incoming queries), so the lookup
/// // would wait for a timeout: stop it instead.
/// let mut lookup = a.closest(target, Query::find_node(&target)).await?;
/// lookup.stop();
/// while let Some(reply) = lookup.next().await {
///     println!("{} answered", reply.from());
/// }
/// assert_eq!(lookup.end().unwrap().outcome, krpc_tokio::LookupOutcome::Stopped);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Replies<T> {
    op: OpEvents<T>,
}

/// A running lookup: [`Rpc::closest`](crate::Rpc::closest), [`Rpc::find_node`](crate::Rpc::find_node).
pub type Lookup = Replies<LookupSummary>;

/// A running [`Rpc::query_all`](crate::Rpc::query_all): ends with the number of successful
/// replies, or the first 3xx remote error when none succeeded (BEP 44), else `AllFailed`.
pub type QueryAll = Replies<Result<usize, QueryError>>;

/// The events of one running command, up to its last one, which becomes its result.
#[derive(Debug)]
struct OpEvents<T> {
    events: mpsc::UnboundedReceiver<Event>,
    end: Option<T>,
    guard: StopOnDrop,
    to_end: fn(Option<Event>) -> T,
}

impl<T> OpEvents<T> {
    /// The next event that is not the command's last; `None` once the last has arrived (it
    /// is then in `end`).
    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        if self.end.is_some() {
            return Poll::Ready(None);
        }
        match ready!(self.events.poll_recv(cx)) {
            Some(
                event
                @ (Event::Reply { .. } | Event::Peers { .. } | Event::ItemFound { .. } | Event::CrawlFound { .. }),
            ) => Poll::Ready(Some(event)),
            last => {
                self.end = Some((self.to_end)(last));
                self.guard.disarm();
                Poll::Ready(None)
            }
        }
    }

    fn take_end(&mut self) -> T {
        let to_end = self.to_end;
        self.end.take().unwrap_or_else(|| to_end(None))
    }
}

impl<T> Replies<T> {
    pub(crate) fn new(
        events: mpsc::UnboundedReceiver<Event>,
        guard: StopOnDrop,
        to_end: fn(Option<Event>) -> T,
    ) -> Self {
        Replies { op: OpEvents { events, end: None, guard, to_end } }
    }

    fn poll_reply(&mut self, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        loop {
            match ready!(self.op.poll_event(cx)) {
                Some(Event::Reply { reply, .. }) => return Poll::Ready(Some(reply)),
                Some(_) => {}
                None => return Poll::Ready(None),
            }
        }
    }

    /// The next reply; `None` once the command has ended.
    pub async fn next(&mut self) -> Option<Reply> {
        poll_fn(|cx| self.poll_reply(cx)).await
    }

    /// The result, once the stream has ended.
    pub fn end(&self) -> Option<&T> {
        self.op.end.as_ref()
    }

    /// Stops the command now (k-rpc's `visit` returning `false`): no further queries, no
    /// further replies; the stream ends.
    pub fn stop(&mut self) {
        self.op.guard.stop();
    }

    /// Skips the remaining replies and returns the result.
    pub async fn finish(mut self) -> T {
        while self.next().await.is_some() {}
        self.op.take_end()
    }
}

impl<T: Unpin> Stream for Replies<T> {
    type Item = Reply;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Reply>> {
        self.get_mut().poll_reply(cx)
    }
}

/// The peers a running [`Rpc::get_peers`](crate::Rpc::get_peers) finds, as they arrive, each
/// address once: a [`Stream`] (also usable through [`next`](Self::next)) that ends with the
/// lookup. [`end`](Self::end) then holds its [`LookupSummary`]: the closest nodes with the
/// write tokens they gave, what an `announce_peer` needs.
///
/// Dropping it before the end stops the lookup.
///
/// # Example
/// ```
/// use krpc_tokio::{Config, NodeId, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await?;
/// let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
/// let (a, b) = (Rpc::bind("127.0.0.1:0", config.clone()).await?, Rpc::bind("127.0.0.1:0", config).await?);
/// let info_hash = NodeId::from_array([0x42; 20]);
/// assert_eq!(a.announce(info_hash, None, false).await?, 1); // the seed stored a
///
/// let mut peers = b.get_peers(info_hash).await?;
/// assert_eq!(peers.next().await, Some(a.local_addr()));
/// while peers.next().await.is_some() {}
/// let summary = peers.end().unwrap();
/// assert!(summary.closest.iter().any(|n| n.node.id == seed.id() && n.token.is_some()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct GetPeers {
    op: OpEvents<LookupSummary>,
    seen: HashSet<SocketAddr>,
    found: VecDeque<SocketAddr>,
}

impl GetPeers {
    pub(crate) fn new(events: mpsc::UnboundedReceiver<Event>, guard: StopOnDrop) -> Self {
        let op = OpEvents { events, end: None, guard, to_end: LookupSummary::from_event };
        GetPeers { op, seen: HashSet::new(), found: VecDeque::new() }
    }

    fn poll_peer(&mut self, cx: &mut Context<'_>) -> Poll<Option<SocketAddr>> {
        loop {
            if let Some(peer) = self.found.pop_front() {
                return Poll::Ready(Some(peer));
            }
            match ready!(self.op.poll_event(cx)) {
                Some(Event::Peers { peers, .. }) => {
                    let new = peers.into_iter().filter(|peer| self.seen.insert(*peer));
                    self.found.extend(new);
                }
                Some(_) => {}
                None => return Poll::Ready(None),
            }
        }
    }

    /// The next peer not seen before; `None` once the lookup has ended.
    pub async fn next(&mut self) -> Option<SocketAddr> {
        poll_fn(|cx| self.poll_peer(cx)).await
    }

    /// How many distinct peers have been found so far.
    pub fn found(&self) -> usize {
        self.seen.len()
    }

    /// The lookup's summary, once the stream has ended.
    pub fn end(&self) -> Option<&LookupSummary> {
        self.op.end.as_ref()
    }

    /// Stops the lookup now: no further queries; the stream ends (after the peers already
    /// received) with [`LookupOutcome::Stopped`](krpc_core::LookupOutcome::Stopped).
    pub fn stop(&mut self) {
        self.op.guard.stop();
    }

    /// Collects the remaining peers and returns them with the summary.
    pub async fn finish(mut self) -> (Vec<SocketAddr>, LookupSummary) {
        let mut peers = Vec::new();
        while let Some(peer) = self.next().await {
            peers.push(peer);
        }
        (peers, self.op.take_end())
    }
}

impl Stream for GetPeers {
    type Item = SocketAddr;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SocketAddr>> {
        self.get_mut().poll_peer(cx)
    }
}

/// The mutable items a running [`Rpc::get_mutable`](crate::Rpc::get_mutable) finds, as nodes
/// answer (BEP 44): a [`Stream`] (also usable through [`next`](Self::next)) of items whose
/// signature verified and whose `seq` is at least the minimum asked for, in no order of
/// `seq`, a node's item each time. It ends with the lookup; [`end`](Self::end) then holds the
/// [`ItemSummary`], whose item is the one with the highest `seq`
/// ([`most_recent`](Self::most_recent) waits for it).
///
/// Dropping it before the end stops the lookup.
#[derive(Debug)]
pub struct GetMutable {
    op: OpEvents<ItemSummary>,
}

impl GetMutable {
    pub(crate) fn new(events: mpsc::UnboundedReceiver<Event>, guard: StopOnDrop) -> Self {
        GetMutable { op: OpEvents { events, end: None, guard, to_end: ItemSummary::from_event } }
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<MutableItem>> {
        loop {
            match ready!(self.op.poll_event(cx)) {
                Some(Event::ItemFound { item: Item::Mutable(item), .. }) => return Poll::Ready(Some(item)),
                Some(_) => {}
                None => return Poll::Ready(None),
            }
        }
    }

    /// The next item a node sent; `None` once the lookup has ended.
    pub async fn next(&mut self) -> Option<MutableItem> {
        poll_fn(|cx| self.poll_item(cx)).await
    }

    /// The lookup's summary, once the stream has ended.
    pub fn end(&self) -> Option<&ItemSummary> {
        self.op.end.as_ref()
    }

    /// Stops the lookup now: no further queries; the stream ends with
    /// [`LookupOutcome::Stopped`](krpc_core::LookupOutcome::Stopped) and the best item so far.
    pub fn stop(&mut self) {
        self.op.guard.stop();
    }

    /// Skips the remaining items and returns the summary.
    pub async fn finish(mut self) -> ItemSummary {
        while self.next().await.is_some() {}
        self.op.take_end()
    }

    /// Waits for the end of the lookup and returns the item with the highest `seq` (mainline's
    /// `get_mutable_most_recent`).
    pub async fn most_recent(self) -> Option<MutableItem> {
        self.finish().await.mutable()
    }
}

impl Stream for GetMutable {
    type Item = MutableItem;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<MutableItem>> {
        self.get_mut().poll_item(cx)
    }
}

/// A running [`Rpc::crawl`](crate::Rpc::crawl) (BEP 51): the info-hashes the crawl finds, each
/// once, as nodes answer, as a [`Stream`] (also usable through [`next`](Self::next)) that ends
/// with the crawl. [`end`](Self::end) then holds its final [`CrawlStats`];
/// [`stats`](Self::stats) reads them while it runs.
///
/// A crawl ends when its cap of info-hashes is reached or no node is left to ask, which may
/// be never: stop it with [`stop`](Self::stop), or drop it, which stops it too.
///
/// # Example
/// ```
/// use krpc_tokio::{Config, CrawlConfig, NodeId, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let seed = Rpc::bind("127.0.0.1:0", Config::dht()).await?;
/// let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
/// let peer = Rpc::bind("127.0.0.1:0", config.clone()).await?;
/// let info_hash = NodeId::from_array([0x51; 20]);
/// peer.announce(info_hash, Some(6881), false).await?; // the seed stores it
///
/// let crawler = Rpc::bind("127.0.0.1:0", config).await?;
/// let mut crawl = crawler.crawl(CrawlConfig::default().with_max_info_hashes(1)).await?;
/// assert_eq!(crawl.next().await, Some(info_hash));
/// assert_eq!(crawl.next().await, None); // the cap of 1 was reached
/// assert_eq!(crawl.end().unwrap().as_ref().unwrap().unique_info_hashes, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Crawl {
    op: OpEvents<Option<CrawlStats>>,
    id: OpId,
    commands: mpsc::WeakUnboundedSender<Command>,
    found: VecDeque<NodeId>,
    count: usize,
}

/// A crawl's final numbers from its last event; `None` when the driver stopped first.
fn crawl_end(event: Option<Event>) -> Option<CrawlStats> {
    match event {
        Some(Event::CrawlDone { stats, .. }) => Some(stats),
        _ => None,
    }
}

impl Crawl {
    pub(crate) fn new(
        events: mpsc::UnboundedReceiver<Event>,
        guard: StopOnDrop,
        id: OpId,
        commands: mpsc::WeakUnboundedSender<Command>,
    ) -> Self {
        let op = OpEvents { events, end: None, guard, to_end: crawl_end };
        Crawl { op, id, commands, found: VecDeque::new(), count: 0 }
    }

    fn poll_info_hash(&mut self, cx: &mut Context<'_>) -> Poll<Option<NodeId>> {
        loop {
            if let Some(info_hash) = self.found.pop_front() {
                return Poll::Ready(Some(info_hash));
            }
            match ready!(self.op.poll_event(cx)) {
                // The engine reports each info-hash once per crawl.
                Some(Event::CrawlFound { info_hashes, .. }) => {
                    self.count += info_hashes.len();
                    self.found.extend(info_hashes);
                }
                Some(_) => {}
                None => return Poll::Ready(None),
            }
        }
    }

    /// The next info-hash not seen before; `None` once the crawl has ended.
    pub async fn next(&mut self) -> Option<NodeId> {
        poll_fn(|cx| self.poll_info_hash(cx)).await
    }

    /// How many distinct info-hashes have arrived so far (some may still wait to be taken).
    pub fn found(&self) -> usize {
        self.count
    }

    /// What the crawl has done so far: queries, replies, nodes visited, unique info-hashes
    /// (the engine's count, ahead of what [`next`](Self::next) has handed out). Once the crawl
    /// has ended, its final numbers; `None` when the driver has stopped.
    pub async fn stats(&self) -> Option<CrawlStats> {
        if let Some(end) = &self.op.end {
            return end.clone();
        }
        let commands = self.commands.upgrade()?;
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let id = self.id;
        let inspect = move |endpoint: &krpc_core::Endpoint| drop(sender.send(endpoint.crawl_stats(id)));
        commands.send(Command::Inspect(Box::new(inspect))).ok()?;
        // `None` from the engine: the crawl ended and its last event is on its way.
        receiver.await.ok().flatten()
    }

    /// The final numbers, once the stream has ended (`Some(None)` when the driver stopped
    /// first).
    pub fn end(&self) -> Option<&Option<CrawlStats>> {
        self.op.end.as_ref()
    }

    /// Stops the crawl now: no further queries; the stream ends after the info-hashes already
    /// received.
    pub fn stop(&mut self) {
        self.op.guard.stop();
    }

    /// Collects the remaining info-hashes and returns them with the final numbers.
    pub async fn finish(mut self) -> (Vec<NodeId>, Option<CrawlStats>) {
        let mut found = Vec::new();
        while let Some(info_hash) = self.next().await {
            found.push(info_hash);
        }
        (found, self.op.take_end())
    }
}

impl Stream for Crawl {
    type Item = NodeId;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<NodeId>> {
        self.get_mut().poll_info_hash(cx)
    }
}

/// A stream of [`Request`](crate::Request)s ([`Rpc::incoming`](crate::Rpc::incoming)) or routing
/// [`Event`](krpc_core::Event)s ([`Rpc::events`](crate::Rpc::events)). It ends when the
/// driver stops.
///
/// # Example
/// ```
/// use krpc_tokio::{Config, Event, Rpc};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let a = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let b = Rpc::bind("127.0.0.1:0", Config::default()).await?;
/// let mut events = a.events();
/// a.ping(b.local_addr()).await?;
/// assert!(matches!(events.next().await, Some(Event::NodeAdded(node)) if node.id == b.id()));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Subscription<T> {
    receiver: mpsc::Receiver<T>,
}

impl<T> Subscription<T> {
    pub(crate) fn new(receiver: mpsc::Receiver<T>) -> Self {
        Subscription { receiver }
    }

    /// The next item; `None` once the driver has stopped (or a newer `incoming()` took over).
    pub async fn next(&mut self) -> Option<T> {
        self.receiver.recv().await
    }
}

impl<T> Stream for Subscription<T> {
    type Item = T;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.get_mut().receiver.poll_recv(cx)
    }
}
