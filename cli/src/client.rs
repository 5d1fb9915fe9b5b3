//! The socket client: one connection, one request line, one reply line (or a stream of them).

use std::io;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use interprocess::local_socket::tokio::Stream;
use interprocess::local_socket::tokio::prelude::*;
use interprocess::local_socket::{GenericFilePath, ToFsName};
use orders_shared::PROTOCOL_VERSION;
use orders_shared::protocol::{Envelope, Reply, Request, WaitRequest};
use serde::de::DeserializeOwned;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Framed};

use crate::failure::{Exit, Failure};

/// The longest reply line read (a page of 10,000 orders is about 2 MiB).
const MAX_REPLY_BYTES: usize = 256 << 20;

pub struct Client {
    lines: Framed<Stream, AnyDelimiterCodec>,
    /// A request that could not be written because the daemon had closed the connection. Its
    /// reason may still be waiting to be read (a refused connection is told why, then closed).
    unsent: Option<io::Error>,
}

impl Client {
    /// Connects to a daemon's socket; `NotFound` or `ConnectionRefused` mean none is running.
    /// The daemon must run as this user: a socket in a shared place (the `/tmp` fallback) could
    /// otherwise be answered by another user's impostor.
    pub async fn connect(socket: &Path) -> io::Result<Client> {
        let name = socket.to_fs_name::<GenericFilePath>()?;
        let stream = Stream::connect(name).await?;
        let own = rustix::process::geteuid().as_raw();
        match stream.peer_creds()?.euid() {
            Some(uid) if uid == own => {}
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "{} is served by {}, not by you (uid {own}); refusing to talk to it",
                        socket.display(),
                        other.map_or("an unknown user".to_owned(), |uid| format!("uid {uid}"))
                    ),
                ));
            }
        }
        Ok(Client {
            unsent: None,
            lines: Framed::new(
                stream,
                AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), b"\n".to_vec(), MAX_REPLY_BYTES),
            ),
        })
    }

    /// Sends one request.
    pub async fn send(&mut self, request: &Request) -> io::Result<()> {
        let line =
            serde_json::to_string(&Envelope { v: PROTOCOL_VERSION, request }).map_err(io::Error::other)?;
        match self.lines.send(line).await.map_err(codec_error) {
            Err(error)
                if matches!(error.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset) =>
            {
                self.unsent = Some(error);
                Ok(())
            }
            sent => sent,
        }
    }

    /// Reads the next reply line; `None` when the daemon closed the connection.
    pub async fn receive(&mut self) -> io::Result<Option<Reply>> {
        match self.lines.next().await {
            None => self.unsent.take().map_or(Ok(None), Err),
            Some(Err(error)) => Err(codec_error(error)),
            Some(Ok(line)) => serde_json::from_slice(&line)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("unreadable reply: {e}"))),
        }
    }

    /// Sends a request and reads its reply's data as `T`. A daemon that does not answer in
    /// time (stopped, or wedged) is a failure, not a hang.
    pub async fn call<T: DeserializeOwned>(&mut self, request: &Request) -> Result<T, Failure> {
        let patience = match request {
            // The daemon answers a wait by its own deadline.
            Request::Wait(wait) => {
                Duration::from_millis(wait.timeout_ms.unwrap_or(WaitRequest::DEFAULT_TIMEOUT_MS))
                    + REPLY_TIMEOUT
            }
            _ => REPLY_TIMEOUT,
        };
        self.call_within(request, patience).await
    }

    /// Like [`call`](Self::call), with a given patience.
    pub async fn call_within<T: DeserializeOwned>(
        &mut self,
        request: &Request,
        patience: Duration,
    ) -> Result<T, Failure> {
        let exchange = async {
            self.send(request).await.map_err(lost)?;
            self.receive().await.map_err(lost)?.ok_or_else(|| lost(io::ErrorKind::UnexpectedEof.into()))
        };
        let reply = tokio::time::timeout(patience, exchange).await.map_err(|_| no_answer(patience))??;
        data(reply)
    }
}

/// The data of a successful reply, or the daemon's error as a failure.
pub fn data<T: DeserializeOwned>(reply: Reply) -> Result<T, Failure> {
    if let Some(error) = reply.error {
        return Err(error.into());
    }
    let text = reply.data.as_deref().map_or("null", |data| data.get());
    serde_json::from_str(text)
        .map_err(|e| Failure::new(Exit::Failure, format!("unexpected reply from the daemon: {e}")))
}

/// How long a request may wait for its reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The daemon took the connection but never answered.
pub fn no_answer(patience: Duration) -> Failure {
    Failure::new(Exit::Unavailable, format!("the daemon did not answer within {patience:?}")).with_hint(
        "check it with `orders daemon status`; `orders daemon restart` replaces a daemon that is stuck",
    )
}

/// The connection broke mid-request.
pub fn lost(error: io::Error) -> Failure {
    Failure::new(Exit::Unavailable, format!("lost the connection to the daemon: {error}"))
        .with_hint("the command may or may not have been carried out; check with `orders list`")
}

fn codec_error(error: AnyDelimiterCodecError) -> io::Error {
    match error {
        AnyDelimiterCodecError::Io(error) => error,
        AnyDelimiterCodecError::MaxChunkLengthExceeded => {
            io::Error::new(io::ErrorKind::InvalidData, "the daemon's reply is too long")
        }
    }
}
