//! The fan-out window search: windows 1, 2, 4, … each measured for a step, and the choice of
//! the smallest one close to the best deliveries/s within the latency budget.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{FanoutSpec, Shared};

/// One step of the window search.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SearchStep {
    /// Publications in flight.
    pub(crate) window: usize,
    /// Deliveries per second over the step.
    pub(crate) rate: f64,
    /// p99 delivery latency over the step, µs.
    pub(crate) p99_us: u64,
}

/// A window is kept if its deliveries/s is at least this fraction of the best seen.
pub(crate) const SEARCH_KEEP: f64 = 0.95;
/// A doubling counts as an improvement if deliveries/s grew by at least this factor.
pub(crate) const SEARCH_GAIN: f64 = 1.05;
/// The search stops after this many doublings in a row without improvement.
pub(crate) const SEARCH_PATIENCE: usize = 2;

/// Tries windows 1, 2, 4, …, recording deliveries/s and p99 for each, and returns the
/// smallest window within [`SEARCH_KEEP`] of the best deliveries/s among the windows whose p99
/// kept within `spec.latency_budget_us`. Doubling stops at `max_window`, or after
/// [`SEARCH_PATIENCE`] steps in a row without a [`SEARCH_GAIN`] improvement, or as many in a
/// row over the budget (one noisy step does not end the search).
pub(super) async fn search_window(
    shared: &Shared,
    spec: &FanoutSpec,
    max_window: usize,
    steps: &mut Vec<SearchStep>,
) -> usize {
    let budget = spec.latency_budget_us.unwrap_or(u64::MAX);
    let mut best = 0.0_f64;
    let mut without_gain = 0;
    let mut over_budget = 0;
    let mut window = 1;
    loop {
        shared.window.store(window, Ordering::Relaxed);
        shared.progress.notify_one();
        tokio::time::sleep(spec.publisher.step() / 4).await;
        let (rate, p99_us) = measure_step(shared, spec.publisher.step()).await;
        steps.push(SearchStep {
            window,
            rate,
            p99_us,
        });
        if rate >= best * SEARCH_GAIN {
            without_gain = 0;
        } else {
            without_gain += 1;
        }
        best = best.max(rate);
        over_budget = if p99_us > budget { over_budget + 1 } else { 0 };
        if without_gain >= SEARCH_PATIENCE || over_budget >= SEARCH_PATIENCE || window >= max_window
        {
            break;
        }
        window = (window * 2).min(max_window);
    }
    choose_window(steps, budget)
}

/// Publications that must complete within a search step, so that a step is not decided by
/// where its edges fall in the bursts of a slow fan-out.
const STEP_PUBLICATIONS: u64 = 10;

/// Deliveries/s and p99 (µs) over at least `step` and at least [`STEP_PUBLICATIONS`]
/// completed publications (at most 5 × `step`).
async fn measure_step(shared: &Shared, step: Duration) -> (f64, u64) {
    shared.latency.lock().expect("latency lock").reset();
    shared.measuring.store(true, Ordering::Relaxed);
    let at = Instant::now();
    let deliveries = shared.deliveries.load(Ordering::Relaxed);
    let released = shared.released.load(Ordering::Relaxed);
    tokio::time::sleep(step).await;
    while shared.released.load(Ordering::Relaxed) - released < STEP_PUBLICATIONS
        && at.elapsed() < step * 5
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rate = (shared.deliveries.load(Ordering::Relaxed) - deliveries) as f64
        / at.elapsed().as_secs_f64();
    shared.measuring.store(false, Ordering::Relaxed);
    let p99_us = shared
        .latency
        .lock()
        .expect("latency lock")
        .value_at_quantile(0.99);
    (rate, p99_us)
}

/// The smallest window within [`SEARCH_KEEP`] of the best deliveries/s among the steps whose
/// p99 is within `budget`; 1 if none is.
fn choose_window(steps: &[SearchStep], budget: u64) -> usize {
    let within = || steps.iter().filter(|step| step.p99_us <= budget);
    let best = within().map(|step| step.rate).fold(0.0, f64::max);
    within()
        .find(|step| step.rate >= best * SEARCH_KEEP)
        .map_or(1, |step| step.window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_choice_honours_the_budget() {
        let step = |window, rate, p99_us| SearchStep {
            window,
            rate,
            p99_us,
        };
        let steps = [
            step(1, 100.0, 10),
            step(2, 190.0, 20),
            step(4, 200.0, 40),
            step(8, 400.0, 80),
        ];
        assert_eq!(choose_window(&steps, u64::MAX), 8);
        assert_eq!(choose_window(&steps, 50), 2);
        assert_eq!(choose_window(&steps, 5), 1);
        assert_eq!(choose_window(&steps[..2], u64::MAX), 2);
    }
}
