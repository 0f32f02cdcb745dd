//! `/api/v1/jobs`: the catalog with parameter schemas.

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::views::{ErrorBody, JobList, JobView};
use axum::Json;
use axum::extract::{Path, State};
use opsbot_core::job::{closest, shorten};

/// Every job with its parameters, in config order.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    responses(
        (status = 200, description = "The jobs the caller may run.", body = JobList),
        (status = 401, description = "No token (`unauthorized`) or an unknown or revoked one (`invalid_token`).", body = ErrorBody),
    )
)]
pub(crate) async fn list(State(state): State<AppState>, caller: Caller) -> Result<Json<JobList>, ApiError> {
    let (person, place) = crate::executions::person_of(&state, &caller.user).await?;
    Ok(Json(JobList {
        jobs: state
            .engine
            .catalog()
            .jobs()
            .iter()
            .filter(|j| state.engine.may_run(&place, &person, j))
            .map(JobView::of)
            .collect(),
    }))
}

/// One job by name (case-insensitive).
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{name}",
    operation_id = "get_job",
    tag = "jobs",
    params(("name" = String, Path, description = "The job's name.")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "A job the caller may not run (`forbidden`).", body = ErrorBody),
        (status = 404, description = "No such job (`not_found`); the message suggests a close name.", body = ErrorBody),
    )
)]
pub(crate) async fn one(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> Result<Json<JobView>, ApiError> {
    let catalog = state.engine.catalog();
    if let Some(job) = catalog.get(&name) {
        let (person, place) = crate::executions::person_of(&state, &caller.user).await?;
        if !state.engine.may_run(&place, &person, job) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "forbidden",
                format!("You may not run `{}`; `whoami` in chat shows your roles.", job.name),
            ));
        }
        return Ok(Json(JobView::of(job)));
    }
    let shown = shorten(&name, 40);
    let names = catalog.jobs().iter().map(|j| j.name.as_str());
    Err(ApiError::not_found(match closest(&name, names) {
        Some(s) => format!("There is no job `{shown}`. Did you mean `{s}`? `GET /api/v1/jobs` lists the jobs."),
        None => format!("There is no job `{shown}`. `GET /api/v1/jobs` lists the jobs."),
    }))
}
