//! `vaekit serve`: a trained model's latent space in the browser, and a JSON API.
//!
//! The model runs on its own thread ([`worker`]); the routes ([`api`], [`live`]) check every
//! input, hand the model bounded work through a bounded queue and answer 4xx/5xx with a
//! one-line JSON error. The page ([`page`]) is compiled into the binary. The server only reads
//! the run folder.

pub mod api;
pub mod conn;
pub mod error;
pub mod live;
pub mod page;
pub mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;
use vaekit::device::DeviceChoice;

pub use worker::{Atlas, Info, Model};

/// Largest request body (an upload or a JSON body): 4 MiB.
pub const MAX_BODY: usize = 4 << 20;

/// Requests handled at once; more are refused with 503 rather than queued.
pub const MAX_CONCURRENT: usize = 64;

/// Live (WebSocket) connections open at once.
pub const MAX_SOCKETS: usize = 64;

/// Longest a request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Memory all uploads being decoded at once may take, in MiB (each permit is 1 MiB of
/// decoded pixels and their converted copy): 40 uploads of a 130 KB PNG that decodes to
/// 128 MiB take turns within it instead of holding 5 GB at once.
pub const DECODE_BUDGET_MIB: usize = 512;

/// Longest an upload waits for its share of [`DECODE_BUDGET_MIB`] before it is answered 503.
pub const DECODE_WAIT: Duration = Duration::from_secs(10);

/// What the routes share.
#[derive(Clone)]
pub struct AppState {
    /// The model's handle.
    pub model: Model,
    /// Permits for live connections.
    pub sockets: Arc<Semaphore>,
    /// MiB of the decoding budget (see [`DECODE_BUDGET_MIB`]).
    pub decoding: Arc<Semaphore>,
}

/// The server's routes over a started model.
pub fn router(model: Model) -> Router {
    let state = AppState {
        model,
        sockets: Arc::new(Semaphore::new(MAX_SOCKETS)),
        decoding: Arc::new(Semaphore::new(DECODE_BUDGET_MIB)),
    };
    let overload = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(|e: tower::BoxError| async move {
            if e.is::<tower::timeout::error::Elapsed>() {
                error::json_error(StatusCode::SERVICE_UNAVAILABLE, "the request took too long")
            } else {
                error::json_error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many requests at once; try again",
                )
            }
        }))
        .load_shed()
        .concurrency_limit(MAX_CONCURRENT)
        .timeout(REQUEST_TIMEOUT);
    Router::new()
        .route("/", get(page::index))
        .route("/app.js", get(page::app))
        .route("/style.css", get(page::style))
        .route("/api/model", get(api::model))
        .route("/api/atlas", get(api::atlas))
        .route("/api/decode", post(api::decode))
        .route("/api/encode", post(api::encode))
        .route("/api/sample", get(api::sample))
        .route("/api/interpolate", post(api::interpolate))
        .route("/api/test-image", get(api::test_image))
        .route("/api/test-codes", post(api::test_codes))
        .route("/api/live", get(live::live))
        .fallback(|| async { error::json_error(StatusCode::NOT_FOUND, "no such page or endpoint") })
        .method_not_allowed_fallback(|| async {
            error::json_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "wrong method: GET /api/model, /api/atlas, /api/sample, /api/test-image; POST /api/decode, /api/encode, /api/interpolate, /api/test-codes",
            )
        })
        .layer(axum::middleware::from_fn(api::known_query))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(overload)
        .with_state(state)
}

/// Where and what to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The run folder.
    pub run: PathBuf,
    /// Address to bind (127.0.0.1 unless asked).
    pub host: String,
    /// Port (0: a free one).
    pub port: u16,
    /// Where the model runs.
    pub device: DeviceChoice,
}

/// Loads the model, binds, calls `ready` with the address, and serves (see [`conn`]) until
/// Ctrl-C or SIGTERM. Errors are one line naming what failed.
pub fn serve(
    opts: &ServeOptions,
    warn: impl Fn(String),
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let model = Model::start(&opts.run, opts.device, warn)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    let served = rt.block_on(async {
        let addr = format!("{}:{}", opts.host, opts.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (--host/--port): {e}"))?;
        let local = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        ready(local);
        let hosts = conn::HostCheck::new(&opts.host, local);
        conn::serve(listener, router(model), hosts, shutdown()).await;
        Ok(())
    });
    // Connections still open after the grace period are closed here.
    rt.shutdown_timeout(Duration::from_secs(1));
    served
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
