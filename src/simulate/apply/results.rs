//! What the simulated apply layer writes to the result stream: a plan's outcome with the field
//! set of the code path that writes it (the close path, a failure, a dry run), its repeats, and
//! now and then another service's entry. The plans and the gates that decide them are `apply`'s.

use serde_json::json;

use super::{Decision, KILL_SCORE_OK, Plan, quantity};
use crate::simulate::Hash;

/// Chance, per round and stream, of an entry from another service that writes there too.
const OTHER_SERVICE_CHANCE: f64 = 0.3;
/// The real system cuts an exception's text to this many characters in `error`.
const ERROR_TEXT_LIMIT: usize = 200;
/// Exceptions an execution fails with; the last is longer than the real system keeps.
const EXCEPTIONS: [&str; 4] = [
    "BinanceAPIException(code=-2019): Margin is insufficient.",
    "KeyError: 'positionAmt'",
    "ReadTimeout: HTTPSConnectionPool(host='testnet.binancefuture.com', port=443): Read timed out. (read timeout=10)",
    "ClientError: (400, -2022, 'ReduceOnly Order is rejected.', {'Date': 'Fri, 23 Jan 2026 00:58:58 GMT', 'Content-Type': 'application/json', 'Content-Length': '61', 'Connection': 'keep-alive', 'x-mbx-used-weight-1m': '12'})",
];

/// The result the apply layer writes for a plan. Its field set depends on the code path that
/// writes it, as in the real system: the close path, a failure, or a dry run.
pub(super) fn result_fields(
    plan: &Plan,
    timestamp: u64,
    rng: &mut fastrand::Rng,
) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("plan_id", plan.id.clone()),
        ("symbol", plan.symbol.clone()),
    ];
    match plan.verdict.decision {
        Decision::Execute if rng.f64() < 0.8 => close_result(&mut fields, plan, timestamp, rng),
        Decision::Execute | Decision::Error => failure_result(&mut fields, plan, rng),
        Decision::Skip | Decision::Blocked => dry_run_result(&mut fields, plan, rng),
    }
    fields.push(("source", "apply_layer".to_owned()));
    if rng.f64() < 0.9 {
        fields.push(("event_type", "apply.result".to_owned()));
    }
    fields
}

/// A later cycle's result for a plan that already has its outcome: the dedupe gate skips it,
/// and `error` is the repeat's first reason code (an earlier gate's, or `duplicate_plan`).
pub(super) fn repeat_fields(plan: &Plan, rng: &mut fastrand::Rng) -> Vec<(&'static str, String)> {
    let reason = match plan.verdict.reasons.first() {
        // The kill-score gate comes before the dedupe gate: its code is a repeat's first.
        Some(first) if first == KILL_SCORE_OK => first.clone(),
        _ => "duplicate_plan".to_owned(),
    };
    let mut fields = vec![
        ("plan_id", plan.id.clone()),
        ("symbol", plan.symbol.clone()),
        ("decision", "SKIP".to_owned()),
        ("executed", executed(false, rng)),
        ("would_execute", "False".to_owned()),
        ("error", reason),
        ("steps_results", "[]".to_owned()),
        ("source", "apply_layer".to_owned()),
    ];
    if rng.f64() < 0.9 {
        fields.push(("event_type", "apply.result".to_owned()));
    }
    fields
}

/// `decision` as the various writers spell it: mostly canonical, sometimes a synonym,
/// sometimes absent (leaving `executed` to tell).
fn push_decision(
    fields: &mut Vec<(&'static str, String)>,
    canonical: &str,
    synonyms: &[&str],
    rng: &mut fastrand::Rng,
) {
    let roll = rng.f64();
    if roll < 0.6 {
        fields.push(("decision", canonical.to_owned()));
    } else if roll < 0.85 {
        let synonym = synonyms[rng.usize(..synonyms.len())];
        fields.push(("decision", synonym.to_owned()));
    }
}

/// `executed` as Python writes a bool, or lower case as some writers do.
fn executed(value: bool, rng: &mut fastrand::Rng) -> String {
    let text = if value { "True" } else { "False" };
    if rng.f64() < 0.2 {
        text.to_lowercase()
    } else {
        text.to_owned()
    }
}

/// The close path: an order placed and filled, now and then only in part.
fn close_result(
    fields: &mut Vec<(&'static str, String)>,
    plan: &Plan,
    timestamp: u64,
    rng: &mut fastrand::Rng,
) {
    push_decision(fields, "EXECUTE", &["EXECUTED", "EXEC"], rng);
    let (status, filled) = if rng.f64() < 0.1 {
        let half = plan.qty.parse::<f64>().unwrap_or(0.0) / 2.0;
        ("PARTIALLY_FILLED", quantity(half))
    } else {
        ("FILLED", plan.qty.clone())
    };
    let order_id = rng.u64(1_000_000_000..10_000_000_000).to_string();
    let steps = json!([{"step": 1, "status": status, "error": "", "order_id": order_id}]);
    fields.extend([
        ("executed", executed(true, rng)),
        ("error", String::new()),
        ("steps_results", steps.to_string()),
        ("action", plan.action.clone()),
        ("close_qty", plan.qty.clone()),
        ("filled_qty", filled),
        ("order_status", status.to_owned()),
        ("side", plan.side.to_owned()),
        ("timestamp", timestamp.to_string()),
    ]);
}

/// A plan in error, or an execution that failed: no order, a short code or an exception's
/// text, sometimes the same in `details`.
fn failure_result(fields: &mut Vec<(&'static str, String)>, plan: &Plan, rng: &mut fastrand::Rng) {
    push_decision(fields, "ERROR", &["FAILED", "FAIL"], rng);
    let error = if plan.verdict.decision == Decision::Error {
        "missing_new_sl".to_owned()
    } else {
        match rng.u8(..4) {
            0 => "no_position".to_owned(),
            1 => "close_qty_zero".to_owned(),
            2 => format!("position_limit_reached_{}/10", rng.u8(7..=10)),
            _ => {
                let exception = EXCEPTIONS[rng.usize(..EXCEPTIONS.len())];
                let text: String = exception.chars().take(ERROR_TEXT_LIMIT).collect();
                format!("execution_failed: {text}")
            }
        }
    };
    let steps = if plan.verdict.decision == Decision::Error {
        json!([])
    } else {
        json!([{"step": 1, "status": "FAILED", "error": error, "order_id": ""}])
    };
    fields.extend([
        ("executed", executed(false, rng)),
        ("error", error.clone()),
        ("steps_results", steps.to_string()),
    ]);
    if rng.bool() {
        let details = json!({"error": error, "plan_id": plan.id});
        fields.push(("details", details.to_string()));
    }
}

/// A dry run's result for a plan not executed: whether it would have been, and why not.
fn dry_run_result(fields: &mut Vec<(&'static str, String)>, plan: &Plan, rng: &mut fastrand::Rng) {
    match plan.verdict.decision {
        Decision::Blocked => push_decision(fields, "BLOCKED", &["BLOCK"], rng),
        _ => push_decision(fields, "SKIP", &["SKIPPED"], rng),
    }
    // The error is the deciding reason; holding is no error.
    let error = match plan.verdict.reasons.last() {
        Some(reason) if reason != "action_hold" => reason.clone(),
        _ => String::new(),
    };
    let would_execute = if plan.verdict.would_execute {
        "True"
    } else {
        "False"
    };
    fields.extend([
        ("executed", executed(false, rng)),
        ("would_execute", would_execute.to_owned()),
        ("error", error),
        ("steps_results", "[]".to_owned()),
    ]);
    if rng.f64() < 0.2 {
        fields.push(("reason", plan.verdict.reasons.join(",")));
    }
}

/// Now and then, an entry another service writes to the same stream (an entry intent), with
/// its own smaller field set and no plan.
pub(super) fn other_service_entry(
    hashes: &[Hash],
    timestamp: u64,
    rng: &mut fastrand::Rng,
) -> Option<Vec<(&'static str, String)>> {
    if hashes.is_empty() || rng.f64() >= OTHER_SERVICE_CHANCE {
        return None;
    }
    let (symbol, _) = &hashes[rng.usize(..hashes.len())];
    Some(vec![
        ("symbol", symbol.clone()),
        ("side", if rng.bool() { "BUY" } else { "SELL" }.to_owned()),
        ("qty", quantity(rng.f64() * 10.0 + 0.001)),
        ("source", "intent_executor".to_owned()),
        ("timestamp", timestamp.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::apply::tests::walked_plans;

    #[test]
    fn repeats_are_skips_whose_error_is_their_first_reason() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut errors = std::collections::BTreeSet::new();
        for plan in walked_plans(100) {
            let fields = repeat_fields(&plan, &mut rng);
            let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
            assert_eq!(get("plan_id"), Some(&plan.id));
            assert_eq!(get("decision").map(String::as_str), Some("SKIP"));
            assert!(get("executed").unwrap().eq_ignore_ascii_case("false"));
            let error = get("error").unwrap();
            let expected = if plan.verdict.reasons[0] == KILL_SCORE_OK {
                KILL_SCORE_OK
            } else {
                "duplicate_plan"
            };
            assert_eq!(error, expected, "{plan:?}");
            errors.insert(error.clone());
        }
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn results_carry_the_field_sets_of_their_code_path() {
        let mut rng = fastrand::Rng::with_seed(11);
        let plans = walked_plans(400);
        let close_fields = [
            "action",
            "close_qty",
            "filled_qty",
            "order_status",
            "side",
            "timestamp",
        ];
        let mut seen = std::collections::BTreeSet::new();
        // Each plan several times: the rarer code paths need more draws than there are plans.
        for plan in plans.iter().cycle().take(plans.len() * 4) {
            let fields = result_fields(plan, 1_769_130_501, &mut rng);
            let get = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
            assert_eq!(fields[0], ("plan_id", plan.id.clone()));
            assert_eq!(fields[1], ("symbol", plan.symbol.clone()));
            let executed = get("executed").expect("executed is always there");
            assert!(["True", "False", "true", "false"].contains(&executed.as_str()));
            let decision = get("decision").map_or("(absent)", |d| d.as_str());
            seen.insert(decision.to_owned());
            let canonical = match decision {
                "EXECUTED" | "EXEC" => "EXECUTE",
                "SKIPPED" => "SKIP",
                "BLOCK" => "BLOCKED",
                "FAILED" | "FAIL" => "ERROR",
                other => other,
            };
            let closed = executed.eq_ignore_ascii_case("true");
            if closed {
                assert_eq!(plan.verdict.decision, Decision::Execute);
                assert!(close_fields.iter().all(|f| get(f).is_some()), "{fields:?}");
            } else {
                assert!(close_fields.iter().all(|f| get(f).is_none()), "{fields:?}");
            }
            if canonical != "(absent)" && canonical != "ERROR" {
                assert_eq!(canonical, plan.verdict.decision.as_str(), "{fields:?}");
            }
            let error = get("error").expect("error is always there");
            if let Some(text) = error.strip_prefix("execution_failed: ") {
                assert!(text.chars().count() <= ERROR_TEXT_LIMIT);
                seen.insert("execution_failed".to_owned());
            }
            if let Some(details) = get("details") {
                let details: serde_json::Value = serde_json::from_str(details).unwrap();
                assert_eq!(details["error"].as_str(), Some(error.as_str()));
            }
            let steps: serde_json::Value =
                serde_json::from_str(get("steps_results").unwrap()).unwrap();
            assert!(steps.is_array());
            assert_eq!(
                get("would_execute").is_some(),
                matches!(plan.verdict.decision, Decision::Skip | Decision::Blocked)
            );
            seen.extend(get("reason").map(|_| "reason".to_owned()));
            seen.extend(get("details").map(|_| "details".to_owned()));
            seen.extend(get("event_type").map(|_| "event_type".to_owned()));
        }
        for what in [
            "EXECUTE",
            "EXECUTED",
            "EXEC",
            "SKIP",
            "SKIPPED",
            "BLOCKED",
            "BLOCK",
            "ERROR",
            "FAILED",
            "FAIL",
            "(absent)",
            "execution_failed",
            "reason",
            "details",
            "event_type",
        ] {
            assert!(seen.contains(what), "{what} never occurs in {seen:?}");
        }
        assert!(
            EXCEPTIONS
                .iter()
                .any(|e| e.chars().count() > ERROR_TEXT_LIMIT),
            "one exception is long enough to be cut"
        );
    }
}
