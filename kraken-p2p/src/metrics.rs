//! Prometheus metrics of a component, served at `GET /metrics`.
//!
//! Every HTTP server of the workspace counts its requests and their
//! latencies by method, route and status ([`instrument`]); a component adds
//! gauges and counters of its own work (swarm, queues) as probes read at
//! scrape time ([`Metrics::gauge`], [`Metrics::counter`]), so nothing on a
//! hot path does more than it did before. Names start with `kraken_`; a
//! constant `component` label tells the parts of one process apart.

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kraken_core::Scheduler;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request counter.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of a latency histogram.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// A route name a handler sets on its response, for servers whose routes
/// are not axum patterns (the registry parses its own paths).
#[derive(Debug, Clone, Copy)]
pub struct RouteName(pub &'static str);

/// The metrics of one component. Cheap to clone; clones share the
/// registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 33 s: from a cached tag lookup to a layer download.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    /// Metrics labelled `component="<component>"` (`origin`, `proxy`, ...).
    pub fn new(component: &'static str) -> Metrics {
        let labels = [(Cow::Borrowed("component"), Cow::Borrowed(component))];
        let mut registry = Registry::with_prefix_and_labels("kraken", labels.into_iter());
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_seconds",
            "Time to answer HTTP requests (to the response head), by method and route",
            latency.clone(),
        );
        Metrics {
            inner: Arc::new(Inner {
                registry: Mutex::new(registry),
                requests,
                latency,
            }),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a gauge read by `read` at every scrape.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) {
        self.probe(name, help, Probe::Gauge(Box::new(read)));
    }

    /// Adds a counter (a value that only grows) read by `read` at every
    /// scrape; `name` gets the `_total` suffix.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        read: impl Fn() -> u64 + Send + Sync + 'static,
    ) {
        self.probe(name, help, Probe::Counter(Box::new(read)));
    }

    fn probe(&self, name: &'static str, help: &'static str, read: Probe) {
        self.registry()
            .register_collector(Box::new(Probed { name, help, read }));
    }

    /// Adds the swarm figures of a scheduler: blobs downloading and
    /// seeding, connections, and piece bytes in (from origins and in all)
    /// and out.
    pub fn scheduler(&self, scheduler: Arc<dyn Scheduler>) {
        let s = scheduler.clone();
        self.gauge("swarm_downloading", "Blobs being downloaded", move || {
            gauge_of(s.stats().downloading)
        });
        let s = scheduler.clone();
        self.gauge("swarm_seeding", "Blobs offered to peers", move || {
            gauge_of(s.stats().seeding)
        });
        let s = scheduler.clone();
        self.gauge("swarm_connections", "Open peer connections", move || {
            gauge_of(s.stats().connections)
        });
        let s = scheduler.clone();
        self.counter(
            "swarm_received_bytes",
            "Verified piece bytes received from peers",
            move || s.stats().bytes_in,
        );
        let s = scheduler.clone();
        self.counter(
            "swarm_received_from_origins_bytes",
            "Verified piece bytes received from origins",
            move || s.stats().bytes_in_from_origins,
        );
        self.counter("swarm_sent_bytes", "Piece bytes sent to peers", move || {
            scheduler.stats().bytes_out
        });
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry());
        text
    }

    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let route = route.to_owned();
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.clone(),
                status,
            })
            .inc();
        self.inner
            .latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route,
            })
            .observe(seconds);
    }
}

fn gauge_of(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

enum Probe {
    Gauge(Box<dyn Fn() -> i64 + Send + Sync>),
    Counter(Box<dyn Fn() -> u64 + Send + Sync>),
}

struct Probed {
    name: &'static str,
    help: &'static str,
    read: Probe,
}

impl fmt::Debug for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Probed").field("name", &self.name).finish()
    }
}

impl Collector for Probed {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        match &self.read {
            Probe::Gauge(read) => {
                let gauge = ConstGauge::new(read());
                let metric =
                    encoder.encode_descriptor(self.name, self.help, None, gauge.metric_type())?;
                gauge.encode(metric)
            }
            Probe::Counter(read) => {
                let counter = ConstCounter::new(read());
                let metric =
                    encoder.encode_descriptor(self.name, self.help, None, counter.metric_type())?;
                counter.encode(metric)
            }
        }
    }
}

/// Adds `GET /metrics` to `router` and counts every request it serves.
pub fn instrument(router: Router, metrics: Metrics) -> Router {
    let scrape = Router::new()
        .route("/metrics", get(render))
        .with_state(metrics.clone());
    router
        .merge(scrape)
        .layer(axum::middleware::from_fn_with_state(metrics, count))
}

async fn render(State(metrics): State<Metrics>) -> Response {
    let mut response = metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

async fn count(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let response = next.run(request).await;
    let route = match (response.extensions().get::<RouteName>(), &matched) {
        (Some(RouteName(name)), _) => (*name).to_owned(),
        (None, Some(path)) => path.clone(),
        (None, None) => "unmatched".to_owned(),
    };
    let seconds = started.elapsed().as_secs_f64();
    metrics.record(&method, &route, response.status().as_u16(), seconds);
    response
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn requests_and_probes_show_in_the_text_format() {
        let metrics = Metrics::new("test");
        metrics.gauge("queue_pending", "Jobs waiting", || 7);
        metrics.counter("things", "Things done", || 3);
        let app = instrument(
            Router::new().route("/blobs/{digest}", get(|| async { "ok" })),
            metrics.clone(),
        );
        let request = Request::builder()
            .uri("/blobs/x")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(app.clone().oneshot(request).await.unwrap().status(), 200);
        let request = Request::builder()
            .uri("/metrics")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            text.contains(r#"kraken_http_requests_total{component="test",method="GET",route="/blobs/{digest}",status="200"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kraken_queue_pending{component="test"} 7"#),
            "{text}"
        );
        assert!(
            text.contains(r#"kraken_things_total{component="test"} 3"#),
            "{text}"
        );
        assert!(
            text.contains("kraken_http_request_seconds_bucket"),
            "{text}"
        );
    }
}
