//! The drivers' progress bar on stderr: a bar when the total is known, a spinner otherwise.

use std::fmt;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressState, ProgressStyle};

/// A bar counting `unit`s (`rows`, `queries`) with their rate, then `tail` (an indicatif
/// template piece such as `eta {eta}` or `{msg}`); hidden unless `show`.
pub fn bar(show: bool, total: Option<u64>, unit: &str, tail: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(n) => (
            ProgressBar::new(n),
            format!("{{elapsed_precise}} [{{wide_bar}}] {{human_pos}}/{{human_len}} {unit}  {{rate}}  {tail}"),
        ),
        None => (
            ProgressBar::new_spinner(),
            format!("{{elapsed_precise}} {{spinner}} {{human_pos}} {unit}  {{rate}}  {tail}"),
        ),
    };
    let unit = unit.to_string();
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key(
            "rate",
            move |state: &ProgressState, w: &mut dyn fmt::Write| {
                let _ = write!(w, "{:.1} {unit}/s", state.per_sec());
            },
        );
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
