//! Metric types both daemons share, made for hot paths: every update is one or two relaxed
//! atomic adds on memory fixed at start (no lock, no map lookup, no allocation), and
//! labels come from fixed lists of names known at compile time. They are encoded with
//! `prometheus-client` (whose own `Histogram` takes a mutex on every observation and
//! whose `Family` looks its labels up in a locked map, which is why these exist), in the
//! Prometheus text format (`render`).
//!
//! Owns: `Counters` (one counter per name of a label), `Latencies` (one histogram per
//! name), `Grid` (a counter per pair of two labels), `Histogram`, gauges read at scrape
//! time (`ReadGauge`) and `render`. Must not know what is measured.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds (50 µs to 30 s).
const BUCKETS_US: [u64; 16] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000, 30_000_000,
];

/// Upper bounds of the size buckets (a group commit's requests, a batch's files).
pub const SIZE_BUCKETS: [u64; 16] = [
    1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 128, 256, 512, 1024,
];

/// A histogram with fixed buckets: one atomic per bucket, a count and a sum.
pub struct Histogram {
    bounds: &'static [u64],
    /// Divides the raw sum and bounds for the exposition (1e6: microseconds to seconds).
    scale: f64,
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum: AtomicU64,
}

impl Histogram {
    /// A latency histogram, exposed in seconds.
    pub fn latency() -> Histogram {
        Histogram::new(&BUCKETS_US, 1e6)
    }

    /// A histogram of plain numbers with `bounds` as bucket upper bounds.
    pub fn sizes(bounds: &'static [u64]) -> Histogram {
        Histogram::new(bounds, 1.0)
    }

    fn new(bounds: &'static [u64], scale: f64) -> Histogram {
        Histogram {
            bounds,
            scale,
            buckets: (0..bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum: AtomicU64::new(0),
        }
    }

    /// Records one value (in the raw unit: microseconds for latencies).
    pub fn record(&self, v: u64) {
        let i = self.bounds.partition_point(|b| *b < v);
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.record(d.as_micros().min(u64::MAX as u128) as u64);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn encode_into(&self, mut encoder: MetricEncoder) -> fmt::Result {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len() + 1);
        for (bound, n) in self.bounds.iter().zip(self.buckets.iter()) {
            cumulative += n.load(Relaxed);
            buckets.push((*bound as f64 / self.scale, cumulative));
        }
        // Values past the last bound count only in +Inf, which is the total.
        let count = self.count.load(Relaxed).max(cumulative);
        buckets.push((f64::INFINITY, count));
        let sum = self.sum.load(Relaxed) as f64 / self.scale;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Histogram({})", self.count())
    }
}

impl EncodeMetric for Histogram {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.encode_into(encoder)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// One counter per name in a fixed list, exposed as one metric labelled `label`.
pub struct Counters {
    label: &'static str,
    names: &'static [&'static str],
    values: Box<[AtomicU64]>,
}

impl Counters {
    pub fn new(label: &'static str, names: &'static [&'static str]) -> Counters {
        Counters {
            label,
            names,
            values: names.iter().map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Adds `n` to the counter of `names[i]`.
    pub fn add(&self, i: usize, n: u64) {
        if let Some(v) = self.values.get(i) {
            v.fetch_add(n, Relaxed);
        }
    }

    pub fn inc(&self, i: usize) {
        self.add(i, 1)
    }

    pub fn get(&self, i: usize) -> u64 {
        self.values.get(i).map_or(0, |v| v.load(Relaxed))
    }
}

impl fmt::Debug for Counters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counters({})", self.label)
    }
}

impl EncodeMetric for Counters {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (name, v) in self.names.iter().zip(self.values.iter()) {
            let labels = [(self.label, *name)];
            encoder
                .encode_family(&labels)?
                .encode_counter::<NoLabelSet, u64, u64>(&v.load(Relaxed), None)?;
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// One latency histogram per name in a fixed list, labelled `label`.
pub struct Latencies {
    label: &'static str,
    names: &'static [&'static str],
    hists: Box<[Histogram]>,
}

impl Latencies {
    pub fn new(label: &'static str, names: &'static [&'static str]) -> Latencies {
        Latencies {
            label,
            names,
            hists: names.iter().map(|_| Histogram::latency()).collect(),
        }
    }

    pub fn observe(&self, i: usize, d: Duration) {
        if let Some(h) = self.hists.get(i) {
            h.observe(d);
        }
    }
}

impl fmt::Debug for Latencies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Latencies({})", self.label)
    }
}

impl EncodeMetric for Latencies {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (name, h) in self.names.iter().zip(self.hists.iter()) {
            // Kinds never seen stay out of the exposition (a histogram is 19 lines).
            if h.count() == 0 {
                continue;
            }
            let labels = [(self.label, *name)];
            h.encode_into(encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// A counter per pair (row, column) of two fixed lists of names; pairs never counted are
/// left out of the exposition.
pub struct Grid {
    labels: (&'static str, &'static str),
    rows: &'static [&'static str],
    cols: &'static [&'static str],
    values: Box<[AtomicU64]>,
}

impl Grid {
    pub fn new(
        labels: (&'static str, &'static str),
        rows: &'static [&'static str],
        cols: &'static [&'static str],
    ) -> Grid {
        Grid {
            labels,
            rows,
            cols,
            values: (0..rows.len() * cols.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    pub fn inc(&self, row: usize, col: usize) {
        if row < self.rows.len() && col < self.cols.len() {
            self.values[row * self.cols.len() + col].fetch_add(1, Relaxed);
        }
    }
}

impl fmt::Debug for Grid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Grid({}, {})", self.labels.0, self.labels.1)
    }
}

impl EncodeMetric for Grid {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        for (r, row) in self.rows.iter().enumerate() {
            for (c, col) in self.cols.iter().enumerate() {
                let v = self.values[r * self.cols.len() + c].load(Relaxed);
                if v == 0 {
                    continue;
                }
                let labels = [(self.labels.0, *row), (self.labels.1, *col)];
                encoder
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, u64, u64>(&v, None)?;
            }
        }
        Ok(())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A gauge whose value is read when scraped (a count another structure keeps already).
pub struct ReadGauge(Arc<dyn Fn() -> i64 + Send + Sync>);

impl ReadGauge {
    pub fn new(read: impl Fn() -> i64 + Send + Sync + 'static) -> ReadGauge {
        ReadGauge(Arc::new(read))
    }
}

impl fmt::Debug for ReadGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadGauge")
    }
}

impl EncodeMetric for ReadGauge {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_gauge(&(self.0)())
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// A plain counter (one atomic).
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub const fn new() -> Counter {
        Counter(AtomicU64::new(0))
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Relaxed);
    }
    pub fn inc(&self) {
        self.add(1)
    }
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counter({})", self.get())
    }
}

impl EncodeMetric for Counter {
    fn encode(&self, mut encoder: MetricEncoder) -> fmt::Result {
        encoder.encode_counter::<NoLabelSet, u64, u64>(&self.get(), None)
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A registered reference to a metric living in a static.
#[derive(Debug)]
struct Static<T: 'static>(&'static T);

impl<T: EncodeMetric + fmt::Debug + Send + Sync> EncodeMetric for Static<T> {
    fn encode(&self, encoder: MetricEncoder) -> fmt::Result {
        self.0.encode(encoder)
    }
    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }
}

/// Registers `metric` (kept in a static) in `registry` under `name`.
pub fn register<T>(registry: &mut Registry, name: &str, help: &str, metric: &'static T)
where
    T: EncodeMetric + fmt::Debug + Send + Sync + 'static,
{
    registry.register(name, help, Static(metric));
}

/// Registers a gauge read at scrape time.
pub fn register_gauge(
    registry: &mut Registry,
    name: &str,
    help: &str,
    read: impl Fn() -> i64 + Send + Sync + 'static,
) {
    registry.register(name, help, ReadGauge::new(read));
}

/// The Prometheus text exposition (format 0.0.4) of `registry`.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, registry);
    out
}

/// The content type of `render`'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
