//! Routes about the service itself: health, the OpenAPI document, Prometheus metrics and the
//! dashboard page.

use std::fmt::Write as _;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use utoipa::OpenApi;

use wire::HealthResponse;

use super::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "crowdcloud", description = "A cloud made of idle computers: the coordinator's API."),
    paths(
        health,
        super::jobs::submit, super::jobs::list, super::jobs::status, super::jobs::wait,
        super::jobs::tasks, super::jobs::why, super::jobs::cancel,
        super::nodes::register, super::nodes::lease, super::nodes::heartbeat,
        super::nodes::report, super::nodes::release, super::nodes::job_runtime, super::nodes::list,
        super::nodes::remove,
        super::blobs::put, super::blobs::head, super::blobs::get,
        super::trust::list, super::trust::create, super::trust::revoke,
        super::trust::new_code, super::trust::start, super::trust::finish,
    ),
    modifiers(&Security),
)]
struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, format) in [("requester", "ccr_ API token"), ("node", "ccn_ node token")] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format(format)
                        .build(),
                ),
            );
        }
    }
}

pub(crate) fn openapi_document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

#[utoipa::path(get, path = "/v1/health", tag = "meta",
    responses((status = 200, body = HealthResponse)))]
pub(crate) async fn health(State(shared): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        service: wire::api::SERVICE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pool_name: shared.config.pool_name.clone(),
        time_ms: shared.now_ms(),
    })
}

pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// Gauges of the pool in the Prometheus text format.
pub(crate) async fn metrics(State(shared): State<AppState>) -> impl IntoResponse {
    let (nodes_online, tasks_pending, attempts_live) = shared.read(|state, now_ms| {
        (
            state.nodes_online(now_ms),
            state.tasks_pending(),
            state.attempts_live(),
        )
    });
    let gauges = [
        (
            "crowdcloud_nodes_online",
            "Nodes whose lease is current.",
            nodes_online,
        ),
        (
            "crowdcloud_tasks_pending",
            "Tasks waiting for a node.",
            tasks_pending,
        ),
        (
            "crowdcloud_attempts_running",
            "Attempts held by nodes.",
            attempts_live,
        ),
        (
            "crowdcloud_store_writes_queued",
            "Writes queued to the state store, not yet committed.",
            shared.store.queued(),
        ),
    ];
    let mut text = String::new();
    for (name, help, value) in gauges {
        let _ = writeln!(
            text,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub(crate) async fn dashboard() -> Html<&'static str> {
    Html(include_str!("dashboard.html"))
}
