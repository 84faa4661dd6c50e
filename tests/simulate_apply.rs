//! The simulator playing the apply layer, against a real redis-server: what it writes to the two
//! streams, read back with XRANGE as any consumer would, checked against the field sets, the
//! dry-run gates and the rhythm (a plan once, a result every cycle) the real system has.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;

/// Every field of a plan the apply layer writes, `event_type` aside.
const PLAN_FIELDS: [&str; 20] = [
    "plan_id",
    "symbol",
    "action",
    "kill_score",
    "k_regime_flip",
    "k_sigma_spike",
    "k_ts_drop",
    "k_age_penalty",
    "R_net",
    "new_sl_proposed",
    "decision",
    "reason_codes",
    "steps",
    "qty",
    "side",
    "source",
    "price",
    "reduceOnly",
    "timestamp",
    "event_type",
];
/// Fields every result of the apply layer has; the rest depend on the code path.
const RESULT_REQUIRED: [&str; 6] = [
    "plan_id",
    "symbol",
    "executed",
    "error",
    "steps_results",
    "source",
];
const RESULT_OPTIONAL: [&str; 11] = [
    "decision",
    "would_execute",
    "details",
    "reason",
    "event_type",
    "action",
    "close_qty",
    "filled_qty",
    "order_status",
    "side",
    "timestamp",
];
/// What the close path adds, all together, to an executed close.
const CLOSE_FIELDS: [&str; 6] = [
    "action",
    "close_qty",
    "filled_qty",
    "order_status",
    "side",
    "timestamp",
];
/// Other services' entries: a smaller field set, no plan.
const OTHER_FIELDS: [&str; 5] = ["symbol", "side", "qty", "source", "timestamp"];

/// One stream entry: its id as (milliseconds, sequence) and its fields in order.
#[derive(Debug, PartialEq)]
struct Entry {
    id: (u64, u64),
    fields: Vec<(String, String)>,
}

impl Entry {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn field(&self, name: &str) -> &str {
        self.get(name)
            .unwrap_or_else(|| panic!("no {name} in {self:?}"))
    }

    fn names(&self) -> BTreeSet<&str> {
        self.fields.iter().map(|(k, _)| k.as_str()).collect()
    }

    fn written_by_apply_layer(&self) -> bool {
        self.get("source") == Some("apply_layer")
    }

    /// The entry without the fields that carry the wall-clock time.
    fn timeless(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|(k, _)| k != "timestamp")
            .cloned()
            .collect()
    }
}

fn xrange(redis: &Redis, stream: &str) -> Vec<Entry> {
    let raw: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query(&mut redis.connection())
        .expect("XRANGE");
    raw.into_iter()
        .map(|(id, fields)| {
            let (ms, seq) = id.split_once('-').expect("a stream id");
            Entry {
                id: (ms.parse().unwrap(), seq.parse().unwrap()),
                fields,
            }
        })
        .collect()
}

/// `XINFO STREAM`'s integer figures (`length`, `groups`, ...).
fn xinfo(redis: &Redis, stream: &str) -> HashMap<String, i64> {
    let info: HashMap<String, redis::Value> = redis::cmd("XINFO")
        .arg("STREAM")
        .arg(stream)
        .query(&mut redis.connection())
        .expect("XINFO STREAM");
    info.into_iter()
        .filter_map(|(k, v)| match v {
            redis::Value::Int(n) => Some((k, n)),
            _ => None,
        })
        .collect()
}

/// Cycles the simulator runs; the symbols it plays.
const ROUNDS: usize = 12;
const SYMBOLS: [&str; 3] = ["A", "B", "C"];

fn simulate(redis: &Redis, extra: &[&str]) {
    let url = redis.url();
    let rounds = ROUNDS.to_string();
    let symbols = SYMBOLS.join(",");
    let mut args = vec![
        "--redis.addr",
        &url,
        "simulate",
        "--rounds",
        &rounds,
        "--seed",
        "7",
        "--symbols",
        &symbols,
        "--interval",
        "0.05",
    ];
    args.extend_from_slice(extra);
    run_exporter_ok(&args);
}

fn is_bool(value: &str) -> bool {
    ["True", "False", "true", "false"].contains(&value)
}

/// The canonical decision a result's `decision` stands for.
fn canonical(decision: &str) -> &str {
    match decision {
        "EXECUTED" | "EXEC" => "EXECUTE",
        "SKIPPED" => "SKIP",
        "BLOCK" => "BLOCKED",
        "FAILED" | "FAIL" => "ERROR",
        other => other,
    }
}

#[test]
fn simulator_writes_plans_and_results_as_the_apply_layer_does() {
    let redis = Redis::start();
    simulate(&redis, &[]);
    let plan_stream = xrange(&redis, PLAN_STREAM);
    let result_stream = xrange(&redis, RESULT_STREAM);
    let (plans, others): (Vec<&Entry>, Vec<&Entry>) =
        plan_stream.iter().partition(|e| e.written_by_apply_layer());

    // A plan entry once per plan_id; a new plan only when a proposal changed.
    let ids: BTreeSet<&str> = plans.iter().map(|p| p.field("plan_id")).collect();
    assert_eq!(ids.len(), plans.len(), "each plan id written once");
    assert!(
        (SYMBOLS.len() + 1..ROUNDS * SYMBOLS.len()).contains(&plans.len()),
        "{} plans: some proposals changed, not all every cycle",
        plans.len()
    );
    let mut first_plan: HashMap<&str, &Entry> = HashMap::new();
    for plan in &plans {
        let names = plan.names();
        let expected: BTreeSet<&str> = PLAN_FIELDS.into_iter().collect();
        let without_event_type: BTreeSet<&str> = expected
            .iter()
            .copied()
            .filter(|&n| n != "event_type")
            .collect();
        assert!(
            names == expected || names == without_event_type,
            "plan fields {names:?}"
        );
        if let Some(event_type) = plan.get("event_type") {
            assert_eq!(event_type, "apply.plan");
        }
        let symbol = plan.field("symbol");
        let action = plan.field("action");
        let decision = plan.field("decision");
        let reasons: Vec<&str> = plan.field("reason_codes").split(',').collect();
        let kill_score: f64 = plan.field("kill_score").parse().expect("a kill score");
        assert!((0.5..1.0).contains(&kill_score), "{plan:?}");
        for component in [
            "k_regime_flip",
            "k_sigma_spike",
            "k_ts_drop",
            "k_age_penalty",
        ] {
            plan.field(component).parse::<f64>().expect("a component");
        }
        plan.field("R_net").parse::<f64>().expect("R_net");
        plan.field("qty").parse::<f64>().expect("qty");
        plan.field("timestamp")
            .parse::<u64>()
            .expect("integer seconds");
        let new_sl = plan.field("new_sl_proposed");
        assert!(
            new_sl.is_empty() || new_sl.parse::<f64>().is_ok(),
            "{new_sl}"
        );
        assert!(["BUY", "SELL"].contains(&plan.field("side")));
        assert_eq!(plan.field("price"), "");
        assert_eq!(plan.field("reduceOnly"), "True");
        let steps: serde_json::Value = serde_json::from_str(plan.field("steps")).expect("steps");
        for step in steps.as_array().expect("a list of steps") {
            for key in ["step", "type", "side", "pct"] {
                assert!(step.get(key).is_some(), "{key} in {step}");
            }
        }
        assert!(
            ["EXECUTE", "SKIP", "BLOCKED", "ERROR"].contains(&decision),
            "{decision}"
        );

        // The dry-run gates: the allowlist defaults to the first symbol. The dedupe gate skips
        // repeats in the results; no plan entry is a duplicate.
        assert!(!reasons.contains(&"duplicate_plan"), "{plan:?}");
        if action == "NONE" {
            assert_eq!(
                (decision, reasons.as_slice()),
                ("SKIP", &["action_hold"][..])
            );
        } else if kill_score >= 0.8 {
            assert_eq!(decision, "BLOCKED", "{plan:?}");
            assert!(
                reasons.contains(&"kill_score_close_blocked")
                    || reasons.contains(&"kill_switch_active"),
                "{reasons:?}"
            );
        }
        if decision == "EXECUTE" {
            assert_eq!(symbol, "A", "only the allowlisted symbol executes");
            assert!(kill_score < 0.8);
        }
        if reasons.contains(&"not_in_allowlist") {
            assert_ne!(symbol, "A");
            assert_eq!(decision, "SKIP");
        }
        first_plan.entry(plan.field("plan_id")).or_insert(plan);
    }
    for other in &others {
        assert!(other.get("plan_id").is_none(), "{other:?}");
        assert!(
            other.names().iter().all(|n| OTHER_FIELDS.contains(n)),
            "{other:?}"
        );
    }

    // A result per symbol and cycle, each written after its plan: the plan's first result is its
    // outcome, the following ones are repeats, until the next plan of the symbol.
    let results: Vec<&Entry> = result_stream
        .iter()
        .filter(|e| e.get("plan_id").is_some())
        .collect();
    let mut outcomes: HashMap<&str, &Entry> = HashMap::new();
    let mut repeats = 0;
    for symbol in SYMBOLS {
        let of_symbol: Vec<&&Entry> = results
            .iter()
            .filter(|r| r.field("symbol") == symbol)
            .collect();
        assert_eq!(of_symbol.len(), ROUNDS, "{symbol}: a result every cycle");
        let mut plan_ids: Vec<&str> = of_symbol.iter().map(|r| r.field("plan_id")).collect();
        plan_ids.dedup();
        let planned: Vec<&str> = plans
            .iter()
            .filter(|p| p.field("symbol") == symbol)
            .map(|p| p.field("plan_id"))
            .collect();
        assert_eq!(
            plan_ids, planned,
            "{symbol}: results follow the plans in order"
        );
    }
    for result in &results {
        let names = result.names();
        for name in RESULT_REQUIRED {
            assert!(names.contains(name), "{name} missing in {result:?}");
        }
        assert!(
            names
                .iter()
                .all(|n| RESULT_REQUIRED.contains(n) || RESULT_OPTIONAL.contains(n)),
            "unexpected field in {result:?}"
        );
        let plan = first_plan[result.field("plan_id")];
        assert_eq!(result.field("symbol"), plan.field("symbol"));
        assert!(result.id > plan.id, "the result comes after its plan");
        assert_eq!(result.field("source"), "apply_layer");
        if let Some(event_type) = result.get("event_type") {
            assert_eq!(event_type, "apply.result");
        }
        let executed = result.field("executed");
        assert!(is_bool(executed), "{executed}");
        if let Some(would_execute) = result.get("would_execute") {
            assert!(is_bool(would_execute));
        }
        let steps: serde_json::Value =
            serde_json::from_str(result.field("steps_results")).expect("steps_results");
        assert!(steps.is_array());
        if outcomes.contains_key(result.field("plan_id")) {
            // A repeat: the dedupe gate (or an earlier one) skips it, nothing executes.
            repeats += 1;
            assert_eq!(result.field("decision"), "SKIP", "{result:?}");
            assert!(executed.eq_ignore_ascii_case("false"), "{result:?}");
            let first_reason = plan.field("reason_codes").split(',').next();
            let error = result.field("error");
            assert!(
                error == "duplicate_plan" || Some(error) == first_reason,
                "{result:?}"
            );
            continue;
        }
        outcomes.insert(result.field("plan_id"), result);
        let decision = plan.field("decision");
        if let Some(outcome) = result.get("decision") {
            let outcome = canonical(outcome);
            // A failed execution reports an error for a plan that said EXECUTE.
            let consistent = outcome == decision || (outcome == "ERROR" && decision == "EXECUTE");
            assert!(consistent, "{outcome} for a plan {decision}");
        }
        if executed.eq_ignore_ascii_case("true") {
            assert_eq!(decision, "EXECUTE");
            assert!(CLOSE_FIELDS.iter().all(|f| names.contains(f)), "{result:?}");
            result
                .field("filled_qty")
                .parse::<f64>()
                .expect("filled_qty");
        } else {
            assert!(
                CLOSE_FIELDS.iter().all(|f| !names.contains(f)),
                "{result:?}"
            );
        }
        if let Some(details) = result.get("details") {
            let details: serde_json::Value = serde_json::from_str(details).expect("details");
            assert_eq!(details["error"].as_str(), Some(result.field("error")));
        }
    }
    assert_eq!(outcomes.len(), plans.len(), "an outcome per plan");
    assert_eq!(repeats, results.len() - plans.len());
    assert!(repeats > 0, "no proposal stayed the same for two cycles");
    for other in result_stream.iter().filter(|e| e.get("plan_id").is_none()) {
        assert!(
            other.names().iter().all(|n| OTHER_FIELDS.contains(n)),
            "{other:?}"
        );
    }

    for stream in [PLAN_STREAM, RESULT_STREAM] {
        let info = xinfo(&redis, stream);
        assert!(info["length"] <= 10_000);
        assert_eq!(info["groups"], 0, "the simulator creates no consumer group");
    }
}

#[test]
fn a_seed_replays_the_same_plans_and_results() {
    let (first, second) = (Redis::start(), Redis::start());
    simulate(&first, &[]);
    simulate(&second, &[]);
    for stream in [PLAN_STREAM, RESULT_STREAM] {
        let timeless = |redis: &Redis| -> Vec<_> {
            xrange(redis, stream).iter().map(Entry::timeless).collect()
        };
        assert_eq!(timeless(&first), timeless(&second), "{stream}");
    }
}

#[test]
fn streams_are_trimmed_as_the_real_writer_trims_them() {
    let redis = Redis::start();
    // Small nodes, so that `MAXLEN ~` trims close to the limit.
    redis.run(&["CONFIG", "SET", "stream-node-max-entries", "10"]);
    for stream in [PLAN_STREAM, RESULT_STREAM] {
        let mut pipe = redis::pipe();
        for _ in 0..10_100 {
            pipe.cmd("XADD")
                .arg(stream)
                .arg("*")
                .arg("filler")
                .arg("1")
                .ignore();
        }
        pipe.query::<()>(&mut redis.connection()).expect("fill");
    }
    simulate(&redis, &[]);
    for stream in [PLAN_STREAM, RESULT_STREAM] {
        let length = xinfo(&redis, stream)["length"];
        assert!(
            (10_000..=10_010).contains(&length),
            "{stream} holds {length} entries"
        );
    }
}

#[test]
fn apply_false_writes_no_stream() {
    let redis = Redis::start();
    simulate(&redis, &["--apply=false"]);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut redis.connection())
        .expect("KEYS");
    let mut keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "quantum:harvest:proposal:A",
            "quantum:harvest:proposal:B",
            "quantum:harvest:proposal:C"
        ]
    );
}

#[test]
fn stream_names_and_the_allowlist_are_flags() {
    let redis = Redis::start();
    simulate(
        &redis,
        &[
            "--apply.plan-stream",
            "plans",
            "--apply.result-stream",
            "results",
            "--apply.allowlist",
            "*",
        ],
    );
    assert!(xrange(&redis, PLAN_STREAM).is_empty());
    assert!(xrange(&redis, RESULT_STREAM).is_empty());
    let plans = xrange(&redis, "plans");
    assert!(plans.len() >= SYMBOLS.len());
    assert!(
        plans.iter().all(|p| !p
            .get("reason_codes")
            .unwrap_or("")
            .contains("not_in_allowlist")),
        "* allows every symbol"
    );
    assert!(
        plans
            .iter()
            .any(|p| p.get("decision") == Some("EXECUTE") && p.get("symbol") != Some("A"))
    );
    assert!(xrange(&redis, "results").len() >= ROUNDS * SYMBOLS.len());

    let output = run_exporter(&["simulate", "--apply.plan-stream", " "], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--apply.plan-stream"), "{stderr}");
}

#[test]
fn development_guide_documents_the_apply_flags_with_their_defaults() {
    use clap::CommandFactory;
    let readme = include_str!("../docs/development.md");
    let documented: BTreeSet<(String, String)> = readme
        .lines()
        .filter(|l| l.starts_with("| `--apply"))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let default = match cells[1] {
                "the first of `--symbols`" => "",
                other => other.trim_matches('`'),
            };
            (cells[0].trim_matches('`').to_owned(), default.to_owned())
        })
        .collect();
    let command = harvest_exporter::config::Cli::command();
    let simulate = command
        .find_subcommand("simulate")
        .expect("a simulate subcommand");
    let actual: BTreeSet<(String, String)> = simulate
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long().filter(|l| l.starts_with("apply"))?;
            let default = arg
                .get_default_values()
                .first()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((format!("--{long}"), default))
        })
        .collect();
    assert_eq!(
        documented, actual,
        "docs/development.md simulate flags vs simulate --help"
    );
}
