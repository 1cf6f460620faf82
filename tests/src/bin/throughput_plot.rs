//! `throughput_plot`: draws the bar chart of the loopback serving benchmark
//! (`tests/bench/throughput.sh --svg FILE`) from the `loadgen` result lines of a run.
//!
//! ```text
//! throughput_plot RESULTS OUT.svg [CAPTION]
//! ```
//!
//! RESULTS holds one `round=N label=NAME replies_per_s=... server_us_per_reply=...
//! server_user_us_per_reply=...` line per server and round (`throughput.sh --raw`). Left: the
//! median replies per second of each server, with the range over the rounds, its ratio to the
//! plain UDP echo (`echo`) and lines at the echo's rate and at 0.9 of it. Right: the server's
//! CPU time per reply, user space and kernel. CAPTION (lines separated by newlines) goes under
//! the title.
#![allow(clippy::print_stdout, clippy::print_stderr)] // a tool that reports what it wrote

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;

/// One server's measurements over the rounds.
#[derive(Default)]
struct Server {
    /// Replies per second, by round.
    rate: BTreeMap<u32, f64>,
    /// Server CPU µs per reply (user + system), and the user part.
    cpu_us: Vec<f64>,
    user_us: Vec<f64>,
}

fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

fn label(name: &str) -> String {
    match name {
        "echo" => "(c) UDP echo, recv_from + send_to".into(),
        "echo-batch" => "(c′) UDP echo, recvmmsg/sendmmsg".into(),
        "tokio" => "(a) krpc serve (tokio driver)".into(),
        "std" => "(b) krpc-std serve (driver thread)".into(),
        "std-manual" => "(b) krpc-std serve --manual".into(),
        "js" => "(d) JavaScript k-rpc 5.1.0".into(),
        other => other.to_string(),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A round step for an axis reaching `max` with about `ticks` ticks.
fn step(max: f64, ticks: f64) -> f64 {
    let raw = max / ticks;
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn thousands(v: f64) -> String {
    if v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v:.0}") }
}

fn parse(text: &str) -> Vec<(String, Server)> {
    let mut servers: Vec<(String, Server)> = Vec::new();
    for line in text.lines() {
        let fields: BTreeMap<&str, &str> = line.split_whitespace().filter_map(|f| f.split_once('=')).collect();
        let (Some(name), Some(round)) = (fields.get("label"), fields.get("round").and_then(|r| r.parse().ok())) else {
            continue;
        };
        let number = |key: &str| fields.get(key).and_then(|v| v.parse::<f64>().ok());
        let at = match servers.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                servers.push((name.to_string(), Server::default()));
                servers.len() - 1
            }
        };
        let server = &mut servers[at].1;
        if let Some(rate) = number("replies_per_s") {
            server.rate.insert(round, rate);
        }
        server.cpu_us.extend(number("server_us_per_reply"));
        server.user_us.extend(number("server_user_us_per_reply"));
    }
    servers
}

fn draw(servers: &[(String, Server)], caption: &str) -> String {
    let echo = servers.iter().find(|(n, _)| n == "echo").map(|(_, s)| s);
    let mut caption: Vec<&str> = caption.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    caption.push("× c: the median over the rounds of each round's ratio to the echo (c) of the same round.");
    let (row, bar) = (34.0, 20.0);
    let (label_w, left_w, gap, right_w) = (250.0, 430.0, 40.0, 230.0);
    let top = 58.0 + 15.0 * caption.len() as f64;
    let plot_h = row * servers.len() as f64;
    let (width, height) = (label_w + left_w + gap + right_w + 20.0, top + plot_h + 70.0);
    let x0 = label_w;
    let x1 = x0 + left_w + gap;

    let rates: Vec<f64> = servers.iter().flat_map(|(_, s)| s.rate.values().copied()).collect();
    let max_rate = rates.iter().copied().fold(1.0, f64::max) * 1.12;
    let rate_step = step(max_rate, 5.0);
    let max_rate = (max_rate / rate_step).ceil() * rate_step;
    let sx = |v: f64| x0 + v / max_rate * left_w;
    let cpus: Vec<f64> = servers.iter().filter_map(|(_, s)| median(&s.cpu_us)).collect();
    let max_cpu = cpus.iter().copied().fold(1.0, f64::max) * 1.25;
    let cpu_step = step(max_cpu, 4.0);
    let max_cpu = (max_cpu / cpu_step).ceil() * cpu_step;
    let cx = |v: f64| x1 + v / max_cpu * right_w;

    let mut svg = String::new();
    let w = &mut svg;
    let _ = writeln!(
        w,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(w, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        w,
        r#"<text x="10" y="22" font-size="15" font-weight="bold">Loopback ping service: replies per second (median of the rounds, bars from min to max)</text>"#
    );
    for (i, line) in caption.iter().enumerate() {
        let _ = writeln!(w, r##"<text x="10" y="{:.0}" fill="#444">{}</text>"##, 40.0 + 15.0 * i as f64, escape(line));
    }
    // Grids and axes.
    let bottom = top + plot_h;
    let mut v = 0.0;
    while v <= max_rate + 1e-9 {
        let x = sx(v);
        let _ = writeln!(w, r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#e4e4e4"/>"##);
        let _ =
            writeln!(w, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"#, bottom + 15.0, thousands(v));
        v += rate_step;
    }
    let mut v = 0.0;
    while v <= max_cpu + 1e-9 {
        let x = cx(v);
        let _ = writeln!(w, r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#e4e4e4"/>"##);
        let _ = writeln!(w, r#"<text x="{x:.1}" y="{:.1}" text-anchor="middle">{v}</text>"#, bottom + 15.0);
        v += cpu_step;
    }
    let _ = writeln!(
        w,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">replies per second (window of pings in flight, one client)</text>"#,
        x0 + left_w / 2.0,
        bottom + 32.0
    );
    let _ = writeln!(
        w,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">server CPU µs per reply</text>"#,
        x1 + right_w / 2.0,
        bottom + 32.0
    );
    let _ = writeln!(
        w,
        r##"<rect x="{x1:.1}" y="{:.1}" width="10" height="10" fill="#2b6cb0"/><text x="{:.1}" y="{:.1}">user</text><rect x="{:.1}" y="{:.1}" width="10" height="10" fill="#a3bfe0"/><text x="{:.1}" y="{:.1}">kernel</text>"##,
        bottom + 42.0,
        x1 + 14.0,
        bottom + 51.0,
        x1 + 60.0,
        bottom + 42.0,
        x1 + 74.0,
        bottom + 51.0
    );
    for (i, (name, server)) in servers.iter().enumerate() {
        let y = top + row * i as f64 + (row - bar) / 2.0;
        let mid = y + bar / 2.0 + 4.0;
        let _ =
            writeln!(w, r#"<text x="{:.1}" y="{mid:.1}" text-anchor="end">{}</text>"#, x0 - 8.0, escape(&label(name)));
        let rates: Vec<f64> = server.rate.values().copied().collect();
        let Some(rate) = median(&rates) else { continue };
        let color = match name.as_str() {
            "echo" | "echo-batch" => "#888888",
            "js" => "#d69e2e",
            _ => "#2b6cb0",
        };
        let _ = writeln!(
            w,
            r#"<rect x="{x0:.1}" y="{y:.1}" width="{:.1}" height="{bar:.1}" fill="{color}"/>"#,
            sx(rate) - x0
        );
        let (lo, hi) = rates.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        let _ = writeln!(
            w,
            r##"<line x1="{:.1}" y1="{mid:.1}" x2="{:.1}" y2="{mid:.1}" stroke="#222" stroke-width="1.5"/>"##,
            sx(lo),
            sx(hi)
        );
        // The ratio to the echo of the same round, median over the rounds.
        let ratios: Vec<f64> = echo
            .map(|e| server.rate.iter().filter_map(|(r, v)| e.rate.get(r).map(|e| v / e)).collect())
            .unwrap_or_default();
        let ratio = median(&ratios).map_or_else(String::new, |r| format!(" ({r:.2}× c)"));
        let _ = writeln!(w, r#"<text x="{:.1}" y="{mid:.1}">{}{ratio}</text>"#, sx(hi) + 5.0, thousands(rate));
        if let (Some(cpu), Some(user)) = (median(&server.cpu_us), median(&server.user_us)) {
            let user = user.min(cpu);
            let _ = writeln!(
                w,
                r##"<rect x="{x1:.1}" y="{y:.1}" width="{:.1}" height="{bar:.1}" fill="#2b6cb0"/><rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{bar:.1}" fill="#a3bfe0"/><text x="{:.1}" y="{mid:.1}">{cpu:.2}</text>"##,
                cx(user) - x1,
                cx(user),
                cx(cpu) - cx(user),
                cx(cpu) + 5.0
            );
        }
    }
    if let Some(echo) = echo.and_then(|e| median(&e.rate.values().copied().collect::<Vec<_>>())) {
        // The echo's rate, labelled right of its line; the target, left of its own.
        for (factor, text, dash, anchor, dx) in [(1.0, "c", "6 3", "start", 3.0), (0.9, "0.9 × c", "2 3", "end", -3.0)]
        {
            let x = sx(echo * factor);
            let _ = writeln!(
                w,
                r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{bottom:.1}" stroke="#c53030" stroke-dasharray="{dash}"/><text x="{:.1}" y="{:.1}" text-anchor="{anchor}" fill="#c53030">{text}</text>"##,
                top - 14.0,
                x + dx,
                top - 4.0
            );
        }
    }
    let _ = writeln!(w, "</svg>");
    svg
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(output)) = (args.first(), args.get(1)) else {
        eprintln!("usage: throughput_plot RESULTS OUT.svg [CAPTION]");
        return ExitCode::from(2);
    };
    let text = match std::fs::read_to_string(input) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("throughput_plot: {input}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let servers = parse(&text);
    if servers.is_empty() {
        eprintln!("throughput_plot: no result lines in {input}");
        return ExitCode::FAILURE;
    }
    let caption = args.get(2).map_or("", String::as_str);
    if let Err(error) = std::fs::write(output, draw(&servers, caption)) {
        eprintln!("throughput_plot: {output}: {error}");
        return ExitCode::FAILURE;
    }
    println!("wrote {output}");
    ExitCode::SUCCESS
}
