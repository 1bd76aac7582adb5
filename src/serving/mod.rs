//! The serving layer (`market-view` job): the latest market state read from the output topics,
//! served as an HTTP JSON API, a live dashboard (Server-Sent Events) and an order-entry API that
//! publishes validated orders to `orders`.
//!
//! - [`state`]: the bounded in-memory state and its queries (pure).
//! - [`feed`]: topics → state, and readiness.
//! - [`orders`]: order-entry validation (pure).
//! - [`api`]: the axum routers (public; ops).
//! - [`guard`]: Host allow-list, CORS, rate limits, JSON on writes, authentication, audit lines.
//! - [`auth`]: trader API keys (hashed key file); [`limits`]: token buckets.
//!
//! The server reads the topics by assignment from the earliest offset, so any number of replicas
//! can serve the same data, and a restarted replica rebuilds its state by replay (Kappa).

pub mod api;
pub mod auth;
pub mod feed;
pub mod guard;
pub mod limits;
pub mod orders;
pub mod state;

use crate::runtime::kafka::{create_reader, partition_count, KafkaArgs};
use crate::runtime::shutdown::Shutdown;
use anyhow::Context as _;
use kappa_engine::Instruments;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Settings of the serving layer.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to serve the API and dashboard on (0.0.0.0:PORT to accept remote clients).
    #[arg(long, env = "KAPPA_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Trades kept per instrument for the tape.
    #[arg(long, default_value_t = 200)]
    pub tape: usize,
    /// Bars kept per instrument.
    #[arg(long, default_value_t = 720)]
    pub bars: usize,
    /// Orders whose last status is kept for `GET /orders/{id}` and `GET /orders` (≤ 880 B each
    /// with the per-trader index: 200 k ≈ 168 MiB).
    #[arg(long, default_value_t = 200_000)]
    pub orders_kept: usize,
    /// Traders whose P&L is kept for `GET /pnl/{trader}` (≈ 1.3 kB per trader and instrument
    /// traded; the least recently updated are forgotten first).
    #[arg(long, default_value_t = 10_000)]
    pub pnl_traders: usize,
    /// Points of P&L history kept per kept trader for `GET /pnl/{trader}/history`: the total
    /// after each analytics window with a trade of theirs (≤ 25 B each; forgotten with the
    /// trader).
    #[arg(long, default_value_t = 600)]
    pub pnl_history: usize,
    /// Most live (SSE) streams open at once; more are answered 503 with Retry-After.
    #[arg(long, default_value_t = 256)]
    pub max_streams: usize,
    /// Secret that order ids for client order ids are derived from: replicas sharing it give a
    /// retried request the same order id (set it from a Secret). Random per process if unset.
    #[arg(long, env = "KAPPA_ORDER_ID_KEY", hide_env_values = true)]
    pub order_id_key: Option<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_body: usize,
    /// Interval between live updates pushed to dashboards, in milliseconds.
    #[arg(long, default_value_t = 250)]
    pub push_interval_ms: u64,
    /// Serve /metrics, /stats, /healthz and /readyz on this address (its own port, never behind
    /// the public Service); off when unset.
    #[arg(long, env = "KAPPA_OPS_BIND")]
    pub ops_bind: Option<SocketAddr>,
    /// Trader API keys: a file of `TRADER sha256:HEX [expires=RFC3339]` lines (`kappa keys add`),
    /// re-read when it changes. Without it nobody can place orders or see orders and P&L.
    #[arg(long, env = "KAPPA_API_KEYS")]
    pub api_keys: Option<std::path::PathBuf>,
    /// Host names requests may be addressed to (comma-separated; '*': any, only behind a proxy
    /// that checks them). Default: the bind address (and localhost when it is a loopback one).
    #[arg(long, env = "KAPPA_ALLOWED_HOSTS", value_delimiter = ',')]
    pub allowed_hosts: Vec<String>,
    /// Web origins allowed to call the API cross-origin (comma-separated `https://host[:port]`);
    /// none by default: CORS denied.
    #[arg(long, env = "KAPPA_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Header in which a trusted reverse proxy passes the client's address (e.g. X-Real-IP; its
    /// last value is used). Unset: the TCP peer's address.
    #[arg(long, env = "KAPPA_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// Requests per second allowed per trader (token bucket; 0: unlimited)…
    #[arg(long, default_value_t = 50.0)]
    pub trader_rate: f64,
    /// …with bursts of up to this many.
    #[arg(long, default_value_t = 100.0)]
    pub trader_burst: f64,
    /// Requests per second allowed per client address (IPv6: per /64; 0: unlimited)…
    #[arg(long, default_value_t = 200.0)]
    pub ip_rate: f64,
    /// …with bursts of up to this many.
    #[arg(long, default_value_t = 400.0)]
    pub ip_burst: f64,
    /// Most live (SSE) streams open at once from one client address (429 beyond).
    #[arg(long, default_value_t = 16)]
    pub max_streams_per_ip: usize,
    /// The demo's trader credential (trader, key), used instead of `--api-keys`.
    #[arg(skip)]
    pub demo_credential: Option<(String, String)>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        ServeArgs {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tape: 200,
            bars: 720,
            orders_kept: 200_000,
            pnl_traders: 10_000,
            pnl_history: 600,
            max_streams: 256,
            order_id_key: None,
            max_body: 16 * 1024,
            push_interval_ms: 250,
            ops_bind: None,
            api_keys: None,
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            client_ip_header: None,
            trader_rate: 50.0,
            trader_burst: 100.0,
            ip_rate: 200.0,
            ip_burst: 400.0,
            max_streams_per_ip: 16,
            demo_credential: None,
        }
    }
}

/// A running server.
pub struct Server {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The ops endpoints' address, when served.
    pub ops_addr: Option<SocketAddr>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    /// The dashboard's URL.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Waits for the server to stop (after its shutdown flag is triggered).
    pub fn join(self) -> anyhow::Result<()> {
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the server thread panicked"))?
    }
}

/// Binds `args.bind`, starts the feed and the HTTP server on their own threads, and returns at
/// once. Both stop when `shutdown` is triggered.
pub fn spawn(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &ServeArgs,
    shutdown: &Shutdown,
) -> anyhow::Result<Server> {
    let listener = std::net::TcpListener::bind(args.bind).with_context(|| {
        format!(
            "binding {} (use --bind to choose another address)",
            args.bind
        )
    })?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let keys = match (&args.api_keys, &args.demo_credential) {
        (Some(path), _) => auth::Keys::from_file(path)?,
        (None, Some((trader, key))) => auth::Keys::fixed(auth::KeyStore::single(trader, key)),
        (None, None) => {
            tracing::warn!("no --api-keys: order entry, orders and P&L are refused to everyone");
            auth::Keys::none()
        }
    };
    let client_ip_header = match &args.client_ip_header {
        Some(h) => Some(
            axum::http::HeaderName::try_from(h.as_str())
                .with_context(|| format!("--client-ip-header {h:?}"))?,
        ),
        None => None,
    };
    let guard = guard::Guard::new(
        guard::Hosts::resolve(&args.allowed_hosts, addr)?,
        args.cors_origins.clone(),
        client_ip_header,
        limits::Rate {
            per_second: args.ip_rate,
            burst: args.ip_burst,
        },
        limits::Rate {
            per_second: args.trader_rate,
            burst: args.trader_burst,
        },
    );
    let limits = state::Limits {
        trades: args.tape.max(1),
        bars: args.bars.max(1),
        orders: args.orders_kept.max(1),
        pnl_traders: args.pnl_traders.max(1),
        pnl_history: args.pnl_history.max(1),
    };
    let market = Arc::new(RwLock::new(state::MarketState::new(instruments, limits)));
    let ready = Arc::new(AtomicBool::new(false));
    let topics = kafka.topics();
    let metadata = create_reader(&kafka.reader())?;
    let sink = api::OrderSink {
        // Orders are small and each request waits for its acknowledgement: 16 MiB of send
        // buffer is thousands of requests in flight (the jobs' default is 128 MiB).
        producer: kafka
            .producer()
            .set("queue.buffering.max.kbytes", "16384")
            .create()
            .context("creating the order producer")?,
        partitioner: crate::topics::Partitioner::new(instruments),
        partitions: partition_count(&metadata, &topics.orders)?,
        topic: topics.orders,
    };
    let stopping = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(api::Shared {
        state: market.clone(),
        ready: ready.clone(),
        stopping: stopping.clone(),
        instruments: instruments.clone(),
        ids: match &args.order_id_key {
            Some(key) => orders::IdAllocator::with_key(key.as_bytes()),
            None => orders::IdAllocator::random(),
        },
        recent: orders::RecentIds::new(100_000),
        sink,
        streams: Default::default(),
        max_streams: args.max_streams,
        streams_per_ip: Default::default(),
        max_streams_per_ip: args.max_streams_per_ip.max(1),
        keys,
        guard,
        push_interval: Duration::from_millis(args.push_interval_ms.max(10)),
        counters: api::ApiCounters::default(),
    });

    let feed = {
        let (kafka, shutdown) = (kafka.clone(), shutdown.clone());
        std::thread::Builder::new()
            .name("market-view-feed".into())
            .spawn(move || feed::run(&kafka, &market, &ready, &shutdown))?
    };
    let ops_addr = match args.ops_bind {
        Some(bind) => Some(crate::runtime::ops::serve(
            bind,
            api::ops_router(shared.clone()),
            shutdown,
        )?),
        None => None,
    };
    let router = api::router(shared, args.max_body);
    let shutdown = shutdown.clone();
    let thread = std::thread::Builder::new()
        .name("market-view-http".into())
        .spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let served = rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(
                    listener,
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(async move {
                    shutdown.triggered().await;
                    // Ends the live streams, which would otherwise hold the shutdown open.
                    stopping.store(true, std::sync::atomic::Ordering::Relaxed);
                })
                .await
            });
            let fed = feed
                .join()
                .map_err(|_| anyhow::anyhow!("the feed thread panicked"))?;
            served.context("serving HTTP")?;
            fed.context("reading the topics")
        })?;
    Ok(Server {
        addr,
        ops_addr,
        thread,
    })
}

/// Runs the server until `shutdown`.
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &ServeArgs,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let server = spawn(kafka, instruments, args, shutdown)?;
    tracing::info!(url = %server.url(), ops = ?server.ops_addr, "market view serving");
    server.join()
}
