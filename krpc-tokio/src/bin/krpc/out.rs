//! Output: JSON lines or text on stdout, errors and progress on stderr.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use krpc_tokio::Rpc;
use krpc_tokio::core::Stats;
use serde_json::{Map, Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why a command failed (exit code 1, or 2 for a usage error found after parsing): one line on
/// stderr, and with `--json` an `{"event":"error"}` line on stdout.
#[derive(Debug)]
pub(crate) struct Failure {
    message: String,
    /// For decode errors: where in the datagram.
    offset: Option<usize>,
    /// The exit code: 1 (failure at run time) or 2 (usage error).
    code: u8,
}

impl Failure {
    pub(crate) fn new(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), offset: None, code: 1 }
    }

    pub(crate) fn at(message: impl Into<String>, offset: usize) -> Failure {
        Failure { message: message.into(), offset: Some(offset), code: 1 }
    }

    /// A usage error that only shows once the arguments are put together (exit code 2), e.g.
    /// a `--bind` of one address family with nodes of the other.
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure { message: message.into(), offset: None, code: 2 }
    }
}

/// Where results go.
#[derive(Debug)]
pub(crate) struct Out {
    json: bool,
    /// Text mode with stderr on a terminal: progress lines are shown there.
    progress: bool,
}

impl Out {
    pub(crate) fn new(json: bool) -> Out {
        Out { json, progress: !json && std::io::stderr().is_terminal() }
    }

    pub(crate) fn json(&self) -> bool {
        self.json
    }

    /// One result: `event` (an object) as a JSON line, or `text()` as text lines.
    pub(crate) fn emit(&self, event: Value, text: impl FnOnce() -> String) {
        if self.json {
            println!("{event}");
        } else {
            if self.progress {
                eprint!("\r\x1b[K"); // the result takes the progress line's place
            }
            println!("{}", text());
        }
    }

    /// Reports a failure and gives the exit code for it.
    pub(crate) fn fail(&self, failure: &Failure) -> ExitCode {
        if self.json {
            let mut event = json!({ "event": "error", "message": failure.message });
            if let Some(offset) = failure.offset {
                event["offset"] = offset.into();
            }
            println!("{event}");
        }
        eprintln!("krpc: {}", failure.message);
        ExitCode::from(failure.code)
    }

    /// Something went wrong but the command goes on (`serve` whose bootstrap nobody answered):
    /// with `--json`, `event` on stdout; always a `krpc: ` line on stderr.
    pub(crate) fn warn(&self, event: Value, text: &str) {
        if self.json {
            println!("{event}");
        }
        eprintln!("krpc: {text}");
    }

    /// A note on stderr that is not a failure.
    pub(crate) fn note(&self, text: &str) {
        eprintln!("krpc: note: {text}");
    }
}

/// `n` and the noun: `one` when `n` is 1, else `many`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    if n == 1 { format!("1 {one}") } else { format!("{n} {many}") }
}

/// Milliseconds since `started`, with microsecond precision.
pub(crate) fn ms_since(started: Instant) -> f64 {
    millis(started.elapsed())
}

/// A duration in milliseconds, rounded to the microsecond.
pub(crate) fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1e6).round() / 1e3
}

/// The engine's counters, through the driver.
pub(crate) async fn stats(rpc: &Rpc) -> Stats {
    rpc.inspect(|endpoint| *endpoint.stats()).await.unwrap_or_default()
}

/// The final line of a command: `{"event":"done","command":...,"queries","replies","timeouts",
/// "elapsed_ms", ...extra}`; in text mode, `summary` (if any) then the counts.
pub(crate) async fn done(out: &Out, command: &str, rpc: &Rpc, started: Instant, extra: Value, summary: Option<String>) {
    let stats = stats(rpc).await;
    let elapsed = ms_since(started);
    let mut event = Map::new();
    event.insert("event".into(), "done".into());
    event.insert("command".into(), command.into());
    if let Value::Object(extra) = extra {
        event.extend(extra);
    }
    event.insert("queries".into(), stats.queries_out.into());
    event.insert("replies".into(), stats.replies_in.into());
    event.insert("timeouts".into(), stats.timeouts.into());
    event.insert("elapsed_ms".into(), elapsed.into());
    if out.json() {
        out.emit(Value::Object(event), String::new);
    } else if let Some(summary) = summary {
        let (q, r, t) = (stats.queries_out, stats.replies_in, stats.timeouts);
        println!("{summary} ({q} queries, {r} replies, {t} timeouts, {elapsed:.0} ms)");
    }
}

/// A progress line on stderr while a lookup runs (text mode, stderr a terminal only):
/// queries, replies and timeouts so far, and a count the caller keeps.
pub(crate) struct Progress {
    ticker: Option<JoinHandle<()>>,
    count: Arc<AtomicUsize>,
}

impl Progress {
    pub(crate) fn start(out: &Out, rpc: &Rpc, label: &'static str, counted: Option<&'static str>) -> Progress {
        let count = Arc::new(AtomicUsize::new(0));
        let ticker = out.progress.then(|| {
            let (rpc, count) = (rpc.clone(), count.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    let s = stats(&rpc).await;
                    let counted = counted.map(|noun| format!(", {} {noun}", count.load(Ordering::Relaxed)));
                    eprint!(
                        "\r\x1b[K{label}: {} queries, {} replies, {} timeouts{}",
                        s.queries_out,
                        s.replies_in,
                        s.timeouts,
                        counted.unwrap_or_default()
                    );
                }
            })
        });
        Progress { ticker, count }
    }

    /// Adds one to the caller's count.
    pub(crate) fn bump(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Stops and erases the progress line.
    pub(crate) async fn finish(mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            let _ = ticker.await;
            eprint!("\r\x1b[K");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
    }
}
