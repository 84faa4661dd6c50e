//! The apply layer's side of `simulate`: a plan per proposal through the apply layer's gates,
//! written to the plan stream, then each plan's result (its field sets are `results`') after a
//! delay. Proposals themselves and the publishing loop are `simulate`'s.

mod results;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use serde_json::json;
use tokio::time::Instant;

use super::{ApplyOptions, Hash, SimulateError};
use results::{other_service_entry, result_fields};

/// The real writer trims both streams to about this many entries (`XADD ... MAXLEN ~`).
const STREAM_MAXLEN: u64 = 10_000;
/// Kill score from which the apply layer's gate refuses to close a position.
const BLOCK_KILL_SCORE: f64 = 0.8;
/// Size of every simulated position, from which plans and fills get their quantities.
const POSITION_NOTIONAL_USDT: f64 = 1_000.0;
/// Mixed into the seed for the apply layer's own generator.
const APPLY_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;
/// The apply layer's side of the simulation: a plan per proposal, then a result per plan. It
/// behaves as the real one does in dry-run mode with an allowlist: plans of allowlisted symbols
/// that pass the gates go down the close path (an order filled, or failing); every other plan
/// gets a dry-run result saying whether it would have executed.
pub(super) struct ApplyLayer {
    options: ApplyOptions,
    rng: fastrand::Rng,
}

impl ApplyLayer {
    /// Its generator is seeded from `seed` mixed with [`APPLY_SEED_MIX`], or at random.
    pub(super) fn new(options: ApplyOptions, seed: Option<u64>) -> ApplyLayer {
        ApplyLayer {
            options,
            rng: seed.map_or_else(fastrand::Rng::new, |seed| {
                fastrand::Rng::with_seed(seed ^ APPLY_SEED_MIX)
            }),
        }
    }

    /// Writes the round's plans in one pipeline, then each result after its own delay within
    /// `window` (at most a second), as real executions take varying times: the latency from
    /// plan to result is never zero, and varies.
    pub(super) async fn round(
        &mut self,
        connection: &mut MultiplexedConnection,
        round: u64,
        hashes: &[Hash],
        window: Duration,
    ) -> Result<(), SimulateError> {
        let rng = &mut self.rng;
        let timestamp = unix_secs();
        let mut plans = Vec::with_capacity(hashes.len());
        for hash in hashes {
            let allowed = self
                .options
                .allowlist
                .as_ref()
                .is_none_or(|list| list.contains(&hash.0));
            let plan = Plan::new(hash, round, allowed, timestamp, rng);
            // The publisher's heartbeat can hand the same proposal over twice in a round; the
            // apply layer plans it again and its dedupe gate skips it.
            if rng.f64() < 0.05 {
                let duplicate = plan.duplicate();
                plans.extend([plan, duplicate]);
            } else {
                plans.push(plan);
            }
        }
        let mut pipe = redis::pipe();
        for plan in &plans {
            xadd(&mut pipe, &self.options.plan_stream, &plan.fields());
        }
        if let Some(entry) = other_service_entry(hashes, timestamp, rng) {
            xadd(&mut pipe, &self.options.plan_stream, &entry);
        }
        pipe.query_async::<()>(&mut *connection).await?;

        let started = Instant::now();
        let longest = window.clamp(Duration::from_millis(3), Duration::from_secs(1));
        let mut results = Vec::with_capacity(plans.len() + 1);
        for plan in &plans {
            let delay = execution_time(longest, rng);
            results.push((delay, result_fields(plan, timestamp, rng)));
        }
        if let Some(entry) = other_service_entry(hashes, timestamp, rng) {
            results.push((execution_time(longest, rng), entry));
        }
        results.sort_by_key(|(delay, _)| *delay);
        for (delay, fields) in results {
            tokio::time::sleep_until(started + delay).await;
            let mut pipe = redis::pipe();
            xadd(&mut pipe, &self.options.result_stream, &fields);
            pipe.query_async::<()>(&mut *connection).await?;
        }
        Ok(())
    }
}

/// How long an execution takes: from 2 ms (so that a result never shares its plan's
/// millisecond, and so its stream id) to `longest`.
fn execution_time(longest: Duration, rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(rng.u64(2_000..=longest.as_micros() as u64))
}

/// `XADD`, trimmed as the real writer trims: with `~` Redis drops only whole nodes, cheaply.
fn xadd(pipe: &mut redis::Pipeline, stream: &str, fields: &[(&'static str, String)]) {
    pipe.cmd("XADD")
        .arg(stream)
        .arg("MAXLEN")
        .arg("~")
        .arg(STREAM_MAXLEN)
        .arg("*")
        .arg(fields)
        .ignore();
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Execute,
    Skip,
    Blocked,
    Error,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Execute => "EXECUTE",
            Decision::Skip => "SKIP",
            Decision::Blocked => "BLOCKED",
            Decision::Error => "ERROR",
        }
    }
}

/// What the gates made of one proposal.
#[derive(Clone, Debug, PartialEq)]
struct Verdict {
    decision: Decision,
    /// The reason codes, the deciding one last.
    reasons: Vec<String>,
    /// Whether the plan executes or would but for the allowlist (dry-run results say so).
    would_execute: bool,
}

impl Verdict {
    fn new(decision: Decision, reasons: &[&str], would_execute: bool) -> Verdict {
        Verdict {
            decision,
            reasons: reasons.iter().map(|&r| r.to_owned()).collect(),
            would_execute,
        }
    }
}

/// The apply layer's gates in its order, as it behaves in dry-run mode: hold, kill score, a
/// rare proposal it cannot read, edge (Kelly sizing), allowlist.
fn decide(action: &str, kill_score: f64, allowed: bool, rng: &mut fastrand::Rng) -> Verdict {
    // NONE is the only action without a close that the simulated publisher writes.
    if close_pct(action) == 0 {
        return Verdict::new(Decision::Skip, &["action_hold"], false);
    }
    if kill_score >= BLOCK_KILL_SCORE {
        let reasons: &[&str] = if rng.f64() < 0.15 {
            &["kill_switch_active"]
        } else {
            &["kill_score_critical", "kill_score_close_blocked"]
        };
        return Verdict::new(Decision::Blocked, reasons, false);
    }
    if rng.f64() < 0.03 {
        return Verdict::new(Decision::Error, &["missing_new_sl"], false);
    }
    if rng.f64() < 0.1 {
        let reasons = ["kill_score_close_ok", "layer4_no_edge:low_kelly"];
        return Verdict::new(Decision::Skip, &reasons, false);
    }
    let mut verdict = Verdict::new(Decision::Execute, &["kill_score_close_ok"], true);
    if rng.f64() < 0.7 {
        let kelly = 50 * rng.u32(1..=10);
        verdict.reasons.push(format!("layer4_kelly_{kelly}usdt"));
    }
    if !allowed {
        verdict.decision = Decision::Skip;
        verdict.reasons.push("not_in_allowlist".to_owned());
    }
    verdict
}

/// Share of the position an action closes, in percent; 0 for actions that close nothing.
fn close_pct(action: &str) -> u32 {
    match action {
        "PARTIAL_25" => 25,
        "PARTIAL_50" => 50,
        "PARTIAL_75" => 75,
        "FULL_CLOSE" | "FULL_CLOSE_PROPOSED" => 100,
        _ => 0,
    }
}

/// One plan, as written to the plan stream and kept until its result is written.
#[derive(Clone, Debug)]
struct Plan {
    id: String,
    symbol: String,
    action: String,
    verdict: Verdict,
    /// The proposal's values the plan carries: kill score, components, net R, stop loss.
    proposal: Vec<(&'static str, String)>,
    steps: String,
    qty: String,
    /// The closing order's side: the opposite of the position's.
    side: &'static str,
    timestamp: u64,
    /// Whether it passed the system's contract validation, and so carries `event_type`.
    validated: bool,
}

impl Plan {
    fn new(
        (symbol, hash): &Hash,
        round: u64,
        allowed: bool,
        timestamp: u64,
        rng: &mut fastrand::Rng,
    ) -> Plan {
        let field = |name: &str| {
            hash.iter()
                .find(|(key, _)| *key == name)
                .map_or("", |(_, value)| value.as_str())
        };
        // The apply layer acts on the heat gate's calibrated action when there is one.
        let action = if field("calibrated") == "1" {
            field("action")
        } else {
            field("harvest_action")
        };
        let kill_score = field("kill_score");
        let verdict = decide(action, kill_score.parse().unwrap_or(0.0), allowed, rng);
        let new_sl = match field("new_sl_proposed") {
            // The error a plan in error stands for: a proposal read without its stop loss.
            _ if verdict.decision == Decision::Error => "",
            "None" => "",
            value => value,
        };
        let mut proposal: Vec<_> = [
            "kill_score",
            "k_regime_flip",
            "k_sigma_spike",
            "k_ts_drop",
            "k_age_penalty",
            "R_net",
        ]
        .into_iter()
        .map(|name| (name, field(name).to_owned()))
        .collect();
        proposal.push(("new_sl_proposed", new_sl.to_owned()));
        let side = if field("position_side") == "SHORT" {
            "BUY"
        } else {
            "SELL"
        };
        let pct = close_pct(action);
        let entry_price: f64 = field("position_entry_price").parse().unwrap_or(1.0);
        let steps = if verdict.would_execute {
            json!([{"step": 1, "type": "market_reduce_only", "side": side, "pct": f64::from(pct)}])
        } else {
            json!([])
        };
        Plan {
            id: plan_id(symbol, action, kill_score, round),
            symbol: symbol.clone(),
            action: action.to_owned(),
            verdict,
            proposal,
            steps: steps.to_string(),
            qty: quantity(POSITION_NOTIONAL_USDT / entry_price * f64::from(pct) / 100.0),
            side,
            timestamp,
            validated: rng.f64() < 0.9,
        }
    }

    /// The same proposal planned a second time, which the dedupe gate skips.
    fn duplicate(&self) -> Plan {
        Plan {
            verdict: Verdict::new(Decision::Skip, &["duplicate_plan"], false),
            steps: "[]".to_owned(),
            ..self.clone()
        }
    }

    fn fields(&self) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("plan_id", self.id.clone()),
            ("symbol", self.symbol.clone()),
            ("action", self.action.clone()),
        ];
        fields.extend(self.proposal.iter().cloned());
        fields.extend([
            ("decision", self.verdict.decision.as_str().to_owned()),
            ("reason_codes", self.verdict.reasons.join(",")),
            ("steps", self.steps.clone()),
            ("qty", self.qty.clone()),
            ("side", self.side.to_owned()),
            ("source", "apply_layer".to_owned()),
            // Closes are market orders: no price.
            ("price", String::new()),
            ("reduceOnly", "True".to_owned()),
            ("timestamp", self.timestamp.to_string()),
        ]);
        if self.validated {
            fields.push(("event_type", "apply.plan".to_owned()));
        }
        fields
    }
}

/// A plan's id: a hash of the proposal it plans, the same across runs and builds (FNV-1a, as
/// the standard library's hasher may change between releases).
fn plan_id(symbol: &str, action: &str, kill_score: &str, round: u64) -> String {
    let text = format!("{symbol}|{action}|{kill_score}|{round}");
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// A quantity as exchanges show it: at most four decimals, no trailing zeros.
fn quantity(value: f64) -> String {
    ((value * 10_000.0).round() / 10_000.0).to_string()
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::simulate::Position;

    /// Plans for three positions walked over `rounds` rounds, only BTCUSDT allowlisted.
    pub(super) fn walked_plans(rounds: u64) -> Vec<Plan> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut positions: Vec<Position> = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]
            .iter()
            .map(|s| Position::new(s, &mut rng))
            .collect();
        let mut plans = Vec::new();
        for round in 0..rounds {
            for position in &mut positions {
                position.step(&mut rng, 600.0);
                let hash = (
                    position.symbol.clone(),
                    position.fields(&mut rng, SystemTime::now()),
                );
                let allowed = position.symbol == "BTCUSDT";
                plans.push(Plan::new(&hash, round, allowed, 1_769_130_500, &mut rng));
            }
        }
        plans
    }

    #[test]
    fn plan_ids_are_stable_hashes_of_the_proposal() {
        let id = plan_id("BTCUSDT", "PARTIAL_75", "0.7533012950554003", 3);
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            id,
            plan_id("BTCUSDT", "PARTIAL_75", "0.7533012950554003", 3)
        );
        assert_ne!(
            id,
            plan_id("BTCUSDT", "PARTIAL_75", "0.7533012950554003", 4)
        );
        assert_ne!(
            id,
            plan_id("ETHUSDT", "PARTIAL_75", "0.7533012950554003", 3)
        );
    }

    #[test]
    fn gates_decide_as_the_dry_run_apply_layer_does() {
        let plans = walked_plans(400);
        let mut seen = std::collections::BTreeSet::new();
        for plan in &plans {
            let kill_score: f64 = plan.proposal[0].1.parse().unwrap();
            let verdict = &plan.verdict;
            seen.insert(verdict.decision.as_str().to_owned());
            seen.extend(verdict.reasons.iter().map(|r| {
                if r.starts_with("layer4_kelly_") {
                    "layer4_kelly_<n>usdt".to_owned()
                } else {
                    r.clone()
                }
            }));
            match verdict.decision {
                Decision::Execute => {
                    assert_eq!(plan.symbol, "BTCUSDT", "{plan:?}");
                    assert!(kill_score < BLOCK_KILL_SCORE, "{plan:?}");
                }
                Decision::Blocked => assert!(kill_score >= BLOCK_KILL_SCORE, "{plan:?}"),
                Decision::Error => assert_eq!(plan.proposal[6], ("new_sl_proposed", String::new())),
                Decision::Skip => {}
            }
            if plan.action == "NONE" {
                assert_eq!(verdict.reasons, ["action_hold"]);
            } else if kill_score >= BLOCK_KILL_SCORE {
                assert_eq!(verdict.decision, Decision::Blocked, "{plan:?}");
            }
            assert_eq!(verdict.would_execute, plan.steps != "[]", "{plan:?}");
            let steps: serde_json::Value = serde_json::from_str(&plan.steps).unwrap();
            assert!(steps.is_array());
        }
        let expected = [
            "EXECUTE",
            "SKIP",
            "BLOCKED",
            "ERROR",
            "action_hold",
            "kill_score_close_ok",
            "kill_score_critical",
            "kill_score_close_blocked",
            "kill_switch_active",
            "layer4_kelly_<n>usdt",
            "layer4_no_edge:low_kelly",
            "not_in_allowlist",
            "missing_new_sl",
        ];
        for what in expected {
            assert!(seen.contains(what), "{what} never occurs in {seen:?}");
        }
    }
}
