//! One client's connection: request lines in, replies out in bounded pieces.
//!
//! What the daemon holds for a client that does not read its replies is bounded (issue 11):
//!
//! - a reply goes to the socket in pieces of at most [`WRITE_CHUNK`] bytes, and each piece must
//!   be taken by the client within the drain timeout ([`DEFAULT_DRAIN_TIMEOUT`]), or the
//!   connection is dropped and its memory freed;
//! - a reply built whole that is longer than a piece (a `list` of thousands of orders) is held
//!   only within [`REPLY_BUDGET`], shared by all connections; past it the request is answered
//!   `busy` instead;
//! - an `events` page, the largest reply, is read and written a piece at a time (see
//!   `server::events_page`), so it never needs the budget.
//!
//! - a request line is buffered past [`FREE_REQUEST_BYTES`] only within a budget shared by all
//!   connections ([`REQUEST_BUDGET_BYTES`]); past it the request is answered `busy`;
//! - a `wait` whose client hangs up is abandoned at once ([`Lines::until_gone`]).
//!
//! So a client that never reads holds at most about one piece in the daemon, and all of them
//! together at most the budget beside one piece each.
//!
//! A refused connection (another uid, or past the connection limit) is told why, then lingers a
//! moment draining what the client sent ([`REFUSAL_LINGER`]): a client writes its request before
//! it reads, and that write must not meet a closed socket (`EPIPE`) before the refusal is read.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use orders_shared::protocol::{ErrorBody, ErrorCode, MAX_REQUEST_BYTES, Reply};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};
use tokio_util::bytes::{Bytes, BytesMut};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder, FramedRead};
use tokio_util::sync::CancellationToken;

/// The most reply bytes handed to the socket at once, and so about the most a connection whose
/// client does not read holds in the daemon (an `events` piece may pass it by one event).
pub const WRITE_CHUNK: usize = 64 << 10;

/// The most bytes of replies longer than [`WRITE_CHUNK`] held at once, all connections together.
pub const REPLY_BUDGET: usize = 16 << 20;

/// How long a piece of a reply may wait for the client to take it, by default.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a reply may wait for a client that does not read, once the daemon is stopping.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// How long a refused connection stays open, reading what its client sent, after the refusal.
pub const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// The most bytes a refused connection reads before it closes (one request of the largest size).
const REFUSAL_DRAIN_BYTES: usize = MAX_REQUEST_BYTES + 1;

/// The most refused connections lingering at once; past it a refusal closes at once.
pub const MAX_LINGERING: usize = 64;

/// The most bytes a connection may buffer of its requests without a share of [`REQUEST_BUDGET`].
pub const FREE_REQUEST_BYTES: usize = 16 << 10;

/// The most bytes of request buffers past [`FREE_REQUEST_BYTES`], all connections together.
pub const REQUEST_BUDGET_BYTES: usize = 32 << 20;

/// The request-buffer budget, shared by every connection of the process (it bounds the
/// process's memory, whatever the number of clients).
static REQUEST_BUDGET: Semaphore = Semaphore::const_new(REQUEST_BUDGET_BYTES);

/// Request lines, each at most [`MAX_REQUEST_BYTES`], read into a buffer that grows past
/// [`FREE_REQUEST_BYTES`] only within [`REQUEST_BUDGET`] (issue 11, second round: 1,000 clients
/// that each sent most of a line and no newline held a gigabyte). Once the buffer is small again
/// it is replaced by a small one, so that its memory goes back.
struct RequestCodec {
    lines: AnyDelimiterCodec,
    /// The share of the budget held for the buffer's capacity past the free bytes.
    held: Option<SemaphorePermit<'static>>,
    /// The buffer outgrew its free bytes and the budget had no room: the connection ends.
    over_budget: bool,
}

impl RequestCodec {
    fn new() -> RequestCodec {
        let lines = AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_REQUEST_BYTES);
        RequestCodec { lines, held: None, over_budget: false }
    }

    /// Holds a share of the budget as large as the buffer, if it is past the free bytes.
    fn hold(&mut self, buf: &BytesMut) -> Result<(), AnyDelimiterCodecError> {
        let needed = if buf.capacity() > FREE_REQUEST_BYTES { buf.capacity() } else { 0 };
        let held = self.held.as_ref().map_or(0, SemaphorePermit::num_permits);
        if needed <= held {
            return Ok(());
        }
        let more =
            u32::try_from(needed - held).ok().and_then(|more| REQUEST_BUDGET.try_acquire_many(more).ok());
        let Some(more) = more else {
            self.over_budget = true;
            return Err(AnyDelimiterCodecError::Io(io::Error::other("the request budget is spent")));
        };
        match &mut self.held {
            Some(held) => held.merge(more),
            None => self.held = Some(more),
        }
        Ok(())
    }

    /// A buffer back within the free bytes is replaced by a small one, and its share returned.
    fn release(&mut self, buf: &mut BytesMut) {
        if self.held.is_some() && buf.len() <= FREE_REQUEST_BYTES {
            let mut small = BytesMut::with_capacity(FREE_REQUEST_BYTES / 2);
            small.extend_from_slice(buf);
            *buf = small;
            self.held = None;
        }
    }
}

impl Decoder for RequestCodec {
    type Item = Bytes;
    type Error = AnyDelimiterCodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, AnyDelimiterCodecError> {
        self.hold(buf)?;
        let line = self.lines.decode(buf);
        self.release(buf);
        line
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, AnyDelimiterCodecError> {
        self.hold(buf)?;
        let line = self.lines.decode_eof(buf);
        self.release(buf);
        line
    }
}

/// One client's connection.
pub struct Lines {
    framed: FramedRead<Stream, RequestCodec>,
    /// A reply blocked by a client that stopped reading must not hold up the daemon's shutdown.
    shutdown: CancellationToken,
    /// How long one piece of a reply may wait for the client to take it.
    drain_timeout: Duration,
    /// Bytes of long replies held across all connections ([`REPLY_BUDGET`] permits).
    budget: Arc<Semaphore>,
    /// What the client sent while a request was being answered (see [`Lines::until_gone`]),
    /// handed out by the next [`Lines::next`].
    early: Option<Option<Result<Bytes, AnyDelimiterCodecError>>>,
}

impl Lines {
    pub fn new(
        stream: Stream,
        shutdown: CancellationToken,
        drain_timeout: Duration,
        budget: Arc<Semaphore>,
    ) -> Lines {
        Lines {
            framed: FramedRead::new(stream, RequestCodec::new()),
            shutdown,
            drain_timeout,
            budget,
            early: None,
        }
    }

    /// The connecting process's effective uid.
    pub fn peer_uid(&self) -> Option<u32> {
        self.framed.get_ref().peer_creds().ok().and_then(|creds| creds.euid())
    }

    /// The next request line.
    pub async fn next(&mut self) -> Option<Result<Bytes, AnyDelimiterCodecError>> {
        let next = match self.early.take() {
            Some(early) => early,
            None => self.framed.next().await,
        };
        if matches!(next, Some(Err(AnyDelimiterCodecError::Io(_)))) && self.framed.decoder().over_budget {
            tracing::warn!("answered busy: too many long requests are being read");
            let busy = ErrorBody::new(
                ErrorCode::Busy,
                "the daemon is reading too many long requests at once; retry shortly",
            );
            // The connection ends here: the rest of the request is not read.
            let _ = self.write_piece(Reply::error(busy).to_line().as_bytes()).await;
            return None;
        }
        next
    }

    /// Resolves once the client has hung up (or its connection failed), for a request that takes
    /// long to answer (`wait`): the connection, and its slot, are freed at once rather than when
    /// the answer comes (issue 11, second round). A line the client sends meanwhile is kept for
    /// [`next`](Self::next); past it, the client is taken to be there.
    pub async fn until_gone(&mut self) {
        if self.early.is_none() {
            let incoming = self.framed.next().await;
            let gone = matches!(incoming, None | Some(Err(AnyDelimiterCodecError::Io(_))));
            self.early = Some(incoming);
            if gone {
                return;
            }
        }
        std::future::pending().await
    }

    /// Writes one reply line. A long one is held only within the daemon-wide budget; without
    /// room in it, the client is told `busy` instead.
    pub async fn reply(&mut self, reply: Reply) -> io::Result<()> {
        // The data is most of a long reply: room is sought before the line is made from it.
        let data = match reply {
            Reply::Data(data) if data.get().len() + 64 > WRITE_CHUNK => data,
            reply => return self.write_piece(reply.to_line().as_bytes()).await,
        };
        let size = data.get().len();
        let held = u32::try_from(size)
            .ok()
            .and_then(|bytes| Arc::clone(&self.budget).try_acquire_many_owned(bytes).ok());
        let Some(_held): Option<OwnedSemaphorePermit> = held else {
            tracing::warn!(bytes = size, "answered busy: too many long replies wait for their readers");
            drop(data);
            let busy = ErrorBody::new(
                ErrorCode::Busy,
                "the daemon holds too many long replies for clients that do not read them; retry shortly",
            );
            return self.write_piece(Reply::error(busy).to_line().as_bytes()).await;
        };
        // Written from the data itself, without a copy: `{"ok":true,"data":...}`, as `to_line`.
        self.write_piece(b"{\"ok\":true,\"data\":").await?;
        for piece in data.get().as_bytes().chunks(WRITE_CHUNK) {
            self.write_piece(piece).await?;
        }
        self.write_piece(b"}\n").await
    }

    /// Writes bytes of a reply (at most about [`WRITE_CHUNK`]): the client must take them within
    /// the drain timeout, or within a short grace once the daemon is stopping.
    pub async fn write_piece(&mut self, piece: &[u8]) -> io::Result<()> {
        if piece.is_empty() {
            return Ok(());
        }
        let drain_timeout = self.drain_timeout;
        let shutdown = self.shutdown.clone();
        let stream = self.framed.get_mut();
        let stalled = tokio::select! {
            written = tokio::time::timeout(drain_timeout, stream.write_all(piece)) => match written {
                Ok(written) => return written,
                Err(_) => format!("it took nothing for {drain_timeout:?}"),
            },
            () = async { shutdown.cancelled().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
                "the daemon is stopping".to_owned()
            }
        };
        tracing::warn!("dropped a connection whose client does not read its replies: {stalled}");
        Err(io::Error::new(io::ErrorKind::TimedOut, "the client does not read its replies"))
    }

    /// Tells a refused client why and closes. With `linger`, the connection first stays open a
    /// moment, its write side shut, reading and discarding what the client sends, so that the
    /// client's request is written whole and its refusal is there to read.
    pub async fn refuse(mut self, refusal: Reply, linger: Option<OwnedSemaphorePermit>) -> io::Result<()> {
        let told = async {
            self.write_piece(refusal.to_line().as_bytes()).await?;
            if linger.is_none() {
                return Ok(());
            }
            let stream = self.framed.get_mut();
            let Stream::UdSocket(socket) = &*stream;
            // The client reads its refusal, then the end of the stream.
            rustix::net::shutdown(socket, rustix::net::Shutdown::Write)?;
            let mut sink = [0_u8; 4096];
            let mut drained = 0;
            while drained < REFUSAL_DRAIN_BYTES {
                match stream.read(&mut sink).await? {
                    0 => break,
                    read => drained += read,
                }
            }
            Ok(())
        };
        // The client that neither writes nor hangs up is not waited for long.
        tokio::time::timeout(REFUSAL_LINGER, told).await.unwrap_or(Ok(()))
    }
}
