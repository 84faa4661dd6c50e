//! The kill score's trend in block characters, on the score's own 0..1 scale rather than each
//! trend's range, so that a flat 0.2 and a flat 0.9 do not look alike and lines compare; each
//! block coloured by its band, as the score is.

use super::{Paint, kill_colour};

const BLOCKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The widest trend in the table: enough for a shape, little enough to leave room for the rest.
pub(super) const TABLE_WIDTH: usize = 16;

/// Each value as a block with its band's colour, at most `width` of them: a longer series is
/// picked from evenly, its first and last (the current) value kept.
pub(super) fn blocks(values: &[f64], width: usize) -> Vec<(char, &'static str)> {
    let picked: Vec<f64> = if values.len() <= width {
        values.to_vec()
    } else if width < 2 {
        values.last().into_iter().take(width).copied().collect()
    } else {
        (0..width)
            .map(|i| values[i * (values.len() - 1) / (width - 1)])
            .collect()
    };
    picked
        .into_iter()
        .map(|value| {
            // NaN is no score at all: drawn as the lowest, as a bad field reads as 0.
            let value = if value.is_nan() {
                0.0
            } else {
                value.clamp(0.0, 1.0)
            };
            let level = ((value * BLOCKS.len() as f64) as usize).min(BLOCKS.len() - 1);
            (BLOCKS[level], kill_colour(value))
        })
        .collect()
}

/// The blocks as text, a colour code per run of one band rather than per block.
pub(super) fn paint(blocks: &[(char, &'static str)], paint: Paint) -> String {
    let mut out = String::new();
    let mut run = String::new();
    let mut run_colour = None;
    for &(block, colour) in blocks {
        if run_colour.is_some_and(|c| c != colour) {
            out.push_str(&paint.apply(&run, run_colour.unwrap_or_default()));
            run.clear();
        }
        run_colour = Some(colour);
        run.push(block);
    }
    if let Some(colour) = run_colour {
        out.push_str(&paint.apply(&run, colour));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{GREEN, RED, RESET, WHITE_ON_RED};
    use super::*;

    fn text(values: &[f64], width: usize) -> String {
        paint(&blocks(values, width), Paint(false))
    }

    #[test]
    fn a_fixed_scale_from_0_to_1() {
        assert_eq!(
            text(&[0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0], 16),
            "▁▂▃▄▅▆▇██"
        );
        assert_eq!(
            text(&[0.2, 0.2], 16),
            "▂▂",
            "a flat line is not drawn mid-height"
        );
        assert_eq!(text(&[0.9, 0.9], 16), "██");
        assert_eq!(text(&[-3.0, 7.0, f64::NAN], 16), "▁█▁", "clamped");
        assert_eq!(text(&[], 16), "");
    }

    #[test]
    fn a_long_series_is_picked_from_evenly_keeping_both_ends() {
        let values: Vec<f64> = (0..100).map(|i| f64::from(i) / 99.0).collect();
        let line = text(&values, TABLE_WIDTH);
        assert_eq!(line.chars().count(), TABLE_WIDTH);
        assert!(line.starts_with('▁') && line.ends_with('█'), "{line}");
        let mut current = vec![0.0; 40];
        current.push(0.9);
        assert!(
            text(&current, 16).ends_with('█'),
            "the current value is kept"
        );
        assert_eq!(text(&[0.1, 0.9], 1), "█");
        assert_eq!(text(&[0.1, 0.9], 0), "");
    }

    #[test]
    fn coloured_by_band_one_code_per_run() {
        let line = paint(&blocks(&[0.1, 0.2, 0.65, 0.7, 0.85], 16), Paint(true));
        assert_eq!(
            line,
            format!("{GREEN}▁▂{RESET}{RED}▆▆{RESET}{WHITE_ON_RED}▇{RESET}")
        );
    }
}
