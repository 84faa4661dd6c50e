//! The `simulate` subcommand: publishes proposals for a few symbols the way the real publisher
//! does (every value a string, the kill score a sigmoid of the weighted components, `None` for no
//! new stop loss, a heartbeat epoch), so the exporter can be seen moving. It also plays the apply
//! layer that acts on those proposals, writing its plans and results to the two streams with
//! the varied field sets the real system writes. A demo and test tool: the exporter's own data
//! path never calls it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use serde_json::json;
use tokio::time::Instant;

use crate::civil;
use crate::proposal::WEIGHTS;
use crate::source::{RedisSettings, SettingsError};

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

pub struct Options {
    pub symbols: Vec<String>,
    pub interval: Duration,
    /// Publications before stopping; `None` runs forever.
    pub rounds: Option<u64>,
    pub seed: Option<u64>,
    pub heat_gate: bool,
    /// Where and how to play the apply layer; `None` publishes proposals only.
    pub apply: Option<ApplyOptions>,
}

pub struct ApplyOptions {
    pub plan_stream: String,
    pub result_stream: String,
    /// Symbols allowed to execute; `None` allows every symbol.
    pub allowlist: Option<Vec<String>>,
}

/// One position's state, walked randomly between publications.
struct Position {
    symbol: String,
    regime_flip: f64,
    sigma_spike: f64,
    ts_drop: f64,
    age_penalty: f64,
    r_net: f64,
    entry_price: f64,
    price: f64,
    age_sec: f64,
    long: bool,
}

impl Position {
    fn new(symbol: &str, rng: &mut fastrand::Rng) -> Position {
        let entry_price = 10f64.powf(rng.f64() * 4.0 + 1.0).round();
        Position {
            symbol: symbol.to_owned(),
            regime_flip: 0.0,
            sigma_spike: rng.f64() * 0.4,
            ts_drop: rng.f64() * 0.2,
            age_penalty: rng.f64() * 0.3,
            r_net: rng.f64() * 8.0,
            entry_price,
            price: entry_price * (1.0 + (rng.f64() - 0.5) * 0.02),
            age_sec: (rng.f64() * 7200.0).round(),
            long: rng.bool(),
        }
    }

    fn step(&mut self, rng: &mut fastrand::Rng, elapsed: f64) {
        let mut walk =
            |value: f64, step: f64, max: f64| (value + (rng.f64() - 0.5) * step).clamp(0.0, max);
        self.sigma_spike = walk(self.sigma_spike, 0.2, 2.0);
        self.ts_drop = walk(self.ts_drop, 0.08, 0.5);
        self.r_net = walk(self.r_net, 0.8, 12.0);
        self.price = (self.price * (1.0 + (rng.f64() - 0.5) * 0.004)).max(0.01);
        if rng.f64() < 0.05 {
            self.regime_flip = 1.0 - self.regime_flip;
        }
        self.age_sec += elapsed;
        self.age_penalty = (self.age_sec / 86_400.0).min(1.0);
    }

    fn kill_score(&self) -> f64 {
        let components = [
            self.regime_flip,
            self.sigma_spike,
            self.ts_drop,
            self.age_penalty,
        ];
        let weighted: f64 = components.iter().zip(WEIGHTS).map(|(c, w)| c * w).sum();
        1.0 / (1.0 + (-weighted).exp())
    }

    /// The hash as the publisher writes it.
    fn fields(&self, rng: &mut fastrand::Rng, now: SystemTime) -> Vec<(&'static str, String)> {
        let kill_score = self.kill_score();
        let action = match kill_score {
            k if k >= 0.9 => "FULL_CLOSE_PROPOSED",
            k if k >= 0.8 => "PARTIAL_75",
            k if k >= 0.7 => "PARTIAL_50",
            k if k >= 0.6 => "PARTIAL_25",
            _ => "NONE",
        };
        let new_sl = if action == "NONE" {
            "None".to_owned()
        } else {
            let offset = if self.long { -0.002 } else { 0.002 };
            format!("{:.4}", self.price * (1.0 + offset))
        };
        let direction = if self.long { 1.0 } else { -1.0 };
        let (trend, mean_reversion) = (rng.f64() * 0.6, rng.f64() * 0.3);
        let epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        vec![
            ("harvest_action", action.to_owned()),
            ("kill_score", kill_score.to_string()),
            ("k_regime_flip", format!("{:.1}", self.regime_flip)),
            ("k_sigma_spike", format!("{:.3}", self.sigma_spike)),
            ("k_ts_drop", format!("{:.3}", self.ts_drop)),
            ("k_age_penalty", format!("{:.3}", self.age_penalty)),
            ("R_net", format!("{:.2}", self.r_net)),
            ("new_sl_proposed", new_sl),
            ("last_update_epoch", epoch.as_secs().to_string()),
            ("computed_at_utc", format_naive_utc(epoch)),
            ("risk_unit", "2.0".to_owned()),
            ("cost_est", "0.002".to_owned()),
            ("sigma", format!("{:.4}", 0.01 + self.sigma_spike * 0.01)),
            ("p_trend", format!("{trend:.3}")),
            ("p_mr", format!("{mean_reversion:.3}")),
            ("p_chop", format!("{:.3}", 1.0 - trend - mean_reversion)),
            ("ts", format!("{:.2}", 0.5 - self.ts_drop)),
            (
                "position_side",
                if self.long { "LONG" } else { "SHORT" }.to_owned(),
            ),
            ("position_age_sec", format!("{}", self.age_sec as u64)),
            ("position_current_price", format!("{:.4}", self.price)),
            ("position_entry_price", format!("{:.4}", self.entry_price)),
            (
                "position_unrealized_pnl",
                format!("{:.2}", (self.price - self.entry_price) * direction),
            ),
            (
                "reason_codes",
                if action == "NONE" {
                    ""
                } else {
                    "harvest_T2,profit_lock"
                }
                .to_owned(),
            ),
        ]
    }
}

/// Publishes until the rounds are done (or forever), one pipelined write per round, each round
/// followed by the apply layer's plans and results when it is played.
pub async fn run(
    settings: &RedisSettings,
    prefix: &str,
    options: Options,
) -> Result<(), SimulateError> {
    let (client, _) = settings.client()?;
    let mut connection = client
        .get_multiplexed_async_connection_with_config(&settings.connection_config())
        .await?;
    let mut rng = options
        .seed
        .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
    // Its own generator, so that turning the apply layer on or off leaves the proposals of a
    // seed as they were.
    let mut apply = options.apply.map(|apply| ApplyLayer {
        options: apply,
        rng: options.seed.map_or_else(fastrand::Rng::new, |seed| {
            fastrand::Rng::with_seed(seed ^ APPLY_SEED_MIX)
        }),
    });
    let mut positions: Vec<Position> = options
        .symbols
        .iter()
        .map(|s| Position::new(s, &mut rng))
        .collect();
    let mut round = 0u64;
    loop {
        let started = Instant::now();
        let hashes = publish(
            &mut connection,
            prefix,
            &positions,
            &mut rng,
            options.heat_gate,
        )
        .await?;
        if let Some(apply) = &mut apply {
            apply
                .round(&mut connection, round, &hashes, options.interval / 2)
                .await?;
        }
        round += 1;
        tracing::debug!(
            round,
            symbols = positions.len(),
            "published simulated proposals"
        );
        if options.rounds.is_some_and(|rounds| round >= rounds) {
            return Ok(());
        }
        tokio::time::sleep_until(started + options.interval).await;
        for position in &mut positions {
            position.step(&mut rng, options.interval.as_secs_f64());
        }
    }
}

/// A proposal hash as written: the symbol and its fields.
type Hash = (String, Vec<(&'static str, String)>);

/// Writes every position's hash and returns them, for the apply layer to read.
async fn publish(
    connection: &mut MultiplexedConnection,
    prefix: &str,
    positions: &[Position],
    rng: &mut fastrand::Rng,
    heat_gate: bool,
) -> Result<Vec<Hash>, SimulateError> {
    let now = SystemTime::now();
    let mut pipe = redis::pipe();
    let mut hashes = Vec::with_capacity(positions.len());
    for position in positions {
        let key = format!("{prefix}{}", position.symbol);
        let mut fields = position.fields(rng, now);
        if heat_gate {
            let original = fields[0].1.clone();
            let calibrated = match original.as_str() {
                "FULL_CLOSE_PROPOSED" => "FULL_CLOSE",
                "PARTIAL_50" => "PARTIAL_75",
                other => other,
            };
            fields.push(("action", calibrated.to_owned()));
            fields.push(("original_action", original));
            fields.push(("calibrated", "1".to_owned()));
        }
        pipe.hset_multiple(&key, &fields).ignore();
        if heat_gate {
            pipe.expire(&key, 300).ignore();
        }
        hashes.push((position.symbol.clone(), fields));
    }
    pipe.query_async::<()>(connection).await?;
    Ok(hashes)
}

/// The real writer trims both streams to about this many entries (`XADD ... MAXLEN ~`).
const STREAM_MAXLEN: u64 = 10_000;
/// Kill score from which the apply layer's gate refuses to close a position.
const BLOCK_KILL_SCORE: f64 = 0.8;
/// Size of every simulated position, from which plans and fills get their quantities.
const POSITION_NOTIONAL_USDT: f64 = 1_000.0;
/// Chance, per round and stream, of an entry from another service that writes there too.
const OTHER_SERVICE_CHANCE: f64 = 0.3;
/// Mixed into the seed for the apply layer's own generator.
const APPLY_SEED_MIX: u64 = 0x9e37_79b9_7f4a_7c15;
/// The real system cuts an exception's text to this many characters in `error`.
const ERROR_TEXT_LIMIT: usize = 200;
/// Exceptions an execution fails with; the last is longer than the real system keeps.
const EXCEPTIONS: [&str; 4] = [
    "BinanceAPIException(code=-2019): Margin is insufficient.",
    "KeyError: 'positionAmt'",
    "ReadTimeout: HTTPSConnectionPool(host='testnet.binancefuture.com', port=443): Read timed out. (read timeout=10)",
    "ClientError: (400, -2022, 'ReduceOnly Order is rejected.', {'Date': 'Fri, 23 Jan 2026 00:58:58 GMT', 'Content-Type': 'application/json', 'Content-Length': '61', 'Connection': 'keep-alive', 'x-mbx-used-weight-1m': '12'})",
];

/// The apply layer's side of the simulation: a plan per proposal, then a result per plan. It
/// behaves as the real one does in dry-run mode with an allowlist: plans of allowlisted symbols
/// that pass the gates go down the close path (an order filled, or failing); every other plan
/// gets a dry-run result saying whether it would have executed.
struct ApplyLayer {
    options: ApplyOptions,
    rng: fastrand::Rng,
}

impl ApplyLayer {
    /// Writes the round's plans in one pipeline, then each result after its own delay within
    /// `window` (at most a second), as real executions take varying times: the latency from
    /// plan to result is never zero, and varies.
    async fn round(
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

/// The result the apply layer writes for a plan. Its field set depends on the code path that
/// writes it, as in the real system: the close path, a failure, or a dry run.
fn result_fields(
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
fn other_service_entry(
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
/// `YYYY-MM-DDTHH:MM:SS.ffffff` in UTC without a zone, as the publisher writes `computed_at_utc`.
fn format_naive_utc(since_epoch: Duration) -> String {
    format!(
        "{}.{:06}",
        civil::format_utc(since_epoch.as_secs() as i64),
        since_epoch.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proposal::{Action, parse_pairs};
    use crate::values::parse_utc_timestamp;

    #[test]
    fn naive_utc_round_trips_through_the_parser() {
        for secs in [0u64, 951_782_400, 1_769_129_938, 4_102_444_800] {
            let epoch = Duration::new(secs, 259_371_000);
            let text = format_naive_utc(epoch);
            assert_eq!(
                parse_utc_timestamp(&text),
                Some(secs as f64 + 0.259371),
                "{text}"
            );
        }
        assert_eq!(
            format_naive_utc(Duration::new(1_769_129_938, 259_371_000)),
            "2026-01-23T00:58:58.259371"
        );
    }

    #[test]
    fn simulated_hashes_parse_cleanly_and_follow_the_weights() {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut position = Position::new("BTCUSDT", &mut rng);
        for _ in 0..200 {
            position.step(&mut rng, 10.0);
            let fields: Vec<_> = position
                .fields(&mut rng, SystemTime::now())
                .into_iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.into_bytes()))
                .collect();
            let proposal = parse_pairs("BTCUSDT".into(), &fields);
            assert!(
                proposal.invalid_fields.is_empty(),
                "{:?}",
                proposal.invalid_fields
            );
            assert!((0.5..1.0).contains(&proposal.kill_score));
            assert!(matches!(proposal.action, Action::Known(_)));
            let weighted = 2.0 * proposal.k_regime_flip
                + 1.5 * proposal.k_sigma_spike
                + 2.5 * proposal.k_ts_drop
                + 0.5 * proposal.k_age_penalty;
            assert!((proposal.kill_score - 1.0 / (1.0 + (-weighted).exp())).abs() < 0.01);
        }
    }

    /// Plans for three positions walked over `rounds` rounds, only BTCUSDT allowlisted.
    fn walked_plans(rounds: u64) -> Vec<Plan> {
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

    #[test]
    fn results_carry_the_field_sets_of_their_code_path() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut plans = walked_plans(400);
        plans.push(plans[0].duplicate());
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
