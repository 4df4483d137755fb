//! The one path by which a request body is read: against a memory budget,
//! a share of it per client, and a deadline far shorter than the request's.
//!
//! A handler decides everything it can from the request's head first (who
//! the caller is, whether it may write at all, whether it is over its rate,
//! whether the declared length fits) and only then reads the body, here.
//! [`Budget::read`] then
//! 1. refuses a declared `Content-Length` over the route's maximum before a
//!    byte is read ([`BodyError::TooLarge`]);
//! 2. reserves the declared length (or, for a chunked body, room as it
//!    arrives) from a budget of bytes in flight shared by every request of
//!    its class, waiting at most [`BodyLimits::wait`] for room
//!    ([`BodyError::Busy`]), and never more than
//!    [`BodyLimits::per_client_bytes`] for one client address
//!    ([`BodyError::ClientShare`]);
//! 3. reads it within [`BodyLimits::grace`] plus its length at
//!    [`BodyLimits::min_bytes_per_second`] ([`BodyError::Slow`]): a client
//!    that trickles its body cannot hold its reservation for the request's
//!    whole time.
//!
//! The reservation is held by the returned [`Held`] for as long as the bytes
//! are, so the budget bounds the bodies in memory, not only those being read.

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Room reserved at a time for a body sent without a `Content-Length`.
const CHUNKED_STEP: usize = 64 << 10;

/// The bounds of one class of bodies (say, those of callers with no token).
#[derive(Clone, Copy, Debug)]
pub struct BodyLimits {
    /// Bytes of bodies of this class held in memory at once, in total.
    pub budget_bytes: usize,
    /// Bytes of them one client address may hold at once.
    pub per_client_bytes: usize,
    /// Longest wait for room in the budget before the request is refused.
    pub wait: Duration,
    /// Time to read any body, before its length counts.
    pub grace: Duration,
    /// The slowest transfer accepted: a body of `n` bytes must arrive within
    /// `grace + n / min_bytes_per_second`.
    pub min_bytes_per_second: u64,
}

impl BodyLimits {
    /// The time allowed to read a body of `len` bytes.
    pub fn deadline(&self, len: usize) -> Duration {
        self.grace + Duration::from_secs_f64(len as f64 / self.min_bytes_per_second.max(1) as f64)
    }
}

/// Why a body was not read. Each crate maps it into its own error; the
/// HTTP status of each is [`BodyError::status`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Declared or sent longer than the route takes.
    TooLarge {
        /// The route's maximum.
        max: usize,
        /// What was declared, or read when it went past.
        seen: usize,
    },
    /// A `Content-Length` that is not a number.
    BadLength(String),
    /// The budget had no room within the wait: try again shortly.
    Busy {
        /// How long the request waited.
        waited: Duration,
    },
    /// This client already holds its share of the budget.
    ClientShare {
        /// The share.
        bytes: usize,
    },
    /// The body did not arrive within its deadline.
    Slow {
        /// The deadline.
        deadline: Duration,
        /// Bytes that had arrived.
        read: usize,
    },
    /// The connection failed while the body was read.
    Read(String),
}

impl BodyError {
    /// The HTTP status for it (one exhaustive match).
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode as S;
        match self {
            Self::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            Self::BadLength(_) | Self::Read(_) => S::BAD_REQUEST,
            Self::Busy { .. } => S::SERVICE_UNAVAILABLE,
            Self::ClientShare { .. } => S::TOO_MANY_REQUESTS,
            Self::Slow { .. } => S::REQUEST_TIMEOUT,
        }
    }

    /// A stable code for the error body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "body-too-large",
            Self::BadLength(_) => "bad-content-length",
            Self::Busy { .. } => "bodies-busy",
            Self::ClientShare { .. } => "client-share",
            Self::Slow { .. } => "body-too-slow",
            Self::Read(_) => "bad-body",
        }
    }

    /// Seconds a client should wait before trying again, where that helps.
    pub fn retry_after(&self) -> Option<u64> {
        matches!(self, Self::Busy { .. } | Self::ClientShare { .. }).then_some(1)
    }
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { max, seen } => {
                write!(f, "the body is {seen} bytes or more; this route takes at most {max}")
            }
            Self::BadLength(v) => write!(f, "Content-Length {v:?} is not a length"),
            Self::Busy { waited } => write!(
                f,
                "too many request bodies are in flight (waited {} ms for room); retry",
                waited.as_millis()
            ),
            Self::ClientShare { bytes } => {
                write!(
                    f,
                    "this client already has {bytes} bytes of request bodies in flight; retry"
                )
            }
            Self::Slow { deadline, read } => write!(
                f,
                "the body did not arrive within {} ms ({read} bytes read)",
                deadline.as_millis()
            ),
            Self::Read(e) => write!(f, "reading the body: {e}"),
        }
    }
}

impl std::error::Error for BodyError {}

/// A budget of bytes for one class of request bodies.
pub struct Budget {
    limits: BodyLimits,
    room: Arc<Semaphore>,
    clients: Mutex<HashMap<IpAddr, usize>>,
}

/// A body read within its budget; the room it takes is given back when this
/// is dropped.
pub struct Held {
    bytes: Bytes,
    _reserved: Reservation,
}

impl Held {
    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

impl std::ops::Deref for Held {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Room taken in the budget and in one client's share.
struct Reservation {
    budget: Arc<Budget>,
    client: IpAddr,
    bytes: usize,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        drop(self.permit.take());
        if self.bytes == 0 {
            return;
        }
        if let Ok(mut c) = self.budget.clients.lock() {
            if let Some(held) = c.get_mut(&self.client) {
                *held = held.saturating_sub(self.bytes);
                if *held == 0 {
                    c.remove(&self.client);
                }
            }
        }
    }
}

impl Reservation {
    /// Take `more` bytes: first from the client's share (refused at once
    /// when it is used up), then from the budget (waiting until `until`).
    async fn grow(&mut self, more: usize, until: tokio::time::Instant) -> Result<(), BodyError> {
        if more == 0 {
            return Ok(());
        }
        let b = Arc::clone(&self.budget);
        {
            let mut c = b
                .clients
                .lock()
                .map_err(|_| BodyError::Read("the budget's lock is poisoned".into()))?;
            let held = c.entry(self.client).or_default();
            if *held + more > b.limits.per_client_bytes {
                let bytes = *held;
                if *held == 0 {
                    c.remove(&self.client);
                }
                return Err(BodyError::ClientShare { bytes });
            }
            *held += more;
        }
        // From here the share is taken: a failure gives it back through Drop.
        self.bytes += more;
        let n = u32::try_from(more).map_err(|_| BodyError::TooLarge {
            max: u32::MAX as usize,
            seen: more,
        })?;
        let started = tokio::time::Instant::now();
        let permit = match tokio::time::timeout_at(until, Arc::clone(&b.room).acquire_many_owned(n)).await {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(BodyError::Read("the budget is closed".into())),
            Err(_) => {
                return Err(BodyError::Busy {
                    waited: started.elapsed(),
                })
            }
        };
        match &mut self.permit {
            Some(p) => p.merge(permit),
            None => self.permit = Some(permit),
        }
        Ok(())
    }
}

impl Budget {
    /// A budget with these limits.
    pub fn new(limits: BodyLimits) -> Arc<Self> {
        // The semaphore counts bytes; tokio caps its permits far above any budget here.
        let permits = limits.budget_bytes.min(Semaphore::MAX_PERMITS);
        Arc::new(Self {
            limits,
            room: Arc::new(Semaphore::new(permits)),
            clients: Mutex::new(HashMap::new()),
        })
    }

    /// Its limits.
    pub fn limits(&self) -> BodyLimits {
        self.limits
    }

    /// Bytes of bodies held now, in total.
    pub fn held_bytes(&self) -> usize {
        self.limits.budget_bytes.min(Semaphore::MAX_PERMITS) - self.room.available_permits()
    }

    /// The declared length of a request, refused when over `max`.
    pub fn declared(headers: &HeaderMap, max: usize) -> Result<Option<usize>, BodyError> {
        let Some(v) = headers.get(header::CONTENT_LENGTH) else {
            return Ok(None);
        };
        let s = v.to_str().unwrap_or("");
        let n: u64 = s.trim().parse().map_err(|_| BodyError::BadLength(s.to_owned()))?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > max {
            return Err(BodyError::TooLarge { max, seen: n });
        }
        Ok(Some(n))
    }

    /// Read `body` (of a request from `client` with these `headers`) of at
    /// most `max` bytes, within this budget and its deadline.
    pub async fn read(
        self: &Arc<Self>,
        client: IpAddr,
        headers: &HeaderMap,
        mut body: Body,
        max: usize,
    ) -> Result<Held, BodyError> {
        let declared = Self::declared(headers, max)?;
        let deadline = self.limits.deadline(declared.unwrap_or(max));
        let until = tokio::time::Instant::now() + deadline;
        let mut reserved = Reservation {
            budget: Arc::clone(self),
            client,
            bytes: 0,
            permit: None,
        };
        let first = declared.unwrap_or(CHUNKED_STEP.min(max));
        // The wait for room is part of the body's deadline, and no longer than `wait`.
        let room_by = until.min(tokio::time::Instant::now() + self.limits.wait);
        reserved.grow(first, room_by).await?;
        let mut buf = BytesMut::with_capacity(first);
        let read = async {
            while let Some(frame) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
                let Ok(data) = frame.into_data() else { continue };
                let len = buf.len() + data.len();
                if len > max || declared.is_some_and(|d| len > d) {
                    return Err(BodyError::TooLarge {
                        max: declared.unwrap_or(max),
                        seen: len,
                    });
                }
                if len > reserved.bytes {
                    let step = (len - reserved.bytes).max(CHUNKED_STEP).min(max - reserved.bytes);
                    reserved.grow(step, room_by.max(tokio::time::Instant::now())).await?;
                }
                buf.extend_from_slice(&data);
            }
            Ok(())
        };
        match tokio::time::timeout_at(until, read).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(BodyError::Slow {
                    deadline,
                    read: buf.len(),
                })
            }
        }
        Ok(Held {
            bytes: buf.freeze(),
            _reserved: reserved,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(budget: usize, per_client: usize) -> BodyLimits {
        BodyLimits {
            budget_bytes: budget,
            per_client_bytes: per_client,
            wait: Duration::from_millis(100),
            grace: Duration::from_millis(200),
            min_bytes_per_second: 1 << 20,
        }
    }

    fn headers(len: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, len.to_string().parse().unwrap());
        h
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

    #[tokio::test]
    async fn a_body_is_read_and_its_room_given_back() {
        let b = Budget::new(limits(1000, 1000));
        let held = b.read(A, &headers(5), Body::from("hello"), 100).await.unwrap();
        assert_eq!(&held[..], b"hello");
        assert_eq!(b.held_bytes(), 5);
        drop(held);
        assert_eq!(b.held_bytes(), 0);
        assert!(b.clients.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_declared_length_over_the_maximum_is_refused_unread() {
        let b = Budget::new(limits(1000, 1000));
        let e = b.read(A, &headers(101), Body::from("x"), 100).await.err().unwrap();
        assert_eq!(e, BodyError::TooLarge { max: 100, seen: 101 });
        assert_eq!(b.held_bytes(), 0);
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "lots".parse().unwrap());
        let e = b.read(A, &h, Body::from("x"), 100).await.err().unwrap();
        assert!(matches!(e, BodyError::BadLength(_)), "{e}");
    }

    #[tokio::test]
    async fn a_chunked_body_grows_its_room_and_stops_at_the_maximum() {
        let b = Budget::new(limits(1 << 20, 1 << 20));
        let big = vec![b'x'; 200_000];
        let held = b
            .read(A, &HeaderMap::new(), Body::from(big.clone()), 300_000)
            .await
            .unwrap();
        assert_eq!(held.len(), 200_000);
        assert!(b.held_bytes() >= 200_000);
        drop(held);
        let e = b
            .read(A, &HeaderMap::new(), Body::from(big), 100_000)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, BodyError::TooLarge { max: 100_000, .. }), "{e}");
        assert_eq!(b.held_bytes(), 0);
    }

    #[tokio::test]
    async fn one_client_holds_its_share_and_no_more_while_others_still_fit() {
        let b = Budget::new(limits(1000, 400));
        let first = b
            .read(A, &headers(300), Body::from(vec![0u8; 300]), 1000)
            .await
            .unwrap();
        let e = b
            .read(A, &headers(200), Body::from(vec![0u8; 200]), 1000)
            .await
            .err()
            .unwrap();
        assert_eq!(e, BodyError::ClientShare { bytes: 300 });
        let other = b
            .read(B, &headers(400), Body::from(vec![0u8; 400]), 1000)
            .await
            .unwrap();
        assert_eq!(b.held_bytes(), 700);
        drop((first, other));
        assert_eq!(b.held_bytes(), 0);
    }

    #[tokio::test]
    async fn a_full_budget_answers_busy_after_the_wait() {
        let b = Budget::new(limits(500, 500));
        let hold = b
            .read(A, &headers(400), Body::from(vec![0u8; 400]), 1000)
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let e = b
            .read(B, &headers(200), Body::from(vec![0u8; 200]), 1000)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, BodyError::Busy { .. }), "{e}");
        assert!(started.elapsed() >= Duration::from_millis(90));
        assert_eq!(b.held_bytes(), 400, "the refused request gave back its share");
        assert!(!b.clients.lock().unwrap().contains_key(&B));
        drop(hold);
    }

    #[tokio::test]
    async fn a_body_that_never_arrives_is_cut_off_at_its_deadline() {
        let b = Budget::new(limits(1000, 1000));
        let (mut tx, body) = {
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::io::Error>>(1);
            struct Rx(tokio::sync::mpsc::Receiver<Result<http_body::Frame<Bytes>, std::io::Error>>);
            impl http_body::Body for Rx {
                type Data = Bytes;
                type Error = std::io::Error;
                fn poll_frame(
                    mut self: Pin<&mut Self>,
                    cx: &mut std::task::Context<'_>,
                ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
                    self.0.poll_recv(cx)
                }
            }
            (tx, Body::new(Rx(rx)))
        };
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"ab"))))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let e = b.read(A, &headers(10), body, 100).await.err().unwrap();
        assert!(matches!(e, BodyError::Slow { read: 2, .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(b.held_bytes(), 0);
        let _ = &mut tx;
    }
}
