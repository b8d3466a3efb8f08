//! V8 `.cpuprofile` (Profiler.Profile JSON) → folded stacks weighted by sample count.
//!
//! `nodes` is a flat list linked by `children` ids; each sample names the node (leaf) that was
//! on top of the stack. Weight per node = its occurrences in `samples` when present, else its
//! `hitCount`. The `(root)` node is dropped; `(program)`, `(idle)` and `(garbage collector)`
//! stay as leaf frames right under it.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::FlameError;
use crate::folded::Folded;
use crate::json::{parse_deep, CallFrame};

const FORMAT: &str = "cpuprofile";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CpuProfile {
    nodes: Vec<Node>,
    #[serde(default)]
    samples: Vec<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    id: u64,
    #[serde(default)]
    call_frame: CallFrame,
    #[serde(default)]
    children: Vec<u64>,
    #[serde(default)]
    hit_count: u64,
}

/// Folds a `.cpuprofile` JSON document.
pub fn fold_cpuprofile(json: &[u8]) -> Result<Folded, FlameError> {
    parse_deep::<CpuProfile, _, _>(json, FORMAT, |profile| fold(&profile))
}

fn fold(profile: &CpuProfile) -> Result<Folded, FlameError> {
    let index = index_by_id(&profile.nodes)?;
    let parents = parent_links(&profile.nodes, &index)?;
    let weights = node_weights(profile, &index)?;
    let labels: Vec<String> = profile.nodes.iter().map(|n| n.call_frame.label()).collect();
    let mut folded = Folded::default();
    let mut frames: Vec<&str> = Vec::new();
    for (idx, &weight) in weights.iter().enumerate() {
        if weight == 0 {
            continue;
        }
        stack_of(idx, profile, &parents, &labels, &mut frames)?;
        folded.add(&frames, weight);
    }
    Ok(folded)
}

fn index_by_id(nodes: &[Node]) -> Result<HashMap<u64, usize>, FlameError> {
    let mut index = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        if index.insert(node.id, i).is_some() {
            return Err(FlameError::invalid(FORMAT, format!("duplicate node id {}", node.id)));
        }
    }
    Ok(index)
}

fn parent_links(nodes: &[Node], index: &HashMap<u64, usize>) -> Result<Vec<Option<usize>>, FlameError> {
    let mut parents = vec![None; nodes.len()];
    for (i, node) in nodes.iter().enumerate() {
        for child in &node.children {
            let &c = index
                .get(child)
                .ok_or_else(|| FlameError::invalid(FORMAT, format!("node {} lists unknown child {child}", node.id)))?;
            if parents[c].replace(i).is_some() {
                return Err(FlameError::invalid(FORMAT, format!("node {child} has two parents")));
            }
        }
    }
    Ok(parents)
}

fn node_weights(profile: &CpuProfile, index: &HashMap<u64, usize>) -> Result<Vec<u64>, FlameError> {
    if profile.samples.is_empty() {
        return Ok(profile.nodes.iter().map(|n| n.hit_count).collect());
    }
    let mut weights = vec![0u64; profile.nodes.len()];
    for id in &profile.samples {
        let &i = index.get(id).ok_or_else(|| FlameError::invalid(FORMAT, format!("sample names unknown node {id}")))?;
        weights[i] += 1;
    }
    Ok(weights)
}

/// Fills `frames` with the labels from the root down to `idx`, dropping `(root)`.
fn stack_of<'a>(
    idx: usize,
    profile: &CpuProfile,
    parents: &[Option<usize>],
    labels: &'a [String],
    frames: &mut Vec<&'a str>,
) -> Result<(), FlameError> {
    frames.clear();
    let mut cur = Some(idx);
    while let Some(i) = cur {
        if frames.len() > profile.nodes.len() {
            return Err(FlameError::invalid(FORMAT, "the node tree has a cycle"));
        }
        let is_top_root = parents[i].is_none() && profile.nodes[i].call_frame.is_root();
        if !is_top_root {
            frames.push(&labels[i]);
        }
        cur = parents[i];
    }
    if frames.is_empty() {
        frames.push("(root)");
    }
    frames.reverse();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded_text(json: &str) -> String {
        String::from_utf8(fold_cpuprofile(json.as_bytes()).unwrap().to_bytes()).unwrap()
    }

    const PROFILE: &str = r#"{
      "nodes": [
        {"id":1,"callFrame":{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},"hitCount":0,"children":[2,3,4,7]},
        {"id":2,"callFrame":{"functionName":"(program)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},"hitCount":2},
        {"id":3,"callFrame":{"functionName":"(garbage collector)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},"hitCount":1},
        {"id":4,"callFrame":{"functionName":"","scriptId":"1","url":"file:///app.js","lineNumber":0,"columnNumber":0},"hitCount":0,"children":[5]},
        {"id":5,"callFrame":{"functionName":"main","scriptId":"1","url":"file:///app.js","lineNumber":9,"columnNumber":2},"hitCount":1,"children":[6]},
        {"id":6,"callFrame":{"functionName":"hot;loop","scriptId":"1","url":"file:///app.js","lineNumber":19,"columnNumber":2},"hitCount":3},
        {"id":7,"callFrame":{"functionName":"(idle)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},"hitCount":4}
      ],
      "startTime": 0, "endTime": 100,
      "samples": [6,6,5,2,6,7,7,3,2,7,6],
      "timeDeltas": [1,1,1,1,1,1,1,1,1,1,1]
    }"#;

    #[test]
    fn folds_samples() {
        assert_eq!(
            folded_text(PROFILE),
            "(anonymous) (file:///app.js:1);main (file:///app.js:10) 1\n\
             (anonymous) (file:///app.js:1);main (file:///app.js:10);hot:loop (file:///app.js:20) 4\n\
             (garbage collector) 1\n\
             (idle) 3\n\
             (program) 2\n"
        );
    }

    #[test]
    fn falls_back_to_hit_count() {
        let no_samples = PROFILE.replace(r#""samples": [6,6,5,2,6,7,7,3,2,7,6],"#, "");
        let text = folded_text(&no_samples);
        assert!(text.contains("main (file:///app.js:10);hot:loop (file:///app.js:20) 3\n"), "{text}");
        assert!(text.contains("(idle) 4\n"), "{text}");
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in [
            "",
            "{",
            r#"{"nodes": 3}"#,
            r#"{"nodes":[{"id":1,"children":[9]}]}"#,
            r#"{"nodes":[{"id":1},{"id":1}]}"#,
            r#"{"nodes":[{"id":1}],"samples":[2]}"#,
            r#"{"nodes":[{"id":1,"children":[2]},{"id":2,"children":[1]}],"samples":[1]}"#,
        ] {
            assert!(fold_cpuprofile(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
    }
}
