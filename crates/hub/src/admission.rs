//! Admission of agent connections: what a connection may hold before and after it
//! authenticated. Every accepted connection takes a [`Permit`]; one that would exceed the
//! limits is closed at once (counted, and logged at most once a minute).
//!
//! - Connections overall: at most `max_agent_connections`, by default the open-file limit
//!   (raised to its hard limit at start) minus [`FD_RESERVE`], so idle agent connections can't
//!   take the descriptors the HTTP API, the store and artifact files need.
//! - Before authentication (hello + challenge, or an upload's token check): at most
//!   `max_unauthenticated` connections, `max_unauthenticated_per_addr` from one IP address, each
//!   with frames of at most [`perf_protocol::PRE_AUTH_MAX_FRAME_LEN`]. The slot is given back
//!   when the connection authenticates ([`Permit::authenticated`]) or ends.

use crate::config::HubConfig;
use crate::throttle::Throttle;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// File descriptors kept free of agent connections.
pub const FD_RESERVE: u64 = 256;
/// Used when the open-file limit can't be read.
const FALLBACK_CONNECTIONS: usize = 1024;

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the hub has too many agent connections")]
    TooManyConnections,
    #[error("the hub has too many connections that have not authenticated yet")]
    TooManyUnauthenticated,
    #[error("too many connections from this address have not authenticated yet")]
    TooManyFromAddress,
}

impl Refusal {
    pub const ALL: [Refusal; 3] =
        [Refusal::TooManyConnections, Refusal::TooManyUnauthenticated, Refusal::TooManyFromAddress];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "connections",
            Refusal::TooManyUnauthenticated => "unauthenticated",
            Refusal::TooManyFromAddress => "unauthenticated_per_addr",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub connections: usize,
    pub unauthenticated: usize,
    pub unauthenticated_per_addr: usize,
}

impl Limits {
    /// The configured limits; the connection limit derived from the open-file limit if not set.
    pub fn from_config(c: &HubConfig) -> Self {
        let connections = c.max_agent_connections.unwrap_or_else(|| match raise_fd_limit() {
            Some(fds) => fds.saturating_sub(FD_RESERVE).max(1).try_into().unwrap_or(usize::MAX),
            None => FALLBACK_CONNECTIONS,
        });
        Self {
            connections,
            unauthenticated: c.max_unauthenticated,
            unauthenticated_per_addr: c.max_unauthenticated_per_addr,
        }
    }
}

#[derive(Default)]
struct Counts {
    connections: usize,
    unauthenticated: usize,
    /// Unauthenticated connections per address (entries with 0 are removed, so this holds at
    /// most `unauthenticated` entries).
    per_addr: HashMap<IpAddr, usize>,
}

pub struct Admission {
    limits: Limits,
    counts: Mutex<Counts>,
    refused: [AtomicU64; 3],
    log: Throttle,
}

impl Admission {
    pub fn new(limits: Limits) -> Arc<Self> {
        tracing::info!(
            connections = limits.connections,
            unauthenticated = limits.unauthenticated,
            per_addr = limits.unauthenticated_per_addr,
            "agent connection limits"
        );
        Arc::new(Self {
            limits,
            counts: Mutex::new(Counts::default()),
            refused: Default::default(),
            log: Throttle::new(Duration::from_secs(60)),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A permit for a new, unauthenticated connection from `addr`, or why not (counted).
    pub fn admit(self: &Arc<Self>, addr: IpAddr) -> Result<Permit, Refusal> {
        let refusal = match self.counts.lock() {
            Ok(mut c) => match self.check(&c, addr) {
                None => {
                    c.connections += 1;
                    c.unauthenticated += 1;
                    *c.per_addr.entry(addr).or_insert(0) += 1;
                    return Ok(Permit { admission: self.clone(), addr, unauthenticated: true });
                }
                Some(r) => r,
            },
            Err(_) => Refusal::TooManyConnections,
        };
        self.count_refusal(refusal, addr);
        Err(refusal)
    }

    fn check(&self, c: &Counts, addr: IpAddr) -> Option<Refusal> {
        if c.connections >= self.limits.connections {
            Some(Refusal::TooManyConnections)
        } else if c.unauthenticated >= self.limits.unauthenticated {
            Some(Refusal::TooManyUnauthenticated)
        } else if c.per_addr.get(&addr).copied().unwrap_or(0) >= self.limits.unauthenticated_per_addr {
            Some(Refusal::TooManyFromAddress)
        } else {
            None
        }
    }

    fn count_refusal(&self, r: Refusal, addr: IpAddr) {
        self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
        if let Some(earlier) = self.log.hit(r.as_str()) {
            tracing::warn!(%addr, reason = %r, refused_since_last_report = earlier, "agent connection refused");
        }
    }

    /// Connections refused so far for `r`.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r as usize].load(Ordering::Relaxed)
    }

    /// (connections, unauthenticated) open now.
    pub fn open(&self) -> (usize, usize) {
        self.counts.lock().map(|c| (c.connections, c.unauthenticated)).unwrap_or((0, 0))
    }

    fn release(&self, addr: IpAddr, unauthenticated: bool, connection: bool) {
        let Ok(mut c) = self.counts.lock() else { return };
        if unauthenticated {
            c.unauthenticated = c.unauthenticated.saturating_sub(1);
            if let Some(n) = c.per_addr.get_mut(&addr) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    c.per_addr.remove(&addr);
                }
            }
        }
        if connection {
            c.connections = c.connections.saturating_sub(1);
        }
    }
}

/// One admitted connection; its slots are given back when it is dropped.
pub struct Permit {
    admission: Arc<Admission>,
    addr: IpAddr,
    unauthenticated: bool,
}

impl Permit {
    /// The connection proved who it is: it no longer counts against the pre-auth limits.
    pub fn authenticated(&mut self) {
        if std::mem::take(&mut self.unauthenticated) {
            self.admission.release(self.addr, true, false);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.addr, self.unauthenticated, true);
    }
}

/// Raises the soft open-file limit to the hard one and returns the limit now in force.
fn raise_fd_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot read the open-file limit");
        return None;
    }
    let before = lim.rlim_cur;
    // A hub run as root (or with CAP_SYS_RESOURCE) may lift the hard limit itself: a default
    // hard limit (often 4096–20,000) would admit fewer agents than the contract's 20,000.
    if lim.rlim_max < WANTED_FDS && set_fd_limit(WANTED_FDS, WANTED_FDS) {
        lim = libc::rlimit { rlim_cur: WANTED_FDS, rlim_max: WANTED_FDS };
    } else if lim.rlim_cur < lim.rlim_max {
        if set_fd_limit(lim.rlim_max, lim.rlim_max) {
            lim.rlim_cur = lim.rlim_max;
        } else {
            tracing::warn!(error = %std::io::Error::last_os_error(), "cannot raise the open-file limit");
        }
    }
    if lim.rlim_cur != before {
        tracing::info!(from = before, to = lim.rlim_cur, "raised the open-file limit");
    }
    if lim.rlim_cur < WANTED_FDS {
        tracing::warn!(
            limit = lim.rlim_cur,
            "the open-file limit admits fewer than 20,000 agents: raise it (systemd LimitNOFILE=65536, ulimit -n)"
        );
    }
    Some(lim.rlim_cur)
}

/// Open files the hub asks for: 20,000 agents plus [`FD_RESERVE`], with room to spare.
const WANTED_FDS: libc::rlim_t = 65_536;

fn set_fd_limit(cur: libc::rlim_t, max: libc::rlim_t) -> bool {
    let lim = libc::rlimit { rlim_cur: cur, rlim_max: max };
    // SAFETY: setrlimit only reads the struct passed by pointer.
    unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_open_file_limit_is_raised_to_admit_twenty_thousand_agents_when_allowed() {
        let mut hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: as in raise_fd_limit.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut hard) }, 0);
        let raised = raise_fd_limit().expect("the limit is readable");
        if has_cap_sys_resource() {
            assert!(raised >= WANTED_FDS, "CAP_SYS_RESOURCE lifts the hard limit: {raised}");
            assert!(raised - FD_RESERVE >= 20_000);
        } else {
            assert!(raised >= hard.rlim_max.min(WANTED_FDS), "{raised}");
        }
    }

    fn admission(connections: usize, unauth: usize, per_addr: usize) -> Arc<Admission> {
        Admission::new(Limits { connections, unauthenticated: unauth, unauthenticated_per_addr: per_addr })
    }

    fn has_cap_sys_resource() -> bool {
        const CAP_SYS_RESOURCE: u32 = 24;
        let status = std::fs::read_to_string("/proc/self/status").expect("status");
        let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff");
        u64::from_str_radix(eff.trim(), 16).expect("hex") & (1 << CAP_SYS_RESOURCE) != 0
    }

    #[test]
    fn pre_auth_slots_are_per_address_and_given_back_on_auth() {
        let a = admission(10, 3, 2);
        let (x, y): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        let mut p1 = a.admit(x).expect("1st");
        let _p2 = a.admit(x).expect("2nd");
        assert_eq!(a.admit(x).err(), Some(Refusal::TooManyFromAddress));
        let _p3 = a.admit(y).expect("another address");
        assert_eq!(a.admit(y).err(), Some(Refusal::TooManyUnauthenticated));
        p1.authenticated();
        assert!(a.admit(x).is_ok(), "an authenticated connection frees its pre-auth slot");
        assert_eq!(a.refused(Refusal::TooManyFromAddress), 1);
    }

    #[test]
    fn connections_overall_are_capped_and_released_on_drop() {
        let a = admission(2, 10, 10);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let mut p1 = a.admit(ip).expect("1");
        p1.authenticated();
        let p2 = a.admit(ip).expect("2");
        assert_eq!(a.admit(ip).err(), Some(Refusal::TooManyConnections));
        drop(p2);
        assert_eq!(a.open(), (1, 0));
        assert!(a.admit(ip).is_ok());
    }

    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_limit() {
        let fds = raise_fd_limit().expect("readable");
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: reads into the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!((fds, lim.rlim_cur), (lim.rlim_max, lim.rlim_max));
    }
}
