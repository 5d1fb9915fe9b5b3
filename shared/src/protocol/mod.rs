//! The wire protocol between the `orders` client and the daemon: newline-delimited JSON.
//!
//! A request is one line, `{"v": 2, "store": "/home/alice/.local/share/orders", "cmd": "create", ...}`;
//! the daemon answers with one line,
//! `{"ok": true, "data": ...}` or `{"ok": false, "error": {"code": ..., "message": ...}}`.
//! `docs/PROTOCOL.md` is the prose version of this module. The requests are in `request.rs`, the
//! reply lines and errors in `reply.rs`, and what replies carry in `view.rs`; all re-exported here.

mod archive;
pub mod http;
pub mod milliseconds;
mod reply;
mod request;
mod view;

pub use archive::{ExportEnd, ExportedEvent, ExportedMetadata};
pub use reply::{ErrorBody, ErrorCode, Reply, raw};
pub use request::{
    Addressed, BackupRequest, CancelRequest, CheckRequest, CountRequest, CreateRequest, Envelope,
    EventsRequest, ExportRequest, HistoryRequest, IdempotencyKey, ListRequest, MAX_REQUEST_BYTES,
    MetricsRequest, PROTOCOL_VERSION, ReplayRequest, Request, ResolveRequest, ShortIdsRequest, ShowRequest,
    ShutdownRequest, StatusRequest, WaitRequest, WatchRequest,
};
pub use view::{
    BackupReport, CheckProblem, CheckReport, ClusterDaemon, Cursor, DaemonState, DaemonStatus, Difference,
    EventPage, EventView, ExportSummary, ImportReport, MetricsText, OrderCount, OrderPage, OrderView,
    ReplayProgress, ReplayReport, Resolved, RestoreReport, StartProgress, StartStep, StuckStep,
};
