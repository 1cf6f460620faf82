//! [`Crawl`]: a running BEP 51 crawl ([`Krpc::crawl`]), as a blocking iterator.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use krpc_core::{CommandError, CrawlStats, Event, NodeId, OpId};

use crate::Krpc;

/// A running [`Krpc::crawl`] (BEP 51): an [`Iterator`] of the info-hashes the crawl finds,
/// each once, as nodes answer; `next` blocks the calling thread until one arrives or the
/// crawl ends. [`end`](Self::end) then holds its final [`CrawlStats`]; [`stats`](Self::stats)
/// reads them while it runs.
///
/// A crawl ends when its cap of info-hashes is reached or no node is left to ask, which may
/// be never: stop it with [`stop`](Self::stop), or drop it, which stops it too. To do
/// something else now and then (a progress line), wait with
/// [`next_timeout`](Self::next_timeout). It holds a [`Krpc`] handle: the driver runs at least as
/// long as the crawl.
///
/// # Example
/// ```
/// use krpc_std::{Config, CrawlConfig, Krpc, NodeId};
///
/// let seed = Krpc::bind("127.0.0.1:0", Config::dht())?;
/// let config = Config { bootstrap: vec![seed.local_addr()], ..Config::dht() };
/// let peer = Krpc::bind("127.0.0.1:0", config.clone())?;
/// let info_hash = NodeId::from_array([0x51; 20]);
/// peer.announce(info_hash, Some(6881), false)?; // the seed stores it
///
/// let crawler = Krpc::bind("127.0.0.1:0", config)?;
/// let mut crawl = crawler.crawl(CrawlConfig::default().with_max_info_hashes(1))?;
/// assert_eq!(crawl.next(), Some(info_hash));
/// assert_eq!(crawl.next(), None); // the cap of 1 was reached
/// assert_eq!(crawl.end().unwrap().as_ref().unwrap().unique_info_hashes, 1);
/// # Ok::<(), krpc_std::Error>(())
/// ```
#[derive(Debug)]
pub struct Crawl {
    rpc: Krpc,
    id: OpId,
    events: Receiver<Result<Event, CommandError>>,
    found: VecDeque<NodeId>,
    count: usize,
    /// The final numbers once the crawl has ended (`None` inside: the driver stopped first).
    end: Option<Option<CrawlStats>>,
}

impl Crawl {
    pub(crate) fn new(rpc: Krpc, id: OpId, events: Receiver<Result<Event, CommandError>>) -> Crawl {
        Crawl { rpc, id, events, found: VecDeque::new(), count: 0, end: None }
    }

    /// Takes one event of the crawl: `wait` `None` blocks until it comes. Returns whether one
    /// came (or the crawl ended).
    fn receive(&mut self, wait: Option<Duration>) -> bool {
        let event = match wait {
            None => self.events.recv().ok(),
            Some(wait) => match self.events.recv_timeout(wait) {
                Ok(event) => Some(event),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => None,
            },
        };
        match event {
            // The engine reports each info-hash once per crawl.
            Some(Ok(Event::CrawlFound { info_hashes, .. })) => {
                self.count += info_hashes.len();
                self.found.extend(info_hashes);
            }
            Some(Ok(Event::CrawlDone { stats, .. })) => self.end = Some(Some(stats)),
            // Nothing else is sent for a crawl; a closed channel is a stopped driver.
            Some(_) | None => self.end = Some(None),
        }
        true
    }

    /// Waits at most `timeout` for the next info-hash: `None` when the time passed first, or
    /// the crawl has ended ([`end`](Self::end) is then `Some`).
    #[allow(clippy::disallowed_methods)] // the driver, not the engine, owns the clock
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<NodeId> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(info_hash) = self.found.pop_front() {
                return Some(info_hash);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if self.end.is_some() || left.is_zero() || !self.receive(Some(left)) {
                return None;
            }
        }
    }

    /// How many distinct info-hashes have arrived so far (some may still wait to be taken).
    pub fn found(&self) -> usize {
        self.count
    }

    /// What the crawl has done so far: queries, replies, nodes visited, unique info-hashes
    /// (the engine's count, ahead of what the iterator has handed out). Once the crawl has
    /// ended, its final numbers; `None` when the driver has stopped.
    pub fn stats(&self) -> Option<CrawlStats> {
        if let Some(end) = &self.end {
            return end.clone();
        }
        let id = self.id;
        // `None` from the engine: the crawl ended and its last event is on its way.
        self.rpc.inspect(move |endpoint| endpoint.crawl_stats(id)).ok().flatten()
    }

    /// The final numbers, once the crawl has ended (`Some(None)` when the driver stopped
    /// first).
    pub fn end(&self) -> Option<&Option<CrawlStats>> {
        self.end.as_ref()
    }

    /// Stops the crawl now: no further queries; the iterator ends after the info-hashes
    /// already received.
    pub fn stop(&mut self) {
        if self.end.is_none() {
            // If the driver is already gone, the iterator ends anyway.
            let _ = self.rpc.send(crate::worker::Command::Stop(self.id));
        }
    }

    /// Collects the remaining info-hashes and returns them with the final numbers.
    pub fn finish(mut self) -> (Vec<NodeId>, Option<CrawlStats>) {
        let found: Vec<NodeId> = self.by_ref().collect();
        (found, self.end.take().flatten())
    }
}

impl Iterator for Crawl {
    type Item = NodeId;

    fn next(&mut self) -> Option<NodeId> {
        loop {
            if let Some(info_hash) = self.found.pop_front() {
                return Some(info_hash);
            }
            if self.end.is_some() {
                return None;
            }
            self.receive(None);
        }
    }
}

impl Drop for Crawl {
    fn drop(&mut self) {
        self.stop();
    }
}
