//! The trace hash ([`Sim::trace_hash`](super::Sim::trace_hash)): FNV-1a over every datagram
//! sent, in send order, and how a run on several threads hashes it off its main thread.
//!
//! FNV-1a reads one byte at a time, each step waiting for the last (an exclusive or, then a
//! multiplication), so it costs a few cycles per byte however fast the processor is: a tenth
//! of a microsecond or more per datagram, on the main thread, which every window waits for
//! (`parallel.rs`). The hash of a byte stream fed in pieces is the hash of the pieces joined,
//! so a run on several threads only writes down what it would hash, in order, and the other
//! threads hash it when they have nothing else to do. The trace is the same bit for bit.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, TryLockError};

use super::parallel::lock;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `bytes`, starting from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Bytes a helper hashes before it looks whether a window's shares are waiting: about ten
/// microseconds, so a thread that was hashing is late to a window by no more than that.
const PIECE: usize = 4096;

/// Bytes written down and not yet hashed, above which the main thread hashes them itself
/// (when the other threads have had no idle time to): a cap on the log's memory.
const MAX_PENDING: usize = 4 << 20;

/// Logs kept for reuse.
const SPARE_LOGS: usize = 8;

/// The trace hash of a run, as its sends are made.
#[derive(Debug)]
pub(super) struct Trace {
    hash: u64,
    /// While the hashing is handed to other threads: what is still to be hashed, after
    /// `hash` and after whatever the threads hold ([`Deferred`]).
    log: Option<Vec<u8>>,
}

impl Default for Trace {
    fn default() -> Trace {
        Trace { hash: FNV_OFFSET, log: None }
    }
}

impl Trace {
    /// Adds a datagram sent at `at` (nanoseconds) from node `from` to `to`.
    pub(super) fn record(&mut self, at: u64, from: u32, to: &SocketAddr, bytes: &[u8]) {
        let port = to.port().to_be_bytes();
        let parts: [&[u8]; 5] = match to {
            SocketAddr::V4(v4) => [&at.to_le_bytes(), &from.to_le_bytes(), &v4.ip().octets(), &port, bytes],
            SocketAddr::V6(v6) => [&at.to_le_bytes(), &from.to_le_bytes(), &v6.ip().octets(), &port, bytes],
        };
        match self.log.as_mut() {
            Some(log) => parts.iter().for_each(|p| log.extend_from_slice(p)),
            None => self.hash = parts.iter().fold(self.hash, |h, p| fnv(h, p)),
        }
    }

    /// The hash so far. Only meaningful while nothing is handed to other threads.
    pub(super) fn hash(&self) -> u64 {
        debug_assert!(self.log.is_none(), "the trace is read while other threads hash it");
        self.hash
    }

    /// From now on, writes down what it would hash, for [`Deferred`] to hash.
    pub(super) fn defer(&mut self, deferred: &Deferred) {
        if self.log.is_none() {
            let mut state = lock(&deferred.state);
            state.hash = self.hash;
            self.log = Some(deferred.spare());
        }
    }

    /// Hands what was written down since the last call to the other threads; hashes all that
    /// is waiting on this thread instead once it has grown past [`MAX_PENDING`].
    pub(super) fn hand_over(&mut self, deferred: &Deferred) {
        let Some(log) = self.log.as_mut().filter(|l| !l.is_empty()) else { return };
        let log = std::mem::replace(log, deferred.spare());
        let pending = {
            let mut queue = lock(&deferred.queue);
            queue.bytes += log.len();
            queue.logs.push_back(log);
            queue.bytes
        };
        deferred.unhashed.fetch_add(1, Ordering::Release);
        if pending > MAX_PENDING {
            deferred.work(&|| false, true);
        }
    }

    /// Hashes everything still waiting, here, and goes back to hashing as it sends. The other
    /// threads must have stopped taking work from `deferred`.
    pub(super) fn resume(&mut self, deferred: &Deferred) {
        let Some(log) = self.log.take() else { return };
        deferred.work(&|| false, true);
        let hash = lock(&deferred.state).hash;
        self.hash = fnv(hash, &log);
    }
}

/// The hashing a run on several threads hands from its main thread to the others.
#[derive(Debug, Default)]
pub(super) struct Deferred {
    /// Logs waiting, oldest first.
    queue: Mutex<Queue>,
    /// The hash over every log taken from the queue so far, and the one being hashed; whoever
    /// holds it is the only one hashing, so the logs go in order.
    state: Mutex<State>,
    /// Logs handed over and not hashed to their end: read without a lock by threads looking
    /// for work.
    unhashed: AtomicUsize,
}

#[derive(Debug, Default)]
struct Queue {
    logs: VecDeque<Vec<u8>>,
    /// Bytes in `logs`.
    bytes: usize,
    spare: Vec<Vec<u8>>,
}

#[derive(Debug, Default)]
struct State {
    hash: u64,
    /// A log taken from the queue and how much of it is hashed.
    current: Option<(Vec<u8>, usize)>,
}

impl Deferred {
    fn spare(&self) -> Vec<u8> {
        lock(&self.queue).spare.pop().unwrap_or_default()
    }

    /// Hashes waiting logs in order, a piece at a time, until none is left or `stop` says
    /// so between pieces. `wait`: when another thread is hashing, wait for it rather than
    /// leave. Returns whether any piece was hashed.
    pub(super) fn work(&self, stop: &dyn Fn() -> bool, wait: bool) -> bool {
        let mut state = match self.state.try_lock() {
            Ok(s) => s,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) if wait => lock(&self.state),
            Err(TryLockError::WouldBlock) => return false,
        };
        let mut worked = false;
        loop {
            if stop() {
                break;
            }
            if state.current.is_none() {
                let mut queue = lock(&self.queue);
                let Some(log) = queue.logs.pop_front() else { break };
                queue.bytes -= log.len();
                drop(queue);
                state.current = Some((log, 0));
            }
            let State { hash, current } = &mut *state;
            let Some((log, done)) = current.as_mut() else { break };
            let end = log.len().min(*done + PIECE);
            *hash = fnv(*hash, &log[*done..end]);
            *done = end;
            worked = true;
            if end == log.len() {
                self.unhashed.fetch_sub(1, Ordering::Release);
                if let Some((mut log, _)) = current.take() {
                    log.clear();
                    let mut queue = lock(&self.queue);
                    if queue.spare.len() < SPARE_LOGS {
                        queue.spare.push(log);
                    }
                }
            }
        }
        worked
    }

    /// Whether logs are waiting to be hashed (without taking a lock).
    pub(super) fn is_waiting(&self) -> bool {
        self.unhashed.load(Ordering::Acquire) > 0
    }
}

#[cfg(test)]
impl Deferred {
    /// Bytes handed over and waiting in the queue.
    fn queued_bytes(&self) -> usize {
        lock(&self.queue).bytes
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn sends() -> Vec<(u64, u32, SocketAddr, Vec<u8>)> {
        (0..2_000u32)
            .map(|i| {
                let to: SocketAddr = if i % 7 == 0 {
                    "[::1]:6881".parse().unwrap()
                } else {
                    format!("10.0.{}.1:{}", i % 256, i).parse().unwrap()
                };
                (u64::from(i) * 1_000, i * 3, to, (0..(i % 300) as u8).collect())
            })
            .collect()
    }

    #[test]
    fn a_hash_handed_to_other_threads_is_the_hash_made_inline() {
        let mut inline = Trace::default();
        for (at, from, to, bytes) in sends() {
            inline.record(at, from, &to, &bytes);
        }
        let deferred = Deferred::default();
        let mut handed = Trace::default();
        // The first sends inline, then a helper hashes what is handed over while more is
        // written down, with hand-overs of every size.
        let all = sends();
        let (first, rest) = all.split_at(100);
        for (at, from, to, bytes) in first {
            handed.record(*at, *from, to, bytes);
        }
        let quit = AtomicBool::new(false);
        std::thread::scope(|scope| {
            handed.defer(&deferred);
            let helper = scope.spawn(|| {
                while !quit.load(Ordering::Acquire) {
                    if deferred.is_waiting() {
                        deferred.work(&|| false, false);
                    }
                }
            });
            for (k, (at, from, to, bytes)) in rest.iter().enumerate() {
                handed.record(*at, *from, to, bytes);
                if k % (1 + k % 13) == 0 {
                    handed.hand_over(&deferred);
                }
            }
            quit.store(true, Ordering::Release);
            helper.join().unwrap();
        });
        handed.resume(&deferred);
        assert_eq!(handed.hash(), inline.hash());
        assert_ne!(inline.hash(), Trace::default().hash());
        // A stop asked for before the first piece hashes nothing and keeps the log waiting.
        let mut stopped = Trace::default();
        stopped.defer(&deferred);
        stopped.record(1, 2, &"10.0.0.1:1".parse().unwrap(), b"x");
        stopped.hand_over(&deferred);
        assert!(!deferred.work(&|| true, true));
        assert!(deferred.is_waiting());
        stopped.resume(&deferred);
        assert!(!deferred.is_waiting());
        let mut direct = Trace::default();
        direct.record(1, 2, &"10.0.0.1:1".parse().unwrap(), b"x");
        assert_eq!(stopped.hash(), direct.hash());
    }

    #[test]
    fn the_logs_waiting_stay_under_their_cap_when_no_thread_hashes_them() {
        let deferred = Deferred::default();
        let mut handed = Trace::default();
        let mut inline = Trace::default();
        handed.defer(&deferred);
        let bytes = vec![7u8; 1400];
        let to: SocketAddr = "10.1.2.3:6881".parse().unwrap();
        let mut most = 0;
        // About 14 MB written down, handed over every 50 datagrams, and nobody else hashing.
        for n in 0..10_000u32 {
            handed.record(u64::from(n), n, &to, &bytes);
            inline.record(u64::from(n), n, &to, &bytes);
            if n % 50 == 49 {
                handed.hand_over(&deferred);
                most = most.max(deferred.queued_bytes());
            }
        }
        assert!(most > 0 && most <= MAX_PENDING, "{most} bytes waited");
        handed.resume(&deferred);
        assert_eq!(handed.hash(), inline.hash());
    }
}
