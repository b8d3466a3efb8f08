//! The one table of capture kinds: for each kind the agent can capture, what file it makes,
//! how its command is acknowledged, where in the agent it runs and what the hub can show of it.
//! The agent, the hub and (through `GET /api/capture-kinds`) the console read it here instead of
//! repeating the rules.

use crate::CommandKind;
use serde::Serialize;

/// Where in the agent a capture runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Executor {
    /// The inspector worker (a `worker_threads` Worker with a session on the main thread).
    InspectorWorker,
    /// A helper child process running `perf`, started from the agent's native thread.
    PerfHelper,
}

/// When the agent acknowledges a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPoint {
    /// As soon as the capture is handed to its executor.
    OnDispatch,
    /// After the executor's memory preflight, carrying the cost estimate (or the refusal).
    AfterPreflight,
}

/// Everything that differs between capture kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CaptureKind {
    /// The command's `kind` (also the capability name).
    pub name: &'static str,
    /// What operators call it.
    pub label: &'static str,
    /// Extension of the artifact file.
    pub file_extension: &'static str,
    /// Whether the command takes `seconds` (a timed capture).
    pub timed: bool,
    /// Whether the artifact folds into a flame graph.
    pub flamegraph: bool,
    /// Whether the artifact is a heap snapshot the hub can analyse and diff.
    pub heap_analysis: bool,
    pub ack: AckPoint,
    pub executor: Executor,
}

/// All capture kinds, in the order the console offers them.
pub const CAPTURE_KINDS: [CaptureKind; 4] = [
    CaptureKind {
        name: "heap_snapshot",
        label: "Heap snapshot",
        file_extension: "heapsnapshot",
        timed: false,
        flamegraph: false,
        heap_analysis: true,
        ack: AckPoint::AfterPreflight,
        executor: Executor::InspectorWorker,
    },
    CaptureKind {
        name: "cpu_profile",
        label: "CPU profile",
        file_extension: "cpuprofile",
        timed: true,
        flamegraph: true,
        heap_analysis: false,
        ack: AckPoint::OnDispatch,
        executor: Executor::InspectorWorker,
    },
    CaptureKind {
        name: "heap_sampling",
        label: "Heap sampling",
        file_extension: "heapprofile",
        timed: true,
        flamegraph: true,
        heap_analysis: false,
        ack: AckPoint::OnDispatch,
        executor: Executor::InspectorWorker,
    },
    CaptureKind {
        name: "perf_flamegraph",
        label: "perf flame graph",
        file_extension: "folded",
        timed: true,
        flamegraph: true,
        heap_analysis: false,
        ack: AckPoint::OnDispatch,
        executor: Executor::PerfHelper,
    },
];

/// The capture kind named `name`, if there is one.
pub fn capture_kind(name: &str) -> Option<&'static CaptureKind> {
    CAPTURE_KINDS.iter().find(|k| k.name == name)
}

impl CommandKind {
    /// This command's row of [`CAPTURE_KINDS`].
    pub fn capture(&self) -> &'static CaptureKind {
        // Exhaustive, so a new variant can't go without a row; the test checks the names match.
        match self {
            CommandKind::HeapSnapshot => &CAPTURE_KINDS[0],
            CommandKind::CpuProfile { .. } => &CAPTURE_KINDS[1],
            CommandKind::HeapSampling { .. } => &CAPTURE_KINDS[2],
            CommandKind::PerfFlamegraph { .. } => &CAPTURE_KINDS[3],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_kind_has_one_row() {
        let kinds = [
            CommandKind::HeapSnapshot,
            CommandKind::CpuProfile { seconds: 1, interval_us: None },
            CommandKind::HeapSampling { seconds: 1, interval_bytes: None },
            CommandKind::PerfFlamegraph { seconds: 1, frequency: None },
        ];
        assert_eq!(kinds.len(), CAPTURE_KINDS.len());
        for k in &kinds {
            let json = serde_json::to_value(k).expect("json");
            assert_eq!(json["kind"], k.capture().name, "the row matches the wire name");
            assert_eq!(CAPTURE_KINDS.iter().filter(|c| c.name == k.name()).count(), 1);
        }
        assert_eq!(capture_kind("perf_flamegraph").map(|k| k.executor), Some(Executor::PerfHelper));
        assert!(capture_kind("rm -rf").is_none());
    }
}
