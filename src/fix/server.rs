//! The gateway's I/O: a TCP acceptor (one reader and one writer task per connection), an
//! `order-events` reader thread, the order producer and a 100 ms clock, all feeding one core task
//! that owns the [`Gateway`] and its journal. Per step: the core handles what arrived, writes the
//! step's journal batch, and only then sends bytes and publishes orders.

use super::codec::{decode, Decoded};
use super::gateway::{Config, ConnId, Gateway, Input, Output, Stats};
use super::store::Store;
use crate::runtime::kafka::{
    create_reader, partition_count, read_range, watermarks, KafkaArgs, Reader,
};
use crate::runtime::shutdown::Shutdown;
use crate::serving::auth::Keys;
use crate::serving::orders::IdAllocator;
use crate::topics::Topics;
use anyhow::Context as _;
use kappa_engine::Instruments;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, Notify};

/// Settings of the FIX gateway.
#[derive(clap::Args, Clone, Debug)]
pub struct FixArgs {
    /// Address to accept FIX sessions on.
    #[arg(long, env = "KAPPA_FIX_BIND", default_value = "127.0.0.1:9878")]
    pub bind: SocketAddr,
    /// Our CompID (the TargetCompID, 56, of every session).
    #[arg(long, default_value = "KAPPA")]
    pub comp_id: String,
    /// Directory of the journal (sequence numbers, kept messages, open orders, read position);
    /// a persistent volume in k8s.
    #[arg(long, env = "KAPPA_FIX_STATE_DIR", default_value = "fix-state")]
    pub state_dir: PathBuf,
    /// Trader API keys (the market-view key file): Password (554) of a Logon is the trader's key.
    #[arg(long, env = "KAPPA_API_KEYS")]
    pub api_keys: Option<PathBuf>,
    /// Secret order ids are derived from (trader, ClOrdID); random per process if unset.
    #[arg(long, env = "KAPPA_ORDER_ID_KEY", hide_env_values = true)]
    pub order_id_key: Option<String>,
    /// Application messages kept per session for resends (≈ 400 B each).
    #[arg(long, default_value_t = 100_000)]
    pub resend_window: usize,
    /// ClOrdIDs per session between sequence resets (≈ 100 B each).
    #[arg(long, default_value_t = 1_000_000)]
    pub max_orders_per_session: usize,
    /// FIX sessions (traders) the journal keeps state for; a logon of one more is refused.
    #[arg(long, default_value_t = 64)]
    pub max_sessions: usize,
    /// Most TCP connections open at once (more are closed on accept).
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
    /// Largest FIX message body accepted (BodyLength), in bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    pub max_message: usize,
    /// Compact the journal when it grows past this many bytes.
    #[arg(long, default_value_t = 64 << 20)]
    pub compact_bytes: u64,
    /// Do not fdatasync each journal batch (a process crash loses nothing; a machine crash may).
    #[arg(long)]
    pub no_sync: bool,
    /// Serve /metrics, /healthz and /readyz on this address.
    #[arg(long, env = "KAPPA_OPS_BIND")]
    pub ops_bind: Option<SocketAddr>,
}

/// The topic the gateway reads (by assignment): `order-events`.
pub fn input(topics: &Topics) -> &str {
    &topics.order_events
}

/// The one topic the gateway writes: `orders`.
pub fn output(topics: &Topics) -> &str {
    &topics.orders
}

/// `(partition, high watermark)` of each of `topic`'s `partitions`.
fn ends(reader: &Reader, topic: &str, partitions: i32) -> anyhow::Result<Vec<(i32, i64)>> {
    (0..partitions)
        .map(|p| Ok((p, watermarks(reader, topic, p)?.1)))
        .collect()
}

enum CoreIn {
    Open(ConnId, mpsc::Sender<Option<Vec<u8>>>),
    Gateway(Input),
}

/// Runs the gateway until `shutdown`.
pub fn run(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &FixArgs,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(kafka, instruments, args, shutdown))
}

async fn serve(
    kafka: &KafkaArgs,
    instruments: &Instruments,
    args: &FixArgs,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let cfg = Config {
        comp_id: args.comp_id.clone(),
        resend_window: args.resend_window.max(1),
        max_orders_per_session: args.max_orders_per_session.max(1),
        max_sessions: args.max_sessions.max(1),
        ..Config::default()
    };
    let (mut store, state, opened) = Store::open(
        &args.state_dir,
        !args.no_sync,
        args.compact_bytes,
        cfg.resend_window,
    )?;
    tracing::info!(
        dir = %args.state_dir.display(),
        batches = opened.batches,
        sessions = state.sessions.len(),
        open_orders = state.orders.len(),
        "FIX journal replayed"
    );
    let keys = Arc::new(match &args.api_keys {
        Some(p) => Keys::from_file(p)?,
        None => {
            tracing::warn!("no --api-keys: every logon is refused");
            Keys::none()
        }
    });
    let authenticate = {
        let keys = keys.clone();
        Box::new(move |key: &str| {
            keys.authenticate(key, chrono::Utc::now())
                .map(|c| c.trader)
                .map_err(|e| e.detail().to_string())
        })
    };
    let ids = match &args.order_id_key {
        Some(k) => IdAllocator::with_key(k.as_bytes()),
        None => IdAllocator::random(),
    };

    // Kafka: the order producer and the order-events reader, positioned before any logon.
    let topics = kafka.topics();
    let producer: FutureProducer = kafka
        .producer()
        .set("queue.buffering.max.kbytes", "16384")
        .create()
        .context("creating the order producer")?;
    let consumer = create_reader(kafka.reader().set("enable.partition.eof", "false"))
        .context("creating the order-events reader")?;
    let order_partitions = partition_count(&consumer, output(&topics))?;
    let event_partitions = partition_count(&consumer, input(&topics))?;
    let cfg = Config {
        order_partitions,
        ..cfg
    };
    let mut gw = Gateway::new(cfg, instruments.clone(), ids, authenticate, state);
    // Where `orders` ends before any order is taken: the floor of every later publication's
    // offset (a lost acknowledgement is settled by reading from there).
    gw.handle(
        Input::Watermarks(ends(&consumer, output(&topics), order_partitions)?),
        chrono::Utc::now().timestamp_millis(),
    );
    let mut tpl = TopicPartitionList::new();
    for p in 0..event_partitions {
        let next = match gw.cursor(p) {
            Some(n) => n,
            None => {
                let (_, high) = watermarks(&consumer, input(&topics), p)?;
                gw.start_partition(p, high);
                high
            }
        };
        tpl.add_partition_offset(input(&topics), p, Offset::Offset(next))?;
    }
    consumer.assign(&tpl).context("assigning order-events")?;
    // Records the journal has and the broker never acknowledged: looked for, sent if absent.
    gw.verify_outbox();

    // Bounded in messages, each bounded in size (--max-message, codec::MAX_FIELDS): ≤ 1 024 ×
    // ~20 kB decoded; readers wait when it is full.
    let (tx, mut rx) = mpsc::channel::<CoreIn>(1024);
    let ready = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Mutex::new(Stats::default()));
    // order-events → core.
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("order-events".into())
            .spawn(move || {
                while !shutdown.is_triggered() {
                    match consumer.poll(Duration::from_millis(100)) {
                        None => {}
                        Some(Ok(m)) => {
                            let input = Input::Event {
                                partition: m.partition(),
                                offset: m.offset(),
                                payload: m.payload().unwrap_or_default().to_vec(),
                            };
                            if tx.blocking_send(CoreIn::Gateway(input)).is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => tracing::warn!(error = %e, "order-events reader error"),
                    }
                }
            })?;
    }
    // The acceptor.
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("binding {}", args.bind))?;
    tracing::info!(addr = %listener.local_addr()?, comp_id = %args.comp_id, "accepting FIX 4.4 sessions");
    if let Some(addr) = args.ops_bind {
        crate::runtime::ops::serve(addr, ops_router(stats.clone(), ready.clone()), shutdown)?;
    }
    {
        let tx = tx.clone();
        let max_conns = args.max_connections;
        let max_message = args.max_message;
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        tokio::spawn(async move {
            let mut next_id: ConnId = 1;
            loop {
                let Ok((stream, peer)) = listener.accept().await else {
                    continue;
                };
                if open.load(Ordering::Relaxed) >= max_conns {
                    tracing::warn!(%peer, "FIX connection refused: --max-connections reached");
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let id = next_id;
                next_id += 1;
                open.fetch_add(1, Ordering::Relaxed);
                let (tx, open) = (tx.clone(), open.clone());
                tokio::spawn(async move {
                    connection(id, stream, tx, max_message).await;
                    open.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
    }
    ready.store(true, Ordering::Relaxed);

    // `orders` reader: the partitions' ends every second, and the look-ups of [`Output::Verify`].
    let (verify_tx, verify_rx) = std::sync::mpsc::channel::<(u64, u32, i32, i64, Vec<u8>)>();
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        let topic = output(&topics).to_string();
        let reader = create_reader(&kafka.reader()).context("creating the orders reader")?;
        let verify_again = verify_tx.clone();
        std::thread::Builder::new()
            .name("orders-reader".into())
            .spawn(move || {
                while !shutdown.is_triggered() {
                    match verify_rx.recv_timeout(Duration::from_secs(1)) {
                        Ok((order_id, seq, partition, from, payload)) => {
                            let found = watermarks(&reader, &topic, partition).and_then(|(_, to)| {
                                let mut found = false;
                                read_range(&reader, &topic, partition, from, to, |m| {
                                    found |= m.payload() == Some(payload.as_slice());
                                })?;
                                Ok(found)
                            });
                            match found {
                                Ok(found) => {
                                    let v = Input::Verified { order_id, seq, found };
                                    if tx.blocking_send(CoreIn::Gateway(v)).is_err() {
                                        break;
                                    }
                                }
                                // Unsettled: asked again after a pause (never sent blind).
                                Err(e) => {
                                    tracing::warn!(order_id, error = %format!("{e:#}"), "looking for an order on the topic failed; retrying");
                                    std::thread::sleep(Duration::from_secs(1));
                                    let _ = verify_again.send((order_id, seq, partition, from, payload));
                                }
                            }
                        }
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                    match ends(&reader, &topic, order_partitions) {
                        Ok(w) => {
                            if tx.blocking_send(CoreIn::Gateway(Input::Watermarks(w))).is_err() {
                                break;
                            }
                        }
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "reading where orders ends"),
                    }
                }
            })?;
    }
    let mut writers: HashMap<ConnId, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut stopping = false;
    let mut stop_deadline = Instant::now();
    loop {
        tokio::select! {
            got = rx.recv() => {
                let Some(first) = got else { break };
                let mut next = Some(first);
                let mut n = 0;
                while let Some(item) = next {
                    let now = chrono::Utc::now().timestamp_millis();
                    match item {
                        CoreIn::Open(id, w) => {
                            writers.insert(id, w);
                            gw.handle(Input::Connected(id), now);
                        }
                        CoreIn::Gateway(input) => {
                            if let Input::Disconnected(id) = &input {
                                writers.remove(id);
                            }
                            gw.handle(input, now);
                        }
                    }
                    n += 1;
                    next = if n < 1024 { rx.try_recv().ok() } else { None };
                }
            }
            _ = tick.tick() => gw.handle(Input::Tick, chrono::Utc::now().timestamp_millis()),
            _ = shutdown.triggered(), if !stopping => {
                stopping = true;
                stop_deadline = Instant::now() + Duration::from_secs(10);
                gw.shutdown(chrono::Utc::now().timestamp_millis());
            }
        }
        let (records, outputs) = gw.take();
        // Journal first: nothing below may get ahead of it.
        tokio::task::block_in_place(|| store.append(&records, gw.state()))?;
        for o in outputs {
            match o {
                Output::Send(id, bytes) => {
                    if let Some(w) = writers.get(&id) {
                        if w.try_send(Some(bytes)).is_err() {
                            // A counterparty that does not read is cut off (bounded queue); what
                            // it missed is kept for its resend request after it reconnects.
                            tracing::warn!(conn = id, "FIX connection not reading; closed");
                            writers.remove(&id);
                        }
                    }
                }
                Output::Close(id) => {
                    // Dropping the sender ends the writer once it has written what is queued
                    // (the Logout), then the socket is shut down.
                    writers.remove(&id);
                }
                Output::Verify {
                    order_id,
                    seq,
                    partition,
                    from,
                    payload,
                } => {
                    let _ = verify_tx.send((order_id, seq, partition, from, payload));
                }
                Output::Publish {
                    order_id,
                    seq,
                    partition,
                    key,
                    payload,
                } => {
                    let record = FutureRecord::to(output(&topics))
                        .partition(partition)
                        .key(&key)
                        .payload(&payload);
                    // Enqueued here, in order (a cancel never overtakes its order).
                    let result = producer.send_result(record).map_err(|(e, _)| e.to_string());
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let result = match result {
                            Ok(delivery) => match delivery.await {
                                Ok(Ok(_)) => Ok(()),
                                Ok(Err((e, _))) => Err(e.to_string()),
                                Err(_) => Err("delivery cancelled".to_string()),
                            },
                            Err(e) => Err(e),
                        };
                        let _ = tx
                            .send(CoreIn::Gateway(Input::Published {
                                order_id,
                                seq,
                                result,
                            }))
                            .await;
                    });
                }
            }
        }
        *stats.lock().unwrap_or_else(|e| e.into_inner()) = gw.stats();
        if stopping && (gw.outbox_len() == 0 || Instant::now() > stop_deadline) {
            // Logouts are out and every acknowledgement in (or 10 s passed: what is left is
            // settled against the topic at the next start); give the writers a moment, then stop.
            tokio::time::sleep(Duration::from_millis(300)).await;
            break;
        }
    }
    let _ = tokio::task::block_in_place(|| {
        rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10))
    });
    Ok(())
}

/// One TCP connection: decoded messages to the core; the core's bytes to the socket.
async fn connection(
    id: ConnId,
    stream: tokio::net::TcpStream,
    tx: mpsc::Sender<CoreIn>,
    max_message: usize,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Option<Vec<u8>>>(4096);
    if tx.send(CoreIn::Open(id, out_tx)).await.is_err() {
        return;
    }
    let closed = Arc::new(Notify::new());
    let writer = {
        let closed = closed.clone();
        tokio::spawn(async move {
            while let Some(Some(bytes)) = out_rx.recv().await {
                if wr.write_all(&bytes).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            closed.notify_one();
        })
    };
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    'read: loop {
        loop {
            match decode(&buf, max_message) {
                Decoded::Incomplete => break,
                Decoded::Message { message, len } => {
                    buf.drain(..len);
                    if tx
                        .send(CoreIn::Gateway(Input::Message(id, message)))
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Decoded::Garbled { skip, reason } => {
                    buf.drain(..skip);
                    let _ = tx.send(CoreIn::Gateway(Input::Garbled(id, reason))).await;
                }
                Decoded::TooLarge { announced } => {
                    tracing::warn!(
                        conn = id,
                        announced,
                        "FIX message over --max-message; closing"
                    );
                    break 'read;
                }
            }
        }
        tokio::select! {
            n = rd.read(&mut chunk) => match n {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            },
            _ = closed.notified() => break,
        }
    }
    let _ = tx.send(CoreIn::Gateway(Input::Disconnected(id))).await;
    writer.abort();
}

fn ops_router(stats: Arc<Mutex<Stats>>, ready: Arc<AtomicBool>) -> axum::Router {
    use axum::routing::get;
    let s = stats.clone();
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let s = *s.lock().unwrap_or_else(|e| e.into_inner());
                async move { crate::runtime::ops::metrics_response(render(&s)) }
            }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ok = ready.load(Ordering::Relaxed);
                async move {
                    if ok {
                        (axum::http::StatusCode::OK, "ready")
                    } else {
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting")
                    }
                }
            }),
        )
}

/// Prometheus text of the gateway's counts.
pub fn render(s: &Stats) -> String {
    let rows: [(&str, &str, u64, &str); 13] = [
        (
            "kappa_fix_sessions",
            "gauge",
            s.sessions,
            "FIX sessions logged on now",
        ),
        (
            "kappa_fix_logons_total",
            "counter",
            s.logons,
            "Logons accepted",
        ),
        (
            "kappa_fix_logons_refused_total",
            "counter",
            s.logons_refused,
            "Logons refused",
        ),
        (
            "kappa_fix_messages_in_total",
            "counter",
            s.messages_in,
            "FIX messages received",
        ),
        (
            "kappa_fix_garbled_total",
            "counter",
            s.garbled,
            "Garbled messages ignored",
        ),
        (
            "kappa_fix_session_rejects_total",
            "counter",
            s.session_rejects,
            "Session-level Rejects (35=3) sent",
        ),
        (
            "kappa_fix_orders_published_total",
            "counter",
            s.orders_published,
            "Orders, cancels and replaces acknowledged by the broker",
        ),
        (
            "kappa_fix_orders_refused_total",
            "counter",
            s.orders_refused,
            "New orders refused before publication",
        ),
        (
            "kappa_fix_execution_reports_total",
            "counter",
            s.execution_reports,
            "ExecutionReports made",
        ),
        (
            "kappa_fix_cancel_rejects_total",
            "counter",
            s.cancel_rejects,
            "OrderCancelRejects made",
        ),
        (
            "kappa_fix_resend_requests_total",
            "counter",
            s.resend_requests_answered,
            "ResendRequests answered",
        ),
        (
            "kappa_fix_messages_resent_total",
            "counter",
            s.messages_resent,
            "Messages resent with PossDupFlag",
        ),
        (
            "kappa_fix_order_events_read_total",
            "counter",
            s.events_read,
            "order-events records read",
        ),
    ];
    let mut out = String::new();
    for (name, kind, value, help) in rows {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{job=\"fix-gateway\"}} {value}\n"
        ));
    }
    out
}
