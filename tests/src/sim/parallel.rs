//! Windows of a run on several threads, with the trace of one
//! ([`Scenario::threads`](super::Scenario::threads)).
//!
//! A datagram reaches another node no sooner than the link's shortest one-way delay `W`. So
//! within a window of virtual time shorter than `W`, what happens at one node cannot change
//! what happens at another: every datagram sent inside the window arrives after it. The
//! window's deliveries and engine deadlines are split by node into shares, the threads take
//! the shares in turn, and each runs its nodes through the window in the order a single
//! thread would.
//!
//! Three things of the run are shared and sequential: the link's random stream (drawn in send
//! order), the sequence number that orders datagrams due at the same instant, and the trace
//! hash over every datagram in send order. All three depend only on the sends, and no send
//! takes effect before the window ends. So each share only records its sends, keyed by when
//! a single thread would have made them (time, then a delivery before a deadline, then the
//! delivery's sequence number or the deadline's node, then the order within the event), and
//! the main thread replays them in that order through the same code as a single-threaded run:
//! the trace hash is the same for any number of threads.
//!
//! The replay is late by one window: the main thread replays a window's sends while the other
//! threads already run the next window's shares, then takes the shares that are left. A send
//! made at `t` arrives at `t + W` at the soonest, so the next window only has to end before
//! the unreplayed sends' earliest time plus `W`; when it would not, the replay comes first.
//! A join between two windows (every 0.5 ms while a network builds) records its sends behind
//! the waiting ones instead of sending them (`Sim::send` while `Sim::held` is set), so the
//! order stays a single thread's. Other scripted actions (lookups started, churn) draw from
//! the run's random streams and the sequence numbers, so the replay comes before them.
//!
//! What stays on the main thread: scripted actions, which end a window; that replay (but for
//! the trace hash: it writes down what it would hash, and whichever thread waits for work
//! hashes it, in order, see `trace.rs`); and the records of measured lookups, filled in when
//! the window ends after its replay (they read the oracle and other nodes, which no thread
//! changes inside a window in the runs this applies to).
//!
//! Runs whose nodes read one another inside a window, or whose windows would be too short to
//! share, stay on one thread ([`Sim::window`] says which): value holders and attackers (an
//! answer depends on the oracle's view of other nodes), NATs (their tables are not lent with
//! the nodes), kept command events, per-pair delays (log-normal: no floor worth a window),
//! adaptive read-only nodes (the truth a lookup is measured against changes with them) and
//! counted holders of missed nodes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use krpc_core::{Endpoint, Event, Instant, LookupNode, LookupOutcome, OpId};

use super::answer::Responder;
use super::link::Latency;
use super::prefetch::prefetch;
use super::trace::Deferred;
use super::{Action, NodeId, Packet, Sim, Tracked, answer_query, check_cheap, tap_in, tap_out};

/// Below this many events a window runs on the main thread: handing it over would cost more.
const SMALL_WINDOW: usize = 48;

/// How many shares per thread a window is cut into. The threads take shares until none is
/// left, so the main thread, which starts a window by replaying the last one's sends, takes
/// fewer; finer shares balance better and cost a heap and a few vectors each.
const SHARES_PER_THREAD: usize = 4;

/// How long a thread waiting for the next window spins before it sleeps, in spin-loop hints
/// (tens of microseconds). Longer spins measured slower on this 2-core VM, and so did
/// yielding instead: a thread that keeps its virtual CPU busy slows the other one down.
const SPINS: u32 = 1 << 12;

/// Arenas, and emptied shares, kept for reuse between windows (one per share and one for a
/// join, plus slack).
const SPARE_ARENAS: usize = 32;

/// What every thread reads and none changes.
struct Ctx<'a> {
    samples: Option<&'a [Vec<NodeId>]>,
    responder: Responder,
    answer_k: Option<usize>,
    seed: u64,
}

/// One node's state, lent to a thread for a window.
struct Visit {
    i: u32,
    ep: Box<Endpoint>,
    timer_at: u64,
    tracked: Option<Tracked>,
    joining: Option<OpId>,
    busy: bool,
}

/// A datagram due inside the window.
struct Due {
    at: u64,
    seq: u64,
    local: u32,
    from: u32,
    from_addr: SocketAddr,
    bytes: Vec<u8>,
}

/// One share of a window.
#[derive(Default)]
struct Work {
    limit: u64,
    visits: Vec<Visit>,
    /// By (time, sequence number).
    deliveries: Vec<Due>,
    /// (time, node, local index).
    timers: Vec<Reverse<(u64, u32, u32)>>,
    /// Where the share's sends go (an emptied arena of an earlier window, for its room).
    arena: Arena,
}

/// When a single thread would have made an event's sends: (time, 0 for a delivery or 1 for a
/// deadline, the delivery's sequence number or the deadline's node).
type EventKey = (u64, u8, u64);

/// When a single thread would have sent a datagram: its event's [`EventKey`], then the order
/// within the event.
type SendKey = (u64, u8, u64, u32);

/// A recorded datagram, to be replayed.
struct Sent {
    key: SendKey,
    from: u32,
    to: SocketAddr,
    start: usize,
    len: usize,
}

/// Recorded sends and their bytes: one share's, or one join's.
#[derive(Default)]
pub(super) struct Arena {
    sent: Vec<Sent>,
    bytes: Vec<u8>,
}

impl Arena {
    fn record(&mut self, key: SendKey, from: u32, to: SocketAddr, bytes: &[u8]) {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        self.sent.push(Sent { key, from, to, start, len: bytes.len() });
    }

    /// Records a datagram a scripted action sends at `now` (nanoseconds), behind everything
    /// recorded before it (`Sim::held`).
    pub(super) fn hold(&mut self, now: u64, from: u32, to: SocketAddr, bytes: &[u8]) {
        let order = self.sent.len() as u32;
        self.record((now, 2, 0, order), from, to, bytes);
    }

    fn clear(&mut self) {
        self.sent.clear();
        self.bytes.clear();
    }
}

/// Sends recorded and not yet replayed, in single-thread order: the last window's, then those
/// of the join after it.
#[derive(Default)]
struct Replay {
    arenas: Vec<Arena>,
    /// (key, arena, index in the arena), in replay order.
    order: Vec<(SendKey, u32, u32)>,
    /// The earliest time among them: none of them arrives before this plus the window width.
    first: Option<u64>,
    spare: Vec<Arena>,
}

impl Replay {
    fn arena(&mut self) -> Arena {
        self.spare.pop().unwrap_or_default()
    }

    /// Queues a window's sends (its shares' arenas) behind the waiting ones, in key order.
    fn push_window(&mut self, arenas: impl IntoIterator<Item = Arena>) {
        let from = self.order.len();
        for arena in arenas {
            self.push(arena);
        }
        // Each share's sends are in key order already; the shares interleave.
        self.order[from..].sort_unstable_by_key(|e| e.0);
    }

    /// Queues an arena's sends behind the waiting ones, in the arena's order.
    fn push(&mut self, arena: Arena) {
        let Some(earliest) = arena.sent.iter().map(|s| s.key.0).min() else {
            self.recycle(arena);
            return;
        };
        self.first = Some(self.first.map_or(earliest, |f| f.min(earliest)));
        let a = self.arenas.len() as u32;
        self.order.extend(arena.sent.iter().enumerate().map(|(k, s)| (s.key, a, k as u32)));
        self.arenas.push(arena);
    }

    fn recycle(&mut self, mut arena: Arena) {
        if self.spare.len() < SPARE_ARENAS {
            arena.clear();
            self.spare.push(arena);
        }
    }
}

/// A measured lookup that ended inside the window.
struct Finished {
    key: EventKey,
    i: u32,
    tracked: Tracked,
    closest: Vec<LookupNode>,
    outcome: LookupOutcome,
}

/// What a thread hands back for a share.
#[derive(Default)]
struct Done {
    visits: Vec<Visit>,
    arena: Arena,
    finished: Vec<Finished>,
    /// The delivered datagrams' buffers, for reuse.
    buffers: Vec<Vec<u8>>,
    /// The share's lists, emptied, for the next window's shares.
    deliveries: Vec<Due>,
    timers: Vec<Reverse<(u64, u32, u32)>>,
    events: u64,
    answered: u64,
    last: u64,
}

impl Work {
    /// Runs the share through the window, in single-thread order.
    fn run(self, ctx: &Ctx<'_>) -> Done {
        let Work { limit, mut visits, deliveries: mut due, timers, arena } = self;
        let mut out = Done { buffers: Vec::with_capacity(due.len()), arena, ..Done::default() };
        let mut timers = BinaryHeap::from(timers);
        let mut buf = vec![0u8; 1500];
        let mut deliveries = due.drain(..).peekable();
        loop {
            let d = deliveries.peek().map(|d| d.at);
            let t = timers.peek().map(|Reverse((at, _, _))| *at);
            let take_delivery = match (d, t) {
                (Some(d), Some(t)) => d <= t,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_delivery {
                let Some(due) = deliveries.next() else { break };
                prefetch_next(&visits, deliveries.peek(), timers.peek());
                let now = Instant::from_nanos(due.at);
                out.events += 1;
                let v = &mut visits[due.local as usize];
                if let Some(t) = v.tracked.as_mut() {
                    tap_in(t, due.from, &due.bytes, now);
                }
                v.ep.handle_datagram(now, due.from_addr, &due.bytes);
                out.last = due.at;
                touch(v, due.local, (due.at, 0, due.seq), limit, ctx, &mut timers, &mut out, &mut buf);
                out.buffers.push(due.bytes);
            } else {
                let Some(Reverse((at, i, local))) = timers.pop() else { break };
                prefetch_next(&visits, deliveries.peek(), timers.peek());
                let v = &mut visits[local as usize];
                if v.timer_at != at {
                    // Moved since it was set: as a single thread skips a stale heap entry.
                    continue;
                }
                out.events += 1;
                v.timer_at = u64::MAX;
                v.ep.handle_timeout(Instant::from_nanos(at));
                out.last = at;
                touch(v, local, (at, 1, u64::from(i)), limit, ctx, &mut timers, &mut out, &mut buf);
            }
        }
        drop(deliveries);
        out.visits = visits;
        out.deliveries = due;
        let mut timers = timers.into_vec();
        timers.clear();
        out.timers = timers;
        out
    }
}

/// Starts loading what the next event of a share reads first (its node's engine and the
/// datagram's bytes) while the current one runs (see `prefetch.rs`).
fn prefetch_next(visits: &[Visit], delivery: Option<&Due>, timer: Option<&Reverse<(u64, u32, u32)>>) {
    let engine = |local: u32| {
        if let Some(v) = visits.get(local as usize) {
            prefetch(&*v.ep);
        }
    };
    if let Some(d) = delivery {
        engine(d.local);
        prefetch(d.bytes.as_slice());
    }
    if let Some(Reverse((_, _, local))) = timer {
        engine(*local);
    }
}

/// [`Sim::touch`] inside a window: drains the node's outputs, recording its sends, and keeps
/// a deadline that falls inside the window.
#[allow(clippy::too_many_arguments)] // one call site each way; a struct would only rename them
fn touch(
    v: &mut Visit,
    local: u32,
    event: EventKey,
    limit: u64,
    ctx: &Ctx<'_>,
    timers: &mut BinaryHeap<Reverse<(u64, u32, u32)>>,
    out: &mut Done,
    buf: &mut [u8],
) {
    let now = Instant::from_nanos(event.0);
    let mut order = 0u32;
    loop {
        let mut moved = false;
        while let Some(t) = v.ep.poll_transmit(now, buf) {
            moved = true;
            let bytes = &buf[..t.len];
            if let Some(tracked) = v.tracked.as_mut() {
                tap_out(tracked, &t.destination, bytes);
            }
            out.arena.record((event.0, event.1, event.2, order), v.i, t.destination, bytes);
            order += 1;
        }
        while let Some(e) = v.ep.poll_event() {
            moved = true;
            match e {
                Event::Query(q) => {
                    let count = ctx.answer_k.unwrap_or(v.ep.config().k);
                    answer_query(v.i, &mut v.ep, &q, count, ctx.samples, ctx.responder, now);
                    out.answered += 1;
                }
                Event::LookupDone { op, closest, outcome, .. } => {
                    if v.joining == Some(op) {
                        v.joining = None;
                    }
                    if v.tracked.as_ref().is_some_and(|t| t.op == op) {
                        if let Some(tracked) = v.tracked.take() {
                            out.finished.push(Finished { key: event, i: v.i, tracked, closest, outcome });
                        }
                    }
                }
                // Nobody keeps other events in a run that goes by windows (`Sim::window`).
                _ => {}
            }
        }
        if !moved {
            break;
        }
    }
    let next = v.ep.poll_timeout().map_or(u64::MAX, |t| t.as_nanos());
    if next != v.timer_at {
        v.timer_at = next;
        if next < limit {
            timers.push(Reverse((next, v.i, local)));
        }
    }
    check_cheap(v.i, &v.ep, now, ctx.seed);
    v.busy = v.ep.operations() > 0;
}

/// Locks a mutex whose holder may have panicked: the panic is reported where it happened (a
/// share's by [`Pool::wait`]), so what it guards is used as it was left.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What the threads of a run going by windows share: the window's shares not yet taken, the
/// results of those run, and the signals between them.
struct Pool<'a> {
    ctx: &'a Ctx<'a>,
    queue: Mutex<Vec<Work>>,
    done: Mutex<Vec<Done>>,
    /// Shares of the window not yet run to the end.
    open: AtomicUsize,
    /// Counts the windows handed out, so a waiting thread sees a new one.
    window: AtomicU64,
    quit: AtomicBool,
    /// A share panicked (its thread's panic message is already printed).
    failed: AtomicBool,
    /// The trace hashing the main thread hands over (`trace.rs`), done by whichever thread
    /// is waiting.
    trace: Deferred,
}

/// Marks a share finished, even when running it panicked.
struct Closing<'p, 'a>(&'p Pool<'a>);

impl Drop for Closing<'_, '_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::Release);
        }
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Pool<'_> {
    /// A helper thread's life: take shares whenever a window is handed out, until told to quit.
    fn serve(&self) {
        let mut seen = 0;
        loop {
            let mut spins = 0u32;
            loop {
                if self.quit.load(Ordering::Acquire) {
                    return;
                }
                let w = self.window.load(Ordering::Acquire);
                if w != seen {
                    seen = w;
                    break;
                }
                if self.trace.is_waiting() {
                    // Hash until a window or the end is handed out.
                    let stop = || self.window.load(Ordering::Acquire) != seen || self.quit.load(Ordering::Acquire);
                    if self.trace.work(&stop, false) {
                        spins = 0;
                        continue;
                    }
                }
                if spins < SPINS {
                    spins += 1;
                    std::hint::spin_loop();
                } else {
                    // `unpark` before `park` makes `park` return at once: no window is missed.
                    std::thread::park();
                }
            }
            self.take_shares();
        }
    }

    /// Runs shares of the current window until none is left to take.
    fn take_shares(&self) {
        loop {
            let Some(work) = lock(&self.queue).pop() else { return };
            let closing = Closing(self);
            let done = work.run(self.ctx);
            lock(&self.done).push(done);
            drop(closing);
        }
    }

    /// Waits until every share of the window has run (the other threads finish the ones they
    /// took; none is left to take).
    fn wait(&self) {
        let mut spins = 0u32;
        while self.open.load(Ordering::Acquire) != 0 {
            if self.trace.is_waiting() {
                let stop = || self.open.load(Ordering::Acquire) == 0;
                if self.trace.work(&stop, false) {
                    continue;
                }
            }
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        assert!(!self.failed.load(Ordering::Acquire), "a simulator thread panicked running a window (see above)");
    }
}

/// Tells the helper threads to quit when the main thread leaves the scope, panicking or not
/// (the scope waits for them).
struct Quit<'p, 'a, 's> {
    pool: &'p Pool<'a>,
    helpers: Vec<std::thread::ScopedJoinHandle<'s, ()>>,
}

impl Drop for Quit<'_, '_, '_> {
    fn drop(&mut self) {
        self.pool.quit.store(true, Ordering::Release);
        for h in &self.helpers {
            h.thread().unpark();
        }
    }
}

/// A hasher for node indices: the lending map is looked up a few hundred times a window, and
/// its keys are not chosen by anyone hostile.
#[derive(Default)]
struct NodeHasher(u64);

impl Hasher for NodeHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.0 = u64::from(i).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The main thread's reusable room for lending a window's nodes.
#[derive(Default)]
struct Lending {
    /// Node → (share, index in the share).
    place: HashMap<u32, (u32, u32), BuildHasherDefault<NodeHasher>>,
    /// Events per share so far.
    load: Vec<usize>,
    /// Payload slots of the window's datagrams, given back when their buffers are.
    freed: Vec<u32>,
    /// Emptied shares of earlier windows, for their room: a window's lists grow to a few
    /// hundred entries, every window.
    spare: Vec<Work>,
}

impl Sim {
    /// How many windows ran their nodes on more than one thread
    /// ([`Scenario::threads`](super::Scenario::threads)).
    pub fn shared_windows(&self) -> u64 {
        self.shared_windows
    }

    /// How many windows' sends were replayed while the next window's shares ran on the other
    /// threads ([`Scenario::threads`](super::Scenario::threads)).
    pub fn late_replays(&self) -> u64 {
        self.late_replays
    }

    /// The width of a window in nanoseconds when this run may go on several threads: the
    /// link's shortest one-way delay. `None` when it runs on one (see the module's list).
    pub(super) fn window(&self) -> Option<u64> {
        let s = &self.scenario;
        if s.threads < 2
            || s.attack.is_some()
            || s.holders
            || s.count_missed_holders
            || self.nats.count() > 0
            || self.kept.is_some()
            || s.link.pairs.is_some()
            || s.engine.adaptive_read_only
        {
            return None;
        }
        let floor = match s.link.latency {
            Latency::Fixed(d) => d,
            Latency::Uniform { min, .. } | Latency::LogNormal { min, .. } => min,
        };
        let ns = u64::try_from(floor.as_nanos()).unwrap_or(u64::MAX);
        (ns > 0).then_some(ns)
    }

    /// Runs everything due at or before `end` (nanoseconds of virtual time) by windows on
    /// [`Scenario::threads`](super::Scenario::threads) threads, calling `after` once after
    /// each window or action, and stops early once `stop` holds after an action. Does nothing
    /// when the run goes on one thread ([`window`](Self::window)).
    pub(super) fn advance(&mut self, end: u64, stop: fn(&Sim) -> bool, after: &mut dyn FnMut(&mut Sim)) {
        let Some(width) = self.window() else { return };
        let samples = self.samples.take();
        let ctx = Ctx {
            samples: samples.as_deref(),
            responder: self.responder,
            answer_k: self.scenario.answer_k,
            seed: self.scenario.seed,
        };
        let pool = Pool {
            ctx: &ctx,
            queue: Mutex::new(Vec::new()),
            done: Mutex::new(Vec::new()),
            open: AtomicUsize::new(0),
            window: AtomicU64::new(0),
            quit: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            trace: Deferred::default(),
        };
        let pool = &pool;
        self.trace.defer(&pool.trace);
        std::thread::scope(|scope| {
            let helpers = (1..self.scenario.threads).map(|_| scope.spawn(move || pool.serve())).collect();
            let quit = Quit { pool, helpers };
            let mut replay = Replay::default();
            let mut lending = Lending::default();
            while !stop(self) {
                let delivery = self.deliveries.peek().map(|p| p.at);
                let timer = self.next_timer().map(|(at, _)| at);
                let action = self.actions.peek().map(|Reverse(a)| (a.0, matches!(a.2, Action::Join(_))));
                let start = [delivery, timer, action.map(|a| a.0)].into_iter().flatten().min();
                let due = replay.first.map_or(u64::MAX, |f| f.saturating_add(width));
                if start.is_none_or(|s| s > end || s >= due) {
                    // Nothing known is due before the waiting sends could be: they go first.
                    if replay.order.is_empty() {
                        break;
                    }
                    self.replay(&mut replay);
                    continue;
                }
                let Some(start) = start else { break };
                if let Some((_, join)) = action.filter(|&(a, _)| a == start)
                    && delivery.is_none_or(|d| d > start)
                    && timer.is_none_or(|t| t > start)
                {
                    // An action is next (it comes after deliveries and deadlines of its instant).
                    if join {
                        // Its sends wait behind the last window's.
                        self.held = Some(replay.arena());
                        self.step();
                        if let Some(h) = self.held.take() {
                            replay.push(h);
                        }
                    } else {
                        self.replay(&mut replay);
                        self.step();
                    }
                } else {
                    let mut limit = start.saturating_add(width).min(end.saturating_add(1)).min(due);
                    if let Some((a, _)) = action {
                        // Deliveries and deadlines at the action's instant come before it.
                        limit = limit.min(a.saturating_add(1));
                    }
                    self.run_window(limit, pool, &quit.helpers, &mut replay, &mut lending);
                }
                after(self);
                self.trace.hand_over(&pool.trace);
            }
            self.replay(&mut replay);
        });
        // The helpers are gone: what is left of the hashing is this thread's.
        self.trace.resume(&pool.trace);
        self.samples = samples;
    }

    /// Sends what the replay holds, in its order, as a single thread would have.
    fn replay(&mut self, replay: &mut Replay) {
        let now = self.now;
        for &(key, a, k) in &replay.order {
            let arena = &replay.arenas[a as usize];
            let s = &arena.sent[k as usize];
            self.now = Instant::from_nanos(key.0);
            self.send(s.from, s.to, &arena.bytes[s.start..s.start + s.len]);
        }
        self.now = now;
        replay.order.clear();
        replay.first = None;
        for arena in std::mem::take(&mut replay.arenas) {
            replay.recycle(arena);
        }
    }

    /// Runs every delivery and deadline due before `limit` on the pool's threads, replaying
    /// the last window's sends meanwhile, and queues this window's sends for the replay.
    fn run_window(
        &mut self,
        limit: u64,
        pool: &Pool<'_>,
        helpers: &[std::thread::ScopedJoinHandle<'_, ()>],
        replay: &mut Replay,
        lending: &mut Lending,
    ) {
        let shares = (helpers.len() + 1) * SHARES_PER_THREAD;
        let mut work: Vec<Work> = (0..shares)
            .map(|_| {
                let mut w = lending.spare.pop().unwrap_or_default();
                w.limit = limit;
                w.arena = replay.arena();
                w
            })
            .collect();
        lending.place.clear();
        lending.load.clear();
        lending.load.resize(shares, 0);
        lending.freed.clear();
        let mut events = 0usize;
        let mut nobody = 0u64;
        let mut stale = 0u64;
        // Which share runs node `i` (the least loaded one when first met), its index there.
        let visit = |sim: &mut Sim, work: &mut Vec<Work>, lending: &mut Lending, i: u32| -> Option<(usize, u32)> {
            if let Some(&(share, local)) = lending.place.get(&i) {
                lending.load[share as usize] += 1;
                return Some((share as usize, local));
            }
            let ep = sim.nodes[i as usize].ep.take()?;
            let share = (0..shares).min_by_key(|&s| lending.load[s]).unwrap_or(0);
            lending.load[share] += 1;
            let w = &mut work[share];
            let local = w.visits.len() as u32;
            w.visits.push(Visit {
                i,
                ep,
                timer_at: sim.timer_at[i as usize],
                tracked: sim.tracked.remove(&i),
                joining: sim.joining.remove(&i),
                busy: sim.busy[i as usize],
            });
            lending.place.insert(i, (share as u32, local));
            Some((share, local))
        };
        while self.deliveries.peek().is_some_and(|p| p.at < limit) {
            let Some(p) = self.deliveries.pop() else { break };
            if let Some(&Packet { to, slot, .. }) = self.deliveries.peek() {
                // What lending the next one reads, loading while this one is lent.
                prefetch(&self.nodes[to as usize]);
                prefetch(&self.timer_at[to as usize]);
                prefetch(&self.payloads[slot as usize]);
            }
            events += 1;
            match visit(self, &mut work, lending, p.to) {
                Some((share, local)) => {
                    let bytes = std::mem::take(&mut self.payloads[p.slot as usize]);
                    lending.freed.push(p.slot);
                    work[share].deliveries.push(Due {
                        at: p.at,
                        seq: p.seq,
                        local,
                        from: p.from,
                        from_addr: self.addr(p.from),
                        bytes,
                    });
                }
                None => {
                    nobody += 1;
                    self.free_payloads.push(p.slot);
                }
            }
        }
        while let Some((at, i)) = self.next_timer().filter(|&(at, _)| at < limit) {
            self.timers.pop();
            if let Some(&(_, next)) = self.timers.peek() {
                prefetch(&self.nodes[next as usize]);
                prefetch(&self.timer_at[next as usize]);
            }
            events += 1;
            match visit(self, &mut work, lending, i) {
                Some((share, local)) => work[share].timers.push(Reverse((at, i, local))),
                None => {
                    // No engine (a single thread pops it and finds nothing to run).
                    self.timer_at[i as usize] = u64::MAX;
                    stale += 1;
                }
            }
        }
        let done: Vec<Done> = if events < SMALL_WINDOW {
            // A small window is not worth handing over: one share, on this thread.
            let mut all = Work { limit, arena: replay.arena(), ..Work::default() };
            for w in work {
                let base = all.visits.len() as u32;
                all.visits.extend(w.visits);
                all.deliveries.extend(w.deliveries.into_iter().map(|d| Due { local: d.local + base, ..d }));
                all.timers.extend(w.timers.into_iter().map(|Reverse((at, i, l))| Reverse((at, i, l + base))));
                replay.recycle(w.arena);
            }
            all.deliveries.sort_unstable_by_key(|d| (d.at, d.seq));
            self.replay(replay);
            vec![all.run(pool.ctx)]
        } else {
            self.shared_windows += 1;
            let mut taken = Vec::with_capacity(shares);
            for (w, &load) in work.into_iter().zip(&lending.load) {
                if w.visits.is_empty() {
                    replay.recycle(w.arena);
                } else {
                    taken.push((load, w));
                }
            }
            // The largest shares are taken first (from the end), so the last ones to run are
            // short and the threads finish together.
            taken.sort_unstable_by_key(|(load, _)| *load);
            let taken: Vec<Work> = taken.into_iter().map(|(_, w)| w).collect();
            pool.open.store(taken.len(), Ordering::Release);
            *lock(&pool.queue) = taken;
            pool.window.fetch_add(1, Ordering::AcqRel);
            for h in helpers {
                h.thread().unpark();
            }
            // The last window's sends cannot arrive inside this one (`advance` ends it before).
            if !replay.order.is_empty() {
                self.late_replays += 1;
                self.replay(replay);
                // Hashed by a thread that runs out of shares before this one does.
                self.trace.hand_over(&pool.trace);
            }
            pool.take_shares();
            pool.wait();
            std::mem::take(&mut *lock(&pool.done))
        };
        self.finish_window(done, replay, lending, nobody, stale);
    }

    /// Puts the nodes back, queues the window's sends for the replay and records the lookups
    /// that ended (after replaying the window's sends, as a single thread sends them before).
    /// `nobody`: the window's datagrams that found no engine; `idle`: its deadlines whose node
    /// had none.
    fn finish_window(&mut self, done: Vec<Done>, replay: &mut Replay, lending: &mut Lending, nobody: u64, idle: u64) {
        let events = nobody + idle + done.iter().map(|d| d.events).sum::<u64>();
        self.stats.steps += events;
        self.stats.to_nobody += nobody;
        let mut last = self.now.as_nanos();
        let mut finished = Vec::new();
        let mut arenas = Vec::with_capacity(done.len());
        let mut freed = lending.freed.drain(..);
        for mut d in done {
            last = last.max(d.last);
            self.stats.answered += d.answered;
            for v in d.visits.drain(..) {
                let i = v.i as usize;
                self.nodes[i].ep = Some(v.ep);
                if let Some(t) = v.tracked {
                    self.tracked.insert(v.i, t);
                }
                if let Some(op) = v.joining {
                    self.joining.insert(v.i, op);
                }
                if v.timer_at != self.timer_at[i] {
                    self.timer_at[i] = v.timer_at;
                    if v.timer_at != u64::MAX {
                        self.timers.push((v.timer_at, v.i));
                    }
                }
                self.set_busy(v.i, v.busy);
            }
            // The delivered datagrams' slots keep buffers, as after a single-thread delivery.
            // Which buffer goes to which slot does not matter: a slot's buffer is overwritten
            // on reuse.
            for (bytes, slot) in d.buffers.into_iter().zip(freed.by_ref()) {
                if self.free_payloads.len() <= 2 * self.deliveries.len() + 1024 {
                    self.payloads[slot as usize] = bytes;
                }
                self.free_payloads.push(slot);
            }
            finished.extend(d.finished);
            arenas.push(d.arena);
            if lending.spare.len() < SPARE_ARENAS {
                lending.spare.push(Work {
                    visits: d.visits,
                    deliveries: d.deliveries,
                    timers: d.timers,
                    ..Work::default()
                });
            }
        }
        drop(freed);
        self.deliveries.give_back_room();
        replay.push_window(arenas);
        if !finished.is_empty() {
            self.replay(replay);
            finished.sort_unstable_by_key(|f| f.key);
            for f in finished {
                self.finish_lookup(f.i, f.tracked, &f.closest, f.outcome, Instant::from_nanos(f.key.0));
            }
        }
        self.now = Instant::from_nanos(last);
        if self.timers.len() > 2 * self.nodes.len() + 1024 {
            self.compact_timers();
        }
        // As many full checks as a single thread makes over as many steps.
        self.steps_since_check += events;
        while self.steps_since_check >= self.scenario.invariant_every.max(1) {
            self.steps_since_check -= self.scenario.invariant_every.max(1);
            self.check_sample();
        }
    }
}
