//! In-memory heap graph in compact column arrays.
//!
//! Nodes and edges are kept as parallel `u32`/`u8` vectors indexed by node ordinal and edge
//! ordinal (a node's edges are contiguous: `first_edge[n]..first_edge[n + 1]`), which is what the
//! V8 format gives us and what the dominator algorithm wants. For a 1 GB snapshot this is a few
//! hundred MB instead of the gigabytes a generic object model costs. The edge type is packed into
//! the low 4 bits of the target ordinal.

use std::collections::HashMap;

/// Bits of `edge_to` used by the edge type.
pub const EDGE_TYPE_BITS: u32 = 4;
/// Largest number of nodes the packed edge layout can address.
pub const MAX_NODES: u64 = 1 << (32 - EDGE_TYPE_BITS);

/// String indices of the edge names from an object to its constructor (`map`, `prototype`,
/// `constructor`), looked up once so that walking many objects compares numbers, not text.
#[derive(Debug, Clone)]
pub struct ConstructorNames {
    pub map: Vec<u32>,
    pub prototype: Vec<u32>,
    pub constructor: Vec<u32>,
}

impl ConstructorNames {
    pub fn new(g: &HeapGraph) -> ConstructorNames {
        let s = &g.strings;
        ConstructorNames {
            map: s.indices_of("map"),
            prototype: s.indices_of("prototype"),
            constructor: s.indices_of("constructor"),
        }
    }
}

/// Interned strings of the snapshot (`strings` section), UTF-8, one contiguous buffer.
#[derive(Debug, Default)]
pub struct StringTable {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl StringTable {
    /// Appends one decoded string (invalid UTF-8 is replaced).
    pub fn push_bytes(&mut self, bytes: &[u8]) {
        match std::str::from_utf8(bytes) {
            Ok(_) => self.data.extend_from_slice(bytes),
            Err(_) => self.data.extend_from_slice(String::from_utf8_lossy(bytes).as_bytes()),
        }
        self.ends.push(self.data.len());
    }

    /// Buffer to decode the next string into; finish with [`StringTable::commit`].
    pub fn begin(&mut self) -> (usize, &mut Vec<u8>) {
        (self.data.len(), &mut self.data)
    }

    /// Ends the string started at `start` (from [`StringTable::begin`]); invalid UTF-8 is replaced.
    pub fn commit(&mut self, start: usize) {
        if std::str::from_utf8(&self.data[start..]).is_err() {
            let fixed = String::from_utf8_lossy(&self.data[start..]).into_owned();
            self.data.truncate(start);
            self.data.extend_from_slice(fixed.as_bytes());
        }
        self.ends.push(self.data.len());
    }

    /// Appends a string.
    pub fn push(&mut self, s: &str) {
        self.push_bytes(s.as_bytes());
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when there are no strings.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Indices of the strings equal to `s` (V8 interns strings, so usually one).
    pub fn indices_of(&self, s: &str) -> Vec<u32> {
        let mut start = 0;
        let mut out = Vec::new();
        for (i, &end) in self.ends.iter().enumerate() {
            if &self.data[start..end] == s.as_bytes() {
                out.push(i as u32);
            }
            start = end;
        }
        out
    }

    /// String `i`, or "" when out of range.
    pub fn get(&self, i: u32) -> &str {
        let i = i as usize;
        let Some(&end) = self.ends.get(i) else {
            return "";
        };
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        std::str::from_utf8(&self.data[start..end]).unwrap_or("")
    }
}

/// Indices of the node and edge type names this crate needs (from `snapshot.meta`).
#[derive(Debug, Clone)]
pub struct TypeCodes {
    pub node_types: Vec<String>,
    pub edge_types: Vec<String>,
    pub node_hidden: Option<u8>,
    pub node_array: Option<u8>,
    pub node_object: Option<u8>,
    pub node_native: Option<u8>,
    pub node_code: Option<u8>,
    pub node_closure: Option<u8>,
    pub node_regexp: Option<u8>,
    pub node_synthetic: Option<u8>,
    pub edge_element: Option<u8>,
    pub edge_hidden: Option<u8>,
    pub edge_internal: Option<u8>,
    pub edge_shortcut: Option<u8>,
    pub edge_weak: Option<u8>,
}

impl TypeCodes {
    /// Resolves the well-known names in the type lists.
    pub fn new(node_types: Vec<String>, edge_types: Vec<String>) -> Self {
        let find = |list: &[String], name: &str| list.iter().position(|t| t == name).map(|p| p as u8);
        TypeCodes {
            node_hidden: find(&node_types, "hidden"),
            node_array: find(&node_types, "array"),
            node_object: find(&node_types, "object"),
            node_native: find(&node_types, "native"),
            node_code: find(&node_types, "code"),
            node_closure: find(&node_types, "closure"),
            node_regexp: find(&node_types, "regexp"),
            node_synthetic: find(&node_types, "synthetic"),
            edge_element: find(&edge_types, "element"),
            edge_hidden: find(&edge_types, "hidden"),
            edge_internal: find(&edge_types, "internal"),
            edge_shortcut: find(&edge_types, "shortcut"),
            edge_weak: find(&edge_types, "weak"),
            node_types,
            edge_types,
        }
    }
}

/// The parsed snapshot graph. Node 0 is the synthetic root.
#[derive(Debug)]
pub struct HeapGraph {
    pub types: TypeCodes,
    pub node_type: Vec<u8>,
    pub node_name: Vec<u32>,
    pub node_id: Vec<u32>,
    /// Self sizes; `u32::MAX` means "look in `big_sizes`".
    pub self_size: Vec<u32>,
    pub big_sizes: HashMap<u32, u64>,
    /// `first_edge[n]..first_edge[n + 1]` are the edges of node `n` (len = nodes + 1).
    pub first_edge: Vec<u32>,
    /// DOM link state per node (0 unknown, 1 attached, 2 detached); empty when the snapshot
    /// has no `detachedness` field.
    pub detachedness: Vec<u8>,
    /// Target ordinal << EDGE_TYPE_BITS | edge type.
    pub edge_to: Vec<u32>,
    /// Property name (string index) or element index, depending on the edge type.
    pub edge_name: Vec<u32>,
    pub strings: StringTable,
    /// Size of the input in bytes (0 when unknown).
    pub file_size: u64,
    /// Script positions of functions, `[node, script_id, line, column]` sorted by node (0-based
    /// line and column, as V8 writes them).
    pub locations: Vec<[u32; 4]>,
}

/// The self size of node `n` as the graph stores sizes: `small[n]`, or its entry in `big` when
/// that is `u32::MAX`.
#[inline]
pub fn stored_size(small: &[u32], big: &HashMap<u32, u64>, n: u32) -> u64 {
    match small[n as usize] {
        u32::MAX => big.get(&n).copied().unwrap_or(u64::from(u32::MAX)),
        s => u64::from(s),
    }
}

/// Root node ordinal (V8 always writes the synthetic root first).
pub const ROOT: u32 = 0;

impl HeapGraph {
    /// Number of nodes.
    pub fn node_count(&self) -> usize {
        self.node_type.len()
    }

    /// Number of edges.
    pub fn edge_count(&self) -> usize {
        self.edge_to.len()
    }

    /// Edge range of node `n`.
    #[inline]
    pub fn edges(&self, n: u32) -> std::ops::Range<usize> {
        self.first_edge[n as usize] as usize..self.first_edge[n as usize + 1] as usize
    }

    /// Target node of edge `e`.
    #[inline]
    pub fn edge_target(&self, e: usize) -> u32 {
        self.edge_to[e] >> EDGE_TYPE_BITS
    }

    /// Type code of edge `e`.
    #[inline]
    pub fn edge_type(&self, e: usize) -> u8 {
        (self.edge_to[e] & ((1 << EDGE_TYPE_BITS) - 1)) as u8
    }

    /// Self size of node `n` in bytes.
    #[inline]
    pub fn self_size(&self, n: u32) -> u64 {
        stored_size(&self.self_size, &self.big_sizes, n)
    }

    /// True when node `n` has type `t`.
    #[inline]
    pub fn is_type(&self, n: u32, t: Option<u8>) -> bool {
        Some(self.node_type[n as usize]) == t
    }

    /// Node name string.
    pub fn name(&self, n: u32) -> &str {
        self.strings.get(self.node_name[n as usize])
    }

    /// Node type name ("object", "closure", ...).
    pub fn type_name(&self, n: u32) -> &str {
        let t = self.node_type[n as usize] as usize;
        self.types.node_types.get(t).map(String::as_str).unwrap_or("unknown")
    }

    /// Edge type name ("property", "element", ...).
    pub fn edge_type_name(&self, e: usize) -> &str {
        let t = self.edge_type(e) as usize;
        self.types.edge_types.get(t).map(String::as_str).unwrap_or("unknown")
    }

    /// True when edge `e` names its target by index rather than by string.
    pub fn edge_is_indexed(&self, e: usize) -> bool {
        let t = Some(self.edge_type(e));
        t == self.types.edge_element || t == self.types.edge_hidden
    }

    /// Human label of edge `e`, like DevTools: `name`, `[3]`.
    pub fn edge_label(&self, e: usize) -> String {
        if self.edge_is_indexed(e) {
            format!("[{}]", self.edge_name[e])
        } else {
            self.strings.get(self.edge_name[e]).to_string()
        }
    }

    /// Class key of node `n` for the constructor summary (DevTools `classIndex`): the name string
    /// for objects and native objects, a per-type key otherwise. Keys >= strings.len() are type keys.
    #[inline]
    pub fn class_key(&self, n: u32) -> u32 {
        let t = Some(self.node_type[n as usize]);
        if t == self.types.node_object || t == self.types.node_native {
            self.node_name[n as usize]
        } else {
            self.strings.len() as u32 + u32::from(self.node_type[n as usize])
        }
    }

    /// Where function node `n` was defined: `(script_id, line, column)`, 0-based.
    pub fn location(&self, n: u32) -> Option<(u32, u32, u32)> {
        let i = self.locations.binary_search_by_key(&n, |e| e[0]).ok()?;
        let e = self.locations[i];
        Some((e[1], e[2], e[3]))
    }

    /// The first edge of `n` named `name` (property or internal), and where it leads.
    pub fn edge_named(&self, n: u32, name: &str) -> Option<u32> {
        self.edges(n)
            .find(|&e| !self.edge_is_indexed(e) && self.strings.get(self.edge_name[e]) == name)
            .map(|e| self.edge_target(e))
    }

    /// The first non-indexed edge of `n` whose name is one of the strings `names`, and where it
    /// leads ([`HeapGraph::edge_named`] without comparing text).
    pub fn edge_named_among(&self, n: u32, names: &[u32]) -> Option<u32> {
        self.edges(n)
            .find(|&e| !self.edge_is_indexed(e) && names.contains(&self.edge_name[e]))
            .map(|e| self.edge_target(e))
    }

    /// [`HeapGraph::constructor_location`] with the edge names resolved once (for many objects).
    pub fn constructor_location_by(&self, n: u32, names: &ConstructorNames) -> Option<(u32, u32, u32)> {
        let map = self.edge_named_among(n, &names.map)?;
        let proto = self.edge_named_among(map, &names.prototype)?;
        let ctor = self.edge_named_among(proto, &names.constructor)?;
        self.location(ctor)
    }

    /// Where the constructor of object `n` was defined: through its map's prototype's
    /// `constructor` (the class's function). `None` for objects without one (literals, natives).
    pub fn constructor_location(&self, n: u32) -> Option<(u32, u32, u32)> {
        let map = self.edge_named(n, "map")?;
        let proto = self.edge_named(map, "prototype")?;
        let ctor = self.edge_named(proto, "constructor")?;
        self.location(ctor)
    }

    /// Number of distinct class keys.
    pub fn class_key_count(&self) -> usize {
        self.strings.len() + self.types.node_types.len().max(1)
    }

    /// Display name of a class key, like DevTools' Summary view.
    pub fn class_name(&self, key: u32) -> String {
        let s = self.strings.len() as u32;
        if key < s {
            return self.strings.get(key).to_string();
        }
        let t = (key - s) as u8;
        let t = Some(t);
        if t == self.types.node_hidden {
            "(system)".into()
        } else if t == self.types.node_code {
            "(compiled code)".into()
        } else if t == self.types.node_closure {
            "Function".into()
        } else if t == self.types.node_regexp {
            "RegExp".into()
        } else {
            let name = t.and_then(|t| self.types.node_types.get(t as usize)).map(String::as_str).unwrap_or("unknown");
            format!("({name})")
        }
    }

    /// Display name of node `n` (object name, or a short form for strings and closures).
    pub fn display_name(&self, n: u32) -> String {
        let name = self.name(n);
        let mut out: String = name.chars().take(80).collect();
        if out.len() < name.len() {
            out.push('…');
        }
        out
    }
}
