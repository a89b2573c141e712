//! Timing helpers: medians of interleaved rounds, latency percentiles, resident memory.

use std::time::{Duration, Instant};

/// How many adds a `PERSIST_BENCH_PROFILE` run makes: `PERSIST_BENCH_N`, else `default`.
pub(crate) fn profile_adds(default: usize) -> usize {
    std::env::var("PERSIST_BENCH_N").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 }
}

/// Percentile `p` (0–100) of latencies, in microseconds.
pub(crate) fn percentile(latencies: &mut [Duration], p: f64) -> f64 {
    if latencies.is_empty() {
        return 0.0;
    }
    latencies.sort_unstable();
    let rank = ((p / 100.0) * (latencies.len() - 1) as f64).round() as usize;
    latencies[rank.min(latencies.len() - 1)].as_secs_f64() * 1e6
}

/// The median and the 99th percentile of latencies, in microseconds.
pub(crate) fn p50_p99(latencies: &mut [Duration]) -> (f64, f64) {
    (percentile(latencies, 50.0), percentile(latencies, 99.0))
}

/// Ops per second of `ops` done in `elapsed`.
pub(crate) fn rate(ops: usize, elapsed: Duration) -> f64 {
    ops as f64 / elapsed.as_secs_f64()
}

/// Times one closure run.
pub(crate) fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let out = f();
    (out, start.elapsed())
}

/// Resident set size of this process, in bytes (Linux `/proc/self/statm`).
pub(crate) fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
