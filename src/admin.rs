//! The admin listener: `/healthz` (the process is alive), `/readyz` (configuration loaded, CA usable,
//! DNS answering), `/metrics` (Prometheus text format).

use crate::proxy::Shared;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder().status(status).header("Content-Type", content_type).body(Full::new(Bytes::from(body))).expect("static response parts are valid")
}

/// Whether vpcgate can serve: DNS answers for the first region's S3 name within a second
/// (answers are cached, so this is cheap), and in inspect mode a leaf can be minted.
pub async fn readiness(shared: &Shared) -> Result<String, String> {
    let state = shared.get();
    let probe = format!("s3.{}.amazonaws.com", state.config.regions[0]);
    match tokio::time::timeout(Duration::from_secs(1), state.dns.lookup_a(&probe)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(format!("DNS is not usable: {probe}: {e} from {}", state.dns.servers())),
        Err(_) => return Err(format!("DNS is not usable: no answer for {probe} within 1s from {}", state.dns.servers())),
    }
    if let Some(ins) = &state.inspect {
        let ca = ins.leaves.ca();
        if ca.expired() {
            return Err(format!(
                "the CA certificate {} expired on {}; run `vpcgate ca init --force` and give clients the new CA",
                ca.cert_path.display(),
                ca.not_after.date()
            ));
        }
        ins.leaves.get(&probe).await.map_err(|e| format!("the CA is not usable: {e}"))?;
    }
    // audit.require: every gateway route's proof must hold.
    if state.config.settings.audit.require == crate::config::Require::RouteTable {
        for r in state.config.routes.iter().filter(|r| r.kind == crate::routes::RouteKind::Gateway) {
            if let crate::follow::ProofState::Failing(why) = state.evidence.get(&r.name) {
                return Err(format!("route {} is not proven private (audit.require = \"route_table\"): {why}", r.name));
            }
        }
    }
    // A followed route that never got its list, or whose endpoint AWS withdrew, carries nothing
    // (fail closed): not ready.
    if let Some(r) = state.config.routes.iter().find(|r| r.cidrs.is_empty()) {
        let why = shared.follow.lock().expect("follow lock").get(&r.name).and_then(|s| s.error.clone()).unwrap_or_else(|| "not asked yet".into());
        let what = r.follow.as_ref().map(|f| f.target.describe()).unwrap_or_default();
        let withdrawn = r.source.ends_with("withdrawn");
        if withdrawn {
            return Err(format!("route {} has no CIDRs: AWS withdrew its {what} ({why})", r.name));
        }
        return Err(format!("route {} has no CIDRs: its {what} was never fetched ({why}) and no cache file holds a copy", r.name));
    }
    Ok(format!("ready: {} route(s), DNS {}\n", state.config.routes.len(), state.dns.servers()))
}

async fn route(req: Request<hyper::body::Incoming>, shared: Arc<Shared>) -> Response<Full<Bytes>> {
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => match readiness(&shared).await {
            Ok(s) => text(StatusCode::OK, "text/plain", s),
            Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready: {e}\n")),
        },
        "/metrics" => {
            let state = shared.get();
            if let Some(ins) = &state.inspect {
                state.metrics.upstream_idle.set(ins.pool.idle_count() as i64);
            }
            text(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", state.metrics.render())
        }
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}

/// Admin connections served at once; more wait in the listen queue. Probes and scrapes need few.
const ADMIN_CONNECTIONS: usize = 32;
/// How long an admin client may take to send a request head, and the longest an admin connection lives.
const ADMIN_HEAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
const ADMIN_CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl std::future::Future<Output = ()>) {
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(ADMIN_CONNECTIONS));
    loop {
        // A slot first, so that idle admin clients cannot take every file descriptor. A slot is
        // held for one request (no keep-alive) or at most ADMIN_HEAD_TIMEOUT by a silent client,
        // so a probe waits at most that long behind them.
        let slot = tokio::select! {
            _ = &mut shutdown => return,
            s = slots.clone().acquire_owned() => s.expect("the admin semaphore is never closed"),
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning on the error.
                tracing::warn!(error = %e, "the admin listener could not accept a connection; retrying in 100 ms");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, std::convert::Infallible>(route(req, shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(ADMIN_HEAD_TIMEOUT)
                // One request per connection: a scraper cannot hold a slot between scrapes.
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(ADMIN_CONNECTION_LIFETIME, conn).await;
        });
    }
}
