//! Embedding an agent: a host application hands over a blob store and a
//! tracker and gets blobs by digest through the swarm, with the HTTP API
//! as an option.
//!
//! This is a thin wrapper over [`Engine`] and [`router`]: it wires them
//! together, owns the server task and stops both on shutdown, so the host
//! does not repeat that wiring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use kraken_core::{
    BlobReader, BlobStore, BlobStream, ByteRange, Digest, Namespace, Result, Scheduler,
};

use super::router;
use crate::metrics::{Metrics, instrument};
use crate::scheduler::{Engine, EngineOptions};
use crate::tracker::Tracker;

/// How long [`Agent::shutdown`] waits for HTTP responses in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Configures and starts an [`Agent`]; made by [`Agent::builder`].
#[derive(Debug)]
pub struct AgentBuilder {
    store: Arc<dyn BlobStore>,
    tracker: Arc<dyn Tracker>,
    engine: EngineOptions,
    http: Option<SocketAddr>,
}

impl AgentBuilder {
    /// Sets the P2P listen address and scheduler tunables; the defaults
    /// listen on an ephemeral loopback port.
    ///
    /// `origin` is cleared: an agent never acts as an origin.
    pub fn engine_options(mut self, options: EngineOptions) -> Self {
        self.engine = options;
        self
    }

    /// Serves the generic blob API on `addr` (port 0 picks one); without
    /// this call the agent serves no HTTP.
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Starts the P2P engine and, when asked for, the HTTP server.
    ///
    /// # Errors
    ///
    /// [`Error::Io`](kraken_core::Error::Io) when the scheduler
    /// configuration is invalid or an address cannot be bound.
    pub async fn build(self) -> Result<Agent> {
        let options = EngineOptions {
            origin: false,
            ..self.engine
        };
        let engine = Engine::start(options, self.store.clone(), self.tracker).await?;
        let metrics = Metrics::new("agent");
        metrics.scheduler(Arc::new(engine.clone()));
        let http = match self.http {
            Some(addr) => {
                match HttpServer::start(addr, Arc::new(engine.clone()), metrics.clone()).await {
                    Ok(server) => Some(server),
                    Err(e) => {
                        engine.shutdown();
                        return Err(e);
                    }
                }
            }
            None => None,
        };
        Ok(Agent {
            engine,
            store: self.store,
            http,
            metrics,
        })
    }
}

/// A running agent: the P2P engine of one host, and optionally its HTTP
/// blob API.
///
/// Dropping the agent stops it as [`Agent::shutdown`] does, without
/// waiting for responses in flight.
#[derive(Debug)]
pub struct Agent {
    engine: Engine,
    store: Arc<dyn BlobStore>,
    http: Option<HttpServer>,
    metrics: Metrics,
}

impl Agent {
    /// Starts configuring an agent that keeps blobs in `store` and finds
    /// peers through `tracker`.
    pub fn builder(store: Arc<dyn BlobStore>, tracker: Arc<dyn Tracker>) -> AgentBuilder {
        AgentBuilder {
            store,
            tracker,
            engine: EngineOptions::default(),
            http: None,
        }
    }

    /// Fetches a blob through the swarm and returns a reader once it is
    /// verified and committed to the store; at once when it already is.
    /// Concurrent calls for one digest share one download.
    ///
    /// The reader keeps the blob from being evicted until it is dropped.
    ///
    /// # Errors
    ///
    /// Those of [`Scheduler::download`]: `NotFound` when the cluster does
    /// not have the blob, `Unavailable` when it cannot be reached, and so
    /// on; `NotFound` as well if the blob was evicted before it could be
    /// opened.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future leaves the download running.
    pub async fn get(&self, namespace: &Namespace, digest: &Digest) -> Result<Arc<dyn BlobReader>> {
        self.engine.download(namespace, digest).await?;
        self.store.open(digest).await
    }

    /// Streams `range` of a blob in order, starting with the first piece
    /// verified rather than the whole blob.
    ///
    /// # Errors
    ///
    /// Those of [`Scheduler::stream`].
    pub async fn stream(
        &self,
        namespace: &Namespace,
        digest: &Digest,
        range: ByteRange,
    ) -> Result<BlobStream> {
        self.engine.stream(namespace, digest, range).await
    }

    /// Returns the scheduler, for a host that serves blobs its own way.
    pub fn scheduler(&self) -> Arc<dyn Scheduler> {
        Arc::new(self.engine.clone())
    }

    /// Returns the P2P engine, whose identity and address peers see.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Returns the agent's metrics (swarm figures, and the requests of its
    /// HTTP API), for a host that serves other routes beside them.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Returns the address the HTTP API listens on, when it was enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(|h| h.addr)
    }

    /// Stops the HTTP server and the engine. Responses in flight get a
    /// few seconds to finish; streams of blobs still downloading end with
    /// an error, as the engine stops. Partial downloads stay resumable.
    pub async fn shutdown(mut self) {
        self.engine.shutdown();
        if let Some(http) = self.http.take() {
            http.stop().await;
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.engine.shutdown();
        if let Some(http) = &self.http {
            http.token.cancel();
        }
    }
}

/// The HTTP server task and what stops it.
#[derive(Debug)]
struct HttpServer {
    addr: SocketAddr,
    token: CancellationToken,
    task: JoinHandle<()>,
}

impl HttpServer {
    async fn start(
        addr: SocketAddr,
        scheduler: Arc<dyn Scheduler>,
        metrics: Metrics,
    ) -> Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let token = CancellationToken::new();
        let app = instrument(router(scheduler), metrics);
        let serve =
            axum::serve(listener, app).with_graceful_shutdown(token.clone().cancelled_owned());
        let task = tokio::spawn(async move {
            if let Err(error) = serve.await {
                tracing::error!(%error, "agent http server failed");
            }
        });
        tracing::info!(%addr, "agent http listening");
        Ok(HttpServer { addr, token, task })
    }

    async fn stop(self) {
        self.token.cancel();
        let mut task = self.task;
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
            .await
            .is_err()
        {
            tracing::warn!("agent http responses still in flight at shutdown; aborting them");
            task.abort();
        }
    }
}
