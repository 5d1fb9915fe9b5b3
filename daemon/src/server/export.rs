//! The `export` request (issue 15): the event log exactly as the store keeps it, one `record`
//! line per event ([`ExportedEvent`]), then an [`ExportSummary`] as the data.
//!
//! It is read and written a piece at a time, as `events` pages are (`super::events`): each piece
//! is read with a bulk reader of the pool, serialised on that reader's thread and written before
//! the next one is read. A client that does not read holds one piece and no reader, and the
//! daemon's memory does not grow with the log.
//!
//! The export ends at its `to` cursor, or else at the head of its first piece's snapshot: the
//! log only grows, one writer commits it in position order, and a committed event never changes,
//! so the pieces add up to a consistent prefix of the log however long the export takes while
//! writers go on.

use std::io;

use orders_shared::protocol::{ErrorBody, ErrorCode, ExportRequest, ExportSummary, Reply};

use super::context::Context;
use super::events::{cursor_position, first_position};
use super::queries::read_error_body;
use crate::connection::{Lines, WRITE_CHUNK};
use crate::store::{Position, Reads, StoreError, StoredEvent, cursor};

/// The most events read for one piece.
const PIECE_EVENTS: usize = 512;

/// A run of record lines.
#[derive(Debug)]
struct Piece {
    text: Vec<u8>,
    events: u64,
    first: Option<Position>,
    /// The position of the last of them (the position it started after, if none).
    last: Position,
    /// Where the export ends: `to`, or the head of the first piece's snapshot.
    end: Position,
    /// No event up to `end` is left after `last`.
    at_end: bool,
}

/// The record lines of the events after `after`, up to `end` (when `None`: up to `to`, or the
/// head of this snapshot), until the text reaches [`WRITE_CHUNK`].
fn read_piece(
    reads: &mut dyn Reads,
    after: Position,
    end: Option<Position>,
    to: Option<Position>,
) -> Result<Piece, StoreError> {
    let (events, head) = reads.stored_events(after, PIECE_EVENTS)?;
    let end = end.unwrap_or_else(|| to.map_or(head, |to| to.min(head)));
    let read = events.len();
    let mut piece = Piece { text: Vec::new(), events: 0, first: None, last: after, end, at_end: false };
    for event in events.into_iter().take_while(|event| event.position <= end) {
        let position = event.position;
        write_record(&mut piece.text, event)?;
        piece.first.get_or_insert(position);
        piece.events += 1;
        piece.last = position;
        if piece.text.len() >= WRITE_CHUNK {
            break;
        }
    }
    piece.at_end = piece.last >= end || read == 0;
    Ok(piece)
}

/// Writes one `{"ok":true,"record":...}` line, as [`Reply::Record`] is written.
fn write_record(text: &mut Vec<u8>, event: StoredEvent) -> Result<(), StoreError> {
    let record = event.export()?;
    text.extend_from_slice(b"{\"ok\":true,\"record\":");
    serde_json::to_writer(&mut *text, &record).expect("a record is a plain serde struct");
    text.extend_from_slice(b"}\n");
    Ok(())
}

/// The first position and the last one asked for (inclusive), from the request's cursors.
fn range(request: &ExportRequest) -> Result<(Position, Option<Position>), ErrorBody> {
    let from = first_position(request.from.as_ref())?;
    let to = request.to.as_ref().map(cursor_position).transpose()?;
    if let Some(to) = to
        && to < from
    {
        return Err(ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!("the range ends before it begins: --to {} is before --from {}", cursor(to), cursor(from)),
        ));
    }
    Ok((from, to))
}

/// `export`: record lines from `from` to `to`, then the summary; an error line if the daemon
/// stops or the store fails meanwhile (the client then knows the export is incomplete).
pub(super) async fn export(context: &Context, lines: &mut Lines, request: ExportRequest) -> io::Result<()> {
    let (from, to) = match range(&request) {
        Ok(range) => range,
        Err(error) => return lines.reply(Reply::error(error)).await,
    };
    let mut after = Position::new(from.get() - 1);
    let mut end = None;
    let mut summary = ExportSummary { events: 0, first: None, last: None, next: cursor(from) };
    loop {
        if context.shutdown.is_cancelled() {
            let stopping = ErrorBody::new(
                ErrorCode::Unavailable,
                "the daemon is shutting down; the export is incomplete",
            );
            return lines.reply(Reply::error(stopping)).await;
        }
        let piece = match context.readers.read_bulk(move |reads| read_piece(reads, after, end, to)).await {
            Ok(piece) => piece,
            Err(error) => return lines.reply(Reply::error(read_error_body(&error))).await,
        };
        lines.write_piece(&piece.text).await?;
        if summary.first.is_none() {
            summary.first = piece.first.map(cursor);
        }
        summary.events += piece.events;
        after = piece.last;
        end = Some(piece.end);
        if piece.at_end {
            break;
        }
    }
    if summary.events > 0 {
        summary.last = Some(cursor(after));
    }
    summary.next = cursor(after.next());
    lines.reply(Reply::data(summary)).await
}

#[cfg(test)]
mod tests {
    use orders_shared::protocol::ExportedEvent;

    use super::*;
    use crate::testing::Db;

    /// Every record line of an export from `from` to `to`, piece after piece, as written.
    fn export_text(db: &Db, from: i64, to: Option<i64>) -> (String, usize) {
        let (mut after, mut end, mut text, mut pieces) = (Position::new(from - 1), None, Vec::new(), 0);
        let to = to.map(Position::new);
        loop {
            let piece = db.read(|reads| read_piece(reads, after, end, to));
            assert!(piece.text.len() < WRITE_CHUNK + 4096, "a piece is bounded: {}", piece.text.len());
            text.extend_from_slice(&piece.text);
            pieces += 1;
            (after, end) = (piece.last, Some(piece.end));
            if piece.at_end {
                return (String::from_utf8(text).expect("utf-8"), pieces);
            }
        }
    }

    #[test]
    fn an_export_in_pieces_is_every_event_in_order_as_reply_lines() {
        let mut db = Db::new();
        for n in 0..600 {
            let order = db.create(2 + n % 2);
            db.decide(order);
        }
        let head = db.read(|reads| reads.counts()).head.get();
        let (text, pieces) = export_text(&db, 1, None);
        assert!(pieces > 2, "{pieces} pieces");
        let positions: Vec<i64> = text
            .lines()
            .map(|line| match serde_json::from_str::<Reply>(line).expect("a reply line") {
                Reply::Record(record) => {
                    serde_json::from_str::<ExportedEvent>(record.get()).expect("a record").position
                }
                other => panic!("not a record: {other:?}"),
            })
            .collect();
        assert_eq!(positions, (1..=head).collect::<Vec<_>>());

        let (part, _) = export_text(&db, 7, Some(9));
        assert_eq!(part.lines().count(), 3, "from and to are both included");
        let (beyond, _) = export_text(&db, head + 1, None);
        assert!(beyond.is_empty());
    }

    #[test]
    fn a_range_that_ends_before_it_begins_is_refused() {
        let request = |from: &str, to: &str| ExportRequest {
            from: Some(from.parse().expect("cursor")),
            to: Some(to.parse().expect("cursor")),
        };
        assert!(range(&request("5", "5")).is_ok());
        let error = range(&request("5", "4")).expect_err("backwards");
        assert_eq!(error.code, ErrorCode::InvalidRequest);
        assert!(error.message.contains("before --from 5"), "{}", error.message);
        assert!(range(&request("0", "4")).is_err(), "no store gives out cursor 0");
    }
}
