//! The `events` request: a page of the global log, or a follower's stream of it, read and
//! written a piece at a time (issue 11).
//!
//! A page of 10,000 events is megabytes of JSON. Built whole, it sat in the daemon for as long
//! as its client did not read it. Here each piece (at most [`PIECE_EVENTS`] events, cut at
//! [`WRITE_CHUNK`] bytes of text) is read with a reader of the pool, serialised on that reader's
//! thread and written before the next piece is read: a client that does not read holds one
//! piece, and holds no reader while it does not read.
//!
//! The pieces of a page stop at the head of the first piece's snapshot. The log only grows, one
//! writer commits it in position order, and a committed event never changes, so the pieces add
//! up to the page a single snapshot would give. The wire format is that of a page built whole.

use std::io;

use orders_shared::protocol::{Cursor, ErrorBody, ErrorCode, EventsRequest, Reply};
use serde::Serialize;
use tokio::sync::watch;

use super::context::Context;
use super::queries::{event_view, read_error_body};
use super::streams::wait_for_news;
use crate::connection::{Lines, WRITE_CHUNK};
use crate::store::{Position, Reads, StoreError};

/// The most events read for one piece.
pub const PIECE_EVENTS: u64 = 256;

/// How the events of a piece are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Inside a page's `events` array; `first` opens the page.
    Page { first: bool },
    /// One `{"ok":true,"event":...}` line each, for a follower.
    Lines,
}

/// A run of events, serialised.
#[derive(Debug)]
struct Piece {
    text: Vec<u8>,
    /// How many events `text` holds.
    events: u64,
    /// The position of the last of them (the position it started after, if none).
    last: Position,
    /// The head of the log the piece was read against.
    head: Position,
    /// No event up to `head` is left after `last`.
    at_end: bool,
}

/// Events after `after`, at most `most` and none past `upto` (the head of this snapshot when
/// `None`), serialised until the text reaches [`WRITE_CHUNK`]. A page's piece that ends the page
/// (`most` reached, or the end) carries the page's closing.
fn read_piece(
    reads: &mut dyn Reads,
    after: Position,
    upto: Option<Position>,
    most: u64,
    framing: Framing,
) -> Result<Piece, StoreError> {
    let asked = most.min(PIECE_EVENTS);
    // One snapshot for the events and the head.
    let (events, snapshot_head) = reads.events(after, usize::try_from(asked).unwrap_or(usize::MAX))?;
    let head = upto.unwrap_or(snapshot_head);
    let mut piece = Piece { text: Vec::new(), events: 0, last: after, head, at_end: false };
    if framing == (Framing::Page { first: true }) {
        piece.text.extend_from_slice(PAGE_OPENING);
    }
    for event in events.iter().take_while(|event| event.position <= head) {
        let view = event_view(event);
        match framing {
            Framing::Page { first } => {
                if piece.events > 0 || !first {
                    piece.text.push(b',');
                }
                write_json(&mut piece.text, &view);
            }
            Framing::Lines => {
                write_json(&mut piece.text, &Reply::event(view));
                piece.text.push(b'\n');
            }
        }
        piece.events += 1;
        piece.last = event.position;
        if piece.text.len() >= WRITE_CHUNK {
            break;
        }
    }
    let took_all = piece.events == events.len() as u64;
    piece.at_end = piece.last >= head || (took_all && (events.len() as u64) < asked);
    if matches!(framing, Framing::Page { .. }) && (piece.at_end || piece.events == most) {
        piece.text.extend_from_slice(page_closing(piece.last, head).as_bytes());
    }
    Ok(piece)
}

/// How every page reply begins: `{"ok":true,"data":{"events":[`, as `Reply::data(EventPage)`.
const PAGE_OPENING: &[u8] = b"{\"ok\":true,\"data\":{\"events\":[";

/// How a page reply ends: where to read on (after `last`, the page's last position) and the head.
fn page_closing(last: Position, head: Position) -> String {
    let next = serde_json::to_string(&crate::store::cursor(last.next())).expect("a cursor is a string");
    format!("],\"next\":{next},\"head\":{head}}}}}\n")
}

/// The position a request (`events`, `export`) starts at: its `from` cursor's, or the start of
/// the log.
pub(super) fn first_position(from: Option<&Cursor>) -> Result<Position, ErrorBody> {
    from.map_or(Ok(Position::START.next()), cursor_position)
}

/// The position of a cursor a client gave; one no store gave out is an invalid request.
pub(super) fn cursor_position(cursor: &Cursor) -> Result<Position, ErrorBody> {
    crate::store::position(cursor).ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::InvalidRequest,
            format!("invalid cursor '{cursor}': use one that `orders events` printed (its `cursor` field)"),
        )
    })
}

fn write_json(text: &mut Vec<u8>, value: &impl Serialize) {
    serde_json::to_writer(text, value).expect("events are plain serde structs");
}

/// `events`: a page of the log from `from` (inclusive), at most `limit` events.
pub(super) async fn events_page(
    context: &Context,
    lines: &mut Lines,
    request: EventsRequest,
) -> io::Result<()> {
    let mut after = match first_position(request.from.as_ref()) {
        Ok(from) => Position::new(from.get() - 1),
        Err(error) => return lines.reply(Reply::error(error)).await,
    };
    let mut left = request.limit.unwrap_or(EventsRequest::MAX_LIMIT).min(EventsRequest::MAX_LIMIT);
    // The head of the first piece's snapshot, once it is read.
    let mut upto = None;
    loop {
        let framing = Framing::Page { first: upto.is_none() };
        let read =
            context.readers.read_bulk(move |reads| read_piece(reads, after, upto, left, framing)).await;
        let piece = match read {
            Ok(piece) => piece,
            Err(error) if upto.is_none() => return lines.reply(Reply::error(read_error_body(&error))).await,
            // Half a page is written: the connection cannot carry an error reply any more.
            Err(error) => return Err(io::Error::other(format!("cannot read the rest of a page: {error}"))),
        };
        lines.write_piece(&piece.text).await?;
        left -= piece.events;
        if piece.at_end || left == 0 {
            return Ok(());
        }
        after = piece.last;
        upto = Some(piece.head);
    }
}

/// `events --follow`: the log from a position, then every new event as it is committed, until
/// the client leaves, the limit is reached or the daemon stops.
pub(super) async fn follow_events(
    context: &Context,
    lines: &mut Lines,
    request: EventsRequest,
) -> io::Result<()> {
    let mut head: watch::Receiver<Position> = context.head.clone();
    let mut after = match first_position(request.from.as_ref()) {
        Ok(from) => Position::new(from.get() - 1),
        Err(error) => return lines.reply(Reply::error(error)).await,
    };
    let mut left = request.limit;
    loop {
        if context.shutdown.is_cancelled() {
            return lines.reply(Reply::error(unavailable())).await;
        }
        head.borrow_and_update();
        let most = left.unwrap_or(u64::MAX);
        let read = context
            .readers
            .read_bulk(move |reads| read_piece(reads, after, None, most, Framing::Lines))
            .await;
        let piece = match read {
            Ok(piece) => piece,
            Err(error) => return lines.reply(Reply::error(read_error_body(&error))).await,
        };
        lines.write_piece(&piece.text).await?;
        after = piece.last;
        if let Some(left) = left.as_mut() {
            *left -= piece.events;
            if *left == 0 {
                let next = crate::store::cursor(after.next());
                return lines.reply(Reply::data(serde_json::json!({ "next": next }))).await;
            }
        }
        if !piece.at_end {
            continue;
        }
        if !wait_for_news(context, lines, &mut head).await? {
            return Ok(());
        }
    }
}

fn unavailable() -> ErrorBody {
    ErrorBody::new(ErrorCode::Unavailable, "the daemon is shutting down")
}

#[cfg(test)]
mod tests {
    use orders_shared::protocol::EventPage;

    use super::*;
    use crate::testing::Db;

    /// A log of `orders` orders, each created and its payment decided.
    fn log_of(orders: usize) -> Db {
        let mut db = Db::new();
        for n in 0..orders {
            let order = db.create(2 + n as i64 % 2);
            db.decide(order);
        }
        db
    }

    /// The pieces of a page, as the connection would write them.
    fn page_in_pieces(db: &Db, from: i64, limit: u64) -> (Vec<u8>, usize) {
        let (mut after, mut left, mut upto) = (Position::new(from - 1), limit, None);
        let mut text = Vec::new();
        let mut pieces = 0;
        loop {
            let framing = Framing::Page { first: upto.is_none() };
            let piece = db.read(|reads| read_piece(reads, after, upto, left, framing));
            assert!(piece.text.len() < WRITE_CHUNK + 4096, "a piece is bounded: {}", piece.text.len());
            text.extend_from_slice(&piece.text);
            pieces += 1;
            left -= piece.events;
            if piece.at_end || left == 0 {
                return (text, pieces);
            }
            (after, upto) = (piece.last, Some(piece.head));
        }
    }

    /// The page built whole, as the daemon wrote it before pages were streamed.
    fn page_whole(db: &Db, from: i64, limit: u64) -> Vec<u8> {
        let (events, head) = db.read(|reads| reads.events(Position::new(from - 1), limit as usize));
        let last = events.last().map_or(Position::new(from - 1), |last| last.position);
        let page = EventPage {
            events: events.iter().map(event_view).collect(),
            next: crate::store::cursor(last.next()),
            head: head.get(),
        };
        Reply::data(page).to_line().into_bytes()
    }

    #[test]
    fn a_page_in_pieces_is_byte_for_byte_the_page_built_whole() {
        let db = log_of(400);
        let head = db.read(|reads| reads.counts()).head.get();
        assert!(head > 1000, "enough events for several pieces: {head}");
        for (from, limit) in [(1, 10_000), (1, 1), (7, 300), (head - 3, 10), (head, 5), (head + 1, 5), (1, 0)]
        {
            let (pieces, count) = page_in_pieces(&db, from, limit);
            assert_eq!(
                String::from_utf8(pieces).expect("utf-8"),
                String::from_utf8(page_whole(&db, from, limit)).expect("utf-8"),
                "from {from}, limit {limit}"
            );
            if limit == 10_000 {
                assert!(count > 2, "{count} pieces");
            }
        }
    }

    #[test]
    fn a_followers_piece_is_the_event_lines() {
        let db = log_of(20);
        let piece = db.read(|reads| read_piece(reads, Position::new(3), None, 5, Framing::Lines));
        let (events, _) = db.read(|reads| reads.events(Position::new(3), 5));
        let expected: String = events.iter().map(|event| Reply::event(event_view(event)).to_line()).collect();
        assert_eq!(String::from_utf8(piece.text).expect("utf-8"), expected);
        assert_eq!((piece.events, piece.last, piece.at_end), (5, Position::new(8), false));
        let rest = db.read(|reads| read_piece(reads, Position::new(8), None, u64::MAX, Framing::Lines));
        assert!(rest.at_end, "the rest of a small log is one piece");
        assert_eq!(rest.last, rest.head);
    }
}
