//! Request bodies, read only once the request is authorised, and the memory they may take.
//!
//! The listener hands the pipeline the body unread ([`RequestBody::Unread`]); identity, routing,
//! grant and rate limit decide from the request head alone, and only then does the
//! [`crate::layers::read_body`] layer read it — within a per-request cap and a gateway-wide
//! [`BodyBudget`] of bytes held in memory, so clients (anonymous ones on the open-data listener
//! included) cannot grow the gateway's memory beyond the budget however many of them send.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's body: not read yet, or read in full.
pub enum RequestBody {
    Unread(UnsyncBoxBody<Bytes, BoxError>),
    Read(Bytes),
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RequestBody::Unread(_) => f.write_str("RequestBody::Unread"),
            RequestBody::Read(bytes) => write!(f, "RequestBody::Read({} bytes)", bytes.len()),
        }
    }
}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody::Read(bytes)
    }
}

impl RequestBody {
    pub fn unread<B>(body: B) -> Self
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody::Unread(body.map_err(Into::into).boxed_unsync())
    }

    pub fn empty() -> Self {
        RequestBody::Read(Bytes::new())
    }
}

/// Bytes of request and response bodies held in memory, gateway-wide. A body takes its bytes
/// from the budget as it is read and gives them back when its answer has been written.
#[derive(Clone, Debug)]
pub struct BodyBudget {
    semaphore: Arc<Semaphore>,
    total: usize,
}

/// Bytes taken from the budget; given back on drop.
#[derive(Debug, Default)]
pub struct BodyPermit(Option<OwnedSemaphorePermit>);

impl BodyPermit {
    fn merge(&mut self, other: OwnedSemaphorePermit) {
        match &mut self.0 {
            Some(permit) => permit.merge(other),
            None => self.0 = Some(other),
        }
    }

    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, OwnedSemaphorePermit::num_permits)
    }
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the body exceeds {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the body did not arrive within {0:?}")]
    TimedOut(Duration),
    #[error("the gateway has no memory left for bodies right now")]
    Busy,
    #[error("the body could not be read: {0}")]
    Broken(BoxError),
}

impl From<BodyError> for crate::problem::Problem {
    fn from(error: BodyError) -> Self {
        use crate::problem::Problem;
        match error {
            BodyError::TooLarge { limit } => Problem::BodyTooLarge { limit },
            BodyError::TimedOut(timeout) => Problem::BodyTimeout(timeout),
            BodyError::Busy => {
                Problem::Busy("the gateway holds as many request bodies as its memory allows; retry shortly".to_owned())
            }
            BodyError::Broken(error) => Problem::BodyBroken(error.to_string()),
        }
    }
}

impl BodyBudget {
    pub fn new(total: usize) -> Self {
        let total = total.clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget { semaphore: Arc::new(Semaphore::new(total)), total }
    }

    /// Bytes not taken now.
    pub fn available(&self) -> usize {
        self.semaphore.available_permits()
    }

    /// Takes `bytes` into `permit`, waiting for other bodies to finish, until `deadline`.
    async fn take(
        &self,
        permit: &mut BodyPermit,
        bytes: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(), BodyError> {
        let mut left = bytes;
        while left > 0 {
            // A chunk never takes more than the whole budget, nor more than acquire_many can count.
            let now = left.min(self.total).min(u32::MAX as usize);
            let acquire = self.semaphore.clone().acquire_many_owned(now as u32);
            match tokio::time::timeout_at(deadline, acquire).await {
                Ok(Ok(taken)) => permit.merge(taken),
                _ => return Err(BodyError::Busy),
            }
            left -= now;
        }
        Ok(())
    }

    /// Reads `body` in full: at most `limit` bytes, within `timeout`, its bytes taken from the
    /// budget. A declared length above `limit` is refused before anything is read.
    pub async fn read<B>(&self, body: B, limit: usize, timeout: Duration) -> Result<(Bytes, BodyPermit), BodyError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        if body.size_hint().lower() > limit as u64 {
            return Err(BodyError::TooLarge { limit });
        }
        // Nothing to read (a GET's, or an answer of `Content-Length: 0`): no deadline to set,
        // no bytes to take, no buffer.
        if body.is_end_stream() {
            return Ok((Bytes::new(), BodyPermit::default()));
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut permit = BodyPermit::default();
        // A declared length is taken at once: bodies taking their bytes chunk by chunk could
        // each hold part of the budget and all wait for the rest. The semaphore is fair (FIFO).
        let declared = body.size_hint().exact().map(|len| len as usize);
        if let Some(len) = declared {
            self.take(&mut permit, len, deadline).await?;
        }
        let mut read = bytes::BytesMut::with_capacity(declared.unwrap_or(0));
        let mut body = std::pin::pin!(body);
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err(BodyError::TimedOut(timeout)),
                Ok(None) => break,
                Ok(Some(Err(error))) => return Err(BodyError::Broken(error.into())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else { continue };
            if read.len() + data.len() > limit {
                return Err(BodyError::TooLarge { limit });
            }
            let missing = (read.len() + data.len()).saturating_sub(permit.bytes());
            if missing > 0 {
                self.take(&mut permit, missing, deadline).await?;
            }
            read.extend_from_slice(&data);
        }
        Ok((read.freeze(), permit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    #[tokio::test]
    async fn bodies_take_from_the_budget_until_dropped_and_respect_their_cap() {
        let budget = BodyBudget::new(10);
        let (bytes, permit) =
            budget.read(Full::new(Bytes::from_static(b"123456")), 8, Duration::from_secs(1)).await.unwrap();
        assert_eq!((bytes.as_ref(), permit.bytes(), budget.available()), (&b"123456"[..], 6, 4));
        // Another body of 6 waits for the first one's bytes, and gives up at its deadline.
        let busy = budget.read(Full::new(Bytes::from_static(b"abcdef")), 8, Duration::from_millis(100)).await;
        assert!(matches!(busy, Err(BodyError::Busy)), "{busy:?}");
        drop(permit);
        assert_eq!(budget.available(), 10);
        let (_, second) =
            budget.read(Full::new(Bytes::from_static(b"abcdef")), 8, Duration::from_millis(100)).await.unwrap();
        assert_eq!(second.bytes(), 6);
        drop(second);

        let declared = budget.read(Full::new(Bytes::from_static(b"123456789")), 8, Duration::from_secs(1)).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 8 })));
        // A stream without a declared length is cut at the cap, and its bytes given back.
        let chunks = futures::stream::iter(
            [b"1234".as_slice(), b"5678", b"9"]
                .map(|c| Ok::<_, std::io::Error>(http_body::Frame::data(Bytes::from_static(c)))),
        );
        let streamed = budget.read(StreamBody::new(chunks), 8, Duration::from_secs(1)).await;
        assert!(matches!(streamed, Err(BodyError::TooLarge { limit: 8 })));
        assert_eq!(budget.available(), 10);
        // An empty body is read at once, and takes nothing.
        let (empty, permit) = budget.read(Full::new(Bytes::new()), 8, Duration::from_secs(1)).await.unwrap();
        assert_eq!((empty.len(), permit.bytes(), budget.available()), (0, 0, 10));
        // A body that never ends times out.
        let (_sender, never) = futures::channel::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
        let slow = budget.read(StreamBody::new(never), 8, Duration::from_millis(50)).await;
        assert!(matches!(slow, Err(BodyError::TimedOut(_))));
    }
}
