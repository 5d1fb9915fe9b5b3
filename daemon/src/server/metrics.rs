//! `metrics`: the daemon's metrics as Prometheus' text format (issue 16), over the socket and,
//! with `--metrics-listen`, over HTTP (`super::http`). Both scrape the same way: the store's
//! states are sampled on a read snapshot, then everything is encoded.
//!
//! A scrape costs one read slot for a moment (a few index lookups and the small tables of open
//! steps). Scrapes share their samples: one that arrives while another reads the store, or
//! within a second of the last read, takes that sample, so that a crowd of scrapers holds one
//! read slot at most and never slows the customers' queries down.

use std::time::{Duration, Instant};

use orders_shared::protocol::{MetricsText, StartStep};

use super::context::{Context, Serving};
use super::queries::read_error_body;
use crate::metrics::{Metrics, Sample, StoreSample};
use crate::store::Position;

/// How long a sample of the store serves later scrapes.
const FRESH: Duration = Duration::from_secs(1);

/// The exposition, starting or ready.
pub async fn exposition(serving: &Serving) -> MetricsText {
    let sample = match serving.context() {
        Some(context) => ready(context).await,
        None => starting(serving),
    };
    text(&serving.metrics, sample)
}

/// The exposition of `sample` and everything counted.
pub(super) fn text(metrics: &Metrics, sample: Sample) -> MetricsText {
    MetricsText { content_type: crate::metrics::CONTENT_TYPE.to_owned(), text: metrics.render(sample) }
}

/// What a starting daemon knows: how far its read model has still to catch up.
pub(super) fn starting(serving: &Serving) -> Sample {
    let progress = serving.startup.progress();
    let lag =
        (progress.step == StartStep::CatchingUp).then(|| progress.total.saturating_sub(progress.applied));
    Sample { ready: false, read_model_lag: lag, store: None, now: None }
}

/// What a ready daemon's store says. A store that cannot be read leaves its states out (the
/// counters still tell), and the log says why.
async fn ready(context: &Context) -> Sample {
    let asked = Instant::now();
    let mut last = context.last_sample.lock().await;
    let fresh = last.filter(|(taken, _, _)| *taken >= asked || taken.elapsed() < FRESH);
    let (store, lag) = match fresh {
        Some((_, store, lag)) => (Some(store), Some(lag)),
        None => match context.readers.read(|reads| reads.backlog()).await {
            Ok(backlog) => {
                let store = StoreSample {
                    events: backlog.head.since(Position::START),
                    open_payments: backlog.open_payments,
                    open_deliveries: backlog.open_deliveries,
                    oldest_payment: backlog.oldest_payment,
                    oldest_delivery: backlog.oldest_delivery,
                    earliest_due: backlog.earliest_due,
                };
                let lag = backlog.head.since(backlog.checkpoint);
                *last = Some((Instant::now(), store, lag));
                (Some(store), Some(lag))
            }
            Err(error) => {
                tracing::warn!("metrics: {}", read_error_body(&error).message);
                *last = None;
                (None, None)
            }
        },
    };
    Sample { ready: true, read_model_lag: lag, store, now: Some(context.clock.now()) }
}

/// `metrics` on a ready daemon.
pub(super) async fn metrics(context: &Context) -> MetricsText {
    text(&context.metrics, ready(context).await)
}
