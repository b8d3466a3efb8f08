//! The metrics sample an agent sends in [`Message::Metrics`](crate::Message::Metrics): one type
//! that the agent builds, the hub stores, counts and exports, so a field is named in one place.
//!
//! ```text
//! MetricsSample                     built by perf-agent-core (crates/agent-core/src/metrics.rs)
//! ├─ ts, state, blocked_ms          the native thread's view: "running" | "blocked" for N ms
//! ├─ native: NativeSample           crates/proc-metrics, read without the JS thread
//! │  ├─ process: NativeProcess      rss, threads, fds, cpu % and cpu seconds
//! │  ├─ host: NativeHost            load, memory, cpus, uptime
//! │  ├─ cgroup: NativeCgroup        memory limit/usage of the process's cgroup
//! │  └─ errors                      what could not be read
//! └─ js: JsSample                   lib/metrics.js (null while JS sends none: it may be blocked)
//!    ├─ heap: HeapStats (+ spaces: map of HeapSpace by V8 space name)
//!    ├─ event_loop: EventLoop       monitorEventLoopDelay quantiles, ELU
//!    ├─ gc: GcStats (+ by_kind: map of GcKind)
//!    ├─ resources: map type → count (process.getActiveResourcesInfo())
//!    └─ http_server, http_client, undici: RequestStats (+ latency_histogram: LatencyHistogram)
//! ```
//!
//! Compatibility rules, both ways across agent and hub versions:
//! - Field names are the JSON names the collector has always sent (the wire format is unchanged).
//! - Every field is optional. A field that is missing, renamed, or of an unexpected type reads as
//!   `None` instead of failing the whole sample (a wrong-typed value is dropped, not kept; in a
//!   map or an array only that entry is). Still refused: a sample that is not a JSON object, and
//!   an object naming one known field twice (serde's "duplicate field"; JSON.stringify never
//!   writes one).
//! - Unknown fields are kept in `extra` at every level and written back out, so the figures of
//!   an agent newer than the hub are stored and served by the hub's history API.
//! - On output, `None` is written as `null` where the producer reports "nothing measured" as
//!   `null` (latency and delay figures, a failed part, `js` while JS is blocked), and left out
//!   where the producer leaves the field out, so a stored sample keeps the shape the agent sent.
//!
//! Maps keyed by names the process chooses (`heap.spaces`, `gc.by_kind`, `resources`) stay maps:
//! their keys come from V8/libuv and are few (≈ 10) in practice, but nothing in this type bounds
//! them (nor `extra`): capping how many keys the hub keeps, stores and exports is the hub's job,
//! not this type's (perf-hub's `sample_limits`: at most 64 keys of at most 128 bytes per map, and
//! samples over 64 KiB dropped). A whole frame is bounded by [`MAX_FRAME_LEN`](crate::MAX_FRAME_LEN).

use serde::de::value::MapAccessDeserializer;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

// ---------------------------------------------------------------------------------------------
// Lenient reading: a value of another shape than expected reads as `None` and is skipped, never
// an error, so one odd field costs that field, not the sample (nor the agent's connection).
// Done with visitors straight on the deserializer (no intermediate `Value`): the hub parses one
// sample per agent every few seconds, 20,000 agents at a time.

/// A type read leniently: `Ok(None)` for a value that does not fit.
trait Lenient<'de>: Sized {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error>;
}

/// `deserialize_with` for an `Option<T>` field.
fn lenient<'de, D: Deserializer<'de>, T: Lenient<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::read(d)
}

/// `deserialize_with` for a plain field: a value that does not fit reads as the default.
fn lenient_or_default<'de, D: Deserializer<'de>, T: Lenient<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(T::read(d)?.unwrap_or_default())
}

struct Seed<T>(PhantomData<T>);

impl<'de, T: Lenient<'de>> DeserializeSeed<'de> for Seed<T> {
    type Value = Option<T>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        T::read(d)
    }
}

fn skip_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Numbers and strings, each from the JSON values that represent it exactly.
trait Scalar: Sized {
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_f64(_: f64) -> Option<Self> {
        None
    }
    fn from_str(_: &str) -> Option<Self> {
        None
    }
}

impl Scalar for u64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v)
    }
    fn from_i64(v: i64) -> Option<Self> {
        u64::try_from(v).ok()
    }
    fn from_f64(v: f64) -> Option<Self> {
        // 1e3 or 5.0 from some encoder: integral and in range only.
        (v.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&v)).then_some(v as u64)
    }
}

macro_rules! narrow_scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            fn from_u64(v: u64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_i64(v: i64) -> Option<Self> {
                <$t>::try_from(v).ok()
            }
            fn from_f64(v: f64) -> Option<Self> {
                u64::from_f64(v).and_then(|v| <$t>::try_from(v).ok())
            }
        }
    )*};
}
narrow_scalar!(u32, u8);

impl Scalar for f64 {
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Scalar for String {
    fn from_str(v: &str) -> Option<Self> {
        Some(v.to_string())
    }
}

struct ScalarVisitor<T>(PhantomData<T>);

impl<'de, T: Scalar> Visitor<'de> for ScalarVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Option<T>, E> {
        Ok(T::from_i64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Option<T>, E> {
        Ok(T::from_u64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Option<T>, E> {
        Ok(T::from_f64(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Option<T>, E> {
        Ok(T::from_str(v))
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        skip_seq(seq).map(|_| None)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        skip_map(map).map(|_| None)
    }
}

macro_rules! lenient_scalar {
    ($($t:ty),*) => {$(
        impl<'de> Lenient<'de> for $t {
            fn read<D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error> {
                d.deserialize_any(ScalarVisitor(PhantomData))
            }
        }
    )*};
}
lenient_scalar!(u64, u32, u8, f64, String);

/// A struct of this module (its own fields lenient, unknown ones in `extra`) from a JSON object;
/// anything else is `None`.
struct StructVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for StructVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        skip_seq(seq).map(|_| None)
    }
}

macro_rules! lenient_struct {
    ($($t:ty),*) => {$(
        impl<'de> Lenient<'de> for $t {
            fn read<D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error> {
                d.deserialize_any(StructVisitor(PhantomData))
            }
        }
    )*};
}
lenient_struct!(
    NativeSample,
    NativeProcess,
    NativeHost,
    NativeCgroup,
    JsSample,
    HeapStats,
    HeapSpace,
    EventLoop,
    GcStats,
    GcKind,
    RequestStats,
    LatencyHistogram
);

/// A JSON object by key; an entry whose value does not fit is left out.
impl<'de, V: Lenient<'de>> Lenient<'de> for BTreeMap<String, V> {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error> {
        struct MapVisitor<V>(PhantomData<V>);
        impl<'de, V: Lenient<'de>> Visitor<'de> for MapVisitor<V> {
            type Value = Option<BTreeMap<String, V>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(k) = map.next_key::<String>()? {
                    if let Some(v) = map.next_value_seed(Seed::<V>(PhantomData))? {
                        out.insert(k, v);
                    }
                }
                Ok(Some(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                skip_seq(seq).map(|_| None)
            }
        }
        d.deserialize_any(ScalarsAsNone(MapVisitor(PhantomData)))
    }
}

/// A JSON array; an element that does not fit is left out.
impl<'de, T: Lenient<'de>> Lenient<'de> for Vec<T> {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error> {
        struct SeqVisitor<T>(PhantomData<T>);
        impl<'de, T: Lenient<'de>> Visitor<'de> for SeqVisitor<T> {
            type Value = Option<Vec<T>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(x) = seq.next_element_seed(Seed::<T>(PhantomData))? {
                    out.extend(x);
                }
                Ok(Some(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                skip_map(map).map(|_| None)
            }
        }
        d.deserialize_any(ScalarsAsNone(SeqVisitor(PhantomData)))
    }
}

/// `[a, b]` (more elements are ignored).
impl<'de, A: Lenient<'de>, B: Lenient<'de>> Lenient<'de> for (A, B) {
    fn read<D: Deserializer<'de>>(d: D) -> Result<Option<Self>, D::Error> {
        struct PairVisitor<A, B>(PhantomData<(A, B)>);
        impl<'de, A: Lenient<'de>, B: Lenient<'de>> Visitor<'de> for PairVisitor<A, B> {
            type Value = Option<(A, B)>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any value")
            }
            fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Self::Value, S::Error> {
                let a = seq.next_element_seed(Seed::<A>(PhantomData))?.flatten();
                let b = if a.is_some() { seq.next_element_seed(Seed::<B>(PhantomData))?.flatten() } else { None };
                skip_seq(seq)?;
                Ok(a.zip(b))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Self::Value, M::Error> {
                skip_map(map).map(|_| None)
            }
        }
        d.deserialize_any(ScalarsAsNone(PairVisitor(PhantomData)))
    }
}

/// Wraps a visitor of maps/arrays so that scalars and null read as `None`.
struct ScalarsAsNone<V>(V);

impl<'de, T, V: Visitor<'de, Value = Option<T>>> Visitor<'de> for ScalarsAsNone<V> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Option<T>, A::Error> {
        self.0.visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Option<T>, A::Error> {
        self.0.visit_seq(seq)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_bytes<E>(self, _: &[u8]) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Option<T>, E> {
        Ok(None)
    }
}

/// The whole sample (agent → hub).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricsSample {
    /// Milliseconds since the epoch when the native thread composed the sample.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    /// `"running"` or `"blocked"` (the JS main thread missed its heartbeats).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// How long JS has been blocked (0 while running).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub blocked_ms: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub native: Option<NativeSample>,
    /// The JS collector's latest sample; `null` when JS sent none recently (it may be blocked).
    #[serde(default, deserialize_with = "lenient")]
    pub js: Option<JsSample>,
    /// The agent's own heavy command (its id) that was capturing when the sample was taken, or at
    /// any time during the current stall: a snapshot's pause or memory is not a reason for a
    /// capture rule to fire. Absent from older agents.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub agent_capture: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MetricsSample {
    /// True when the native thread saw the JS thread blocked.
    pub fn is_blocked(&self) -> bool {
        self.state.as_deref() == Some("blocked")
    }
}

// ---------------------------------------------------------------------------------------------
// Native part (crates/proc-metrics NativeSample)

/// What the agent's native thread reads from /proc and /sys, JS not needed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeSample {
    /// `null` when /proc/self could not be read (see `errors`).
    #[serde(default, deserialize_with = "lenient")]
    pub process: Option<NativeProcess>,
    #[serde(default, deserialize_with = "lenient")]
    pub host: Option<NativeHost>,
    /// `null` when there is no memory cgroup.
    #[serde(default, deserialize_with = "lenient")]
    pub cgroup: Option<NativeCgroup>,
    /// Why a part is missing.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeProcess {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub rss_peak_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub vm_size_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
    /// `null` when /proc/<pid>/fd is not readable.
    #[serde(default, deserialize_with = "lenient")]
    pub open_fds: Option<u64>,
    /// Percent of one core since the previous sample.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub cpu_user_percent: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub cpu_system_percent: Option<f64>,
    /// Cumulative CPU seconds since the process started.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub cpu_user_seconds_total: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub cpu_system_seconds_total: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeHost {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub load_avg_1: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub load_avg_5: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub load_avg_15: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub mem_total_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub mem_free_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub mem_available_bytes: Option<u64>,
    /// CPUs this process may use (affinity and cgroup quota honoured).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub cpu_count: Option<u32>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NativeCgroup {
    /// 1 or 2.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub version: Option<u8>,
    /// The cgroup directory read (for diagnostics).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// The effective limit; `null` when unlimited.
    #[serde(default, deserialize_with = "lenient")]
    pub limit_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub usage_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub working_set_bytes: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

// ---------------------------------------------------------------------------------------------
// JS part (lib/metrics.js; its header comment describes each figure)

/// The JS thread's sample. Counters (`count`, `errors`, `status_*`, `pause_ms`) cover the
/// sample's interval only; the hub accumulates them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JsSample {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub ts: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<f64>,
    /// Collector failures in the interval.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(default, deserialize_with = "lenient")]
    pub heap: Option<HeapStats>,
    #[serde(default, deserialize_with = "lenient")]
    pub event_loop: Option<EventLoop>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub gc: Option<GcStats>,
    /// Active libuv handles and requests by type (`TCPSocketWrap`, `Timeout`, …). Unbounded
    /// here (see the module notes: the hub is where keys are to be capped).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub resources: Option<BTreeMap<String, u64>>,
    /// Incoming requests that finished in the interval.
    #[serde(default, deserialize_with = "lenient")]
    pub http_server: Option<RequestStats>,
    /// Outgoing node:http(s) requests.
    #[serde(default, deserialize_with = "lenient")]
    pub http_client: Option<RequestStats>,
    /// Outgoing fetch()/undici requests.
    #[serde(default, deserialize_with = "lenient")]
    pub undici: Option<RequestStats>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeapStats {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub limit_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub external_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub array_buffers_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub malloced_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub native_contexts: Option<u64>,
    /// A leak signal.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub detached_contexts: Option<u64>,
    /// By V8 space name (`old_space`, `new_space`, …). Unbounded here (see the module notes).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub spaces: Option<BTreeMap<String, HeapSpace>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HeapSpace {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub physical_bytes: Option<u64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// monitorEventLoopDelay over the interval (`null` figures: no tick measured) and the ELU.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventLoop {
    #[serde(default, deserialize_with = "lenient")]
    pub delay_min_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub delay_mean_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub delay_p50_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub delay_p99_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub delay_max_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub resolution_ms: Option<f64>,
    /// 0..1 over the interval.
    #[serde(default, deserialize_with = "lenient")]
    pub utilization: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcStats {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub pause_max_ms: Option<f64>,
    /// By kind (`scavenge`, `mark_sweep_compact`, `incremental`, `weak_callbacks`). Unbounded
    /// here (see the module notes).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub by_kind: Option<BTreeMap<String, GcKind>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GcKind {
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub pause_ms: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One kind of HTTP traffic over the interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RequestStats {
    /// Requests that finished (incoming) or got their response headers (outgoing).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Outgoing requests that failed (absent for incoming requests).
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub status_2xx: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub status_3xx: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub status_4xx: Option<u64>,
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "Option::is_none")]
    pub status_5xx: Option<u64>,
    /// Latency figures of the interval (for the console and history); `null` when nothing was
    /// timed.
    #[serde(default, deserialize_with = "lenient")]
    pub latency_mean_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub latency_p50_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub latency_p90_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub latency_p99_ms: Option<f64>,
    #[serde(default, deserialize_with = "lenient")]
    pub latency_max_ms: Option<f64>,
    /// The interval's latencies in Prometheus-style buckets; `null` when nothing was timed
    /// (and absent from older agents' samples).
    #[serde(default, deserialize_with = "lenient")]
    pub latency_histogram: Option<LatencyHistogram>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RequestStats {
    /// `status_<class>` for class 2..=5.
    pub fn status(&self, class: u8) -> Option<u64> {
        match class {
            2 => self.status_2xx,
            3 => self.status_3xx,
            4 => self.status_4xx,
            5 => self.status_5xx,
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Latency histogram

/// Upper bounds (ms) of the latency histogram the agent sends and the hub exports, plus +Inf.
///
/// lib/metrics.js derives each from its log-bucket histogram (8 buckets per power of two from
/// 2^-7 ms): the count for bound `b` is the sum of the log buckets that end at or below `b`
/// ([`log_bucket_cut`]). Those buckets end at the largest log edge ≤ `b`, which is less than one
/// log bucket (2^(1/8) ≈ 9.05%) below `b`: a request counted under `le = b` really took less
/// than `b`, but one that took between that edge and `b` is counted in the next bound. So each
/// bound is exact to within 9% (1 ms is a log edge and exact).
pub const LATENCY_BUCKETS_MS: [f64; 13] =
    [1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0];

/// lib/metrics.js log histogram: buckets per power of two.
pub const LOG_SUB_BUCKETS: u32 = 8;
/// lib/metrics.js log histogram: bucket 0 starts at 2^LOG_MIN_EXP ms.
pub const LOG_MIN_EXP: i32 = -7;
/// lib/metrics.js log histogram: number of buckets (the last one is open-ended).
pub const LOG_BUCKETS: usize = 224;

/// How many log buckets (from bucket 0) end at or below `bound_ms`: the bound's cumulative
/// count is the sum of buckets `0..log_bucket_cut(bound_ms)`. Mirrors `histCut` in lib/metrics.js.
pub fn log_bucket_cut(bound_ms: f64) -> usize {
    if bound_ms.is_nan() || bound_ms <= 0.0 {
        return 0;
    }
    let k = ((bound_ms.log2() - LOG_MIN_EXP as f64) * LOG_SUB_BUCKETS as f64 + 1e-9).floor();
    k.clamp(0.0, (LOG_BUCKETS - 1) as f64) as usize
}

/// Lower edge (ms) of log bucket `i` (= upper edge of bucket `i - 1`).
pub fn log_bucket_edge(i: usize) -> f64 {
    2f64.powf(i as f64 / LOG_SUB_BUCKETS as f64 + LOG_MIN_EXP as f64)
}

/// Latencies of one interval as a Prometheus-style cumulative histogram.
///
/// `buckets` are `[upper_bound_ms, cumulative_count]` pairs in increasing bound order; the +Inf
/// bucket is not listed (JSON has no infinity): it is `count`, the number of timed requests.
/// `sum_ms` is the sum of their latencies.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyHistogram {
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub sum_ms: f64,
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub count: u64,
    #[serde(default, deserialize_with = "lenient_or_default")]
    pub buckets: Vec<(f64, u64)>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl LatencyHistogram {
    /// Cumulative counts at each of `bounds_ms` (increasing), whatever bounds the sender used:
    /// the count at `b` is that of the largest sent bound ≤ `b` (so exact when the bounds match,
    /// and never counting a request slower than `b`). Sent counts are made cumulative and capped
    /// at `count`, so the result is non-decreasing and ends at or below `count` even for a
    /// malformed histogram.
    pub fn cumulative_at(&self, bounds_ms: &[f64]) -> Vec<u64> {
        let mut sent: Vec<(f64, u64)> = self.buckets.iter().copied().filter(|(b, _)| b.is_finite()).collect();
        sent.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut running = 0;
        for (_, c) in &mut sent {
            running = (*c).max(running).min(self.count);
            *c = running;
        }
        let mut out = Vec::with_capacity(bounds_ms.len());
        let mut i = 0;
        let mut at = 0;
        for &b in bounds_ms {
            while i < sent.len() && sent[i].0 <= b * (1.0 + 1e-9) {
                at = sent[i].1;
                i += 1;
            }
            out.push(at);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A sample as agent-core and lib/metrics.js send it today (abridged maps).
    fn today() -> Value {
        let req = json!({
            "count": 3, "errors": 1, "status_2xx": 2, "status_3xx": 0, "status_4xx": 1, "status_5xx": 0,
            "latency_mean_ms": 12.5, "latency_p50_ms": 10.2, "latency_p90_ms": 20.0, "latency_p99_ms": null,
            "latency_max_ms": 30.0,
            "latency_histogram": {"sum_ms": 37.5, "count": 3, "buckets": [[1.0, 0], [10.0, 1], [25.0, 2], [50.0, 3]]}
        });
        json!({
            "ts": 1_700_000_000_000u64, "state": "running", "blocked_ms": 0,
            "native": {
                "process": {"pid": 7, "rss_bytes": 50_000_000u64, "rss_peak_bytes": 60_000_000u64,
                            "vm_size_bytes": 1_000_000_000u64, "threads": 11, "open_fds": null,
                            "cpu_user_percent": 1.5, "cpu_system_percent": 0.5,
                            "cpu_user_seconds_total": 3.25, "cpu_system_seconds_total": 1.0},
                "host": {"load_avg_1": 0.5, "load_avg_5": 0.25, "load_avg_15": 0.125, "mem_total_bytes": 8_000_000_000u64,
                         "mem_free_bytes": 1_000_000_000u64, "mem_available_bytes": 4_000_000_000u64,
                         "cpu_count": 2, "uptime_seconds": 1234.5},
                "cgroup": null,
                "errors": []
            },
            "js": {
                "ts": 1_699_999_999_000u64, "interval_ms": 1000.5, "errors": 0,
                "heap": {"used_bytes": 10, "total_bytes": 20, "limit_bytes": 40, "external_bytes": 1,
                         "array_buffers_bytes": 2, "malloced_bytes": 3, "native_contexts": 1, "detached_contexts": 0,
                         "spaces": {"old_space": {"size_bytes": 4, "used_bytes": 3, "available_bytes": 1, "physical_bytes": 4}}},
                "event_loop": {"delay_min_ms": null, "delay_mean_ms": null, "delay_p50_ms": null, "delay_p99_ms": null,
                               "delay_max_ms": null, "resolution_ms": 10.0, "utilization": 0.25},
                "gc": {"count": 2, "pause_ms": 1.5, "pause_max_ms": 1.0,
                       "by_kind": {"scavenge": {"count": 2, "pause_ms": 1.5}}},
                "resources": {"TCPSocketWrap": 2, "Timeout": 1},
                "http_server": {"count": 0, "status_2xx": 0, "status_3xx": 0, "status_4xx": 0, "status_5xx": 0,
                                "latency_mean_ms": null, "latency_p50_ms": null, "latency_p90_ms": null,
                                "latency_p99_ms": null, "latency_max_ms": null, "latency_histogram": null},
                "http_client": req.clone(),
                "undici": null
            }
        })
    }

    #[test]
    fn todays_sample_round_trips_to_the_same_json() {
        let v = today();
        let s: MetricsSample = serde_json::from_value(v.clone()).expect("typed");
        assert_eq!(s.native.as_ref().and_then(|n| n.process.as_ref()).and_then(|p| p.rss_bytes), Some(50_000_000));
        let js = s.js.as_ref().expect("js");
        assert_eq!(js.http_client.as_ref().and_then(|h| h.latency_p50_ms), Some(10.2));
        assert_eq!(js.http_server.as_ref().and_then(|h| h.errors), None, "server has no errors field");
        assert!(s.extra.is_empty() && js.extra.is_empty(), "nothing unknown");
        assert_eq!(serde_json::to_value(&s).expect("json"), v, "same shape, nulls kept, absent kept absent");
    }

    #[test]
    fn unknown_fields_survive_a_round_trip_at_every_level() {
        let mut v = today();
        v["agent_extra"] = json!({"a": 1});
        v["native"]["process"]["io_read_bytes"] = json!(5);
        v["js"]["heap"]["code_bytes"] = json!(9);
        v["js"]["heap"]["spaces"]["old_space"]["committed"] = json!(3);
        v["js"]["gc"]["by_kind"]["scavenge"]["p99_ms"] = json!(0.5);
        v["js"]["http_client"]["latency_histogram"]["min_ms"] = json!(1.0);
        v["js"]["http_client"]["latency_p999_ms"] = json!(29.0);
        v["js"]["worker_threads"] = json!([{"id": 1}]);
        let s: MetricsSample = serde_json::from_value(v.clone()).expect("typed");
        assert_eq!(s.extra.get("agent_extra"), Some(&json!({"a": 1})));
        let back = serde_json::to_value(&s).expect("json");
        assert_eq!(back, v);
        // And through the wire message.
        let m = crate::Message::Metrics { sample: Box::new(s) };
        let text = serde_json::to_string(&m).expect("encode");
        let again: crate::Message = serde_json::from_str(&text).expect("decode");
        assert_eq!(again, m);
        let crate::Message::Metrics { sample } = again else { panic!("metrics") };
        assert_eq!(serde_json::to_value(&*sample).expect("json"), v);
    }

    #[test]
    fn a_renamed_missing_or_wrong_typed_field_is_none_not_an_error() {
        let mut v = today();
        let heap = v["js"]["heap"].as_object_mut().expect("heap");
        let used = heap.remove("used_bytes").expect("used");
        heap.insert("heap_used_bytes".into(), used); // renamed by a newer agent
        v["js"]["http_client"]["count"] = json!("three"); // wrong type
        v["js"]["resources"] = json!(["not", "a", "map"]);
        v["native"]["host"] = json!(42);
        v["native"]["process"].as_object_mut().expect("process").remove("rss_bytes"); // missing
        let s: MetricsSample = serde_json::from_value(v).expect("still a sample");
        let js = s.js.as_ref().expect("js");
        let heap = js.heap.as_ref().expect("heap");
        assert_eq!(heap.used_bytes, None);
        assert_eq!(heap.extra.get("heap_used_bytes"), Some(&json!(10)), "kept under its new name");
        assert_eq!(heap.total_bytes, Some(20));
        assert_eq!(js.http_client.as_ref().and_then(|h| h.count), None);
        assert_eq!(js.http_client.as_ref().and_then(|h| h.status_2xx), Some(2));
        assert_eq!(js.resources, None);
        let native = s.native.as_ref().expect("native");
        assert_eq!(native.host, None);
        assert_eq!(native.process.as_ref().and_then(|p| p.rss_bytes), None);
        assert_eq!(native.process.as_ref().and_then(|p| p.threads), Some(11));
        // One odd entry of a map or an array costs that entry only.
        let mut v = today();
        v["js"]["heap"]["spaces"]["bad_space"] = json!("x");
        v["js"]["gc"]["by_kind"]["odd"] = json!([1]);
        v["js"]["resources"]["Weird"] = json!(-1);
        v["js"]["http_client"]["latency_histogram"]["buckets"] =
            json!([[1.0, 0], "junk", [10.0, 1, 9], [25.0], [50, 2.0]]);
        v["js"]["http_client"]["latency_histogram"]["count"] = json!(null);
        v["native"]["errors"] = json!(["a", 1, "b"]);
        v["ts"] = json!(1.7e12); // integral float from another encoder
        let s: MetricsSample = serde_json::from_value(v).expect("still a sample");
        let js = s.js.as_ref().expect("js");
        let spaces = js.heap.as_ref().and_then(|h| h.spaces.as_ref()).expect("spaces");
        assert_eq!(spaces.keys().collect::<Vec<_>>(), ["old_space"]);
        assert_eq!(js.gc.as_ref().and_then(|g| g.by_kind.as_ref()).map(|k| k.len()), Some(1));
        assert_eq!(js.resources.as_ref().map(|r| r.len()), Some(2));
        let h = js.http_client.as_ref().and_then(|c| c.latency_histogram.as_ref()).expect("histogram");
        assert_eq!(h.buckets, [(1.0, 0), (10.0, 1), (50.0, 2)]);
        assert_eq!((h.count, h.sum_ms), (0, 37.5), "a bad count reads as 0, the rest is kept");
        assert_eq!(s.native.as_ref().and_then(|n| n.errors.clone()), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(s.ts, Some(1_700_000_000_000));
        // An empty object is a sample too; a non-object is not.
        assert_eq!(serde_json::from_str::<MetricsSample>("{}").expect("empty"), MetricsSample::default());
        assert!(serde_json::from_str::<JsSample>("null").is_err());
        assert!(serde_json::from_str::<JsSample>("[1]").is_err());
        assert!(serde_json::from_str::<JsSample>(r#"{"ts": 1, "ts": 2}"#).is_err(), "duplicate field");
    }

    #[test]
    fn a_sample_of_an_agent_without_histograms_reads() {
        // An agent that predates histograms: the field reads as None and is written as null.
        let mut v = today();
        v["js"]["http_client"].as_object_mut().expect("client").remove("latency_histogram");
        let s: MetricsSample = serde_json::from_value(v.clone()).expect("typed");
        assert!(s.js.as_ref().and_then(|j| j.http_client.as_ref()).is_some_and(|h| h.latency_histogram.is_none()));
        v["js"]["http_client"]["latency_histogram"] = Value::Null;
        assert_eq!(serde_json::to_value(&s).expect("json"), v);
    }

    #[test]
    fn histogram_bounds_are_within_one_log_bucket_below_each_bound() {
        let width = 2f64.powf(1.0 / LOG_SUB_BUCKETS as f64);
        assert!((width - 1.0905).abs() < 1e-3, "{width}");
        let mut last = 0;
        for b in LATENCY_BUCKETS_MS {
            let k = log_bucket_cut(b);
            let edge = log_bucket_edge(k);
            assert!(edge <= b * (1.0 + 1e-12), "{b}: edge {edge} above the bound");
            assert!(edge > b / width, "{b}: edge {edge} more than one log bucket below");
            assert!(b / edge - 1.0 < 0.0906, "{b}: error {}", b / edge - 1.0);
            assert!(k > last && k < LOG_BUCKETS, "{b}: cut {k} increasing and inside the histogram");
            last = k;
        }
        assert_eq!(log_bucket_cut(1.0), 56, "1 ms = 2^0 is an exact log edge");
        assert_eq!(log_bucket_edge(56), 1.0);
        // The values lib/metrics.js computes (histCut): kept in step by __test__/metrics-collector.
        let cuts: Vec<usize> = LATENCY_BUCKETS_MS.iter().map(|&b| log_bucket_cut(b)).collect();
        assert_eq!(cuts, [56, 66, 74, 82, 93, 101, 109, 119, 127, 135, 146, 154, 162]);
    }

    #[test]
    fn cumulative_at_rebins_and_repairs() {
        let h = LatencyHistogram {
            sum_ms: 10.0,
            count: 5,
            buckets: vec![(10.0, 3), (1.0, 1), (2.5, 1), (f64::INFINITY, 9), (100.0, 2), (1000.0, 7)],
            extra: Map::new(),
        };
        // Sorted: 1→1, 2.5→1, 10→3, 100→max(2,3)=3, 1000→min(7,5)=5.
        assert_eq!(h.cumulative_at(&[1.0, 2.5, 5.0, 10.0, 100.0, 10000.0]), [1, 1, 1, 3, 3, 5]);
        assert_eq!(h.cumulative_at(&[0.5]), [0]);
        let same: Vec<(f64, u64)> = LATENCY_BUCKETS_MS.iter().enumerate().map(|(i, &b)| (b, i as u64)).collect();
        let h = LatencyHistogram { sum_ms: 1.0, count: 20, buckets: same, extra: Map::new() };
        assert_eq!(h.cumulative_at(&LATENCY_BUCKETS_MS), (0..13).collect::<Vec<u64>>());
    }
}
