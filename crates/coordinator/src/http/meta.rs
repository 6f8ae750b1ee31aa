//! Routes about the service itself: health, the OpenAPI document and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::OpenApi;

use wire::{ApiError, HealthResponse};

use super::{AppState, Requester};

#[derive(OpenApi)]
#[openapi(
    info(title = "crowdcloud", description = "A cloud made of idle computers: the coordinator's API."),
    paths(
        health, metrics,
        super::jobs::submit, super::jobs::list, super::jobs::status, super::jobs::wait,
        super::jobs::tasks, super::jobs::why, super::jobs::cancel, super::jobs::keys, super::jobs::grant_keys, super::jobs::delete,
        super::jobs::deletion,
        super::pipelines::submit, super::pipelines::status, super::pipelines::cancel,
        super::pipelines::explain,
        super::nodes::challenge, super::nodes::register, super::nodes::lease, super::nodes::heartbeat, super::nodes::presence,
        super::nodes::report, super::nodes::release, super::nodes::job_runtime, super::nodes::list,
        super::nodes::remove,
        super::blobs::put, super::blobs::head, super::blobs::get,
        super::trust::list, super::trust::create, super::trust::revoke,
        super::trust::new_code, super::trust::start, super::trust::finish,
        super::credits::show, super::credits::grant,
        super::federation::add, super::federation::list, super::federation::remove,
        super::web::history, super::web::presets, super::web::attempts, super::web::results_zip,
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
    let leader = Some(shared.config.lead.holder.clone()).filter(|holder| !holder.is_empty());
    let mut health = health_of(
        &shared.config.pool_name,
        shared.now_ms(),
        wire::CoordinatorRole::Leader,
        leader,
    );
    health.remote = shared.config.remote_address.clone();
    Json(health)
}

/// What `/v1/health` says of this coordinator, leading or standing by.
pub(crate) fn health_of(
    pool_name: &str,
    time_ms: u64,
    role: wire::CoordinatorRole,
    leader: Option<String>,
) -> HealthResponse {
    HealthResponse {
        service: wire::api::SERVICE_NAME.to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pool_name: pool_name.to_owned(),
        time_ms,
        role: Some(role),
        leader,
        remote: None,
    }
}

pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi_document())
}

/// Gauges of the pool in the Prometheus text format. They tell how busy the pool is, so they
/// take an API token like the node list does; a scraper gets a token of its own
/// (`crowdcloud tokens create`) and sends it as a bearer token.
#[utoipa::path(get, path = "/metrics", tag = "meta",
    responses(
        (status = 200, content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String,
            description = "counters, gauges and histograms in the OpenMetrics text format"),
        (status = 401, body = ApiError, description = "no valid API token"),
    ),
    security(("requester" = [])))]
pub(crate) async fn metrics(
    State(shared): State<AppState>,
    _requester: Requester,
) -> impl IntoResponse {
    shared.refresh_gauges();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod openapi_tests;

#[cfg(test)]
mod tests {
    use serde_json::Value;

    fn document() -> Value {
        serde_json::to_value(super::openapi_document()).unwrap()
    }

    fn parameter<'a>(document: &'a Value, path: &str, method: &str, name: &str) -> &'a Value {
        document["paths"][path][method]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{method} {path} has parameters"))
            .iter()
            .find(|parameter| parameter["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path} has the parameter {name}"))
    }

    #[test]
    fn query_parameters_are_optional_and_in_the_query() {
        let document = document();
        for (path, names) in [
            ("/v1/jobs", &["limit"][..]),
            ("/v1/jobs/{job}/wait", &["after", "until", "timeout_ms"][..]),
            ("/v1/jobs/{job}/tasks", &["offset", "limit"][..]),
        ] {
            for name in names {
                let parameter = parameter(&document, path, "get", name);
                assert_eq!(parameter["in"], "query", "{path} {name}");
                assert_ne!(parameter["required"], true, "{path} {name}");
            }
        }
    }

    /// The pattern of a parameter's schema, through its reference to the components.
    fn pattern<'a>(document: &'a Value, parameter: &'a Value) -> &'a str {
        let schema = &parameter["schema"];
        let schema = match schema["$ref"].as_str() {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap();
                &document["components"]["schemas"][name]
            }
            None => schema,
        };
        schema["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{parameter} has a pattern"))
    }

    #[test]
    fn ids_and_hashes_carry_their_patterns() {
        let document = document();
        let job = parameter(&document, "/v1/jobs/{job}", "get", "job");
        assert_eq!(job["in"], "path");
        assert_eq!(pattern(&document, job), "^j-[0-9a-fA-F]{16}$");
        let hash = parameter(&document, "/v1/blobs/{hash}", "put", "hash");
        assert_eq!(pattern(&document, hash), "^[0-9a-f]{64}$");
        let node = parameter(&document, "/v1/nodes/{node}/remove", "post", "node");
        assert_eq!(pattern(&document, node), "^n-[0-9a-fA-F]{16}$");
    }

    #[test]
    fn metrics_are_documented_and_take_a_token() {
        let document = document();
        let metrics = &document["paths"]["/metrics"]["get"];
        assert!(metrics["security"].to_string().contains("requester"));
        assert!(metrics["responses"].get("401").is_some());
    }

    #[test]
    fn refusals_are_documented_with_the_error_body() {
        let document = document();
        let submit = &document["paths"]["/v1/jobs"]["post"]["responses"];
        for status in ["400", "401", "413", "429"] {
            let body = submit[status].to_string();
            assert!(body.contains("ApiError"), "{status}: {body}");
        }
    }
}
