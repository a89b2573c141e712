//! The Prometheus text format (version 0.0.4): a family per metric name (`# HELP`, `# TYPE`,
//! then its series), label values escaped, histograms as cumulative `_bucket`s with `+Inf`,
//! `_sum` and `_count`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use metrics::Key;

/// What the metrics of the server and of persist's layers are, for `# HELP`.
pub(super) const HELP: &[(&str, &str)] = &[
    ("persist_serve_requests_total", "Requests answered, by method, route template and status."),
    (
        "persist_serve_request_duration_seconds",
        "Time from a request's arrival to its answer's head, by method and route template.",
    ),
    ("persist_serve_requests_in_flight", "Requests holding a request slot."),
    ("persist_vector_index_budget_bytes", "The most bytes the vector index may hold."),
    ("persist_vector_index_resident_bytes", "The bytes the vector index holds."),
    ("persist_vector_index_tenants", "The tenants whose vectors the vector index holds."),
    ("persist_vector_index_vectors", "The vectors the vector index holds."),
    ("persist_vector_index_clustered_vectors", "The vectors the vector index holds in lists for approximate queries."),
    ("persist_vector_index_queries_total", "Nearest queries, by what answered them: the index, or the store's scan."),
    ("persist_vector_index_builds_total", "Tenants' vectors read into the index from the rows."),
    ("persist_vector_index_restored_total", "Tenants' vectors read into the index from their files and the feed."),
    ("persist_vector_index_saves_total", "Tenants' index files begun (after a build, after enough changes)."),
    ("persist_vector_index_evictions_total", "Tenants dropped from the index to keep to its budget."),
    ("persist_ops_total", "Store calls, by operation and outcome (ok, deduplicated, or the error's code)."),
    ("persist_op_duration_seconds", "Time a store call took, by operation."),
    ("persist_read_rows", "Messages or threads a read answered, by operation."),
    ("persist_content_bytes", "Size of the content written, as JSON, by operation."),
    ("persist_replica_reads_total", "Reads by how a standby answered them."),
];

const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const BYTES: &[f64] = &[256.0, 1024.0, 4096.0, 16_384.0, 65_536.0, 262_144.0, 1_048_576.0, 4_194_304.0, 16_777_216.0];
const COUNTS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 10_000.0];

/// The buckets of the histogram `name`: durations, sizes, or counts.
pub(super) fn bounds(name: &str) -> &'static [f64] {
    if name.ends_with("_seconds") {
        SECONDS
    } else if name.ends_with("_bytes") {
        BYTES
    } else {
        COUNTS
    }
}

/// A histogram as read for one scrape: a count per bucket (not cumulative), and the count and
/// sum of every value.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) bounds: &'static [f64],
    pub(crate) counts: Vec<u64>,
    pub(crate) count: u64,
    pub(crate) sum: f64,
}

/// One family: its type and its series, each its labels (to sort by) and its lines (what follows
/// the name: a suffix and labels; the value).
#[derive(Default)]
struct Family {
    kind: &'static str,
    series: Vec<(String, Vec<(String, String)>)>,
}

/// Every metric, families in order of their names, series in order of their labels; a
/// histogram without an observation is left out.
pub(super) fn render(
    counters: &[(Key, u64)],
    gauges: &[(Key, u64)],
    histograms: &[(Key, Snapshot)],
    help: &HashMap<String, String>,
) -> String {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut family = |key: &Key, kind: &'static str, series: (String, Vec<(String, String)>)| {
        let family = families.entry(name(key.name())).or_default();
        family.kind = kind;
        family.series.push(series);
    };
    for (key, value) in counters {
        family(key, "counter", (labels(key, None), vec![(labels(key, None), value.to_string())]));
    }
    for (key, bits) in gauges {
        let value = number(f64::from_bits(*bits));
        family(key, "gauge", (labels(key, None), vec![(labels(key, None), value)]));
    }
    for (key, snapshot) in histograms.iter().filter(|(_, snapshot)| snapshot.count > 0) {
        let mut lines = Vec::with_capacity(snapshot.bounds.len() + 3);
        let mut cumulative = 0;
        for (bound, count) in snapshot.bounds.iter().zip(&snapshot.counts) {
            cumulative += count;
            lines.push((format!("_bucket{}", labels(key, Some(&number(*bound)))), cumulative.to_string()));
        }
        // Read while values arrive, the total may lag its buckets: it is never less than them.
        let count = snapshot.count.max(cumulative);
        lines.push((format!("_bucket{}", labels(key, Some("+Inf"))), count.to_string()));
        lines.push((format!("_sum{}", labels(key, None)), number(snapshot.sum)));
        lines.push((format!("_count{}", labels(key, None)), count.to_string()));
        family(key, "histogram", (labels(key, None), lines));
    }
    let mut text = String::new();
    for (name, mut family) in families {
        if let Some(help) = help.get(&name) {
            let _ = writeln!(text, "# HELP {name} {}", help.replace('\\', "\\\\").replace('\n', "\\n"));
        }
        let _ = writeln!(text, "# TYPE {name} {}", family.kind);
        family.series.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, lines) in family.series {
            for (suffix, value) in lines {
                let _ = writeln!(text, "{name}{suffix} {value}");
            }
        }
    }
    text
}

/// A metric or label name as Prometheus takes it: `[a-zA-Z_:][a-zA-Z0-9_:]*`, anything else `_`.
fn name(raw: &str) -> String {
    let mut name: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == ':' { c } else { '_' }).collect();
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    name
}

/// `{name="value",…}` (with `le` last when given), or nothing without a label.
fn labels(key: &Key, le: Option<&str>) -> String {
    let mut pairs: Vec<String> = key
        .labels()
        .map(|label| format!("{}=\"{}\"", name(label.key()).replace(':', "_"), escape(label.value())))
        .collect();
    if let Some(le) = le {
        pairs.push(format!("le=\"{le}\""));
    }
    if pairs.is_empty() { String::new() } else { format!("{{{}}}", pairs.join(",")) }
}

/// A label value with `\`, `"` and line feeds escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A sample value: `+Inf`, `-Inf`, `NaN`, or the number.
fn number(value: f64) -> String {
    match value {
        f64::INFINITY => "+Inf".to_owned(),
        f64::NEG_INFINITY => "-Inf".to_owned(),
        value if value.is_nan() => "NaN".to_owned(),
        value => value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use metrics::Label;

    use super::*;

    #[test]
    fn families_carry_help_and_type_and_escape_their_labels() {
        let key = Key::from_parts("odd.name", vec![Label::new("route", "/a/{id}\"\\\n")]);
        let help = HashMap::from([("odd_name".to_owned(), "Line one\nline two.".to_owned())]);
        let text = render(&[(key, 3)], &[(Key::from_name("up"), 1.5_f64.to_bits())], &[], &help);
        assert_eq!(
            text,
            "# HELP odd_name Line one\\nline two.\n# TYPE odd_name counter\nodd_name{route=\"/a/{id}\\\"\\\\\\n\"} 3\n\
             # TYPE up gauge\nup 1.5\n"
        );
    }

    #[test]
    fn histograms_are_cumulative_and_end_with_inf_sum_and_count() {
        let key = Key::from_parts("t_seconds", vec![Label::new("op", "add")]);
        let seen = Snapshot { bounds: &[0.1, 1.0], counts: vec![2, 1], count: 4, sum: 3.5 };
        let unseen = Snapshot { bounds: &[0.1, 1.0], counts: vec![0, 0], count: 0, sum: 0.0 };
        let text = render(&[], &[], &[(key, seen), (Key::from_name("never_seconds"), unseen)], &HashMap::new());
        assert_eq!(
            text,
            "# TYPE t_seconds histogram\nt_seconds_bucket{op=\"add\",le=\"0.1\"} 2\nt_seconds_bucket{op=\"add\",le=\"1\"} 3\n\
             t_seconds_bucket{op=\"add\",le=\"+Inf\"} 4\nt_seconds_sum{op=\"add\"} 3.5\nt_seconds_count{op=\"add\"} 4\n"
        );
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(bounds("persist_content_bytes"), BYTES);
    }
}
