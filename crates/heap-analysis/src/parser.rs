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
use std::sync::Mutex;

use crate::column::Column;
use crate::split::{self, RecordSink, RecordWindow};

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
    parse_with_block(reader, total, split::BLOCK, on_bytes)
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
    let mut builder = Builder {
        block,
        one_thread: crate::one_thread(),
        layout: None,
        graph: None,
        edges_done: false,
        strings: None,
        locations: Vec::new(),
    };
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
    /// Bytes of the big arrays cut into pieces at a time (0: all sequential).
    block: usize,
    /// The pieces parsed on this thread only (`PERF_HEAP_THREADS=1`).
    one_thread: bool,
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
        let types = layout.types.node_types.len() as u64;
        let fields = NodeFields::new(&layout.node_roles)?;
        let mut first_edge = Column::with_expected(cap + 1);
        first_edge.push(0);
        let mut sink = NodeSink {
            node_type: Column::with_expected(cap),
            node_name: Column::with_expected(cap),
            node_id: Column::with_expected(cap),
            self_size: Column::with_expected(cap),
            first_edge,
            detachedness: Column::with_expected(if fields.detachedness.is_some() { cap } else { 0 }),
            rules: NodeRules { fields: &fields, types },
            big: Mutex::new(Vec::new()),
        };
        sc.expect(b'[', "nodes")?;
        split::read_records(sc, "nodes", layout.node_roles.len(), self.block, self.one_thread, &mut sink)?;
        self.graph = Some(sink.finish().map_err(|m| sc.corrupt(format!("nodes: {m}")))?);
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
        let rules = EdgeRules {
            fields,
            types: layout.types.edge_types.len() as u64,
            node_fields: FieldDivider::new(layout.node_roles.len() as u64),
            nodes,
        };
        let mut sink = EdgeSink { rules, edge_to: Column::with_expected(cap), edge_name: Column::with_expected(cap) };
        sc.expect(b'[', "edges")?;
        split::read_records(sc, "edges", layout.edge_roles.len(), self.block, self.one_thread, &mut sink)?;
        g.edge_to = sink.edge_to.into_vec();
        g.edge_name = sink.edge_name.into_vec();
        self.edges_done = true;
        Ok(())
    }

    /// Script positions of functions: `[node ordinal, script_id, line, column]`, sorted by node
    /// (entries whose object index is not a node's are dropped).
    fn read_locations<R: Read>(&mut self, sc: &mut Scanner<'_, R>) -> Result<(), HeapError> {
        let nf = self.layout()?.node_roles.len() as u64;
        sc.expect(b'[', "locations")?;
        let mut sink = LocationSink { node_fields: FieldDivider::new(nf), entries: Column::with_expected(0) };
        split::read_records(sc, "locations", 4, self.block, self.one_thread, &mut sink)?;
        self.locations = sink.entries.into_vec();
        self.locations.retain(|e| e[0] != u32::MAX);
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

/// How the fields of a `nodes` record are checked and stored.
struct NodeRules<'l> {
    fields: &'l NodeFields,
    types: u64,
}

/// One node, checked, as its columns store it.
struct NodeRow {
    ty: u8,
    name: u32,
    id: u32,
    /// `u32::MAX` when the size is in `big`.
    size: u32,
    big: Option<u64>,
    edges: u32,
    detachedness: u8,
}

impl NodeRules<'_> {
    #[inline(always)]
    fn row(&self, record: u64, values: &[u64]) -> Result<NodeRow, String> {
        let f = self.fields;
        if record >= MAX_NODES {
            return Err(format!("more than {MAX_NODES} nodes are not supported"));
        }
        let ty = values[f.ty];
        if ty >= self.types {
            return Err(format!("node type {ty} out of range"));
        }
        let size = values[f.size];
        let big = (size >= u64::from(u32::MAX)).then_some(size);
        Ok(NodeRow {
            ty: ty as u8,
            name: to_u32(values[f.name], "node name")?,
            id: to_u32(values[f.id], "node id")?,
            size: if big.is_some() { u32::MAX } else { size as u32 },
            big,
            edges: to_u32(values[f.edges], "edge count")?,
            detachedness: f.detachedness.map_or(0, |d| values[d].min(255) as u8),
        })
    }
}

/// Node columns filled from the `nodes` array (see [`split`]). Until [`NodeSink::finish`],
/// `first_edge[n + 1]` holds node `n`'s edge count, not the offset of its last edge.
struct NodeSink<'l> {
    node_type: Column<u8>,
    node_name: Column<u32>,
    node_id: Column<u32>,
    self_size: Column<u32>,
    first_edge: Column<u32>,
    /// Empty when the snapshot has no `detachedness` field.
    detachedness: Column<u8>,
    rules: NodeRules<'l>,
    /// Sizes of 4 GiB or more, by node (rare: a mutex the windows share is enough).
    big: Mutex<Vec<(u32, u64)>>,
}

impl RecordSink for NodeSink<'_> {
    type Window<'w>
        = NodeWindow<'w>
    where
        Self: 'w;

    fn record(&mut self, record: u64, values: &[u64]) -> Result<(), String> {
        let row = self.rules.row(record, values)?;
        self.node_type.push(row.ty);
        self.node_name.push(row.name);
        self.node_id.push(row.id);
        self.self_size.push(row.size);
        self.first_edge.push(row.edges);
        if self.rules.fields.detachedness.is_some() {
            self.detachedness.push(row.detachedness);
        }
        if let Some(size) = row.big {
            self.big.lock().map_err(|_| "poisoned lock")?.push((record as u32, size));
        }
        Ok(())
    }

    fn windows(&mut self, counts: &[usize]) -> Vec<NodeWindow<'_>> {
        let first = self.node_type.len() as u64;
        let mut ty = self.node_type.grow_windows(counts).into_iter();
        let mut name = self.node_name.grow_windows(counts).into_iter();
        let mut id = self.node_id.grow_windows(counts).into_iter();
        let mut size = self.self_size.grow_windows(counts).into_iter();
        let mut edges = self.first_edge.grow_windows(counts).into_iter();
        // No rows when the snapshot has no such field: the windows get empty slices.
        let mut detachedness = match self.rules.fields.detachedness {
            Some(_) => self.detachedness.grow_windows(counts),
            None => Vec::new(),
        }
        .into_iter();
        let (rules, big) = (&self.rules, &self.big);
        let mut at = first;
        counts
            .iter()
            .map(|&n| {
                let w = NodeWindow {
                    rules,
                    big,
                    first: at,
                    filled: 0,
                    ty: ty.next().unwrap_or_default(),
                    name: name.next().unwrap_or_default(),
                    id: id.next().unwrap_or_default(),
                    size: size.next().unwrap_or_default(),
                    edges: edges.next().unwrap_or_default(),
                    detachedness: detachedness.next().unwrap_or_default(),
                };
                at += n as u64;
                w
            })
            .collect()
    }
}

impl NodeSink<'_> {
    /// The columns, with `first_edge` turned from edge counts into offsets.
    fn finish(self) -> Result<PartialGraph, String> {
        let mut first_edge = self.first_edge.into_vec();
        let mut sum: u64 = 0;
        for slot in first_edge.iter_mut().skip(1) {
            sum += u64::from(*slot);
            *slot = to_u32(sum, "total edge count")?;
        }
        Ok(PartialGraph {
            node_type: self.node_type.into_vec(),
            node_name: self.node_name.into_vec(),
            node_id: self.node_id.into_vec(),
            self_size: self.self_size.into_vec(),
            big_sizes: self.big.into_inner().map_err(|_| "poisoned lock")?.into_iter().collect(),
            first_edge,
            detachedness: self.detachedness.into_vec(),
            ..PartialGraph::default()
        })
    }
}

/// One piece's rows of the node columns.
struct NodeWindow<'w> {
    rules: &'w NodeRules<'w>,
    big: &'w Mutex<Vec<(u32, u64)>>,
    /// Ordinal of the window's first node.
    first: u64,
    filled: usize,
    ty: &'w mut [u8],
    name: &'w mut [u32],
    id: &'w mut [u32],
    size: &'w mut [u32],
    edges: &'w mut [u32],
    detachedness: &'w mut [u8],
}

impl RecordWindow for NodeWindow<'_> {
    #[inline(always)]
    fn record(&mut self, values: &[u64]) -> Result<(), String> {
        let i = self.filled;
        let row = self.rules.row(self.first + i as u64, values)?;
        let (Some(ty), Some(name), Some(id), Some(size), Some(edges)) =
            (self.ty.get_mut(i), self.name.get_mut(i), self.id.get_mut(i), self.size.get_mut(i), self.edges.get_mut(i))
        else {
            return Err("more records than counted".into());
        };
        (*ty, *name, *id, *size, *edges) = (row.ty, row.name, row.id, row.size, row.edges);
        if let Some(d) = self.detachedness.get_mut(i) {
            *d = row.detachedness;
        }
        if let Some(size) = row.big {
            self.big.lock().map_err(|_| "poisoned lock")?.push(((self.first + i as u64) as u32, size));
        }
        self.filled += 1;
        Ok(())
    }
}

/// How the fields of an `edges` record are checked and stored.
struct EdgeRules {
    /// Positions of type, name_or_index and to_node in a record.
    fields: (usize, usize, usize),
    types: u64,
    node_fields: FieldDivider,
    /// Number of nodes (the `nodes` section comes first): targets are checked as they are read.
    nodes: u64,
}

impl EdgeRules {
    /// The packed target and the name of an edge.
    #[inline(always)]
    fn row(&self, values: &[u64]) -> Result<(u32, u32), String> {
        let (ty, name, to) = (values[self.fields.0], values[self.fields.1], values[self.fields.2]);
        if ty >= self.types {
            return Err(format!("edge type {ty} out of range"));
        }
        let Some(ord) = self.node_fields.exact(to) else {
            return Err(format!("to_node {to} is not a multiple of node_fields ({})", self.node_fields.d));
        };
        if ord >= self.nodes {
            return Err(format!("to_node {to} points past the last node"));
        }
        Ok(((ord as u32) << EDGE_TYPE_BITS | ty as u32, to_u32(name, "edge name_or_index")?))
    }
}

/// Edge columns filled from the `edges` array (see [`split`]).
struct EdgeSink {
    rules: EdgeRules,
    edge_to: Column<u32>,
    edge_name: Column<u32>,
}

impl RecordSink for EdgeSink {
    type Window<'w> = EdgeWindow<'w>;

    fn record(&mut self, _record: u64, values: &[u64]) -> Result<(), String> {
        let (to, name) = self.rules.row(values)?;
        self.edge_to.push(to);
        self.edge_name.push(name);
        Ok(())
    }

    fn windows(&mut self, counts: &[usize]) -> Vec<EdgeWindow<'_>> {
        let rules = &self.rules;
        let names = self.edge_name.grow_windows(counts);
        self.edge_to
            .grow_windows(counts)
            .into_iter()
            .zip(names)
            .map(|(to, name)| EdgeWindow { rules, filled: 0, to, name })
            .collect()
    }
}

/// One piece's rows of the edge columns.
struct EdgeWindow<'w> {
    rules: &'w EdgeRules,
    filled: usize,
    to: &'w mut [u32],
    name: &'w mut [u32],
}

impl RecordWindow for EdgeWindow<'_> {
    #[inline(always)]
    fn record(&mut self, values: &[u64]) -> Result<(), String> {
        let i = self.filled;
        let (to, name) = self.rules.row(values)?;
        let (Some(t), Some(n)) = (self.to.get_mut(i), self.name.get_mut(i)) else {
            return Err("more records than counted".into());
        };
        (*t, *n) = (to, name);
        self.filled += 1;
        Ok(())
    }
}

/// Script positions from the `locations` array: `[node ordinal, script_id, line, column]`, the
/// ordinal `u32::MAX` when the object index is not a node's.
struct LocationSink {
    node_fields: FieldDivider,
    entries: Column<[u32; 4]>,
}

/// A `locations` record as stored (see [`LocationSink`]).
#[inline(always)]
fn location_entry(node_fields: &FieldDivider, values: &[u64]) -> [u32; 4] {
    let clamp = |v: u64| v.min(u64::from(u32::MAX)) as u32;
    let node = match node_fields.exact(values[0]) {
        Some(ord) if ord < MAX_NODES => ord as u32,
        _ => u32::MAX,
    };
    [node, clamp(values[1]), clamp(values[2]), clamp(values[3])]
}

impl RecordSink for LocationSink {
    type Window<'w> = LocationWindow<'w>;

    fn record(&mut self, _record: u64, values: &[u64]) -> Result<(), String> {
        self.entries.push(location_entry(&self.node_fields, values));
        Ok(())
    }

    fn windows(&mut self, counts: &[usize]) -> Vec<LocationWindow<'_>> {
        let fields = &self.node_fields;
        self.entries.grow_windows(counts).into_iter().map(|rows| LocationWindow { fields, rows, filled: 0 }).collect()
    }
}

/// One piece's rows of the locations.
struct LocationWindow<'w> {
    fields: &'w FieldDivider,
    rows: &'w mut [[u32; 4]],
    filled: usize,
}

impl RecordWindow for LocationWindow<'_> {
    fn record(&mut self, values: &[u64]) -> Result<(), String> {
        let row = self.rows.get_mut(self.filled).ok_or("more records than counted")?;
        *row = location_entry(self.fields, values);
        self.filled += 1;
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

    /// `x / d` when `x` is a multiple of `d` (a node's field index), else None.
    #[inline(always)]
    fn exact(&self, x: u64) -> Option<u64> {
        let q = self.divide(x);
        (q * self.d == x).then_some(q)
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
