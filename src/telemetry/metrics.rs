//! Prometheus metrics for the service, encoded as OpenMetrics text.
//!
//! Every handle lives in one [`Metrics`] value that the service shares behind an `Arc`.
//! Recording a Check touches only `&'static str` labels, so the hot path hashes two
//! short strings and never allocates (the per-credential counter, off by default, is the
//! one exception: it copies the credential id).

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use tracing_appender::non_blocking::ErrorCounter;

/// Content type of [`Metrics::encode`]'s output, for the `/metrics` response header.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Prefix of every metric name.
const PREFIX: &str = "agents_authz";

/// Upper bounds of the Check duration buckets, in seconds. A Check is a hash, a map
/// lookup and a few string compares, so most land in the first buckets; the upper ones
/// catch a slow rate-limit store.
const CHECK_DURATION_BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// Which optional, higher-cardinality series to export.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsConfig {
    /// Export `checks_by_credential_total{credential_id}`. One series per credential id
    /// that has made a Check; off by default because fleets with many keys pay for it.
    pub per_credential: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    decision: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CredentialLabels {
    credential_id: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// All metric handles of the service plus the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    checks: Family<CheckLabels, Counter>,
    check_duration: Histogram,
    credentials_loaded: Family<SourceLabels, Gauge>,
    snapshot_version: Gauge<u64, AtomicU64>,
    last_reload_timestamp: Gauge<f64, AtomicU64>,
    last_reload_success: Gauge,
    reloads: Family<ResultLabels, Counter>,
    dropped_log_lines: DroppedLogLines,
    rate_limit_store_errors: Counter,
    checks_by_credential: Option<Family<CredentialLabels, Counter>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(MetricsConfig::default())
    }
}

impl Metrics {
    /// Creates every metric and registers it under the `agents_authz_` prefix.
    pub fn new(config: MetricsConfig) -> Self {
        let mut metrics = Self {
            registry: Registry::default(),
            checks: Family::default(),
            check_duration: Histogram::new(CHECK_DURATION_BUCKETS),
            credentials_loaded: Family::default(),
            snapshot_version: Gauge::default(),
            last_reload_timestamp: Gauge::default(),
            last_reload_success: Gauge::default(),
            reloads: Family::default(),
            dropped_log_lines: DroppedLogLines::default(),
            rate_limit_store_errors: Counter::default(),
            checks_by_credential: config.per_credential.then(Family::default),
        };
        // Both results exist from the start, so `increase()` sees the first failure.
        for result in ["success", "failure"] {
            let _ = metrics.reloads.get_or_create(&ResultLabels { result });
        }
        let mut registry = Registry::with_prefix(PREFIX);
        metrics.register_all(&mut registry);
        metrics.registry = registry;
        metrics
    }

    fn register_all(&self, r: &mut Registry) {
        r.register(
            "checks",
            "Checks answered, by decision and reason code",
            self.checks.clone(),
        );
        r.register_with_unit(
            "check_duration",
            "Time from receiving a Check to answering it",
            Unit::Seconds,
            self.check_duration.clone(),
        );
        r.register(
            "credentials_loaded",
            "Credentials in the snapshot in force, by source",
            self.credentials_loaded.clone(),
        );
        r.register(
            "snapshot_version",
            "Version of the configuration snapshot in force",
            self.snapshot_version.clone(),
        );
        r.register_with_unit(
            "last_reload_timestamp",
            "Unix time of the last reload attempt",
            Unit::Seconds,
            self.last_reload_timestamp.clone(),
        );
        r.register(
            "last_reload_success",
            "1 when the last reload attempt succeeded, else 0",
            self.last_reload_success.clone(),
        );
        r.register(
            "reloads",
            "Reload attempts, by result (success or failure)",
            self.reloads.clone(),
        );
        r.register(
            "decision_log_dropped_lines",
            "Log lines dropped because the log writer's buffer was full",
            self.dropped_log_lines.clone(),
        );
        r.register(
            "rate_limit_store_errors",
            "Rate-limit store failures (each one denied its Check)",
            self.rate_limit_store_errors.clone(),
        );
        self.register_build_info(r);
        if let Some(family) = &self.checks_by_credential {
            r.register(
                "checks_by_credential",
                "Checks answered, by authenticated credential id",
                family.clone(),
            );
        }
    }

    fn register_build_info(&self, r: &mut Registry) {
        let build_info = Family::<VersionLabels, Gauge>::default();
        build_info
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register(
            "build_info",
            "Always 1; the label carries the running version",
            build_info,
        );
    }

    /// Records one answered Check. `decision` is `allow` or `deny`, `reason` the reason
    /// code; `credential_id` feeds the per-credential counter when it is enabled.
    pub fn record_check(
        &self,
        decision: &'static str,
        reason: &'static str,
        credential_id: Option<&str>,
        elapsed: Duration,
    ) {
        self.checks
            .get_or_create(&CheckLabels { decision, reason })
            .inc();
        self.check_duration.observe(elapsed.as_secs_f64());
        if let (Some(family), Some(id)) = (&self.checks_by_credential, credential_id) {
            let labels = CredentialLabels {
                credential_id: id.to_owned(),
            };
            family.get_or_create(&labels).inc();
        }
    }

    /// Sets the number of credentials loaded from `source` (`managed`, `json`, `legacy`). Call it
    /// for every source on each snapshot swap, with 0 for an emptied source, so a stale
    /// count never survives a reload.
    pub fn set_credentials_loaded(&self, source: &'static str, count: usize) {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        self.credentials_loaded
            .get_or_create(&SourceLabels { source })
            .set(count);
    }

    /// Sets the version of the snapshot now serving.
    pub fn set_snapshot_version(&self, version: u64) {
        self.snapshot_version.set(version);
    }

    /// Records the snapshot loaded at startup: sets the last-reload gauges as for a
    /// successful reload without counting it in `reloads_total`.
    pub fn record_initial_load(&self, at: SystemTime) {
        self.set_last_reload(true, at);
    }

    /// Records a reload attempt that finished at `at`. A failed attempt leaves the
    /// snapshot version gauge alone: the previous snapshot keeps serving.
    pub fn record_reload(&self, success: bool, at: SystemTime) {
        let result = if success { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabels { result }).inc();
        self.set_last_reload(success, at);
    }

    fn set_last_reload(&self, success: bool, at: SystemTime) {
        self.last_reload_success.set(i64::from(success));
        let epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        self.last_reload_timestamp.set(epoch.as_secs_f64());
    }

    /// Counts one failure of the rate-limit store.
    pub fn record_rate_limit_store_error(&self) {
        self.rate_limit_store_errors.inc();
    }

    /// Makes `decision_log_dropped_lines_total` report the lines the non-blocking log
    /// writer dropped. Only the first counter attached is used; returns whether this one
    /// was taken.
    pub fn track_dropped_log_lines(&self, counter: ErrorCounter) -> bool {
        self.dropped_log_lines.source.set(counter).is_ok()
    }

    /// Encodes every metric as OpenMetrics text, ending with `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail, and every metric here encodes infallibly.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// A counter whose value is read, at scrape time, from the log writer's own counter of
/// dropped lines: the writer counts on its worker-facing side, so mirroring it here keeps
/// the logging path free of metric calls.
#[derive(Debug, Clone, Default)]
struct DroppedLogLines {
    source: Arc<OnceLock<ErrorCounter>>,
}

impl DroppedLogLines {
    fn value(&self) -> u64 {
        self.source
            .get()
            .map_or(0, |c| u64::try_from(c.dropped_lines()).unwrap_or(u64::MAX))
    }
}

impl TypedMetric for DroppedLogLines {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for DroppedLogLines {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.value(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn counts_checks_by_decision_and_reason() {
        let m = Metrics::default();
        m.record_check("deny", "missing_token", None, Duration::from_micros(40));
        m.record_check("deny", "missing_token", None, Duration::from_micros(40));
        m.record_check("allow", "ok", Some("ops"), Duration::from_micros(60));
        let text = m.encode();
        assert!(
            text.contains(
                "agents_authz_checks_total{decision=\"deny\",reason=\"missing_token\"} 2\n"
            )
        );
        assert!(text.contains("agents_authz_checks_total{decision=\"allow\",reason=\"ok\"} 1\n"));
        assert!(text.contains("agents_authz_check_duration_seconds_count 3\n"));
        assert!(text.contains("agents_authz_check_duration_seconds_bucket{le=\"0.000025\"} 0\n"));
        assert!(text.contains("agents_authz_check_duration_seconds_bucket{le=\"0.00005\"} 2\n"));
        assert!(text.contains("agents_authz_check_duration_seconds_bucket{le=\"0.1\"} 3\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn per_credential_counter_is_off_by_default() {
        let m = Metrics::default();
        m.record_check("allow", "ok", Some("ops-bot"), Duration::ZERO);
        let text = m.encode();
        assert!(!text.contains("checks_by_credential"));
        assert!(!text.contains("ops-bot"));
    }

    #[test]
    fn per_credential_counter_when_enabled() {
        let m = Metrics::new(MetricsConfig {
            per_credential: true,
        });
        m.record_check("allow", "ok", Some("ops-bot"), Duration::ZERO);
        m.record_check("deny", "missing_scope", Some("ops-bot"), Duration::ZERO);
        m.record_check("deny", "missing_token", None, Duration::ZERO);
        let text = m.encode();
        let series = line(&text, "agents_authz_checks_by_credential_total{").unwrap();
        assert_eq!(
            series,
            "agents_authz_checks_by_credential_total{credential_id=\"ops-bot\"} 2"
        );
        assert_eq!(
            text.matches("agents_authz_checks_by_credential_total{")
                .count(),
            1
        );
    }

    #[test]
    fn reload_success_and_failure() {
        let m = Metrics::default();
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        m.set_snapshot_version(7);
        m.record_reload(true, at);
        m.record_reload(false, at + Duration::from_secs(5));
        let text = m.encode();
        assert!(text.contains("agents_authz_snapshot_version 7\n"));
        assert!(text.contains("agents_authz_reloads_total{result=\"success\"} 1\n"));
        assert!(text.contains("agents_authz_reloads_total{result=\"failure\"} 1\n"));
        assert!(text.contains("agents_authz_last_reload_success 0\n"));
        assert!(text.contains("agents_authz_last_reload_timestamp_seconds 1700000005.0\n"));
    }

    #[test]
    fn initial_load_sets_gauges_but_counts_no_reload() {
        let m = Metrics::default();
        m.record_initial_load(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        let text = m.encode();
        assert!(text.contains("agents_authz_last_reload_success 1\n"));
        assert!(text.contains("agents_authz_last_reload_timestamp_seconds 1700000000.0\n"));
        assert!(text.contains("agents_authz_reloads_total{result=\"success\"} 0\n"));
        assert!(text.contains("agents_authz_reloads_total{result=\"failure\"} 0\n"));
    }

    #[test]
    fn gauges_and_plain_counters() {
        let m = Metrics::default();
        m.set_credentials_loaded("cp", 3);
        m.set_credentials_loaded("env", 1);
        m.set_credentials_loaded("env", 0);
        m.record_rate_limit_store_error();
        let text = m.encode();
        assert!(text.contains("agents_authz_credentials_loaded{source=\"cp\"} 3\n"));
        assert!(text.contains("agents_authz_credentials_loaded{source=\"env\"} 0\n"));
        assert!(text.contains("agents_authz_rate_limit_store_errors_total 1\n"));
        assert!(text.contains("agents_authz_decision_log_dropped_lines_total 0\n"));
        let build = format!(
            "agents_authz_build_info{{version=\"{}\"}} 1\n",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build));
    }

    #[test]
    fn dropped_lines_mirror_the_writer_counter() {
        use std::io::{self, Write};
        use std::sync::mpsc;

        // A sink that blocks until released, so the writer's one-line buffer fills.
        struct Gate(mpsc::Receiver<()>);
        impl Write for Gate {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                let _ = self.0.recv();
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let (release, gate) = mpsc::channel();
        let (mut writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .buffered_lines_limit(1)
            .lossy(true)
            .finish(Gate(gate));
        let m = Metrics::default();
        assert!(m.track_dropped_log_lines(writer.error_counter()));
        assert!(!m.track_dropped_log_lines(writer.error_counter()));
        for _ in 0..10 {
            writer.write_all(b"line\n").unwrap();
        }
        for _ in 0..10 {
            let _ = release.send(());
        }
        drop(release);
        drop(guard);
        let text = m.encode();
        let series = line(&text, "agents_authz_decision_log_dropped_lines_total ").unwrap();
        let dropped: u64 = series.rsplit(' ').next().unwrap().parse().unwrap();
        // At most two lines fit: the one the worker holds and the one in the buffer.
        assert!(dropped >= 8, "dropped {dropped}");
    }
}
