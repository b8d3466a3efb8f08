//! V8 sampling heap profile (`.heapprofile`, HeapProfiler.SamplingHeapProfile JSON) → folded
//! stacks weighted by bytes (`selfSize`: bytes sampled as allocated by that frame itself).
//!
//! The profile is a nested tree under `head`; the `(root)` head is dropped.

use serde::Deserialize;

use crate::error::FlameError;
use crate::folded::Folded;
use crate::json::{parse_deep, CallFrame};

const FORMAT: &str = "heapprofile";

#[derive(Debug, Deserialize)]
struct HeapProfile {
    head: HeapNode,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeapNode {
    #[serde(default)]
    call_frame: CallFrame,
    #[serde(default)]
    self_size: u64,
    #[serde(default)]
    children: Vec<HeapNode>,
}

/// Folds a `.heapprofile` JSON document.
pub fn fold_heapprofile(json: &[u8]) -> Result<Folded, FlameError> {
    parse_deep::<HeapProfile, _, _>(json, FORMAT, |profile| Ok(fold(&profile.head)))
}

/// Depth-first walk with an explicit stack (trees can be thousands of frames deep).
fn fold(head: &HeapNode) -> Folded {
    let mut folded = Folded::default();
    let mut path: Vec<String> = Vec::new();
    let skip_head = head.call_frame.is_root();
    // (node, depth in `path` where its label goes)
    let mut todo: Vec<(&HeapNode, usize)> = vec![(head, 0)];
    while let Some((node, depth)) = todo.pop() {
        path.truncate(depth);
        let is_head = std::ptr::eq(node, head) && skip_head;
        if !is_head {
            path.push(node.call_frame.label());
        }
        folded.add(&path, node.self_size);
        let child_depth = path.len();
        todo.extend(node.children.iter().rev().map(|c| (c, child_depth)));
    }
    folded
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROFILE: &str = r#"{"head":{
      "callFrame":{"functionName":"(root)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},
      "selfSize":0,"id":1,"children":[
        {"callFrame":{"functionName":"","scriptId":"1","url":"file:///app.js","lineNumber":0,"columnNumber":0},
         "selfSize":100,"id":2,"children":[
            {"callFrame":{"functionName":"alloc","scriptId":"1","url":"file:///app.js","lineNumber":4,"columnNumber":0},
             "selfSize":4096,"id":3,"children":[]},
            {"callFrame":{"functionName":"noop","scriptId":"1","url":"file:///app.js","lineNumber":8,"columnNumber":0},
             "selfSize":0,"id":4,"children":[
               {"callFrame":{"functionName":"alloc","scriptId":"1","url":"file:///app.js","lineNumber":4,"columnNumber":0},
                "selfSize":32,"id":5,"children":[]}]}]},
        {"callFrame":{"functionName":"(V8 API)","scriptId":"0","url":"","lineNumber":-1,"columnNumber":-1},
         "selfSize":64,"id":6,"children":[]}]},
      "samples":[{"size":4096,"nodeId":3,"ordinal":1}]}"#;

    #[test]
    fn folds_bytes() {
        let text = String::from_utf8(fold_heapprofile(PROFILE.as_bytes()).unwrap().to_bytes()).unwrap();
        assert_eq!(
            text,
            "(V8 API) 64\n\
             (anonymous) (file:///app.js:1) 100\n\
             (anonymous) (file:///app.js:1);alloc (file:///app.js:5) 4096\n\
             (anonymous) (file:///app.js:1);noop (file:///app.js:9);alloc (file:///app.js:5) 32\n"
        );
    }

    #[test]
    fn deep_tree() {
        let depth = 1000;
        let mut json = String::from(r#"{"head":"#);
        for i in 0..depth {
            json.push_str(&format!(r#"{{"callFrame":{{"functionName":"f{i}"}},"selfSize":1,"children":["#));
        }
        json.push_str(&"]}".repeat(depth));
        json.push('}');
        let folded = fold_heapprofile(json.as_bytes()).unwrap();
        assert_eq!(folded.summary().stacks, depth);
        assert_eq!(folded.summary().total, depth as u64);
    }

    #[test]
    fn bad_input_is_an_error() {
        for bad in ["", "[]", r#"{"head": 1}"#, r#"{"head":{"selfSize":-1}}"#, "{\"head\":{}"] {
            assert!(fold_heapprofile(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
    }
}
