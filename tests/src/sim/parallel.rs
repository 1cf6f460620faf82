//! Windows of a run on several threads, with the trace of one
//! ([`Scenario::threads`](super::Scenario::threads)).
//!
//! A datagram reaches another node no sooner than the link's shortest one-way delay `W`. So
//! within a window of virtual time shorter than `W`, what happens at one node cannot change
//! what happens at another: every datagram sent inside the window arrives after it. The
//! window's deliveries and engine deadlines are split by node among threads, and each thread
//! runs its nodes through the window in the order a single thread would.
//!
//! Three things of the run are shared and sequential: the link's random stream (drawn in send
//! order), the sequence number that orders datagrams due at the same instant, and the trace
//! hash over every datagram in send order. All three depend only on the sends, and no send
//! takes effect before the window ends. So each thread only records its sends, keyed by when
//! a single thread would have made them (time, then a delivery before a deadline, then the
//! delivery's sequence number or the deadline's node, then the order within the event), and
//! after the window the main thread replays them in that order through the same code as a
//! single-threaded run: the trace hash is the same for any number of threads.
//!
//! What stays on the main thread: scripted actions (joins, lookups started, churn), which draw
//! from the run's random streams and so end a window; that replay; and the records of measured
//! lookups, filled in when the window ends (they read the oracle and other nodes, which no
//! thread changes inside a window in the runs this applies to).
//!
//! Runs whose nodes read one another inside a window, or whose windows would be too short to
//! share, stay on one thread ([`Sim::window`] says which): value holders and attackers (an
//! answer depends on the oracle's view of other nodes), NATs (their tables are not lent with
//! the nodes), kept command events, per-pair delays (log-normal: no floor worth a window),
//! adaptive read-only nodes (the truth a lookup is measured against changes with them) and
//! counted holders of missed nodes.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::mpsc;

use krpc_core::{Endpoint, Event, Instant, LookupNode, LookupOutcome, OpId};

use super::answer::Responder;
use super::link::Latency;
use super::{NodeId, Sim, Tracked, answer_query, check_cheap, tap_in, tap_out};

/// Below this many events a window runs on the main thread: handing it over would cost more.
const SMALL_WINDOW: usize = 48;

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

/// One thread's share of a window.
#[derive(Default)]
struct Work {
    limit: u64,
    visits: Vec<Visit>,
    /// By (time, sequence number).
    deliveries: Vec<Due>,
    /// (time, node, local index).
    timers: Vec<Reverse<(u64, u32, u32)>>,
}

/// When a single thread would have sent a datagram: (time, 0 for a delivery or 1 for a
/// deadline, the delivery's sequence number or the deadline's node, order within the event).
type SendKey = (u64, u8, u64, u32);

/// A datagram a thread's nodes sent, to be replayed.
struct Sent {
    key: SendKey,
    from: u32,
    to: SocketAddr,
    start: usize,
    len: usize,
}

/// A measured lookup that ended inside the window.
struct Finished {
    at: u64,
    i: u32,
    tracked: Tracked,
    closest: Vec<LookupNode>,
    outcome: LookupOutcome,
}

/// What a thread hands back.
#[derive(Default)]
struct Done {
    visits: Vec<Visit>,
    sent: Vec<Sent>,
    bytes: Vec<u8>,
    finished: Vec<Finished>,
    /// The delivered datagrams' buffers, for reuse.
    buffers: Vec<Vec<u8>>,
    events: u64,
    answered: u64,
    last: u64,
}

impl Work {
    /// Runs the share through the window, in single-thread order.
    fn run(self, ctx: &Ctx<'_>) -> Done {
        let Work { limit, mut visits, deliveries, timers } = self;
        let mut out = Done { buffers: Vec::with_capacity(deliveries.len()), ..Done::default() };
        let mut timers = BinaryHeap::from(timers);
        let mut buf = vec![0u8; 1500];
        let mut deliveries = deliveries.into_iter().peekable();
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
        out.visits = visits;
        out
    }
}

/// [`Sim::touch`] inside a window: drains the node's outputs, recording its sends, and keeps
/// a deadline that falls inside the window.
#[allow(clippy::too_many_arguments)] // one call site each way; a struct would only rename them
fn touch(
    v: &mut Visit,
    local: u32,
    event: (u64, u8, u64),
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
            let start = out.bytes.len();
            out.bytes.extend_from_slice(bytes);
            out.sent.push(Sent {
                key: (event.0, event.1, event.2, order),
                from: v.i,
                to: t.destination,
                start,
                len: bytes.len(),
            });
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
                            out.finished.push(Finished { at: event.0, i: v.i, tracked, closest, outcome });
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

/// The main thread's pieces of a run going by windows: the helper threads' channels.
struct Pool {
    helpers: Vec<(mpsc::Sender<Work>, mpsc::Receiver<Done>)>,
}

impl Sim {
    /// How many windows ran their nodes on more than one thread
    /// ([`Scenario::threads`](super::Scenario::threads)).
    pub fn shared_windows(&self) -> u64 {
        self.shared_windows
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
        let ctx = &ctx;
        std::thread::scope(|scope| {
            let mut pool = Pool { helpers: Vec::new() };
            for _ in 1..self.scenario.threads {
                let (work_tx, work_rx) = mpsc::channel::<Work>();
                let (done_tx, done_rx) = mpsc::channel::<Done>();
                scope.spawn(move || {
                    for work in work_rx {
                        if done_tx.send(work.run(ctx)).is_err() {
                            break;
                        }
                    }
                });
                pool.helpers.push((work_tx, done_rx));
            }
            while !stop(self) {
                let delivery = self.deliveries.peek().map(|p| p.at);
                let timer = self.next_timer().map(|(at, _)| at);
                let action = self.actions.peek().map(|Reverse(a)| a.0);
                let Some(start) = [delivery, timer, action].into_iter().flatten().min() else { break };
                if start > end {
                    break;
                }
                if action == Some(start) && delivery.is_none_or(|d| d > start) && timer.is_none_or(|t| t > start) {
                    // An action is next (it comes after deliveries and deadlines of its instant).
                    self.step();
                } else {
                    let mut limit = start.saturating_add(width).min(end.saturating_add(1));
                    if let Some(a) = action {
                        // Deliveries and deadlines at the action's instant come before it.
                        limit = limit.min(a.saturating_add(1));
                    }
                    self.run_window(limit, &pool, ctx);
                }
                after(self);
            }
        });
        self.samples = samples;
    }

    /// Runs every delivery and deadline due before `limit` on the pool's threads, then
    /// replays their sends and fills in the lookups that ended.
    fn run_window(&mut self, limit: u64, pool: &Pool, ctx: &Ctx<'_>) {
        let shares = pool.helpers.len() + 1;
        let mut work: Vec<Work> = (0..shares).map(|_| Work { limit, ..Work::default() }).collect();
        let mut load = vec![0usize; shares];
        let mut place: HashMap<u32, (usize, u32)> = HashMap::new();
        let mut freed: Vec<u32> = Vec::new();
        let mut events = 0usize;
        let mut nobody = 0u64;
        let mut stale = 0u64;
        // Which share runs node `i` (the least loaded one when first met), its index there.
        let mut visit = |sim: &mut Sim, work: &mut Vec<Work>, i: u32| -> Option<(usize, u32)> {
            if let Some(&p) = place.get(&i) {
                load[p.0] += 1;
                return Some(p);
            }
            let ep = sim.nodes[i as usize].ep.take()?;
            let share = (0..shares).min_by_key(|&s| load[s]).unwrap_or(0);
            load[share] += 1;
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
            place.insert(i, (share, local));
            Some((share, local))
        };
        while self.deliveries.peek().is_some_and(|p| p.at < limit) {
            let Some(p) = self.deliveries.pop() else { break };
            events += 1;
            match visit(self, &mut work, p.to) {
                Some((share, local)) => {
                    let bytes = std::mem::take(&mut self.payloads[p.slot as usize]);
                    freed.push(p.slot);
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
            events += 1;
            match visit(self, &mut work, i) {
                Some((share, local)) => work[share].timers.push(Reverse((at, i, local))),
                None => {
                    // No engine (a single thread pops it and finds nothing to run).
                    self.timer_at[i as usize] = u64::MAX;
                    stale += 1;
                }
            }
        }
        // A small window is not worth handing over: one share, on this thread.
        let done: Vec<Done> = if events < SMALL_WINDOW {
            let mut all = Work { limit, ..Work::default() };
            for w in work {
                let base = all.visits.len() as u32;
                all.visits.extend(w.visits);
                all.deliveries.extend(w.deliveries.into_iter().map(|d| Due { local: d.local + base, ..d }));
                all.timers.extend(w.timers.into_iter().map(|Reverse((at, i, l))| Reverse((at, i, l + base))));
            }
            all.deliveries.sort_unstable_by_key(|d| (d.at, d.seq));
            vec![all.run(ctx)]
        } else {
            self.shared_windows += 1;
            let mut mine = work.swap_remove(0);
            // `swap_remove` put the last share first: the order of shares does not matter.
            for (w, (tx, _)) in work.into_iter().zip(&pool.helpers) {
                // A helper that died panicked; its panic surfaces when the scope ends.
                let _ = tx.send(w);
            }
            mine.deliveries.sort_unstable_by_key(|d| (d.at, d.seq));
            let mut done = vec![mine.run(ctx)];
            done.extend(pool.helpers.iter().filter_map(|(_, rx)| rx.recv().ok()));
            done
        };
        self.finish_window(done, freed, nobody, stale);
    }

    /// Puts the nodes back, replays the window's sends in single-thread order and records the
    /// lookups that ended. `nobody`: the window's datagrams that found no engine; `idle`: its
    /// deadlines whose node had none.
    fn finish_window(&mut self, done: Vec<Done>, freed: Vec<u32>, nobody: u64, idle: u64) {
        let events = nobody + idle + done.iter().map(|d| d.events).sum::<u64>();
        self.stats.steps += events;
        self.stats.to_nobody += nobody;
        let mut last = self.now.as_nanos();
        let mut buffers = Vec::new();
        let mut finished = Vec::new();
        for d in &done {
            last = last.max(d.last);
            self.stats.answered += d.answered;
        }
        let mut sends: Vec<(SendKey, usize, usize)> = Vec::new();
        let mut arenas = Vec::with_capacity(done.len());
        for (share, d) in done.into_iter().enumerate() {
            for v in d.visits {
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
            sends.extend(d.sent.iter().enumerate().map(|(k, s)| (s.key, share, k)));
            buffers.extend(d.buffers);
            finished.extend(d.finished);
            arenas.push((d.sent, d.bytes));
        }
        // The delivered datagrams' slots keep buffers, as after a single-thread delivery. Which
        // buffer goes to which slot does not matter: a slot's buffer is overwritten on reuse.
        for (slot, bytes) in freed.into_iter().zip(buffers) {
            if self.free_payloads.len() <= 2 * self.deliveries.len() + 1024 {
                self.payloads[slot as usize] = bytes;
            }
            self.free_payloads.push(slot);
        }
        self.deliveries.give_back_room();
        sends.sort_unstable_by_key(|s| s.0);
        for (key, share, k) in sends {
            let (sent, bytes) = &arenas[share];
            let s = &sent[k];
            self.now = Instant::from_nanos(key.0);
            self.send(s.from, s.to, &bytes[s.start..s.start + s.len]);
        }
        for f in finished {
            self.finish_lookup(f.i, f.tracked, &f.closest, f.outcome, Instant::from_nanos(f.at));
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
