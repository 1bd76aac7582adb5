//! What every request on the public port passes before a handler: the Host allow-list (DNS
//! rebinding), the Origin check and CORS (denied unless configured), the per-address rate limit,
//! a JSON Content-Type on writes; then, for order entry and private reads, the trader's
//! credential ([`Authed`]) and the per-trader rate limit. Order-entry requests, refused here or
//! not, leave one structured audit line each (target `audit`; never a key).

use super::api::{ApiError, App};
use super::auth::{bearer, AuthError};
use super::limits::{ip_key, retry_after_secs, Rate, RateLimiter};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Most distinct clients (addresses or traders) with a rate-limit bucket at once.
pub const MAX_BUCKETS: usize = 100_000;

/// Host names a request may be addressed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hosts {
    /// Any (`--allowed-hosts '*'`: only behind a proxy that checks Host itself).
    Any,
    /// These names, lower case, without port.
    Only(Vec<String>),
}

impl Hosts {
    /// From `--allowed-hosts` (comma-separated), or, when unset, the bind address's own names: a
    /// loopback bind allows `localhost` and its address; a wildcard bind must name its hosts.
    pub fn resolve(configured: &[String], bind: SocketAddr) -> anyhow::Result<Hosts> {
        let names: Vec<String> = configured
            .iter()
            .map(|h| h.trim().to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        if names.iter().any(|h| h == "*") {
            return Ok(Hosts::Any);
        }
        if !names.is_empty() {
            return Ok(Hosts::Only(
                names.iter().map(|h| host_name(h).to_string()).collect(),
            ));
        }
        let ip = bind.ip();
        if ip.is_unspecified() {
            anyhow::bail!(
                "--allowed-hosts (KAPPA_ALLOWED_HOSTS) is required with --bind {bind}: name the host \
                 names clients use (a Host check defeats DNS rebinding), or '*' behind a proxy that \
                 checks them"
            );
        }
        let mut names = vec![ip.to_string()];
        if ip.is_loopback() {
            names.push("localhost".into());
        }
        Ok(Hosts::Only(names))
    }

    fn allows(&self, host: &str) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Only(names) => {
                let h = host_name(host);
                names.iter().any(|n| n.eq_ignore_ascii_case(h))
            }
        }
    }
}

/// `host[:port]` or `[v6]:port` → the host name (brackets removed).
fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Why a request was refused before a handler, or for its credential: the `reason` label of
/// `kappa_api_refused_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Host,
    Origin,
    ContentType,
    IpRate,
    TraderRate,
    Auth(AuthError),
}

impl Refusal {
    /// Every reason, in the order the metrics list them.
    pub const ALL: [Refusal; 8] = [
        Refusal::Host,
        Refusal::Origin,
        Refusal::ContentType,
        Refusal::IpRate,
        Refusal::TraderRate,
        Refusal::Auth(AuthError::Missing),
        Refusal::Auth(AuthError::Invalid),
        Refusal::Auth(AuthError::Expired),
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::Host => "host",
            Refusal::Origin => "origin",
            Refusal::ContentType => "content_type",
            Refusal::IpRate => "ip_rate",
            Refusal::TraderRate => "trader_rate",
            Refusal::Auth(e) => e.code(),
        }
    }

    fn index(self) -> usize {
        Self::ALL.iter().position(|r| *r == self).unwrap_or(0)
    }
}

/// Refusals counted by reason.
#[derive(Debug, Default)]
pub struct Refusals([AtomicU64; Refusal::ALL.len()]);

impl Refusals {
    pub fn count(&self, reason: Refusal) {
        self.0[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, reason: Refusal) -> u64 {
        self.0[reason.index()].load(Ordering::Relaxed)
    }
}

/// The guard's settings and state.
pub struct Guard {
    pub hosts: Hosts,
    /// Origins allowed cross-origin (exact `scheme://host[:port]`); empty: CORS denied.
    pub cors_origins: Vec<String>,
    /// Header carrying the client address set by a trusted proxy (its last value is used).
    pub client_ip_header: Option<header::HeaderName>,
    pub per_ip: RateLimiter<IpAddr>,
    pub per_trader: RateLimiter<String>,
    pub refusals: Refusals,
}

impl Guard {
    pub fn new(
        hosts: Hosts,
        cors_origins: Vec<String>,
        client_ip_header: Option<header::HeaderName>,
        ip_rate: Rate,
        trader_rate: Rate,
    ) -> Self {
        Guard {
            hosts,
            cors_origins: cors_origins
                .into_iter()
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            client_ip_header,
            per_ip: RateLimiter::new(ip_rate, MAX_BUCKETS),
            per_trader: RateLimiter::new(trader_rate, MAX_BUCKETS),
            refusals: Refusals::default(),
        }
    }

    fn client_ip(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> IpAddr {
        let forwarded = self.client_ip_header.as_ref().and_then(|name| {
            let last = headers.get_all(name).iter().next_back()?.to_str().ok()?;
            last.rsplit(',').next()?.trim().parse::<IpAddr>().ok()
        });
        forwarded
            .or(peer)
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The client's address (the peer's, or the trusted proxy header's), for handlers.
#[derive(Clone, Copy, Debug)]
pub struct ClientIp(pub IpAddr);

/// Paths of order entry (audited).
fn is_order_entry(method: &Method, path: &str) -> bool {
    method == Method::POST && path.starts_with("/orders")
}

fn order_action(path: &str) -> &'static str {
    if path.ends_with("/cancel") {
        "cancel"
    } else if path.ends_with("/amend") {
        "amend"
    } else {
        "new"
    }
}

/// One audit line for an order-entry request.
pub fn audit(
    ip: IpAddr,
    action: &str,
    trader: Option<&str>,
    order_id: Option<u64>,
    outcome: &str,
    reason: Option<&str>,
) {
    tracing::info!(
        target: "audit",
        event = "order_entry",
        client_ip = %ip,
        action,
        trader = trader.unwrap_or(""),
        order_id = order_id.map_or(String::new(), |i| i.to_string()),
        outcome,
        reason = reason.unwrap_or(""),
    );
}

/// The outcome label of a refused request.
pub fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthenticated",
        403 => "forbidden",
        429 => "rate_limited",
        500..=599 => "failed",
        _ => "refused",
    }
}

fn rate_limited(scope: &str, wait: std::time::Duration) -> ApiError {
    let secs = retry_after_secs(wait);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this {scope}; retry in {secs} s"),
    )
    .with_header(header::RETRY_AFTER, secs.to_string())
}

/// The middleware in front of every public route.
pub async fn guard(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let g = &app.guard;
    let peer = req
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = g.client_ip(req.headers(), peer);
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let refuse = |reason: Refusal, e: ApiError| -> Response {
        g.refusals.count(reason);
        if is_order_entry(&method, &path) {
            audit(
                ip,
                order_action(&path),
                None,
                None,
                outcome_of(e.status()),
                Some(e.code()),
            );
        }
        e.into_response()
    };

    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_string();
    if !g.hosts.allows(&host) {
        return refuse(
            Refusal::Host,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "host_not_allowed",
                format!("this server does not answer for host {host:?}"),
            ),
        );
    }

    let mut cors_origin = None;
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("").trim_end_matches('/');
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(&host));
        let listed = g.cors_origins.iter().any(|o| o == origin);
        if !same && !listed {
            return refuse(
                Refusal::Origin,
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    format!("requests from web pages at {origin:?} are not allowed (CORS)"),
                ),
            );
        }
        if listed && !same {
            cors_origin = HeaderValue::from_str(origin).ok();
        }
    }
    if method == Method::OPTIONS {
        // A preflight: answered here, for allowed origins only.
        let Some(origin) = cors_origin else {
            return refuse(
                Refusal::Origin,
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "origin_not_allowed",
                    "CORS preflight from an origin that is not configured",
                ),
            );
        };
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        return r;
    }

    if let Err(wait) = g.per_ip.check(&ip_key(ip), Instant::now()) {
        return refuse(Refusal::IpRate, rate_limited("address", wait));
    }

    // A write with a body must say it is JSON (a text/plain or form POST is a "simple" request
    // that browsers send cross-origin without a preflight). A bodiless one (a cancel) has nothing
    // to declare, and its Bearer credential forces a preflight anyway.
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if method == Method::POST && has_body {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return refuse(
                Refusal::ContentType,
                ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "writes need Content-Type: application/json",
                ),
            );
        }
    }

    req.extensions_mut().insert(ClientIp(ip));
    let mut response = next.run(req).await;
    if let Some(origin) = cors_origin {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The trader a request is authenticated as (its API key's), within its rate limit.
#[derive(Clone, Debug)]
pub struct Authed {
    pub trader: String,
}

impl FromRequestParts<App> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        let fail = |e: AuthError| {
            app.guard.refusals.count(Refusal::Auth(e));
            let mut err = ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.detail());
            if e == AuthError::Missing {
                err = err.with_header(header::WWW_AUTHENTICATE, "Bearer".into());
            } else {
                err = err.with_header(
                    header::WWW_AUTHENTICATE,
                    "Bearer error=\"invalid_token\"".into(),
                );
            }
            err
        };
        let key = bearer(
            parts
                .headers
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes()),
        )
        .map_err(fail)?;
        let credential = app
            .keys
            .authenticate(key, chrono::Utc::now())
            .map_err(fail)?;
        if let Err(wait) = app
            .guard
            .per_trader
            .check(&credential.trader, Instant::now())
        {
            app.guard.refusals.count(Refusal::TraderRate);
            return Err(rate_limited("trader", wait));
        }
        Ok(Authed {
            trader: credential.trader,
        })
    }
}

/// A refusal for acting on another trader's order or P&L.
pub fn forbidden(detail: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_default_to_the_bind_address_and_a_wildcard_bind_must_name_them() {
        let local: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let h = Hosts::resolve(&[], local).unwrap();
        assert!(h.allows("127.0.0.1:8080") && h.allows("localhost:8080") && h.allows("LOCALHOST"));
        assert!(!h.allows("evil.example:8080") && !h.allows(""));
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert!(Hosts::resolve(&[], any).is_err());
        let h = Hosts::resolve(&["Exchange.example.com".into(), "mv:80".into()], any).unwrap();
        assert!(h.allows("exchange.example.com") && h.allows("mv") && h.allows("mv:8080"));
        assert!(!h.allows("127.0.0.1"));
        assert_eq!(Hosts::resolve(&["*".into()], any).unwrap(), Hosts::Any);
        let v6: SocketAddr = "[::1]:8080".parse().unwrap();
        let h = Hosts::resolve(&[], v6).unwrap();
        assert!(h.allows("[::1]:8080") && h.allows("localhost"));
    }

    #[test]
    fn the_client_address_comes_from_the_trusted_header_only_when_configured() {
        let mut headers = HeaderMap::new();
        headers.append("x-forwarded-for", "6.6.6.6, 10.0.0.1".parse().unwrap());
        let peer: IpAddr = "10.0.0.9".parse().unwrap();
        let rate = Rate {
            per_second: 1.0,
            burst: 1.0,
        };
        let plain = Guard::new(Hosts::Any, vec![], None, rate, rate);
        assert_eq!(plain.client_ip(&headers, Some(peer)), peer);
        let proxied = Guard::new(
            Hosts::Any,
            vec![],
            Some(header::HeaderName::from_static("x-forwarded-for")),
            rate,
            rate,
        );
        // The last value is the one the trusted proxy appended; what the client wrote is ignored.
        assert_eq!(
            proxied.client_ip(&headers, Some(peer)),
            "10.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(proxied.client_ip(&HeaderMap::new(), Some(peer)), peer);
    }
}
