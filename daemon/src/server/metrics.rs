//! `metrics`: the daemon's metrics as Prometheus' text format (issue 16), over the socket and,
//! with `--metrics-listen`, over HTTP (`crate::http`). Both scrape the same way: the states are
//! sampled from the store on a read snapshot, then everything is encoded.

use jiff::Timestamp;
use orders_shared::protocol::{MetricsText, StartStep};

use super::context::{Context, Serving};
use crate::metrics::{Metrics, Sample};
use crate::store::Position;

/// The exposition, starting or ready.
pub async fn exposition(serving: &Serving) -> MetricsText {
    let sample = match serving.context() {
        Some(context) => ready(context).await,
        None => starting(serving),
    };
    text(&serving.metrics, &sample)
}

/// The exposition of `sample` and everything counted.
pub(super) fn text(metrics: &Metrics, sample: &Sample) -> MetricsText {
    MetricsText {
        content_type: crate::metrics::CONTENT_TYPE.to_owned(),
        text: metrics.render(sample, Timestamp::now()),
    }
}

/// What a starting daemon knows: how far its read model has still to catch up.
pub(super) fn starting(serving: &Serving) -> Sample {
    let progress = serving.startup.progress();
    let lag =
        (progress.step == StartStep::CatchingUp).then(|| progress.total.saturating_sub(progress.applied));
    Sample { ready: false, read_model_lag: lag, ..Sample::default() }
}

/// What a ready daemon's store says. A store that cannot be read leaves those states out (the
/// counters still tell), and says why in the log.
async fn ready(context: &Context) -> Sample {
    let read = context.readers.read(|reads| Ok((reads.counts()?, reads.backlog()?))).await;
    match read {
        Ok((counts, backlog)) => Sample {
            ready: true,
            events: Some(counts.head.since(Position::START)),
            read_model_lag: Some(counts.head.since(backlog.checkpoint)),
            open_payments: Some(counts.pending_payments),
            open_deliveries: Some(counts.pending_deliveries),
            oldest_payment: backlog.oldest_payment,
            oldest_delivery: backlog.oldest_delivery,
            earliest_due: backlog.earliest_due,
        },
        Err(error) => {
            tracing::warn!(%error, "metrics: cannot read the store's counts");
            Sample { ready: true, ..Sample::default() }
        }
    }
}

/// `metrics` on a ready daemon.
pub(super) async fn metrics(context: &Context) -> MetricsText {
    text(&context.metrics, &ready(context).await)
}
