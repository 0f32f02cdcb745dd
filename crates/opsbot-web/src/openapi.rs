//! The OpenAPI 3.1 document, generated from the handlers and the view types.

use crate::views::*;
use crate::{approvals, audit, executions, jobs, ops, stream};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// Name of the bearer security scheme in the document.
const BEARER: &str = "bearer";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "opsbot API",
        description = "Run, watch and audit opsbot jobs over HTTP. Every `/api/v1` route but this document needs \
            `Authorization: Bearer <token>` (`opsbot token create --user NAME`); the caller acts as `web:NAME` and goes \
            through the same checks, confirmations and audit as chat. Errors are always \
            `{\"error\": {\"code\", \"message\", \"error_id\"}}`."
    ),
    paths(
        ops::healthz,
        ops::readyz,
        ops::metrics,
        jobs::list,
        jobs::one,
        executions::create,
        executions::list,
        executions::one,
        executions::cancel,
        stream::log,
        stream::log_stream,
        audit::list,
        approvals::one,
        document,
    ),
    components(schemas(
        ApprovalPending,
        ApprovalView,
        ErrorBody,
        ErrorDetail,
        Ready,
        AdapterView,
        JobList,
        JobView,
        ParamView,
        ParamType,
        Allowed,
        EnumValueView,
        RunRequest,
        ParamValue,
        ExecutionView,
        ExecutionList,
        StateView,
        LineView,
        StreamView,
        AuditList,
        AuditView,
    )),
    modifiers(&BearerScheme),
    security(("bearer" = [])),
    tags(
        (name = "jobs", description = "The catalog of jobs and their parameters."),
        (name = "executions", description = "Run jobs, follow and cancel runs, read their output."),
        (name = "audit", description = "Every decision, newest first."),
        (name = "ops", description = "Health, readiness, metrics and this document; no token needed."),
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("opsb_…")
                    .description(Some("An API token from `opsbot token create --user NAME`."))
                    .build(),
            ),
        );
    }
}

/// The document as a value.
pub(crate) fn document_value() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

static DOCUMENT: LazyLock<String> = LazyLock::new(|| document_value().to_pretty_json().unwrap_or_else(|_| "{}".into()));

/// This document (no token needed).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "ops",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document of this API.", body = Object, content_type = "application/json"))
)]
pub(crate) async fn document() -> Response {
    let mut resp = DOCUMENT.as_str().into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
