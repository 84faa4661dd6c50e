//! The apply layer's side of `simulate`, on the real one's rhythm: each cycle a symbol's proposal
//! goes through the gates; a plan entry is written once per `plan_id` (again after the dedupe
//! window), a result every cycle: the plan's outcome first, then repeats. Result field sets are
//! `results`'; proposals themselves and the publishing loop are `simulate`'s.

mod results;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use serde_json::json;
use tokio::time::Instant;

use super::{ApplyOptions, Hash, SimulateError};
use results::{other_service_entry, repeat_fields, result_fields};

/// The real writer trims both streams to about this many entries (`XADD ... MAXLEN ~`).
const STREAM_MAXLEN: u64 = 10_000;
/// Kill score from which the apply layer's gate refuses to close a position.
const BLOCK_KILL_SCORE: f64 = 0.8;
/// The kill-score gate's code for a close it lets through.
const KILL_SCORE_OK: &str = "kill_score_close_ok";
/// Size of every simulated position, from which plans and fills get their quantities.
const POSITION_NOTIONAL_USDT: f64 = 1_000.0;
/// Mixed into the seed for the apply layer's own generator.
const APPLY_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;
/// The real apply layer's dedupe window: a plan entry is not written again for this long.
const REPUBLISH_SECONDS: u64 = 300;

/// The apply layer's side of the simulation. It behaves as the real one does in dry-run mode
/// with an allowlist: plans of allowlisted symbols that pass the gates go down the close path
/// (an order filled, or failing); every other plan gets a dry-run result saying whether it
/// would have executed. Each cycle a result per symbol: the first of a plan is its outcome, the
/// following ones repeats, until the proposal changes.
pub(super) struct ApplyLayer {
    options: ApplyOptions,
    rng: fastrand::Rng,
    /// Each symbol's current plan and when its entry was last written (Unix seconds).
    current: HashMap<String, (Plan, u64)>,
}

impl ApplyLayer {
    /// Its generator is seeded from `seed` mixed with [`APPLY_SEED_MIX`], or at random.
    pub(super) fn new(options: ApplyOptions, seed: Option<u64>) -> ApplyLayer {
        ApplyLayer {
            options,
            rng: seed.map_or_else(fastrand::Rng::new, |seed| {
                fastrand::Rng::with_seed(seed ^ APPLY_SEED_MIX)
            }),
            current: HashMap::new(),
        }
    }

    /// One cycle: the plans that are new (or due again) in one pipeline, then a result per
    /// symbol, each after its own delay within `window` (at most a second), as real executions
    /// take varying times: the latency from plan to result is never zero, and varies.
    pub(super) async fn round(
        &mut self,
        connection: &mut MultiplexedConnection,
        hashes: &[Hash],
        window: Duration,
    ) -> Result<(), SimulateError> {
        let timestamp = unix_secs();
        let longest = window.clamp(Duration::from_millis(3), Duration::from_secs(1));
        let mut plans = Vec::new();
        let mut results = Vec::with_capacity(hashes.len() + 1);
        for hash in hashes {
            let delay = execution_time(longest, &mut self.rng);
            let fields = match self.cycle(hash, timestamp) {
                Cycle::Planned(plan) => {
                    let fields = result_fields(&plan, timestamp, &mut self.rng);
                    plans.push(plan);
                    fields
                }
                Cycle::Repeat(plan) => repeat_fields(&plan, &mut self.rng),
            };
            results.push((delay, fields));
        }
        let rng = &mut self.rng;
        let mut pipe = redis::pipe();
        let mut entries = plans.iter().map(Plan::fields).collect::<Vec<_>>();
        entries.extend(other_service_entry(hashes, timestamp, rng));
        for entry in &entries {
            xadd(&mut pipe, &self.options.plan_stream, entry);
        }
        // Most cycles plan nothing new: Redis refuses an empty pipeline.
        if !entries.is_empty() {
            pipe.query_async::<()>(&mut *connection).await?;
        }

        let started = Instant::now();
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

    /// What one symbol's proposal makes this cycle: a plan to write when it is new or its
    /// dedupe window has passed (the same verdict: the proposal is the same), else a repeat.
    fn cycle(&mut self, hash: &Hash, timestamp: u64) -> Cycle {
        let id = plan_id(hash);
        if let Some((plan, written)) = self.current.get_mut(&hash.0)
            && plan.id == id
        {
            if timestamp < *written + REPUBLISH_SECONDS {
                return Cycle::Repeat(plan.clone());
            }
            *written = timestamp;
            plan.timestamp = timestamp;
            return Cycle::Planned(plan.clone());
        }
        let allowed = self
            .options
            .allowlist
            .as_ref()
            .is_none_or(|list| list.contains(&hash.0));
        let plan = Plan::new(hash, allowed, timestamp, &mut self.rng);
        self.current
            .insert(hash.0.clone(), (plan.clone(), timestamp));
        Cycle::Planned(plan)
    }
}

/// What a cycle does for one symbol.
enum Cycle {
    /// A plan entry, then its outcome.
    Planned(Plan),
    /// A repeat of the current plan's result.
    Repeat(Plan),
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
        let reasons = [KILL_SCORE_OK, "layer4_no_edge:low_kelly"];
        return Verdict::new(Decision::Skip, &reasons, false);
    }
    let mut verdict = Verdict::new(Decision::Execute, &[KILL_SCORE_OK], true);
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
    fn new(proposal: &Hash, allowed: bool, timestamp: u64, rng: &mut fastrand::Rng) -> Plan {
        let id = plan_id(proposal);
        let (symbol, hash) = proposal;
        let field = |name: &str| field(hash, name);
        let action = planned_action(hash);
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
            id,
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

/// A field of a proposal's hash; empty when missing.
fn field<'a>(hash: &'a [(&'static str, String)], name: &str) -> &'a str {
    hash.iter()
        .find(|(key, _)| *key == name)
        .map_or("", |(_, value)| value.as_str())
}

/// The action the apply layer acts on: the heat gate's calibrated one when there is one.
fn planned_action<'a>(hash: &'a [(&'static str, String)]) -> &'a str {
    if field(hash, "calibrated") == "1" {
        field(hash, "action")
    } else {
        field(hash, "harvest_action")
    }
}

/// A plan's id: a hash of what the apply layer plans from the proposal (symbol, action, kill
/// score, stop loss), so it stays the same while they do; the same across runs and builds
/// (FNV-1a, as the standard library's hasher may change between releases).
fn plan_id((symbol, hash): &Hash) -> String {
    let text = format!(
        "{symbol}|{}|{}|{}",
        planned_action(hash),
        field(hash, "kill_score"),
        field(hash, "new_sl_proposed")
    );
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
        for _ in 0..rounds {
            for position in &mut positions {
                position.age_sec += 600.0;
                position.step(&mut rng);
                let hash = (
                    position.symbol.clone(),
                    position.fields(&mut rng, SystemTime::now()),
                );
                let allowed = position.symbol == "BTCUSDT";
                plans.push(Plan::new(&hash, allowed, 1_769_130_500, &mut rng));
            }
        }
        plans
    }

    #[test]
    fn plan_ids_are_stable_hashes_of_the_proposal() {
        let proposal = |symbol: &str, kill_score: &str| -> Hash {
            let fields = [
                ("harvest_action", "PARTIAL_75"),
                ("kill_score", kill_score),
                ("new_sl_proposed", "100.2"),
            ];
            let fields = fields.map(|(k, v)| (k, v.to_owned())).to_vec();
            (symbol.to_owned(), fields)
        };
        let id = plan_id(&proposal("BTCUSDT", "0.7533012950554003"));
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(id, plan_id(&proposal("BTCUSDT", "0.7533012950554003")));
        assert_ne!(id, plan_id(&proposal("BTCUSDT", "0.7533012950554004")));
        assert_ne!(id, plan_id(&proposal("ETHUSDT", "0.7533012950554003")));
    }

    #[test]
    fn a_plan_is_written_once_then_repeated_until_the_proposal_changes() {
        let options = ApplyOptions {
            plan_stream: String::new(),
            result_stream: String::new(),
            allowlist: None,
        };
        let mut layer = ApplyLayer::new(options, Some(7));
        let mut rng = fastrand::Rng::with_seed(7);
        let mut position = Position::new("BTCUSDT", &mut rng);
        let hash = (
            position.symbol.clone(),
            position.fields(&mut rng, SystemTime::now()),
        );
        let t = 1_769_130_500;
        let Cycle::Planned(first) = layer.cycle(&hash, t) else {
            panic!("a new proposal is planned");
        };
        for cycle in 1..60 {
            assert!(
                matches!(layer.cycle(&hash, t + cycle * 5), Cycle::Repeat(ref p) if p.id == first.id)
            );
        }
        let Cycle::Planned(again) = layer.cycle(&hash, t + REPUBLISH_SECONDS) else {
            panic!("written again after the dedupe window");
        };
        assert_eq!(
            (again.id.as_str(), &again.verdict),
            (first.id.as_str(), &first.verdict)
        );
        assert!(matches!(
            layer.cycle(&hash, t + REPUBLISH_SECONDS + 5),
            Cycle::Repeat(_)
        ));
        position.step(&mut rng);
        let changed = (
            position.symbol.clone(),
            position.fields(&mut rng, SystemTime::now()),
        );
        let Cycle::Planned(next) = layer.cycle(&changed, t + REPUBLISH_SECONDS + 10) else {
            panic!("a changed proposal is planned");
        };
        assert_ne!(next.id, first.id);
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
