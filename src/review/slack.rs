//! `POST /slack/interactions`: clicks on the Slack app's buttons and the
//! dismissal dialog's submissions. Every request must carry Slack's
//! signature over its raw body, made within five minutes; the Slack user is
//! mapped to a `[[reviewer]]` by `slack_user` and decides with exactly the
//! rights the API gives that reviewer. A refusal is told to the person who
//! clicked, and only to them. The message itself is brought up to date by
//! the notification outbox, from the audit record, wherever the decision
//! was made.
//!
//! Slack wants an answer within three seconds: decisions are store writes;
//! telling a person something runs in the background.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::ReviewState;
use super::api::ApiError;
use super::auth::{Caller, may_decide};
use crate::holds::{State as HoldState, StoreError};
use crate::slack::{APPROVE, DISMISS, DISMISS_VIEW, Slack};

pub async fn interactions(
    State(state): State<Arc<ReviewState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(slack) = state.slack.clone() else {
        return ApiError::new(StatusCode::NOT_FOUND, "no [slack] app is configured")
            .into_response();
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(why) = crate::slack::verify(
        slack.signing_secret(),
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        &body,
        jiff::Timestamp::now(),
    ) {
        tracing::warn!(reason = why, "Slack interaction refused");
        return ApiError::unauthorized(why).into_response();
    }
    let Some(payload) = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .and_then(|(_, v)| serde_json::from_str::<Value>(&v).ok())
    else {
        return ApiError::bad_request("no interaction payload").into_response();
    };
    match payload["type"].as_str() {
        Some("block_actions") => block_action(&state, slack, &payload).await,
        Some("view_submission") if payload["view"]["callback_id"] == DISMISS_VIEW => {
            dismissal(&state, &payload).await
        }
        _ => StatusCode::OK.into_response(),
    }
}

/// The reviewer a Slack user is.
fn reviewer(state: &ReviewState, user: &str) -> Option<Caller> {
    state
        .reviewers
        .iter()
        .find(|r| r.slack_user.as_deref() == Some(user))
        .map(|r| Caller {
            name: r.name.clone(),
            admin: r.admin,
        })
}

/// Tells the person who clicked, in the background.
fn tell(slack: &Slack, channel: &str, user: &str, text: String) {
    let (slack, channel, user) = (slack.clone(), channel.to_owned(), user.to_owned());
    tokio::spawn(async move { slack.tell(&channel, &user, &text).await });
}

async fn block_action(state: &ReviewState, slack: Slack, payload: &Value) -> Response {
    let ok = StatusCode::OK.into_response();
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    let channel = payload["channel"]["id"].as_str().unwrap_or_default();
    let action = &payload["actions"][0];
    let action_id = action["action_id"].as_str().unwrap_or_default();
    let Some(id) = action["value"].as_str() else {
        return ok;
    };
    if action_id != APPROVE && action_id != DISMISS {
        return ok;
    }
    let Some(caller) = reviewer(state, user) else {
        tracing::info!(
            slack_user = user,
            "a Slack user who is no [[reviewer]] clicked"
        );
        tell(
            &slack,
            channel,
            user,
            "You are not an airlock reviewer (no [[reviewer]] has your slack_user): nothing was changed.".into(),
        );
        return ok;
    };
    let hold = match state.store.get(id).await {
        Ok(Some(h)) => h,
        Ok(None) => {
            tell(&slack, channel, user, "No such hold.".into());
            return ok;
        }
        Err(e) => return ApiError::from(e).into_response(),
    };
    if !may_decide(state, &caller, &hold) {
        tell(
            &slack,
            channel,
            user,
            format!(
                "You are not a reviewer of rule {}: nothing was changed.",
                hold.rule
            ),
        );
        return ok;
    }
    if action_id == DISMISS {
        if hold.state != HoldState::Pending {
            tell(&slack, channel, user, already(&hold));
            return ok;
        }
        let trigger = payload["trigger_id"].as_str().unwrap_or_default();
        if let Err(e) = slack.ask_reason(trigger, &hold).await {
            tracing::warn!(error = %e.message, "opening the dismissal dialog failed");
            tell(
                &slack,
                channel,
                user,
                "The dismissal dialog could not open; dismiss on the page.".into(),
            );
        }
        return ok;
    }
    match state
        .store
        .approve_via(id, &caller.name, format!("slack:{user}"))
        .await
    {
        Ok(h) if h.state == HoldState::Approved => {
            state.releaser.spawn(h.id.clone());
        }
        Ok(h) => tell(
            &slack,
            channel,
            user,
            format!(
                "Your approval counted: {} of {} approvals. It waits for another reviewer.",
                h.approvals.len(),
                h.approvals_needed
            ),
        ),
        Err(StoreError::NotPending(_)) => {
            if let Ok(Some(now)) = state.store.get(id).await {
                tell(&slack, channel, user, already(&now));
            }
        }
        Err(e @ StoreError::AlreadyApproved { .. }) => tell(&slack, channel, user, e.to_string()),
        Err(e) => return ApiError::from(e).into_response(),
    }
    ok
}

fn already(hold: &crate::holds::Hold) -> String {
    match &hold.decided_by {
        Some(by) => format!("Too late: this hold was already {} by {by}.", hold.state),
        None => format!("Too late: this hold is already {}.", hold.state),
    }
}

/// The dismissal dialog, submitted: dismiss with its reason, or say why
/// not inside the dialog.
async fn dismissal(state: &ReviewState, payload: &Value) -> Response {
    let user = payload["user"]["id"].as_str().unwrap_or_default();
    let id = payload["view"]["private_metadata"]
        .as_str()
        .unwrap_or_default();
    let reason = payload["view"]["state"]["values"]["reason"]["reason"]["value"]
        .as_str()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let refuse = |text: String| {
        axum::Json(json!({ "response_action": "errors", "errors": { "reason": text } }))
            .into_response()
    };
    let Some(caller) = reviewer(state, user) else {
        return refuse("You are not an airlock reviewer.".into());
    };
    let hold = match state.store.get(id).await {
        Ok(Some(h)) => h,
        Ok(None) => return refuse("No such hold.".into()),
        Err(e) => return refuse(e.to_string()),
    };
    if !may_decide(state, &caller, &hold) {
        return refuse(format!("You are not a reviewer of rule {}.", hold.rule));
    }
    match state
        .store
        .dismiss_via(id, &caller.name, reason, format!("slack:{user}"))
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(StoreError::NotPending(_)) => match state.store.get(id).await {
            Ok(Some(now)) => refuse(already(&now)),
            _ => refuse("This hold is no longer pending.".into()),
        },
        Err(e) => refuse(e.to_string()),
    }
}
