//! The `simulate` subcommand: publishes proposals for a few symbols the way the real publisher
//! does (every value a string, the kill score a sigmoid of the weighted components, `None` for no
//! new stop loss, a heartbeat epoch), so the exporter can be seen moving. The apply layer that
//! acts on those proposals, writing its plans and results to the two streams, is played by
//! `apply`. A demo and test tool: the exporter's own data path never calls it.

mod apply;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::MultiplexedConnection;
use tokio::time::Instant;

use apply::ApplyLayer;

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

/// Chance per round that a position moves, changing its proposal: between moves the publisher
/// writes the same proposal again (a new heartbeat), and the apply layer repeats its plan's result.
const MOVE_CHANCE: f64 = 0.25;

/// One position's state, walked randomly now and then between publications.
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

    /// The market moves the position: a new proposal, so a new plan. Its age counts in the
    /// kill score from the move on.
    fn step(&mut self, rng: &mut fastrand::Rng) {
        let mut walk =
            |value: f64, step: f64, max: f64| (value + (rng.f64() - 0.5) * step).clamp(0.0, max);
        self.sigma_spike = walk(self.sigma_spike, 0.2, 2.0);
        self.ts_drop = walk(self.ts_drop, 0.08, 0.5);
        self.r_net = walk(self.r_net, 0.8, 12.0);
        self.price = (self.price * (1.0 + (rng.f64() - 0.5) * 0.004)).max(0.01);
        if rng.f64() < 0.05 {
            self.regime_flip = 1.0 - self.regime_flip;
        }
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
    let mut apply = options
        .apply
        .map(|apply| ApplyLayer::new(apply, options.seed));
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
                .round(&mut connection, &hashes, options.interval / 2)
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
            position.age_sec += options.interval.as_secs_f64();
            if rng.f64() < MOVE_CHANCE {
                position.step(&mut rng);
            }
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
            position.age_sec += 10.0;
            position.step(&mut rng);
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
}
