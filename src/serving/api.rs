//! The HTTP API and the dashboard's live stream (axum). Handlers only read the shared
//! [`MarketState`] or hand a validated order to the producer; every error is a JSON body
//! `{"error": <code>, "detail": <text>}` with a 4xx/5xx status, including malformed paths, query
//! strings and oversized bodies, and a panic in a handler becomes a 500, never a dead server.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/` | the dashboard (single page, no external resources) |
//! | GET | `/instruments` | instruments with last price, best bid/ask, trades, volume |
//! | GET | `/book/{instrument}?depth=1..5` | top of book with spread and mid |
//! | GET | `/trades/{instrument}?limit=1..` | recent trades, newest first |
//! | GET | `/bars/{instrument}?limit=1..` | closed OHLCV bars with their SMAs, oldest first |
//! | GET | `/pnl/{trader}` | 🔑 that trader's positions and realized/unrealized P&L |
//! | GET | `/pnl/{trader}/history?limit=1..` | 🔑 that trader's total P&L per window, oldest first |
//! | GET | `/leaderboard` | the latest P&L leaderboard |
//! | GET | `/me` | 🔑 the trader the API key belongs to |
//! | GET | `/orders?limit=1..500&status=open` | 🔑 one's own orders' last statuses, newest first |
//! | GET | `/orders/{id}` | 🔑 last known status of one's own order |
//! | POST | `/orders` | 🔑 new order → 202 `{id}`, or 400 with the validation reason |
//! | POST | `/orders/{id}/cancel`, `/orders/{id}/amend` | 🔑 202, or 400/403/404 with the reason |
//! | GET | `/stream/{instrument}` | Server-Sent Events: a snapshot, then conflated deltas |
//! | GET | `/healthz`, `/readyz` | liveness, readiness (caught up) |
//!
//! 🔑: `Authorization: Bearer <API key>`; the trader is the key's (401 without a valid key, 403
//! for another trader's order or P&L). Every public request passes [`super::guard`] first (Host
//! allow-list, CORS, per-address rate limit, JSON on writes). `/metrics` and `/stats` are served
//! on the ops port only ([`ops_router`]), with `/healthz` and `/readyz` again for probes.

use super::auth::Keys;
use super::guard::{audit, forbidden, outcome_of, Authed, ClientIp, Guard, Refusal};
use super::orders::{
    self, ChangeRequest, IdAllocator, NewOrderRequest, Prepared, RecentIds, Refused,
};
use super::state::{BarView, BookView, Delta, InstrumentSummary, MarketState, PnlHistory, PnlView};
use crate::topics::Partitioner;
use crate::wire::{LeaderboardMessage, OrderEventMessage, OrderMessage, TradeMessage};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kappa_engine::Instruments;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;

/// The dashboard page (HTML, CSS and JavaScript in one file; no network needed).
pub const DASHBOARD: &str = include_str!("dashboard.html");

/// Top-of-book depth the `book` topic carries.
pub const MAX_DEPTH: usize = 5;

/// Most orders one `GET /orders` lists.
pub const MAX_ORDERS_LISTED: usize = 500;

/// Counters of the API's own work.
#[derive(Debug, Default)]
pub struct ApiCounters {
    pub orders_published: AtomicU64,
    pub orders_refused: AtomicU64,
    pub publish_failures: AtomicU64,
    /// Retries (same client order id) answered without publishing again.
    pub duplicate_requests: AtomicU64,
    /// Live streams refused because `max_streams` were open.
    pub streams_refused: AtomicU64,
    /// …or because the client's address had `max_streams_per_ip` open.
    pub streams_refused_per_ip: AtomicU64,
}

/// Where validated orders go.
pub struct OrderSink {
    pub producer: FutureProducer,
    pub partitioner: Partitioner,
    pub topic: String,
    pub partitions: i32,
}

/// Everything the handlers share.
pub struct Shared {
    pub state: Arc<RwLock<MarketState>>,
    pub ready: Arc<AtomicBool>,
    pub stopping: Arc<AtomicBool>,
    pub instruments: Instruments,
    pub ids: IdAllocator,
    /// Ids published by this process recently (a retry is not published twice).
    pub recent: RecentIds,
    pub sink: OrderSink,
    /// Live (SSE) streams open now, and the most allowed (more are answered 503).
    pub streams: AtomicUsize,
    pub max_streams: usize,
    /// Live streams open per client address (entries removed at zero), and the most allowed.
    pub streams_per_ip: Mutex<HashMap<IpAddr, usize>>,
    pub max_streams_per_ip: usize,
    /// Trader credentials (API keys).
    pub keys: Keys,
    /// Host, origin, rate and content checks ([`super::guard`]).
    pub guard: Guard,
    pub push_interval: Duration,
    pub counters: ApiCounters,
}

impl Shared {
    fn read(&self) -> RwLockReadGuard<'_, MarketState> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// The handlers' state.
pub type App = Arc<Shared>;

/// An API error: status, stable code, detail.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: String,
    detail: String,
    header: Option<(HeaderName, String)>,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            error: error.into(),
            detail: detail.into(),
            header: None,
        }
    }

    /// The same error with a response header (Retry-After, WWW-Authenticate).
    pub fn with_header(mut self, name: HeaderName, value: String) -> Self {
        self.header = Some((name, value));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable error code.
    pub fn code(&self) -> &str {
        &self.error
    }

    fn bad(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, detail)
    }

    fn not_found(error: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, error, detail)
    }

    fn unknown_instrument(symbol: &str) -> Self {
        Self::not_found(
            "unknown_instrument",
            format!("no instrument {symbol:?}; see /instruments"),
        )
    }
}

/// Every error's body.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code (`unknown_instrument`, `price_off_tick`, `rate_limited`, …).
    pub error: String,
    /// What happened, for people.
    pub detail: String,
}

/// `GET /me`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Me {
    pub trader: String,
}

/// `GET /orders?status=`: which of the trader's orders.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OrderFilter {
    /// The live ones: `ACCEPTED`, `NEW`, `PARTIALLY_FILLED`, `AMENDED`.
    Open,
    /// Every kept one (the default).
    All,
}

/// `GET /healthz`, `/readyz`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(schema_with = health_status)]
    pub status: &'static str,
}

fn health_status() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["ok", "ready", "catching_up"]))
        .into()
}

/// One Server-Sent Event of `GET /stream/{instrument}`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct StreamEvent {
    #[schema(schema_with = stream_event_name)]
    event: String,
    /// A [`Delta`] in JSON.
    #[schema(schema_with = stream_event_data)]
    data: String,
}

fn stream_event_name() -> utoipa::openapi::schema::Schema {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["snapshot", "delta"]))
        .into()
}

fn stream_event_data() -> utoipa::openapi::schema::Schema {
    use utoipa::ToSchema as _;
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .content_media_type("application/json")
        .content_schema(Some(utoipa::openapi::Ref::from_schema_name(Delta::name())))
        .into()
}

/// An order-entry request's answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OrderAccepted {
    /// The order's id (allocated by the server when the request named none).
    pub id: u64,
    /// `SUBMITTED` (published now), or a retry's last known status.
    pub status: String,
    /// True for a retry of a client order id already seen: nothing was published again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub duplicate_request: bool,
    pub order: AcceptedOrder,
}

/// The published message, or for a retry the order's last known status.
#[derive(Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum AcceptedOrder {
    Submitted(OrderMessage),
    Known(OrderEventMessage),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.error,
            detail: self.detail,
        };
        let mut r = (self.status, Json(body)).into_response();
        if let Some((name, value)) = self.header {
            if let Ok(v) = HeaderValue::from_str(&value) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

impl From<Refused> for ApiError {
    fn from(r: Refused) -> Self {
        let status = match r.reason.as_str() {
            "unknown_order" => StatusCode::NOT_FOUND,
            orders::NOT_ORDER_OWNER | orders::TRADER_MISMATCH => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, r.reason, r.detail)
    }
}

/// A path parameter whose extraction errors are JSON.
struct PathParam<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathParam(v))
            .map_err(|e| ApiError::bad("invalid_path", e.body_text()))
    }
}

/// Query parameters (only the names a route accepts), with JSON errors.
struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::bad("invalid_query", e.body_text()))
    }
}

impl Params {
    /// Refuses parameters other than `allowed` (a typo should not be silently ignored).
    fn only(self, allowed: &[&str]) -> Result<Self, ApiError> {
        match self.0.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(ApiError::bad(
                "invalid_parameter",
                format!("unknown parameter {k:?}; accepted: {}", allowed.join(", ")),
            )),
            None => Ok(self),
        }
    }

    /// An integer parameter in `1..=max`, or `default` when absent.
    fn count(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.0.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad(
                        "invalid_parameter",
                        format!("{name} must be an integer from 1 to {max}, not {v:?}"),
                    )
                }),
        }
    }
}

/// The request body, with an oversized body reported as JSON.
fn body(b: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    b.map_err(|e| ApiError::new(e.status(), "invalid_body", e.body_text()))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn internal_error() -> Response {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the request failed",
    )
    .into_response()
}

/// The API's OpenAPI 3.1 description, generated from the handlers' annotations and the serde
/// types (`GET /openapi.json`; committed as `schemas/openapi.json`, where a test keeps it current).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Kappa Exchange API",
        description = "Market data, analytics and order entry of Kappa Exchange. Prices, quantities \
and money are exact decimals written as JSON numbers. Order entry and private reads need \
`Authorization: Bearer <API key>`; every error is `{\"error\": <code>, \"detail\": <text>}`. \
Live Swagger UI at `/docs`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        dashboard, instruments, book, trades, bars, pnl, pnl_history, leaderboard, me, list_orders,
        new_order, order_status, cancel_order, amend_order, stream, healthz, readyz
    ),
    components(schemas(Delta, OrderFilter)),
    modifiers(&BearerAuth),
    tags(
        (name = "market", description = "Instruments, books, trades, the live stream"),
        (name = "analytics", description = "Bars with SMAs, P&L, the leaderboard (from the `analytics` topic)"),
        (name = "orders", description = "Order entry and order status (an API key's trader)"),
        (name = "ops", description = "Probes"),
        (name = "dashboard", description = "The web dashboard"),
    )
)]
pub struct ApiDoc;

/// The `api_key` security scheme: `Authorization: Bearer kx_…`.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("kx_…")
                        .description(Some("A trader's API key (`--api-keys`)"))
                        .build(),
                ),
            );
    }
}

/// The OpenAPI description as served and committed: pretty JSON with a final newline.
pub fn openapi_json() -> String {
    use utoipa::OpenApi as _;
    crate::wire::schema::render(
        &serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document is JSON"),
    )
}

async fn openapi_document() -> impl IntoResponse {
    static DOC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOC.get_or_init(openapi_json).as_str(),
    )
}

/// Swagger UI at `/docs`, from the crate's vendored copy: no CDN, no validator calls out.
fn docs() -> Router<App> {
    let config = utoipa_swagger_ui::Config::new(["/openapi.json"]).validator_url("none");
    Router::from(utoipa_swagger_ui::SwaggerUi::new("/docs").config(config))
        .route("/openapi.json", get(openapi_document))
}

/// Builds the public router: API, order entry, dashboard, live streams, behind the guard.
pub fn router(app: App, max_body: usize) -> Router {
    Router::new()
        .merge(docs())
        .route("/", get(dashboard))
        .route("/instruments", get(instruments))
        .route("/book/{instrument}", get(book))
        .route("/trades/{instrument}", get(trades))
        .route("/bars/{instrument}", get(bars))
        .route("/pnl/{trader}", get(pnl))
        .route("/pnl/{trader}/history", get(pnl_history))
        .route("/leaderboard", get(leaderboard))
        .route("/me", get(me))
        .route("/orders", get(list_orders).post(new_order))
        .route("/orders/{id}", get(order_status))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/orders/{id}/amend", post(amend_order))
        .route("/stream/{instrument}", get(stream))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async {
            ApiError::not_found(
                "not_found",
                "no such endpoint; see /docs for the API, / for the dashboard",
            )
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see /docs",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            super::guard::guard,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            internal_error()
        }))
        .with_state(app)
}

/// The ops router (its own port, never behind the public Service): metrics, counts, probes.
pub fn ops_router(app: App) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/stats", get(stats))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            internal_error()
        }))
        .with_state(app)
}

#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The dashboard: one HTML page, no external resources", content_type = "text/html", body = String)))]
async fn dashboard() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-cache")], Html(DASHBOARD))
}

#[utoipa::path(get, path = "/instruments", tag = "market",
    responses(
        (status = 200, description = "Every instrument, with its session figures and the `orders` partition its orders go to", body = Vec<InstrumentSummary>),
        (status = 429, description = "Rate limited (per address); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
/// The instruments, each with the `orders` partition its orders must be produced to.
async fn instruments(State(app): State<App>) -> impl IntoResponse {
    let mut list = app.read().instruments();
    for i in &mut list {
        i.partition = app
            .sink
            .partitioner
            .instrument_partition(&i.symbol, app.sink.partitions);
    }
    Json(list)
}

#[utoipa::path(get, path = "/book/{instrument}", tag = "market",
    params(("instrument" = String, Path, description = "Instrument symbol (see /instruments)", example = "TCS"),
        ("depth" = Option<u32>, Query, description = "Levels per side (default 5)", minimum = 1, maximum = 5)),
    responses(
        (status = 200, description = "Top of book with spread and mid", body = BookView),
        (status = 400, description = "Invalid parameter (`invalid_parameter`, `invalid_query`, `invalid_path`)", body = ErrorBody),
        (status = 404, description = "`unknown_instrument`", body = ErrorBody),
        (status = 429, description = "Rate limited (per address); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
async fn book(
    State(app): State<App>,
    PathParam(symbol): PathParam<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let depth = params
        .only(&["depth"])?
        .count("depth", MAX_DEPTH, MAX_DEPTH)?;
    let view = app.read().book(&symbol, depth);
    view.map(Json)
        .ok_or_else(|| ApiError::unknown_instrument(&symbol))
}

#[utoipa::path(get, path = "/trades/{instrument}", tag = "market",
    params(("instrument" = String, Path, description = "Instrument symbol (see /instruments)", example = "TCS"),
        ("limit" = Option<u32>, Query, description = "Most trades (default 50)", minimum = 1, maximum = 10000)),
    responses(
        (status = 200, description = "Recent trades, newest first", body = Vec<TradeMessage>),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 404, description = "`unknown_instrument`", body = ErrorBody),
        (status = 429, description = "Rate limited (per address); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
async fn trades(
    State(app): State<App>,
    PathParam(symbol): PathParam<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let limit = params.only(&["limit"])?.count("limit", 50, 10_000)?;
    let view = app.read().trades(&symbol, limit);
    view.map(Json)
        .ok_or_else(|| ApiError::unknown_instrument(&symbol))
}

#[utoipa::path(get, path = "/bars/{instrument}", tag = "analytics",
    params(("instrument" = String, Path, description = "Instrument symbol (see /instruments)", example = "TCS"),
        ("limit" = Option<u32>, Query, description = "Most bars (default 100)", minimum = 1, maximum = 100000)),
    responses(
        (status = 200, description = "Closed OHLCV bars with their SMAs, oldest first", body = Vec<BarView>),
        (status = 400, description = "Invalid parameter", body = ErrorBody),
        (status = 404, description = "`unknown_instrument`", body = ErrorBody),
        (status = 429, description = "Rate limited (per address); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
async fn bars(
    State(app): State<App>,
    PathParam(symbol): PathParam<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let limit = params.only(&["limit"])?.count("limit", 100, 100_000)?;
    let view = app.read().bars(&symbol, limit);
    view.map(Json)
        .ok_or_else(|| ApiError::unknown_instrument(&symbol))
}

#[utoipa::path(get, path = "/pnl/{trader}", tag = "analytics", security(("api_key" = [])),
    params(("trader" = String, Path, description = "The API key's trader (another trader's P&L is refused)", example = "DEMO")),
    responses(
        (status = 200, description = "The trader's positions and realized/unrealized P&L", body = PnlView),
        (status = 401, description = "No valid API key (`unauthenticated`, `invalid_credential`, `expired_credential`)", body = ErrorBody),
        (status = 403, description = "Another trader's P&L (`forbidden`)", body = ErrorBody),
        (status = 404, description = "`unknown_trader`: no P&L yet", body = ErrorBody),
        (status = 429, description = "Rate limited (per address or per trader); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
async fn pnl(
    State(app): State<App>,
    authed: Authed,
    PathParam(trader): PathParam<String>,
) -> Result<impl IntoResponse, ApiError> {
    own_pnl(&authed, &trader)?;
    let view = app.read().pnl(&trader);
    view.map(Json).ok_or_else(|| no_pnl(&trader))
}

/// Refuses another trader's P&L.
fn own_pnl(authed: &Authed, trader: &str) -> Result<(), ApiError> {
    if trader == authed.trader {
        return Ok(());
    }
    Err(forbidden(format!(
        "this API key is {}'s; another trader's P&L is not shown",
        authed.trader
    )))
}

fn no_pnl(trader: &str) -> ApiError {
    ApiError::not_found(
        "unknown_trader",
        format!("no P&L for trader {trader:?} (no trades yet?)"),
    )
}

#[utoipa::path(get, path = "/pnl/{trader}/history", tag = "analytics", security(("api_key" = [])),
    params(("trader" = String, Path, description = "The API key's trader (another trader's P&L is refused)", example = "DEMO"),
        ("limit" = Option<u32>, Query, description = "Most points, the newest (default: all kept, the last `--pnl-history`)", minimum = 1, maximum = 100000)),
    responses(
        (status = 200, description = "The trader's total P&L after each analytics window in which they traded, oldest first", body = PnlHistory),
        (status = 400, description = "Invalid parameter (`invalid_parameter`, `invalid_query`, `invalid_path`)", body = ErrorBody),
        (status = 401, description = "No valid API key (`unauthenticated`, `invalid_credential`, `expired_credential`)", body = ErrorBody),
        (status = 403, description = "Another trader's P&L (`forbidden`)", body = ErrorBody),
        (status = 404, description = "`unknown_trader`: no P&L yet", body = ErrorBody),
        (status = 429, description = "Rate limited (per address or per trader); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
/// A trader's P&L over time (the dashboard's P&L chart): kept while the trader's P&L is.
async fn pnl_history(
    State(app): State<App>,
    authed: Authed,
    PathParam(trader): PathParam<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    own_pnl(&authed, &trader)?;
    let limit = params
        .only(&["limit"])?
        .count("limit", usize::MAX, 100_000)?;
    let history = app.read().pnl_history(&trader, limit);
    history.map(Json).ok_or_else(|| no_pnl(&trader))
}

#[utoipa::path(get, path = "/leaderboard", tag = "analytics",
    responses(
        (status = 200, description = "Traders ranked by total P&L", body = LeaderboardMessage),
        (status = 404, description = "`no_leaderboard` yet", body = ErrorBody),
        (status = 429, description = "Rate limited (per address); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
async fn leaderboard(State(app): State<App>) -> Result<impl IntoResponse, ApiError> {
    let board = app.read().leaderboard().cloned();
    board.map(Json).ok_or_else(|| {
        ApiError::not_found("no_leaderboard", "no leaderboard has been published yet")
    })
}

fn order_id(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| {
        ApiError::bad(
            "invalid_order_id",
            format!("order id must be a positive integer, not {text:?}"),
        )
    })
}

#[utoipa::path(get, path = "/me", tag = "orders", security(("api_key" = [])),
    responses(
        (status = 200, description = "The trader the API key belongs to", body = Me),
        (status = 401, description = "No valid API key (`unauthenticated`, `invalid_credential`, `expired_credential`)", body = ErrorBody),
        (status = 429, description = "Rate limited (per address or per trader); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
/// Who the API key belongs to (the dashboard's login check).
async fn me(authed: Authed) -> impl IntoResponse {
    Json(Me {
        trader: authed.trader,
    })
}

#[utoipa::path(get, path = "/orders", tag = "orders", security(("api_key" = [])),
    params(("limit" = Option<u32>, Query, description = "Most orders (default 100)", minimum = 1, maximum = 500),
        ("status" = Option<OrderFilter>, Query, description = "`open`: only the live orders (`ACCEPTED`, `NEW`, `PARTIALLY_FILLED`, `AMENDED`); `all` (default): every kept one")),
    responses(
        (status = 200, description = "The API key's trader's orders with their last known status (from `order-events`), newest first: those among the last `--orders-kept` orders of the exchange", body = Vec<OrderEventMessage>),
        (status = 400, description = "Invalid parameter (`invalid_parameter`, `invalid_query`)", body = ErrorBody),
        (status = 401, description = "No valid API key (`unauthenticated`, `invalid_credential`, `expired_credential`)", body = ErrorBody),
        (status = 429, description = "Rate limited (per address or per trader); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
/// The API key's trader's orders, newest first (the dashboard's order table).
async fn list_orders(
    State(app): State<App>,
    authed: Authed,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    use serde::de::IntoDeserializer as _;
    let params = params.only(&["limit", "status"])?;
    let limit = params.count("limit", 100, MAX_ORDERS_LISTED)?;
    let filter = match params.0.get("status") {
        None => OrderFilter::All,
        Some(v) => serde::Deserialize::deserialize(v.as_str().into_deserializer()).map_err(
            |_: serde::de::value::Error| {
                ApiError::bad(
                    "invalid_parameter",
                    format!("status must be open or all, not {v:?}"),
                )
            },
        )?,
    };
    let open_only = matches!(filter, OrderFilter::Open);
    let orders = app.read().orders_of(&authed.trader, limit, open_only);
    Ok(Json(orders))
}

#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("api_key" = [])),
    params(("id" = u64, Path, description = "Order id", minimum = 0)),
    responses(
        (status = 200, description = "The order's last known status (from `order-events`)", body = OrderEventMessage),
        (status = 400, description = "`invalid_order_id`", body = ErrorBody),
        (status = 401, description = "No valid API key (`unauthenticated`, `invalid_credential`, `expired_credential`)", body = ErrorBody),
        (status = 403, description = "Another trader's order", body = ErrorBody),
        (status = 404, description = "`unknown_order`: not processed yet, or forgotten", body = ErrorBody),
        (status = 429, description = "Rate limited (per address or per trader); retry after `Retry-After` seconds", body = ErrorBody),
    ))]
async fn order_status(
    State(app): State<App>,
    authed: Authed,
    PathParam(id): PathParam<String>,
) -> Result<impl IntoResponse, ApiError> {
    let id = order_id(&id)?;
    let status = app.read().order(id).cloned();
    if status.as_ref().is_some_and(|s| s.trader != authed.trader) {
        return Err(forbidden(format!("order {id} belongs to another trader")));
    }
    status.map(Json).ok_or_else(|| {
        ApiError::not_found(
            "unknown_order",
            format!("order {id} has no status here (not yet processed, or forgotten)"),
        )
    })
}

/// Publishes a validated order; answers 202 once the broker has it.
async fn publish(app: &Shared, p: Prepared) -> Result<Response, ApiError> {
    let partition = app
        .sink
        .partitioner
        .partition(p.key.as_bytes(), app.sink.partitions);
    let record = FutureRecord::to(&app.sink.topic)
        .partition(partition)
        .key(&p.key)
        .payload(&p.payload);
    // Bounded: the producer would otherwise keep retrying for its message timeout (minutes).
    let sent = tokio::time::timeout(
        Duration::from_secs(10),
        app.sink.producer.send(record, Duration::from_secs(5)),
    )
    .await;
    let failure = match sent {
        Ok(Ok(_)) => {
            app.counters
                .orders_published
                .fetch_add(1, Ordering::Relaxed);
            let body = OrderAccepted {
                id: p.id,
                status: "SUBMITTED".into(),
                duplicate_request: false,
                order: AcceptedOrder::Submitted(p.message),
            };
            return Ok((StatusCode::ACCEPTED, Json(body)).into_response());
        }
        Ok(Err((e, _))) => e.to_string(),
        Err(_) => "no acknowledgement from the broker within 10 s".to_string(),
    };
    app.counters
        .publish_failures
        .fetch_add(1, Ordering::Relaxed);
    app.recent.remove(p.id);
    tracing::warn!(error = %failure, "publishing an order failed");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        format!(
            "order {} was not confirmed by the broker ({failure}); check GET /orders/{} before resending",
            p.id, p.id
        ),
    ))
}

fn refused(app: &Shared, r: Refused) -> ApiError {
    app.counters.orders_refused.fetch_add(1, Ordering::Relaxed);
    r.into()
}

/// What an order-entry request did: its order id (when known), and the answer with its outcome
/// (`published`, `duplicate_request`) or the refusal.
type Entry = (Option<u64>, Result<(Response, &'static str), ApiError>);

fn published(r: Result<Response, ApiError>) -> Result<(Response, &'static str), ApiError> {
    r.map(|r| (r, "published"))
}

/// Answers an order-entry request and writes its audit line.
fn audited(
    ip: Option<axum::Extension<ClientIp>>,
    action: &str,
    trader: Option<&str>,
    (id, result): Entry,
) -> Response {
    let ip = ip.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0 .0);
    match result {
        Ok((r, outcome)) => {
            audit(ip, action, trader, id, outcome, None);
            r
        }
        Err(e) => {
            audit(
                ip,
                action,
                trader,
                id,
                outcome_of(e.status()),
                Some(e.code()),
            );
            e.into_response()
        }
    }
}

/// The refusals every order-entry operation (new, cancel, amend) can answer, for the OpenAPI
/// description (the bodies are [`ErrorBody`]; `ApiError` makes them).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of responses, never constructed
enum OrderEntryRefusals {
    #[response(
        status = 400,
        description = "Refused with the engine's reason code (`price_off_tick`, `invalid_quantity`, `unknown_instrument`, `malformed_json`, …) and never published"
    )]
    Refused(ErrorBody),
    #[response(
        status = 401,
        description = "No valid API key (`unauthenticated`, `invalid_credential`, `expired_credential`)"
    )]
    Unauthenticated(ErrorBody),
    #[response(status = 403, description = "`trader_mismatch` / `not_order_owner`")]
    Forbidden(ErrorBody),
    #[response(status = 413, description = "Body too large")]
    TooLarge(ErrorBody),
    #[response(
        status = 415,
        description = "Writes need `Content-Type: application/json`"
    )]
    NotJson(ErrorBody),
    #[response(
        status = 429,
        description = "Rate limited (per address or per trader); retry after `Retry-After` seconds"
    )]
    RateLimited(ErrorBody),
    #[response(
        status = 503,
        description = "The broker did not confirm the order; check `GET /orders/{id}` before resending"
    )]
    Unconfirmed(ErrorBody),
}

#[utoipa::path(post, path = "/orders", tag = "orders", security(("api_key" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Client order id: a retry with the same one gets the same order id and is never a second order", pattern = "^[A-Za-z0-9._:-]{1,64}$")),
    request_body(content = NewOrderRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Published to `orders`; its fate appears on `order-events` and `GET /orders/{id}`", body = OrderAccepted),
        (status = 200, description = "A retry of a known client order id: its last known status, nothing published", body = OrderAccepted),
        OrderEntryRefusals,
    ))]
async fn new_order(
    State(app): State<App>,
    ip: Option<axum::Extension<ClientIp>>,
    authed: Result<Authed, ApiError>,
    headers: axum::http::HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let trader = authed.as_ref().ok().map(|a| a.trader.clone());
    let entry = match authed {
        Ok(a) => place(&app, &a.trader, &headers, b).await,
        Err(e) => (None, Err(e)),
    };
    audited(ip, "new", trader.as_deref(), entry)
}

async fn place(
    app: &App,
    trader: &str,
    headers: &axum::http::HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Entry {
    let b = match body(b) {
        Ok(b) => b,
        Err(e) => return (None, Err(e)),
    };
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        Some(Err(_)) => {
            let r = Refused {
                reason: "invalid_client_order_id".into(),
                detail: "the Idempotency-Key header must be ASCII".into(),
            };
            return (None, Err(refused(app, r)));
        }
        Some(Ok(k)) => Some(k),
        None => None,
    };
    let p = match orders::new_order(&b, trader, key, &app.instruments, &app.ids, now_ms()) {
        Ok(p) => p,
        Err(r) => return (None, Err(refused(app, r))),
    };
    let id = Some(p.id);
    if p.client_order_id.is_some() {
        // A retry: answer with what is known instead of publishing a second order.
        let known = app.read().order(p.id).cloned();
        if let Some(known) = known.filter(|k| k.trader == trader) {
            app.counters
                .duplicate_requests
                .fetch_add(1, Ordering::Relaxed);
            let body = OrderAccepted {
                id: p.id,
                status: known.status.clone(),
                duplicate_request: true,
                order: AcceptedOrder::Known(known),
            };
            let r = (StatusCode::OK, Json(body)).into_response();
            return (id, Ok((r, "duplicate_request")));
        }
        if !app.recent.insert(p.id) {
            app.counters
                .duplicate_requests
                .fetch_add(1, Ordering::Relaxed);
            let body = OrderAccepted {
                id: p.id,
                status: "SUBMITTED".into(),
                duplicate_request: true,
                order: AcceptedOrder::Submitted(p.message),
            };
            let r = (StatusCode::ACCEPTED, Json(body)).into_response();
            return (id, Ok((r, "duplicate_request")));
        }
    }
    (id, published(publish(app, p).await))
}

async fn change(
    app: App,
    ip: Option<axum::Extension<ClientIp>>,
    authed: Result<Authed, ApiError>,
    id: Result<PathParam<String>, ApiError>,
    amend: bool,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let trader = authed.as_ref().ok().map(|a| a.trader.clone());
    let action = if amend { "amend" } else { "cancel" };
    let parsed = id.and_then(|PathParam(id)| order_id(&id));
    let order = parsed.as_ref().ok().copied();
    let entry = match (authed, parsed) {
        (Err(e), _) | (_, Err(e)) => (order, Err(e)),
        (Ok(a), Ok(id)) => {
            let result = match body(b) {
                Err(e) => Err(e),
                Ok(b) => {
                    let known = app.read().order(id).cloned();
                    match orders::change_order(
                        id,
                        amend,
                        &b,
                        &a.trader,
                        known.as_ref(),
                        &app.instruments,
                        now_ms(),
                    ) {
                        Ok(p) => published(publish(&app, p).await),
                        Err(r) => Err(refused(&app, r)),
                    }
                }
            };
            (Some(id), result)
        }
    };
    audited(ip, action, trader.as_deref(), entry)
}

#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("api_key" = [])),
    params(("id" = u64, Path, description = "Order id", minimum = 0)),
    request_body(content = Option<ChangeRequest>, content_type = "application/json", description = "Optional: only needed for an order the server has not seen yet (its instrument)"),
    responses(
        (status = 202, description = "The cancel is published", body = OrderAccepted),
        OrderEntryRefusals,
        (status = 404, description = "`unknown_order`", body = ErrorBody),
    ))]
async fn cancel_order(
    State(app): State<App>,
    ip: Option<axum::Extension<ClientIp>>,
    authed: Result<Authed, ApiError>,
    id: Result<PathParam<String>, ApiError>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    change(app, ip, authed, id, false, b).await
}

#[utoipa::path(post, path = "/orders/{id}/amend", tag = "orders", security(("api_key" = [])),
    params(("id" = u64, Path, description = "Order id", minimum = 0)),
    request_body(content = ChangeRequest, content_type = "application/json", description = "The new price and/or open quantity"),
    responses(
        (status = 202, description = "The amend is published", body = OrderAccepted),
        OrderEntryRefusals,
        (status = 404, description = "`unknown_order`", body = ErrorBody),
    ))]
async fn amend_order(
    State(app): State<App>,
    ip: Option<axum::Extension<ClientIp>>,
    authed: Result<Authed, ApiError>,
    id: Result<PathParam<String>, ApiError>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    change(app, ip, authed, id, true, b).await
}

#[utoipa::path(get, path = "/stream/{instrument}", tag = "market",
    params(("instrument" = String, Path, description = "Instrument symbol (see /instruments)", example = "TCS")),
    responses(
        (status = 200, description = "Server-Sent Events: `event: snapshot` with the full state, then `event: delta` with what changed (each `data` a `Delta` in JSON)", content_type = "text/event-stream", body = StreamEvent),
        (status = 404, description = "`unknown_instrument`", body = ErrorBody),
        (status = 429, description = "Too many streams from this address, or rate limited", body = ErrorBody),
        (status = 503, description = "Too many streams open on the server", body = ErrorBody),
    ))]
/// Server-Sent Events for one instrument: a `snapshot` event with the full state first, then one
/// `delta` per push interval with whatever changed (nothing is sent while nothing changes).
async fn stream(
    State(app): State<App>,
    ip: Option<axum::Extension<ClientIp>>,
    PathParam(symbol): PathParam<String>,
) -> Result<impl IntoResponse, ApiError> {
    if !app.read().knows_instrument(&symbol) {
        return Err(ApiError::unknown_instrument(&symbol));
    }
    let ip = ip.map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0 .0);
    let slot = match StreamSlot::take(&app, ip) {
        Ok(slot) => slot,
        Err(e) => return Err(e.with_header(header::RETRY_AFTER, "5".into())),
    };
    let events = futures_util::stream::unfold(
        (app, symbol, 0u64, slot),
        |(app, symbol, seen, slot)| async move {
            let mut first = seen == 0;
            loop {
                if !first {
                    tokio::time::sleep(app.push_interval).await;
                }
                first = false;
                if app.stopping.load(Ordering::Relaxed) {
                    return None;
                }
                let delta = app.read().delta(&symbol, seen)?;
                if delta.is_empty() && seen != 0 {
                    continue;
                }
                let version = delta.version.max(1);
                let name = if seen == 0 { "snapshot" } else { "delta" };
                let event = Event::default().event(name).json_data(&delta).ok()?;
                return Some((Ok::<_, Infallible>(event), (app, symbol, version, slot)));
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// One of the `max_streams` live-stream slots (and of its address's `max_streams_per_ip`),
/// released when the stream ends or its client goes.
struct StreamSlot(App, IpAddr);

impl StreamSlot {
    fn take(app: &App, ip: IpAddr) -> Result<StreamSlot, ApiError> {
        let key = super::limits::ip_key(ip);
        let mut per_ip = app.streams_per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if per_ip.get(&key).copied().unwrap_or(0) >= app.max_streams_per_ip {
            app.counters
                .streams_refused_per_ip
                .fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "{} live streams are open from this address, the most allowed",
                    app.max_streams_per_ip
                ),
            ));
        }
        let taken = app
            .streams
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < app.max_streams).then_some(n + 1)
            })
            .is_ok();
        if !taken {
            app.counters.streams_refused.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "too_many_streams",
                format!(
                    "{} live streams are open, the most this server allows; retry later",
                    app.max_streams
                ),
            ));
        }
        *per_ip.entry(key).or_default() += 1;
        Ok(StreamSlot(app.clone(), key))
    }

    fn release_ip(app: &App, key: IpAddr) {
        let mut per_ip = app.streams_per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(open) = per_ip.get_mut(&key) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&key);
            }
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::AcqRel);
        Self::release_ip(&self.0, self.1);
    }
}

#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "Alive", body = Health)))]
async fn healthz() -> impl IntoResponse {
    Json(Health { status: "ok" })
}

#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Caught up with the topics", body = Health),
        (status = 503, description = "Still catching up", body = Health)))]
async fn readyz(State(app): State<App>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        Json(Health { status: "ready" }).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "catching_up",
            }),
        )
            .into_response()
    }
}

#[derive(Serialize)]
struct Stats {
    ready: bool,
    version: u64,
    feed: super::state::FeedCounts,
    orders_published: u64,
    orders_refused: u64,
    publish_failures: u64,
    duplicate_requests: u64,
    streams_open: usize,
    streams_refused: u64,
}

async fn stats(State(app): State<App>) -> impl IntoResponse {
    let (version, feed) = {
        let s = app.read();
        (s.version(), s.counts())
    };
    let c = &app.counters;
    Json(Stats {
        ready: app.ready.load(Ordering::Relaxed),
        version,
        feed,
        orders_published: c.orders_published.load(Ordering::Relaxed),
        orders_refused: c.orders_refused.load(Ordering::Relaxed),
        publish_failures: c.publish_failures.load(Ordering::Relaxed),
        duplicate_requests: c.duplicate_requests.load(Ordering::Relaxed),
        streams_open: app.streams.load(Ordering::Relaxed),
        streams_refused: c.streams_refused.load(Ordering::Relaxed),
    })
}

/// Prometheus text: what the feed applied, order entry outcomes, readiness.
async fn metrics(State(app): State<App>) -> impl IntoResponse {
    use crate::runtime::metrics::write_family;
    let feed = app.read().counts();
    let c = &app.counters;
    let (published, refused, failed, duplicate, ready) = (
        c.orders_published.load(Ordering::Relaxed),
        c.orders_refused.load(Ordering::Relaxed),
        c.publish_failures.load(Ordering::Relaxed),
        c.duplicate_requests.load(Ordering::Relaxed),
        u8::from(app.ready.load(Ordering::Relaxed)),
    );
    let (streams_open, streams_refused, streams_refused_ip) = (
        app.streams.load(Ordering::Relaxed) as u64,
        c.streams_refused.load(Ordering::Relaxed),
        c.streams_refused_per_ip.load(Ordering::Relaxed),
    );
    let refusals = &app.guard.refusals;
    let label = |k: &str, v: &str| format!(",{k}=\"{v}\"");
    let job = "market-view";
    let mut out = String::new();
    write_family(
        &mut out,
        "kappa_messages_consumed_total",
        "counter",
        "Messages applied to the served state, by topic.",
        job,
        &[
            (label("topic", "book"), &feed.book),
            (label("topic", "trades"), &feed.trades),
            (label("topic", "order-events"), &feed.order_events),
            (label("topic", "analytics"), &feed.analytics),
        ],
    );
    write_family(
        &mut out,
        "kappa_undecodable_total",
        "counter",
        "Messages that did not decode.",
        job,
        &[(String::new(), &feed.undecodable)],
    );
    write_family(
        &mut out,
        "kappa_api_orders_total",
        "counter",
        "Order entry requests by outcome.",
        job,
        &[
            (label("outcome", "published"), &published),
            (label("outcome", "refused"), &refused),
            (label("outcome", "failed"), &failed),
            (label("outcome", "duplicate_request"), &duplicate),
        ],
    );
    write_family(
        &mut out,
        "kappa_api_streams_open",
        "gauge",
        "Live (SSE) streams open.",
        job,
        &[(String::new(), &streams_open)],
    );
    write_family(
        &mut out,
        "kappa_api_streams_refused_total",
        "counter",
        "Live streams refused because the most allowed were open: in all (503) or from one address (429).",
        job,
        &[
            (label("scope", "server"), &streams_refused),
            (label("scope", "address"), &streams_refused_ip),
        ],
    );
    // Every reason appears (0 until it happens), so alerts and dashboards see the series.
    let counts: Vec<(String, u64)> = Refusal::ALL
        .iter()
        .map(|r| (label("reason", r.label()), refusals.get(*r)))
        .collect();
    write_family(
        &mut out,
        "kappa_api_refused_total",
        "counter",
        "Requests refused before a handler (Host, Origin, Content-Type, rate limits) or for their credential.",
        job,
        &counts,
    );
    write_family(
        &mut out,
        "kappa_api_credentials",
        "gauge",
        "API keys loaded.",
        job,
        &[(String::new(), &(app.keys.len() as u64))],
    );
    write_family(
        &mut out,
        "kappa_ready",
        "gauge",
        "1 once the state caught up with the topics.",
        job,
        &[(String::new(), &ready)],
    );
    crate::runtime::ops::metrics_response(out)
}
