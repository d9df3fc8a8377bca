//! Process metrics, rendered in the Prometheus text format at `GET /metrics`.
//!
//! Counters on the audio path are plain atomics (no lock per frame); labelled counters for rare
//! events (errors by kind, calls by end reason, tool calls by outcome) sit behind a mutex. This
//! module must not log: callers log once, then count here.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    pub active_calls: AtomicI64,
    /// Tasks currently alive on behalf of a call (readers, writers, tools, the actor itself).
    pub call_tasks: AtomicI64,
    pub calls_started: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Caller frames dropped because the provider socket could not keep up.
    pub frames_dropped: AtomicU64,
    pub barge_ins: AtomicU64,
    pub truncations: AtomicU64,
    pub late_deltas_dropped: AtomicU64,
    /// Holding phrases spoken while slow tools ran.
    pub fillers: AtomicU64,
    labelled: Mutex<Labelled>,
}

#[derive(Debug, Default)]
struct Labelled {
    errors: BTreeMap<&'static str, u64>,
    calls_ended: BTreeMap<&'static str, u64>,
    tool_calls: BTreeMap<&'static str, u64>,
    campaign_dials: BTreeMap<&'static str, u64>,
    /// Inbound webhook deliveries by (source kind, result).
    inbound: BTreeMap<(&'static str, &'static str), u64>,
}

impl Metrics {
    pub fn incr(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn error(&self, kind: &'static str) {
        self.with_labelled(|l| *l.errors.entry(kind).or_default() += 1);
    }

    pub fn call_ended(&self, reason: &'static str) {
        self.with_labelled(|l| *l.calls_ended.entry(reason).or_default() += 1);
    }

    pub fn tool_call(&self, outcome: &'static str) {
        self.with_labelled(|l| *l.tool_calls.entry(outcome).or_default() += 1);
    }

    /// One campaign dial attempt, by result (`placed`, `not_placed`, `unknown`, `reconciled_…`).
    pub fn campaign_dial(&self, result: &'static str) {
        self.with_labelled(|l| *l.campaign_dials.entry(result).or_default() += 1);
    }

    /// Count of campaign dials with `result` so far.
    pub fn campaign_dials_of(&self, result: &str) -> u64 {
        self.with_labelled(|l| l.campaign_dials.get(result).copied().unwrap_or(0))
    }

    /// One inbound webhook delivery of a `source` kind, by result (`accepted`, `duplicate`,
    /// `unsigned`, `bad_signature`, `stale`, `malformed`, `too_large`, `unknown_source`, …).
    pub fn inbound(&self, source: &'static str, result: &'static str) {
        self.with_labelled(|l| *l.inbound.entry((source, result)).or_default() += 1);
    }

    /// Count of inbound deliveries of `source` with `result` so far.
    pub fn inbound_of(&self, source: &str, result: &str) -> u64 {
        self.with_labelled(|l| {
            l.inbound
                .iter()
                .filter(|((s, r), _)| *s == source && *r == result)
                .map(|(_, n)| *n)
                .sum()
        })
    }

    /// Count of errors of `kind` so far.
    pub fn errors_of(&self, kind: &str) -> u64 {
        self.with_labelled(|l| l.errors.get(kind).copied().unwrap_or(0))
    }

    fn with_labelled<T>(&self, f: impl FnOnce(&mut Labelled) -> T) -> T {
        // A panic elsewhere while holding this lock leaves counts that are still usable.
        let mut guard = self.labelled.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// A guard counting one live per-call task until dropped.
    pub fn task_guard(self: &std::sync::Arc<Self>) -> TaskGuard {
        self.call_tasks.fetch_add(1, Ordering::Relaxed);
        TaskGuard(self.clone())
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "callbridge_active_calls",
            "Calls in progress.",
            self.active_calls.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "callbridge_call_tasks",
            "Tasks alive on behalf of calls.",
            self.call_tasks.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "callbridge_calls_started_total",
            "Calls whose media stream started.",
            load(&self.calls_started),
        );
        counter(
            &mut out,
            "callbridge_frames_in_total",
            "Caller audio frames received from Twilio.",
            load(&self.frames_in),
        );
        counter(
            &mut out,
            "callbridge_frames_out_total",
            "Agent audio frames sent to Twilio.",
            load(&self.frames_out),
        );
        counter(
            &mut out,
            "callbridge_frames_dropped_total",
            "Caller frames dropped because the provider socket was backed up.",
            load(&self.frames_dropped),
        );
        counter(
            &mut out,
            "callbridge_barge_ins_total",
            "Times the caller interrupted the agent.",
            load(&self.barge_ins),
        );
        counter(
            &mut out,
            "callbridge_truncations_total",
            "Assistant items truncated to what the caller heard.",
            load(&self.truncations),
        );
        counter(
            &mut out,
            "callbridge_fillers_total",
            "Holding phrases spoken while slow tools ran.",
            load(&self.fillers),
        );
        counter(
            &mut out,
            "callbridge_late_deltas_dropped_total",
            "Audio deltas of interrupted responses dropped.",
            load(&self.late_deltas_dropped),
        );
        self.with_labelled(|l| {
            labelled(
                &mut out,
                "callbridge_errors_total",
                "Errors by kind.",
                "kind",
                &l.errors,
            );
            labelled(
                &mut out,
                "callbridge_calls_ended_total",
                "Calls ended, by reason.",
                "reason",
                &l.calls_ended,
            );
            labelled(
                &mut out,
                "callbridge_tool_calls_total",
                "Tool calls, by outcome.",
                "outcome",
                &l.tool_calls,
            );
            labelled(
                &mut out,
                "callbridge_campaign_dials_total",
                "Campaign dial attempts, by result.",
                "result",
                &l.campaign_dials,
            );
            let name = "callbridge_inbound_deliveries_total";
            let _ = writeln!(
                out,
                "# HELP {name} Inbound webhook deliveries, by source kind and result.\n# TYPE {name} counter"
            );
            for ((source, result), value) in &l.inbound {
                let _ = writeln!(out, "{name}{{source=\"{source}\",result=\"{result}\"}} {value}");
            }
        });
        out
    }
}

/// Decrements the live-task gauge when the task it lives in ends (or is aborted).
#[derive(Debug)]
pub struct TaskGuard(std::sync::Arc<Metrics>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.call_tasks.fetch_sub(1, Ordering::Relaxed);
    }
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn labelled(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    values: &BTreeMap<&'static str, u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (key, value) in values {
        let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_prometheus_text() {
        let m = Arc::new(Metrics::default());
        Metrics::incr(&m.frames_in);
        m.error("twilio_bad_base64");
        m.error("twilio_bad_base64");
        m.call_ended("caller_hung_up");
        {
            let _guard = m.task_guard();
            assert!(m.render().contains("callbridge_call_tasks 1\n"));
        }
        let text = m.render();
        assert!(text.contains("callbridge_frames_in_total 1\n"));
        assert!(text.contains("callbridge_errors_total{kind=\"twilio_bad_base64\"} 2\n"));
        assert!(text.contains("callbridge_calls_ended_total{reason=\"caller_hung_up\"} 1\n"));
        assert!(text.contains("callbridge_call_tasks 0\n"));
        assert_eq!(m.errors_of("twilio_bad_base64"), 2);
    }
}
