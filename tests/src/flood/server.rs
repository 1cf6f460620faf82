//! The target: `krpc serve --json` (the krpc-tokio command-line tool) as a child process, and
//! what Linux's `/proc` says about it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{Map, Value};

/// The `krpc` binary of krpc-tokio in `target_dir/<profile>/`, built there first with
/// `cargo build -p krpc-tokio --features cli --bin krpc` (the binary needs the `cli`
/// feature; a no-op when a `cargo test --workspace` already built it). `CARGO_BIN_EXE_krpc`
/// is only set for krpc-tokio's own tests, so this library finds the binary through the
/// target directory of the executable that calls it ([`own_target_dir`]).
pub fn build_krpc(target_dir: &Path, release: bool) -> Result<PathBuf, String> {
    let profile = if release { "release" } else { "debug" };
    let binary = target_dir.join(profile).join(format!("krpc{}", std::env::consts::EXE_SUFFIX));
    // Always ask cargo: a no-op when the binary is up to date, and a stale binary (from
    // before a change to krpc-tokio) would measure the wrong code.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../krpc-tokio/Cargo.toml");
    let mut build = Command::new(env!("CARGO"));
    build.args(["build", "--quiet", "--features", "cli", "--bin", "krpc", "--manifest-path"]).arg(&manifest);
    build.arg("--target-dir").arg(target_dir);
    if release {
        build.arg("--release");
    }
    let status = build.status().map_err(|error| format!("cannot run cargo: {error}"))?;
    if !status.success() {
        return Err("cargo build -p krpc-tokio --features cli --bin krpc failed".into());
    }
    if !binary.is_file() {
        return Err(format!("no krpc binary at {}", binary.display()));
    }
    Ok(binary)
}

/// The target directory and profile of the running executable (`target/<profile>/...`), so
/// that the server is built next to it: `(target_dir, release)`.
pub fn own_target_dir() -> Option<(PathBuf, bool)> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/<bin>, or target/<profile>/deps/<test>
    let mut dir = exe.parent()?;
    if dir.file_name().is_some_and(|name| name == "deps" || name == "examples") {
        dir = dir.parent()?;
    }
    let release = dir.file_name().is_some_and(|name| name == "release");
    Some((dir.parent()?.to_path_buf(), release))
}

/// A running `krpc serve --json` process.
#[derive(Debug)]
pub struct Server {
    child: Child,
    addr: SocketAddr,
    id: String,
    /// The latest `{"event":"stats"}` line.
    stats: Arc<Mutex<Option<Map<String, Value>>>>,
    /// The `{"event":"done"}` line, once the server stops.
    done: Receiver<Map<String, Value>>,
    reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `krpc --json serve --bind BIND --interval INTERVAL` and waits for its
    /// `listening` line. `bind` must be on loopback.
    pub fn start(krpc: &Path, bind: SocketAddr, interval: Duration) -> Result<Server, String> {
        if !bind.ip().is_loopback() {
            return Err(format!("{bind} is not a loopback address"));
        }
        let mut child = Command::new(krpc)
            .args(["--json", "serve", "--bind", &bind.to_string(), "--interval"])
            .arg(format!("{}", interval.as_secs_f64()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", krpc.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        let listening = match lines.read_line(&mut first) {
            Ok(n) if n > 0 => serde_json::from_str::<Value>(&first).ok(),
            _ => None,
        };
        let listening = match listening {
            Some(line) if line["event"] == "listening" => line,
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("krpc serve did not start: {first:?}"));
            }
        };
        let addr = listening["addr"].as_str().and_then(|a| a.parse().ok()).ok_or("no addr in the listening line")?;
        let id = listening["id"].as_str().unwrap_or_default().to_owned();
        let stats = Arc::new(Mutex::new(None));
        let (done_tx, done) = mpsc::channel();
        let latest = stats.clone();
        let reader = std::thread::Builder::new()
            .name("server-stdout".into())
            .spawn(move || {
                for line in lines.lines() {
                    let Ok(line) = line else { break };
                    let Ok(Value::Object(object)) = serde_json::from_str::<Value>(&line) else { continue };
                    match object.get("event").and_then(Value::as_str) {
                        Some("stats") => *latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(object),
                        Some("done") => {
                            let _ = done_tx.send(object);
                        }
                        _ => {}
                    }
                }
            })
            .map_err(|error| format!("cannot start a thread: {error}"))?;
        Ok(Server { child, addr, id, stats, done, reader: Some(reader) })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its node id, in hex.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running (`false` once it has exited, for any reason).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The latest statistics line the server printed.
    pub fn latest_stats(&self) -> Option<Map<String, Value>> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Waits until the server has printed a statistics line later than the one seen now (at
    /// most `limit`), so that the counters cover everything sent before this call.
    pub fn fresh_stats(&self, limit: Duration) -> Option<Map<String, Value>> {
        let elapsed = |stats: &Option<Map<String, Value>>| {
            stats.as_ref().and_then(|s| s.get("elapsed_ms")).and_then(Value::as_f64).unwrap_or(-1.0)
        };
        let before = elapsed(&self.latest_stats());
        let step = Duration::from_millis(20);
        let mut waited = Duration::ZERO;
        while waited < limit {
            let now = self.latest_stats();
            if elapsed(&now) > before {
                return now;
            }
            sleep(step);
            waited += step;
        }
        None
    }

    /// Stops the server with SIGINT (its Ctrl-C: it prints a final `done` line) and returns that
    /// line; kills it if it has not ended within `limit`. `None` when the process had already
    /// ended or printed nothing.
    pub fn stop(mut self, limit: Duration) -> Option<Map<String, Value>> {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).ok()?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let done = self.done.recv_timeout(limit).ok();
        self.kill();
        done
    }

    fn kill(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

#[allow(clippy::disallowed_methods)] // a load generator waits on the real clock
fn sleep(duration: Duration) {
    std::thread::sleep(duration);
}

/// Resident memory of a process, from `/proc/PID/status`: `(VmRSS, VmHWM)` in bytes (current
/// and peak). Linux only; `None` elsewhere or when the process is gone.
pub fn rss(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kb: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// CPU time a process has used so far, every thread, user plus system, in seconds (from
/// `/proc/PID/stat`, fields 14 and 15). Linux only.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may contain anything: count fields after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 is the first here
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks())
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once (100 on every Linux this runs on).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|&ticks: &f64| ticks > 0.0)
            .unwrap_or(100.0)
    })
}

/// Datagrams the kernel dropped because this IPv4 UDP socket's receive queue was full, and the
/// bytes waiting in it now: `(drops, rx_queue)`, from `/proc/net/udp`. Linux only.
pub fn udp_socket(addr: SocketAddr) -> Option<(u64, u64)> {
    let SocketAddr::V4(addr) = addr else { return None };
    // `/proc/net/udp` writes the address as the hex of its in-memory (network order) u32, read
    // as a native integer: on little-endian machines the octets appear reversed.
    let ip = u32::from_ne_bytes(addr.ip().octets());
    let local = format!("{ip:08X}:{:04X}", addr.port());
    let table = std::fs::read_to_string("/proc/net/udp").ok()?;
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&local.as_str()) {
            return None;
        }
        let queue = u64::from_str_radix(fields.get(4)?.split(':').nth(1)?, 16).ok()?;
        Some((fields.get(12)?.parse().ok()?, queue))
    })
}
