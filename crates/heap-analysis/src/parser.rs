//! Streaming parser of the V8 `.heapsnapshot` format into a [`HeapGraph`].
//!
//! Layout of the format (one JSON object):
//! `{"snapshot":{"meta":{...},"node_count":N,"edge_count":M,...},"nodes":[...],"edges":[...],
//!   "trace_function_infos":[...],"trace_tree":[...],"samples":[...],"locations":[...],"strings":[...]}`
//!
//! The field layout of `nodes` and `edges` is read from `snapshot.meta` (`node_fields`,
//! `node_types`, `edge_fields`, `edge_types`) rather than hard-coded, so snapshots from older and
//! newer V8 versions (with or without `trace_node_id` / `detachedness`) both load. The small
//! `snapshot` header is deserialised with serde; the big arrays are scanned by [`Scanner`]
//! straight into column vectors. Sections we do not need are skipped without being stored.

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;

use crate::error::HeapError;
use crate::graph::{HeapGraph, StringTable, TypeCodes, EDGE_TYPE_BITS, MAX_NODES};
use crate::scan::Scanner;
use crate::split::{self, RecordSink};

/// The `snapshot` header object.
#[derive(Deserialize)]
struct Header {
    meta: Meta,
    #[serde(default)]
    node_count: Option<u64>,
    #[serde(default)]
    edge_count: Option<u64>,
}

#[derive(Deserialize)]
struct Meta {
    node_fields: Vec<String>,
    node_types: Vec<TypeSpec>,
    edge_fields: Vec<String>,
    edge_types: Vec<TypeSpec>,
    /// `["object_index","script_id","line","column"]` (absent in old snapshots).
    #[serde(default)]
    location_fields: Vec<String>,
}

/// An entry of `node_types` / `edge_types`: the enum list, or a plain type name.
#[derive(Deserialize)]
#[serde(untagged)]
enum TypeSpec {
    Enum(Vec<String>),
    #[allow(dead_code)]
    Other(serde_json::Value),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum NodeRole {
    Type,
    Name,
    Id,
    SelfSize,
    EdgeCount,
    Detachedness,
    Skip,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum EdgeRole {
    Type,
    Name,
    To,
    Skip,
}

/// Field layout derived from `meta`.
struct Layout {
    node_roles: Vec<NodeRole>,
    edge_roles: Vec<EdgeRole>,
    types: TypeCodes,
    node_count_hint: u64,
    edge_count_hint: u64,
    /// `locations` has V8's usual four fields, in that order (read only then).
    standard_locations: bool,
}

impl Layout {
    fn from_header(raw: &[u8]) -> Result<Layout, HeapError> {
        let header: Header = serde_json::from_slice(raw)
            .map_err(|e| HeapError::Unsupported(format!("cannot read snapshot.meta: {e}")))?;
        let meta = header.meta;
        let node_roles = roles(&meta.node_fields, |f| match f {
            "type" => NodeRole::Type,
            "name" => NodeRole::Name,
            "id" => NodeRole::Id,
            "self_size" => NodeRole::SelfSize,
            "edge_count" => NodeRole::EdgeCount,
            "detachedness" => NodeRole::Detachedness,
            _ => NodeRole::Skip,
        });
        for need in [NodeRole::Type, NodeRole::Name, NodeRole::Id, NodeRole::SelfSize, NodeRole::EdgeCount] {
            if node_roles.iter().filter(|r| **r == need).count() != 1 {
                return Err(HeapError::Unsupported(format!(
                    "meta.node_fields {:?} lacks one of type/name/id/self_size/edge_count",
                    meta.node_fields
                )));
            }
        }
        let edge_roles = roles(&meta.edge_fields, |f| match f {
            "type" => EdgeRole::Type,
            "name_or_index" => EdgeRole::Name,
            "to_node" => EdgeRole::To,
            _ => EdgeRole::Skip,
        });
        for need in [EdgeRole::Type, EdgeRole::Name, EdgeRole::To] {
            if edge_roles.iter().filter(|r| **r == need).count() != 1 {
                return Err(HeapError::Unsupported(format!(
                    "meta.edge_fields {:?} lacks one of type/name_or_index/to_node",
                    meta.edge_fields
                )));
            }
        }
        let node_types = type_enum(&meta.node_types, &meta.node_fields, "type", "node_types")?;
        let edge_types = type_enum(&meta.edge_types, &meta.edge_fields, "type", "edge_types")?;
        if node_types.len() > 255 || edge_types.len() > (1 << EDGE_TYPE_BITS) {
            return Err(HeapError::Unsupported("too many node or edge types in meta".into()));
        }
        Ok(Layout {
            node_roles,
            edge_roles,
            types: TypeCodes::new(node_types, edge_types),
            node_count_hint: header.node_count.unwrap_or(0),
            edge_count_hint: header.edge_count.unwrap_or(0),
            standard_locations: meta.location_fields == ["object_index", "script_id", "line", "column"],
        })
    }
}

fn roles<R>(fields: &[String], f: impl Fn(&str) -> R) -> Vec<R> {
    fields.iter().map(|s| f(s.as_str())).collect()
}

/// The enum list of the `type` field (`node_types[i]` where `node_fields[i] == "type"`).
fn type_enum(specs: &[TypeSpec], fields: &[String], field: &str, what: &str) -> Result<Vec<String>, HeapError> {
    let pos = fields.iter().position(|f| f == field);
    match pos.and_then(|p| specs.get(p)) {
        Some(TypeSpec::Enum(list)) if !list.is_empty() => Ok(list.clone()),
        _ => Err(HeapError::Unsupported(format!("meta.{what} has no list of type names"))),
    }
}

/// Parses a heap snapshot from `reader`. `total` is the input size if known (0 otherwise), used
/// to bound preallocation; `on_bytes` receives the number of bytes read so far.
pub fn parse<R: Read>(reader: R, total: u64, on_bytes: &mut dyn FnMut(u64)) -> Result<HeapGraph, HeapError> {
    let block = if crate::one_thread() { 0 } else { split::BLOCK };
    parse_with_block(reader, total, block, on_bytes)
}

/// [`parse`] with `block` bytes of the big arrays split between two threads at a time (0: all
/// on this thread; tests use tiny blocks to put the cuts everywhere).
pub fn parse_with_block<R: Read>(
    reader: R,
    total: u64,
    block: usize,
    on_bytes: &mut dyn FnMut(u64),
) -> Result<HeapGraph, HeapError> {
    let mut sc = Scanner::new(reader, total, on_bytes);
    match sc.peek_non_ws()? {
        Some(b'{') => sc.bump(),
        Some(0x1f) => return Err(HeapError::NotSnapshot("input looks gzip-compressed".into())),
        Some(_) => return Err(HeapError::NotSnapshot("input does not start with a JSON object".into())),
        None => return Err(HeapError::NotSnapshot("input is empty".into())),
    }
    let mut builder =
        Builder { block, layout: None, graph: None, edges_done: false, strings: None, locations: Vec::new() };
    let mut key = Vec::new();
    let mut first = true;
    loop {
        match sc.peek_non_ws()? {
            Some(b'}') => {
                sc.bump();
                break;
            }
            Some(b'"') => sc.bump(),
            Some(_) if first => return Err(HeapError::NotSnapshot("top-level object has no keys".into())),
            Some(_) => return Err(sc.corrupt("expected a key in the top-level object")),
            None => return Err(sc.truncated("top-level object")),
        }
        key.clear();
        sc.read_string_into(&mut key)?;
        if first && key != b"snapshot" {
            return Err(HeapError::NotSnapshot(format!(
                "first key is \"{}\", expected \"snapshot\"",
                String::from_utf8_lossy(&key)
            )));
        }
        first = false;
        sc.expect(b':', "top-level object")?;
        builder.section(&mut sc, &key, total)?;
        match sc.peek_non_ws()? {
            Some(b',') => sc.bump(),
            Some(b'}') => {}
            Some(_) => return Err(sc.corrupt("expected ',' or '}' after a top-level section")),
            None => return Err(sc.truncated("top-level object")),
        }
    }
    if sc.peek_non_ws()?.is_some() {
        return Err(sc.corrupt("data after the end of the snapshot object"));
    }
    builder.finish(total)
}

/// Accumulates the sections as they are read.
struct Builder {
    /// Bytes of `nodes` / `edges` parsed on two threads at a time (0: one thread).
    block: usize,
    layout: Option<Layout>,
    graph: Option<PartialGraph>,
    edges_done: bool,
    strings: Option<StringTable>,
    locations: Vec<[u32; 4]>,
}

#[derive(Default)]
struct PartialGraph {
    node_type: Vec<u8>,
    node_name: Vec<u32>,
    node_id: Vec<u32>,
    self_size: Vec<u32>,
    big_sizes: HashMap<u32, u64>,
    first_edge: Vec<u32>,
    detachedness: Vec<u8>,
    edge_to: Vec<u32>,
    edge_name: Vec<u32>,
}

impl Builder {
    fn section<R: Read>(&mut self, sc: &mut Scanner<'_, R>, key: &[u8], total: u64) -> Result<(), HeapError> {
        let mut t = std::time::Instant::now();
        let r = self.section_inner(sc, key, total);
        crate::phase(&format!("parse {}", String::from_utf8_lossy(key)), &mut t);
        r
    }
    fn section_inner<R: Read>(&mut self, sc: &mut Scanner<'_, R>, key: &[u8], total: u64) -> Result<(), HeapError> {
        match key {
            b"snapshot" => {
                let raw = sc.capture_value("snapshot header")?;
                self.layout = Some(Layout::from_header(&raw)?);
                Ok(())
            }
            b"nodes" => self.read_nodes(sc, total),
            b"edges" => self.read_edges(sc, total),
            b"strings" => self.read_strings(sc),
            b"locations" if self.layout.as_ref().is_some_and(|l| l.standard_locations) => self.read_locations(sc),
            _ => sc.skip_value("an unused section"),
        }
    }

    fn layout(&self) -> Result<&Layout, HeapError> {
        self.layout.as_ref().ok_or_else(|| HeapError::Unsupported("nodes/edges before snapshot.meta".into()))
    }

    fn read_nodes<R: Read>(&mut self, sc: &mut Scanner<'_, R>, total: u64) -> Result<(), HeapError> {
        let layout = self.layout()?;
        let cap = capacity_hint(layout.node_count_hint, total, 2 * layout.node_roles.len() as u64);
        let mut g = PartialGraph {
            node_type: Vec::with_capacity(cap),
            node_name: Vec::with_capacity(cap),
            node_id: Vec::with_capacity(cap),
            self_size: Vec::with_capacity(cap),
            first_edge: Vec::with_capacity(cap + 1),
            ..PartialGraph::default()
        };
        g.first_edge.push(0);
        let types = layout.types.node_types.len() as u64;
        let fields = NodeFields::new(&layout.node_roles)?;
        let mut sink = NodeSink { fields: &fields, types, g, edge_total: 0 };
        let scratch = || NodeSink { fields: &fields, types, g: PartialGraph::default(), edge_total: 0 };
        sc.expect(b'[', "nodes")?;
        split::read_records(sc, "nodes", layout.node_roles.len(), self.block, &mut sink, scratch)?;
        self.graph = Some(sink.g);
        Ok(())
    }

    fn read_edges<R: Read>(&mut self, sc: &mut Scanner<'_, R>, total: u64) -> Result<(), HeapError> {
        let layout =
            self.layout.as_ref().ok_or_else(|| HeapError::Unsupported("nodes/edges before snapshot.meta".into()))?;
        let cap = capacity_hint(layout.edge_count_hint, total, 2 * layout.edge_roles.len() as u64);
        let Some(g) = self.graph.as_mut() else {
            return Err(HeapError::Unsupported("edges before nodes".into()));
        };
        // Fewer than MAX_NODES (checked while reading them).
        let nodes = g.node_type.len() as u64;
        let at = |role| layout.edge_roles.iter().position(|r| *r == role).unwrap_or(0);
        let fields = (at(EdgeRole::Type), at(EdgeRole::Name), at(EdgeRole::To));
        let new_sink = |cap: usize| EdgeSink {
            fields,
            types: layout.types.edge_types.len() as u64,
            node_fields: FieldDivider::new(layout.node_roles.len() as u64),
            nodes,
            edge_to: Vec::with_capacity(cap),
            edge_name: Vec::with_capacity(cap),
        };
        let mut sink = new_sink(cap);
        sc.expect(b'[', "edges")?;
        split::read_records(sc, "edges", layout.edge_roles.len(), self.block, &mut sink, || new_sink(0))?;
        g.edge_to = sink.edge_to;
        g.edge_name = sink.edge_name;
        self.edges_done = true;
        Ok(())
    }

    /// Script positions of functions: `[node ordinal, script_id, line, column]`, sorted by node
    /// (entries whose object index is not a node's are dropped).
    fn read_locations<R: Read>(&mut self, sc: &mut Scanner<'_, R>) -> Result<(), HeapError> {
        let nf = self.layout()?.node_roles.len() as u64;
        sc.expect(b'[', "locations")?;
        let (mut k, mut entry) = (0usize, [0u32; 4]);
        let locations = &mut self.locations;
        sc.read_uint_array("locations", |v| {
            entry[k] = v.min(u64::from(u32::MAX)) as u32;
            if k == 0 {
                entry[0] = if v % nf == 0 && v / nf < MAX_NODES { (v / nf) as u32 } else { u32::MAX };
            }
            k += 1;
            if k == 4 {
                k = 0;
                if entry[0] != u32::MAX {
                    locations.push(entry);
                }
            }
            Ok(())
        })?;
        self.locations.sort_unstable_by_key(|e| e[0]);
        Ok(())
    }

    fn read_strings<R: Read>(&mut self, sc: &mut Scanner<'_, R>) -> Result<(), HeapError> {
        let mut table = StringTable::default();
        sc.expect(b'[', "strings")?;
        if sc.peek_non_ws()? == Some(b']') {
            sc.bump();
            self.strings = Some(table);
            return Ok(());
        }
        loop {
            sc.expect(b'"', "strings")?;
            let (start, buf) = table.begin();
            sc.read_string_into(buf)?;
            table.commit(start);
            match sc.peek_non_ws()? {
                Some(b',') => sc.bump(),
                Some(b']') => {
                    sc.bump();
                    break;
                }
                Some(_) => return Err(sc.corrupt("expected ',' or ']' in strings")),
                None => return Err(sc.truncated("strings")),
            }
        }
        self.strings = Some(table);
        Ok(())
    }

    /// Checks cross-section consistency and assembles the graph.
    fn finish(self, total: u64) -> Result<HeapGraph, HeapError> {
        let end = total;
        let layout = self.layout.ok_or_else(|| HeapError::NotSnapshot("no \"snapshot\" header with meta".into()))?;
        let g = self.graph.ok_or_else(|| HeapError::corrupt(end, "no \"nodes\" section"))?;
        if !self.edges_done {
            return Err(HeapError::corrupt(end, "no \"edges\" section"));
        }
        let strings = self.strings.ok_or_else(|| HeapError::corrupt(end, "no \"strings\" section"))?;
        let n = g.node_type.len();
        if n == 0 {
            return Err(HeapError::corrupt(end, "snapshot has no nodes"));
        }
        let declared = g.first_edge.last().copied().unwrap_or(0) as usize;
        if declared != g.edge_to.len() {
            return Err(HeapError::corrupt(
                end,
                format!("nodes declare {declared} edges but the edges array holds {}", g.edge_to.len()),
            ));
        }
        let graph = HeapGraph {
            types: layout.types,
            node_type: g.node_type,
            node_name: g.node_name,
            node_id: g.node_id,
            self_size: g.self_size,
            big_sizes: g.big_sizes,
            first_edge: g.first_edge,
            detachedness: g.detachedness,
            edge_to: g.edge_to,
            edge_name: g.edge_name,
            strings,
            file_size: total,
            locations: self.locations,
        };
        let mut t = std::time::Instant::now();
        validate_references(&graph, end)?;
        crate::phase("validate", &mut t);
        Ok(graph)
    }
}

/// Positions of the node fields this crate reads (from `meta.node_fields`).
struct NodeFields {
    ty: usize,
    name: usize,
    id: usize,
    size: usize,
    edges: usize,
    detachedness: Option<usize>,
}

impl NodeFields {
    fn new(roles: &[NodeRole]) -> Result<NodeFields, HeapError> {
        let at = |role| roles.iter().position(|r| *r == role);
        let need = |role| at(role).ok_or_else(|| HeapError::Unsupported("a node field is missing from meta".into()));
        Ok(NodeFields {
            ty: need(NodeRole::Type)?,
            name: need(NodeRole::Name)?,
            id: need(NodeRole::Id)?,
            size: need(NodeRole::SelfSize)?,
            edges: need(NodeRole::EdgeCount)?,
            detachedness: at(NodeRole::Detachedness),
        })
    }
}

/// Node columns filled from the `nodes` array (one per thread; see [`split`]).
struct NodeSink<'l> {
    fields: &'l NodeFields,
    types: u64,
    g: PartialGraph,
    /// Sum of the edge counts received (`first_edge` holds the running sums: after the leading
    /// 0 in the first sink, from the first node's end in a second thread's).
    edge_total: u64,
}

impl RecordSink for NodeSink<'_> {
    #[inline(always)]
    fn record(&mut self, record: u64, values: &[u64]) -> Result<(), String> {
        let (f, g) = (self.fields, &mut self.g);
        if record >= MAX_NODES {
            return Err(format!("more than {MAX_NODES} nodes are not supported"));
        }
        let ty = values[f.ty];
        if ty >= self.types {
            return Err(format!("node type {ty} out of range"));
        }
        g.node_type.push(ty as u8);
        g.node_name.push(to_u32(values[f.name], "node name")?);
        g.node_id.push(to_u32(values[f.id], "node id")?);
        let size = values[f.size];
        if size >= u64::from(u32::MAX) {
            g.big_sizes.insert(record as u32, size);
            g.self_size.push(u32::MAX);
        } else {
            g.self_size.push(size as u32);
        }
        self.edge_total += values[f.edges];
        g.first_edge.push(to_u32(self.edge_total, "total edge count")?);
        if let Some(d) = f.detachedness {
            g.detachedness.push(values[d].min(255) as u8);
        }
        Ok(())
    }

    fn append(&mut self, later: &mut Self) -> Result<(), String> {
        let (g, l) = (&mut self.g, &mut later.g);
        let base = self.edge_total;
        for &end in &l.first_edge {
            g.first_edge.push(to_u32(base + u64::from(end), "total edge count")?);
        }
        self.edge_total += later.edge_total;
        later.edge_total = 0;
        l.first_edge.clear();
        g.node_type.append(&mut l.node_type);
        g.node_name.append(&mut l.node_name);
        g.node_id.append(&mut l.node_id);
        g.self_size.append(&mut l.self_size);
        g.detachedness.append(&mut l.detachedness);
        g.big_sizes.extend(l.big_sizes.drain());
        Ok(())
    }
}

/// Edge columns filled from the `edges` array (one per thread; see [`split`]).
struct EdgeSink {
    /// Positions of type, name_or_index and to_node in a record.
    fields: (usize, usize, usize),
    types: u64,
    node_fields: FieldDivider,
    /// Number of nodes (the `nodes` section comes first): targets are checked as they are read.
    nodes: u64,
    edge_to: Vec<u32>,
    edge_name: Vec<u32>,
}

impl RecordSink for EdgeSink {
    #[inline(always)]
    fn record(&mut self, _record: u64, values: &[u64]) -> Result<(), String> {
        let (ty, name, to) = (values[self.fields.0], values[self.fields.1], values[self.fields.2]);
        if ty >= self.types {
            return Err(format!("edge type {ty} out of range"));
        }
        let ord = self.node_fields.divide(to);
        let nf = self.node_fields.d;
        if ord * nf != to {
            return Err(format!("to_node {to} is not a multiple of node_fields ({nf})"));
        }
        if ord >= self.nodes {
            return Err(format!("to_node {to} points past the last node"));
        }
        self.edge_to.push((ord as u32) << EDGE_TYPE_BITS | ty as u32);
        self.edge_name.push(to_u32(name, "edge name_or_index")?);
        Ok(())
    }

    fn append(&mut self, later: &mut Self) -> Result<(), String> {
        self.edge_to.append(&mut later.edge_to);
        self.edge_name.append(&mut later.edge_name);
        Ok(())
    }
}

/// Division by the number of node fields (every edge's `to_node` is divided by it) without a
/// hardware divide, which would be the slowest instruction of the edge loop: for `x < 2^32`,
/// `x / d == (x * m) >> 64` with `m = ceil(2^64 / d)` exactly (the error of `m` is below one part
/// in 2^32 of `x`, too little to reach the next multiple of `d`).
struct FieldDivider {
    d: u64,
    /// `ceil(2^64 / d)`, or 0 for `d == 1`.
    m: u64,
}

impl FieldDivider {
    fn new(d: u64) -> FieldDivider {
        let d = d.max(1);
        FieldDivider { d, m: if d == 1 { 0 } else { u64::MAX / d + 1 } }
    }

    #[inline(always)]
    fn divide(&self, x: u64) -> u64 {
        if self.m == 0 || x >> 32 != 0 {
            x / self.d
        } else {
            ((u128::from(x) * u128::from(self.m)) >> 64) as u64
        }
    }
}

/// Every name must be a string (edge targets were checked while reading the edges).
fn validate_references(g: &HeapGraph, end: u64) -> Result<(), HeapError> {
    let s = g.strings.len() as u32;
    if let Some(bad) = g.node_name.iter().find(|&&x| x >= s) {
        return Err(HeapError::corrupt(end, format!("node name index {bad} >= {s} strings")));
    }
    for e in 0..g.edge_count() {
        if !g.edge_is_indexed(e) && g.edge_name[e] >= s {
            return Err(HeapError::corrupt(end, format!("edge {e} name index out of range")));
        }
    }
    Ok(())
}

fn to_u32(v: u64, what: &str) -> Result<u32, String> {
    u32::try_from(v).map_err(|_| format!("{what} {v} does not fit in 32 bits"))
}

/// Preallocation for a declared element count, bounded by what the input size can hold.
fn capacity_hint(declared: u64, total: u64, min_bytes_each: u64) -> usize {
    let bound = if total > 0 { total / min_bytes_each.max(1) } else { 1 << 20 };
    declared.min(bound).min(MAX_NODES * 8) as usize
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds a snapshot JSON from node tuples `(type, name, id, self_size, edge_count)` and edge
    /// triples `(type, name_or_index, to_ordinal)`.
    pub fn snapshot_json(nodes: &[(u32, u32, u32, u32, u32)], edges: &[(u32, u32, u32)], strings: &[&str]) -> String {
        let meta = r#"{"meta":{"node_fields":["type","name","id","self_size","edge_count","trace_node_id","detachedness"],"node_types":[["hidden","array","string","object","code","closure","regexp","number","native","synthetic","concatenated string","sliced string","symbol","bigint","object shape"],"string","number","number","number","number","number"],"edge_fields":["type","name_or_index","to_node"],"edge_types":[["context","element","property","internal","hidden","shortcut","weak"],"string_or_number","node"],"location_fields":["object_index","script_id","line","column"]},"node_count":0,"edge_count":0,"trace_function_count":0}"#;
        let nodes: Vec<String> = nodes.iter().map(|(t, n, i, s, e)| format!("{t},{n},{i},{s},{e},0,0")).collect();
        let edges: Vec<String> = edges.iter().map(|(t, n, to)| format!("{t},{n},{}", to * 7)).collect();
        let strings: Vec<String> = strings.iter().map(|s| serde_json::to_string(s).unwrap_or_default()).collect();
        format!(
            "{{\"snapshot\":{meta},\n\"nodes\":[{}],\n\"edges\":[{}],\n\"trace_function_infos\":[],\"trace_tree\":[],\"samples\":[],\"locations\":[1,2,3,4],\n\"strings\":[{}]}}\n",
            nodes.join(",\n"),
            edges.join(",\n"),
            strings.join(",\n")
        )
    }

    pub fn parse_str(s: &str) -> Result<HeapGraph, HeapError> {
        parse(s.as_bytes(), s.len() as u64, &mut |_| {})
    }

    fn tiny() -> String {
        // root -> a (element 1) ; a -> b (property "x") ; a -> root weak
        snapshot_json(
            &[(9, 0, 1, 0, 1), (3, 1, 3, 10, 2), (3, 2, 5, 20, 0)],
            &[(1, 1, 1), (2, 3, 2), (6, 3, 0)],
            &["", "A", "B\u{e9}", "x"],
        )
    }

    /// A reader handing out at most `chunk` bytes per call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// The columns of a graph, for comparing two parses.
    fn columns(g: &HeapGraph) -> impl PartialEq + std::fmt::Debug {
        let mut big: Vec<_> = g.big_sizes.iter().map(|(k, v)| (*k, *v)).collect();
        big.sort_unstable();
        let strings: Vec<String> = (0..g.strings.len() as u32).map(|i| g.strings.get(i).to_string()).collect();
        (
            (g.node_type.clone(), g.node_name.clone(), g.node_id.clone(), g.self_size.clone(), big),
            (g.first_edge.clone(), g.detachedness.clone(), g.edge_to.clone(), g.edge_name.clone()),
            (strings, g.locations.clone()),
        )
    }

    #[test]
    fn a_split_parse_equals_the_sequential_one() {
        // 60 nodes in a chain with 0..3 edges each, a size over 4 GB, names with escapes,
        // multi-byte UTF-8 and a surrogate pair; read a few bytes at a time.
        let n = 60u32;
        let nodes: Vec<_> = (0..n).map(|i| (i % 9, i % 5, 2 * i + 1, i * 1000 + 7, i % 4)).collect();
        let edge_total: u32 = nodes.iter().map(|t| t.4).sum();
        let edges: Vec<_> = (0..edge_total).map(|e| (e % 7, e % 5, (e * 13) % n)).collect();
        let json = snapshot_json(&nodes, &edges, &["", "A\"q\\", "B\u{e9}\u{4e2d}", "x\u{1F600}y", "\n\t"]).replacen(
            ",7007,",
            ",5000000000,",
            1,
        );
        let want = parse_str(&json).unwrap();
        assert_eq!(want.big_sizes.len(), 1, "the big size is in the test");
        for block in [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 400, 1000] {
            for chunk in [1, 2, 7, 64, 1 << 20] {
                let got = parse_with_block(Trickle(json.as_bytes(), chunk), 0, block, &mut |_| {}).unwrap();
                assert_eq!(columns(&got), columns(&want), "block {block} chunk {chunk}");
            }
        }
    }

    #[test]
    fn split_parses_reject_what_the_sequential_one_rejects() {
        let s = tiny();
        let b = s.trim_end().as_bytes();
        for block in [2, 5, 16] {
            for cut in 0..b.len() {
                let r = parse_with_block(&b[..cut], cut as u64, block, &mut |_| {});
                assert!(r.is_err(), "cut at {cut} parsed with block {block}");
            }
            for i in 0..b.len() {
                for repl in [b'9', b',', b']', b' ', b'x'] {
                    let mut v = b.to_vec();
                    v[i] = repl;
                    let seq = parse_with_block(&v[..], v.len() as u64, 0, &mut |_| {});
                    let split = parse_with_block(&v[..], v.len() as u64, block, &mut |_| {});
                    assert_eq!(seq.is_ok(), split.is_ok(), "byte {i} -> {repl} block {block}");
                    if let (Ok(a), Ok(b)) = (seq, split) {
                        assert_eq!(columns(&a), columns(&b), "byte {i} -> {repl} block {block}");
                    }
                }
            }
        }
    }

    #[test]
    fn field_division_is_exact() {
        for d in 1..=40u64 {
            let div = FieldDivider::new(d);
            let near_edges =
                [0u64, 1, d - 1, d, d + 1, u64::from(u32::MAX) - 1, u64::from(u32::MAX), 1 << 32, u64::MAX];
            let spread = (0..20_000u64).map(|i| i.wrapping_mul(0x9E37_79B9) >> (i % 40));
            for x in near_edges.into_iter().chain(spread) {
                assert_eq!(div.divide(x), x / d, "{x} / {d}");
            }
        }
    }

    #[test]
    fn parses_a_tiny_snapshot() {
        let g = parse_str(&tiny()).unwrap();
        assert_eq!(g.node_count(), 3);
        assert_eq!(g.edge_count(), 3);
        assert_eq!(g.name(2), "Bé");
        assert_eq!(g.edge_target(1), 2);
        assert_eq!(g.edge_type_name(1), "property");
        assert_eq!(g.edge_label(1), "x");
        assert_eq!(g.edge_label(0), "[1]");
        assert_eq!(g.self_size(2), 20);
        assert_eq!(g.node_id[1], 3);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let s = tiny();
        let b = s.trim_end().as_bytes();
        for cut in 0..b.len() {
            let r = parse(&b[..cut], cut as u64, &mut |_| {});
            assert!(r.is_err(), "cut at {cut} parsed");
        }
    }

    #[test]
    fn a_cut_inside_the_arrays_is_a_truncation_not_corruption() {
        // Cut inside a number, the sink would see a wrong value ("14" -> "1": not a multiple of
        // node_fields) and call the file corrupt; it is cut short, and says so.
        let s = snapshot_json(&[(9, 0, 1, 0, 1), (3, 1, 3, 10, 0), (3, 1, 1234567, 10, 0)], &[(1, 1, 2)], &["", "A"]);
        let b = s.trim_end().as_bytes();
        let from = s.find("\"nodes\"").unwrap();
        for block in [0, 4, 16] {
            for cut in from..b.len() {
                let r = parse_with_block(&b[..cut], cut as u64, block, &mut |_| {});
                assert!(matches!(r, Err(HeapError::Truncated { .. })), "cut at {cut} block {block}: {r:?}");
            }
        }
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        let s = tiny();
        assert!(matches!(parse_str("hello"), Err(HeapError::NotSnapshot(_))));
        assert!(matches!(parse_str("{\"a\":1}"), Err(HeapError::NotSnapshot(_))));
        assert!(matches!(parse_str(""), Err(HeapError::NotSnapshot(_))));
        // Edge pointing past the last node.
        let bad = snapshot_json(&[(9, 0, 1, 0, 1)], &[(1, 1, 5)], &[""]);
        assert!(matches!(parse_str(&bad), Err(HeapError::Corrupt { .. })));
        // Edge counts disagree with the edges array.
        let bad = snapshot_json(&[(9, 0, 1, 0, 2)], &[(1, 1, 0)], &[""]);
        assert!(matches!(parse_str(&bad), Err(HeapError::Corrupt { .. })));
        // Name index out of range.
        let bad = snapshot_json(&[(9, 7, 1, 0, 0)], &[], &[""]);
        assert!(matches!(parse_str(&bad), Err(HeapError::Corrupt { .. })));
        // Garbage in the nodes array.
        let bad = s.replacen("\"nodes\":[9", "\"nodes\":[x", 1);
        assert!(matches!(parse_str(&bad), Err(HeapError::Corrupt { .. })));
        // Unsupported meta.
        let bad = s.replacen("\"self_size\",", "", 1);
        assert!(matches!(parse_str(&bad), Err(HeapError::Unsupported(_))));
        // Every single-byte corruption either parses or errors, never panics.
        let bytes = s.as_bytes();
        for i in 0..bytes.len() {
            for repl in [b'9', b'"', b']', b'{', b'\\', 0xff] {
                let mut v = bytes.to_vec();
                v[i] = repl;
                let _ = parse(&v[..], v.len() as u64, &mut |_| {});
            }
        }
    }

    #[test]
    fn field_layout_comes_from_meta() {
        // Older V8: no trace_node_id / detachedness, fields in another order.
        let s = r#"{"snapshot":{"meta":{"node_fields":["name","type","self_size","id","edge_count"],"node_types":["string",["hidden","object","synthetic"],"number","number","number"],"edge_fields":["to_node","type","name_or_index"],"edge_types":["node",["element","property","weak"],"string_or_number"]}},
"nodes":[0,2,0,1,1, 1,1,8,3,0],"edges":[5,1,2],"strings":["","Foo","p"]}"#;
        let g = parse_str(s).unwrap();
        assert_eq!(g.node_count(), 2);
        assert_eq!(g.edge_target(0), 1);
        assert_eq!(g.edge_type_name(0), "property");
        assert_eq!(g.edge_label(0), "p");
        assert_eq!(g.type_name(1), "object");
        assert_eq!(g.self_size(1), 8);
    }
}
