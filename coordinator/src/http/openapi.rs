//! The API's OpenAPI 3.1 description, generated from the code: the
//! handlers' `#[utoipa::path]` attributes, the bodies' `ToSchema` derives
//! (`jobs::protocol`), and the answers every route shares (token, body and
//! store errors) added here. Served without a token at `GET /openapi.json`:
//! it holds no secrets.

use std::sync::LazyLock;

use ::jobs::protocol::routes;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response as ApiResponse, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::ApiError;
use super::jobs;
use super::leases;
use super::provider_batch;
use super::public;
use super::schedules;

/// Name of the bearer-token security scheme.
const BEARER: &str = "bearer";

/// Routes that take no token.
const PUBLIC: [&str; 3] = [routes::HEALTHZ, routes::METRICS, routes::OPENAPI];

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shardline coordinator API",
        description = "Job routes take the admin token; lease and provider-batch routes take \
                       the worker token (or the admin one); `/healthz`, `/metrics` and \
                       `/openapi.json` take none. Every error is a JSON `ErrorBody`."
    ),
    paths(
        jobs::submit,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::results,
        jobs::samples,
        jobs::failures,
        jobs::rescore_spec,
        jobs::rescore_samples,
        schedules::create,
        schedules::list,
        schedules::get,
        schedules::delete,
        schedules::pause,
        schedules::resume,
        schedules::run_now,
        leases::claim,
        leases::heartbeat,
        leases::complete,
        leases::fail,
        leases::release,
        leases::flush,
        provider_batch::reserve,
        provider_batch::submit,
        provider_batch::requests,
        provider_batch::claim,
        provider_batch::heartbeat,
        provider_batch::update,
        provider_batch::finish,
        public::healthz,
        public::metrics,
        serve_document,
    ),
    modifiers(&SharedAnswers),
    tags(
        (name = "jobs", description = "Submitting, inspecting and scoring jobs (admin token)"),
        (name = "schedules", description = "Jobs submitted on a cron schedule (admin token)"),
        (name = "leases", description = "The lease protocol (worker token)"),
        (name = "batches", description = "Durable provider batches (worker token)"),
        (name = "operations", description = "Liveness, metrics and this description (no token)"),
    )
)]
struct ApiDoc;

/// The API's OpenAPI description, as served.
pub fn document() -> Result<serde_json::Value, serde_json::Error> {
    let mut doc = serde_json::to_value(ApiDoc::openapi())?;
    let created = format!(
        "/paths/{}/post/responses/201",
        routes::JOBS.replace('/', "~1")
    );
    if let Some(created) = doc.pointer_mut(&created) {
        created["links"] = job_links();
    }
    Ok(doc)
}

/// Links from a submitted job to the routes that take its id, so that
/// clients (and schemathesis' stateful tests) can follow them. Written as
/// JSON: utoipa 5.5 spells a link's `operationId` as `operation_id`.
fn job_links() -> serde_json::Value {
    let mut links = serde_json::Map::new();
    for (name, operation) in [
        ("GetJob", "get"),
        ("CancelJob", "cancel"),
        ("JobResults", "results"),
        ("JobSamples", "samples"),
        ("JobFailures", "failures"),
    ] {
        links.insert(
            name.to_string(),
            serde_json::json!({
                "operationId": operation,
                "parameters": { "id": "$response.body#/id" },
            }),
        );
    }
    serde_json::Value::Object(links)
}

/// The document as served, built once; an error (none is expected: it is
/// made from the code's own types) is answered as a 500, never a panic.
static DOCUMENT_JSON: LazyLock<Result<String, String>> = LazyLock::new(|| {
    document()
        .and_then(|doc| serde_json::to_string_pretty(&doc))
        .map_err(|e| format!("cannot write the OpenAPI description: {e}"))
});

#[utoipa::path(get, path = "/openapi.json", tag = "operations", operation_id = "openapi",
    responses((status = 200, description = "This description", content_type = "application/json"))
)]
pub(super) async fn serve_document() -> Response {
    match DOCUMENT_JSON.as_ref() {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json.as_str()).into_response(),
        Err(message) => {
            tracing::error!(error = %message, "cannot serve /openapi.json");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message.clone()).into_response()
        }
    }
}

/// Adds the bearer scheme, and to each route the answers that its
/// extractors and the store give whatever the handler does.
struct SharedAnswers;

impl Modify for SharedAnswers {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "`Authorization: Bearer <token>`: the admin token, or for lease and \
                         batch routes the worker token",
                    ))
                    .build(),
            ),
        );
        for (path, item) in doc.paths.paths.iter_mut() {
            if PUBLIC.contains(&path.as_str()) {
                continue;
            }
            for op in operations(item) {
                add_shared_answers(op);
            }
        }
    }
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn add_shared_answers(op: &mut Operation) {
    op.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
    let has_path_id = op
        .parameters
        .iter()
        .flatten()
        .any(|p| p.parameter_in == ParameterIn::Path && p.name == "id");
    let mut add = |status: &str, description: &str| {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| error_answer(description));
    };
    add("401", "Missing or invalid bearer token");
    if op.request_body.is_some() {
        add(
            "400",
            "The body is not valid JSON of this shape, or a value is refused",
        );
        add(
            "413",
            "The body is larger than the route allows: 64 MiB, or for a job spec \
             `serve --max-spec-bytes` (1 MiB by default)",
        );
    } else if has_path_id {
        add(
            "400",
            "The id is not a UUID, or a query parameter is not valid",
        );
    }
    add("500", "An internal error (logged)");
    add("503", "The store is busy or unavailable; try again");
}

fn error_answer(description: &str) -> RefOr<ApiResponse> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(doc: &utoipa::openapi::OpenApi) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in doc.paths.paths.iter() {
            for (method, op) in [
                ("GET", &item.get),
                ("POST", &item.post),
                ("DELETE", &item.delete),
            ] {
                if op.is_some() {
                    out.push((method.to_string(), path.clone()));
                }
            }
            assert!(
                item.put.is_none() && item.patch.is_none(),
                "{path}: only GET, POST and DELETE are served"
            );
        }
        out.sort();
        out
    }

    #[test]
    fn the_document_lists_every_route_and_no_other() {
        let doc = ApiDoc::openapi();
        let mut expected: Vec<(String, String)> = routes::ALL
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        expected.sort();
        assert_eq!(listed(&doc), expected);
        // Optionally write it, e.g. for a client generator:
        // `SHARDLINE_OPENAPI_OUT=openapi.json cargo test -p coordinator openapi`.
        if let Some(out) = std::env::var_os("SHARDLINE_OPENAPI_OUT") {
            std::fs::write(out, DOCUMENT_JSON.as_ref().unwrap().as_str()).unwrap();
        }
    }

    #[test]
    fn operation_ids_are_unique_and_links_name_real_ones() {
        let mut doc = ApiDoc::openapi();
        let mut ids = std::collections::BTreeSet::new();
        for item in doc.paths.paths.values_mut() {
            for op in operations(item) {
                let id = op.operation_id.clone().expect("every operation has an id");
                assert!(ids.insert(id.clone()), "operation id {id} twice");
            }
        }
        let value: serde_json::Value =
            serde_json::from_str(DOCUMENT_JSON.as_ref().unwrap().as_str()).unwrap();
        let links = value["paths"][routes::JOBS]["post"]["responses"]["201"]["links"]
            .as_object()
            .unwrap();
        assert_eq!(links.len(), 5);
        for link in links.values() {
            let id = link["operationId"].as_str().unwrap();
            assert!(ids.contains(id), "link to {id}");
        }
    }

    #[test]
    fn token_routes_name_the_bearer_scheme_and_public_ones_none() {
        let mut doc = ApiDoc::openapi();
        for (path, item) in doc.paths.paths.iter_mut() {
            for op in operations(item) {
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                assert_eq!(secured, !PUBLIC.contains(&path.as_str()), "{path}");
                if secured {
                    assert!(op.responses.responses.contains_key("401"), "{path}");
                }
            }
        }
    }

    #[test]
    fn every_referenced_schema_is_defined() {
        let json = DOCUMENT_JSON.as_ref().unwrap().as_str();
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        let schemas = value["components"]["schemas"].as_object().unwrap();
        for part in json.split("\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            assert!(
                schemas.contains_key(name),
                "{name} is referenced, not defined"
            );
        }
        for name in ["SubmitJobRequest", "JobSpec", "ClaimRequest", "ErrorBody"] {
            assert!(schemas.contains_key(name), "{name}");
        }
    }
}
