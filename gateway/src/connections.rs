//! Bounded connections: caps per listener and per client address, every phase timed out, the
//! file-descriptor limit raised with a reserve kept, and counters of what was refused.
//!
//! A client that holds connections open without using them (idle after the handshake, slow
//! headers, an HTTP/2 connection with no stream) costs a file descriptor and buffers; without
//! limits, ~1,000 anonymous ones exhausted the descriptors and the mutual-TLS clients timed out.
//! Here each listener admits at most `max_connections`, and `max_per_address` from one IP
//! address; a connection over a cap is accepted and closed at once (so the kernel's backlog
//! never fills); a connection with no request in flight for `idle_timeout` is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::RefusalReason;

/// How many connections a listener admits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub max_per_address: usize,
}

/// File descriptors kept free beyond what the connection caps can take (the audit log, route
/// files, the API server watch, DNS, accept's own transient needs).
pub const FD_RESERVE: u64 = 256;

/// Raises the soft limit of open files to the hard limit and returns it (the current soft limit
/// if it cannot be raised).
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "the open-files limit could not be raised");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map(|(soft, _)| soft).unwrap_or(1024)
        }
    }
}

/// Fits the caps under `fd_limit`: each connection may hold two descriptors (its own and one to
/// the provider), plus [`FD_RESERVE`]. The open-data listener gives way first, so that the
/// mutual-TLS listener keeps its connections whatever anonymous clients do.
pub fn fit_to_fd_limit(fd_limit: u64, mutual: &mut ConnectionLimits, open: &mut ConnectionLimits) {
    let usable = (fd_limit.saturating_sub(FD_RESERVE) / 2) as usize;
    if mutual.max_connections + open.max_connections <= usable {
        return;
    }
    let before = (mutual.max_connections, open.max_connections);
    // The mutual-TLS listener keeps at least three quarters of what is usable.
    mutual.max_connections = mutual.max_connections.min(usable.saturating_sub(usable / 4).max(1));
    open.max_connections = open.max_connections.min(usable.saturating_sub(mutual.max_connections)).max(1);
    mutual.max_per_address = mutual.max_per_address.min(mutual.max_connections);
    open.max_per_address = open.max_per_address.min(open.max_connections);
    tracing::warn!(
        fd_limit,
        requested = ?before,
        mutual = mutual.max_connections,
        open_data = open.max_connections,
        "the open-files limit is too low for the connection caps: lowered"
    );
}

/// The connections a listener holds, in total and per client address.
#[derive(Debug)]
pub struct ConnectionGate {
    limits: ConnectionLimits,
    held: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// Why a connection was not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OverCap {
    Listener,
    Address,
}

/// An admitted connection's place; given back on drop.
#[derive(Debug)]
pub struct Admitted {
    gate: Arc<ConnectionGate>,
    address: IpAddr,
}

impl ConnectionGate {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(ConnectionGate { limits, held: Mutex::new((0, HashMap::new())) })
    }

    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, OverCap> {
        let mut held = self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (total, per_address) = &mut *held;
        if *total >= self.limits.max_connections {
            return Err(OverCap::Listener);
        }
        let from_address = per_address.entry(address).or_default();
        if *from_address >= self.limits.max_per_address {
            return Err(OverCap::Address);
        }
        *from_address += 1;
        *total += 1;
        Ok(Admitted { gate: self.clone(), address })
    }

    /// Connections held now.
    pub fn held(&self) -> usize {
        self.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).0
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut held = self.gate.held.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (total, per_address) = &mut *held;
        *total -= 1;
        if let Some(count) = per_address.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                per_address.remove(&self.address);
            }
        }
    }
}

/// Whether a connection is in use: its requests in flight, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `started` when a request last ended (or the connection started).
    last_ended_ms: AtomicU64,
}

/// A request in flight on a connection; ends on drop.
pub struct InFlight(Arc<Activity>);

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity { started: Instant::now(), in_flight: AtomicUsize::new(0), last_ended_ms: AtomicU64::new(0) })
    }

    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// How long the connection has had no request in flight (zero while one is).
    pub fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let ended = Duration::from_millis(self.last_ended_ms.load(Ordering::SeqCst));
        self.started.elapsed().saturating_sub(ended)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = u64::try_from(self.0.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.last_ended_ms.store(now, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What was refused before a request reached the pipeline (so the audit layer never saw it):
/// written to the audit log as a `refusals` record before each checkpoint.
#[derive(Debug, Default)]
pub struct RefusalCounters {
    pub handshakes_refused: AtomicU64,
    pub handshakes_timed_out: AtomicU64,
    pub over_listener_cap: AtomicU64,
    pub over_address_cap: AtomicU64,
    pub malformed_requests: AtomicU64,
    pub headers_timed_out: AtomicU64,
    pub idle_closed: AtomicU64,
}

impl RefusalCounters {
    pub fn count(&self, reason: RefusalReason) {
        let counter = match reason {
            RefusalReason::HandshakeRefused => &self.handshakes_refused,
            RefusalReason::HandshakeTimedOut => &self.handshakes_timed_out,
            RefusalReason::OverListenerCap => &self.over_listener_cap,
            RefusalReason::OverAddressCap => &self.over_address_cap,
            RefusalReason::MalformedRequest => &self.malformed_requests,
            RefusalReason::HeadersTimedOut => &self.headers_timed_out,
            RefusalReason::IdleClosed => &self.idle_closed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call, which start again from zero.
    pub fn take(&self) -> crate::audit::RefusalCounts {
        let take = |counter: &AtomicU64| counter.swap(0, Ordering::Relaxed);
        crate::audit::RefusalCounts {
            handshakes_refused: take(&self.handshakes_refused),
            handshakes_timed_out: take(&self.handshakes_timed_out),
            over_listener_cap: take(&self.over_listener_cap),
            over_address_cap: take(&self.over_address_cap),
            malformed_requests: take(&self.malformed_requests),
            headers_timed_out: take(&self.headers_timed_out),
            idle_closed: take(&self.idle_closed),
        }
    }

    /// Puts counts that could not be written back.
    pub fn restore(&self, counts: &crate::audit::RefusalCounts) {
        let add = |counter: &AtomicU64, n: u64| counter.fetch_add(n, Ordering::Relaxed);
        add(&self.handshakes_refused, counts.handshakes_refused);
        add(&self.handshakes_timed_out, counts.handshakes_timed_out);
        add(&self.over_listener_cap, counts.over_listener_cap);
        add(&self.over_address_cap, counts.over_address_cap);
        add(&self.malformed_requests, counts.malformed_requests);
        add(&self.headers_timed_out, counts.headers_timed_out);
        add(&self.idle_closed, counts.idle_closed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_per_listener_and_per_address_and_places_come_back() {
        let gate = ConnectionGate::new(ConnectionLimits { max_connections: 3, max_per_address: 2 });
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap(), "192.0.2.3".parse().unwrap());
        let first = gate.admit(a).unwrap();
        let _second = gate.admit(a).unwrap();
        assert_eq!(gate.admit(a).unwrap_err(), OverCap::Address);
        let _third = gate.admit(b).unwrap();
        assert_eq!(gate.admit(c).unwrap_err(), OverCap::Listener);
        drop(first);
        assert_eq!(gate.held(), 2);
        let _again = gate.admit(a).unwrap();
    }

    #[test]
    fn the_open_data_listener_gives_way_to_the_fd_limit_first() {
        let mut mutual = ConnectionLimits { max_connections: 1024, max_per_address: 128 };
        let mut open = ConnectionLimits { max_connections: 512, max_per_address: 32 };
        fit_to_fd_limit(1_048_576, &mut mutual, &mut open);
        assert_eq!((mutual.max_connections, open.max_connections), (1024, 512));
        // 1024 descriptors: (1024 - 256) / 2 = 384 connections, 288 of them mutual TLS.
        fit_to_fd_limit(1024, &mut mutual, &mut open);
        assert_eq!((mutual.max_connections, open.max_connections), (288, 96));
        assert_eq!((mutual.max_per_address, open.max_per_address), (128, 32));
    }

    #[test]
    fn a_connection_is_idle_only_without_requests_in_flight() {
        let activity = Activity::new();
        std::thread::sleep(Duration::from_millis(20));
        assert!(activity.idle_for() >= Duration::from_millis(20));
        let request = activity.begin();
        assert_eq!(activity.idle_for(), Duration::ZERO);
        drop(request);
        assert!(activity.idle_for() < Duration::from_millis(20));
    }
}
