//! `/api/v1/approvals/{id}`: where an approval request stands (after a run answered 202).

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::executions::person_of;
use crate::views::{ApprovalView, ErrorBody};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

/// One approval request: its state, and the run it started once approved.
#[utoipa::path(
    get,
    path = "/api/v1/approvals/{id}",
    operation_id = "get_approval",
    tag = "approvals",
    params(("id" = i64, Path, minimum = 1, description = "Approval request id (from the 202 answer of a run request).")),
    responses(
        (status = 200, description = "The request. When `state` is `approved`, `execution_id` is the run it started.", body = ApprovalView),
        (status = 400, description = "Not an id (`bad_request`).", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one.", body = ErrorBody),
        (status = 403, description = "Someone else's request for a job the caller may neither approve nor view (`forbidden`).", body = ErrorBody),
        (status = 404, description = "No such request (`not_found`).", body = ErrorBody),
    )
)]
pub(crate) async fn one(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> Result<Json<ApprovalView>, ApiError> {
    let id = opsbot_engine::grammar::parse_id(&id).ok_or_else(|| {
        ApiError::bad_request(format!(
            "`{}` is not an approval request id; ids are whole numbers like 7.",
            opsbot_core::job::shorten(&id, 40)
        ))
    })?;
    let a = state
        .engine
        .store()
        .approval(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("There is no approval request {id}.")))?;
    let (person, place) = person_of(&state, &caller.user).await?;
    if !state.engine.may_see_approval(&place, &person, &a) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "Approval request {id} is {}'s; seeing it needs the `approve` or `view` verb on `{}`.",
                a.requester_name, a.job
            ),
        ));
    }
    Ok(Json(ApprovalView::of(&a, state.engine.catalog())))
}
