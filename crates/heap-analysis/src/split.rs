//! Parsing the big integer arrays (`nodes`, `edges`, `locations`) on two threads.
//!
//! The arrays are flat lists of records of a fixed number of fields. The scanner's buffer is
//! filled with a block of the array, which is cut into pieces, each cut right after a comma that
//! ends a whole record (commas are counted, which is much cheaper than parsing), so the number
//! of records of every piece is known before it is parsed. The sink then grows its columns by
//! the block's records and hands out one [`RecordWindow`] per piece — the piece's rows of every
//! column — and the calling thread parses pieces from the front, a scoped thread from the back,
//! each straight into its window: nothing is appended or copied afterwards, and when the
//! scheduler holds one thread back (the cores are shared) the other one takes its pieces instead
//! of waiting. The rest of the array (less than half a block, with its closing `]`) goes through
//! the sequential [`Scanner::read_uint_array_resumed`], which also reports every syntax error the pieces
//! cannot see (a trailing comma, a truncated file).

use std::io::Read;
use std::sync::Mutex;

use crate::error::HeapError;
use crate::scan::Scanner;

/// Bytes of the array handed to the two threads at a time (the scanner's buffer grows to this).
pub const BLOCK: usize = 8 << 20;

/// Receiver of an array's records: columns that grow at the end.
pub trait RecordSink: Send {
    /// Writer of one piece's records in place.
    type Window<'w>: RecordWindow + Send
    where
        Self: 'w;
    /// Appends record `record` (its ordinal within the whole array).
    fn record(&mut self, record: u64, values: &[u64]) -> Result<(), String>;
    /// Grows the columns by `counts.iter().sum()` records and hands out one window per count,
    /// in order: window `i` writes the `counts[i]` records after those of window `i - 1`.
    fn windows(&mut self, counts: &[usize]) -> Vec<Self::Window<'_>>;
}

/// Writer of consecutive records into rows set aside by [`RecordSink::windows`].
pub trait RecordWindow {
    /// Writes the next record (an error if the window is full).
    fn record(&mut self, values: &[u64]) -> Result<(), String>;
}

/// Reads an integer array whose `[` has been consumed, up to and including `]`, handing records
/// to `sink`. `block` is the number of bytes split into pieces at a time (0: all sequential),
/// parsed on two threads unless `one_thread`. Returns the number of records; an array whose
/// length is not a multiple of `fields` is an error.
pub fn read_records<R: Read, S: RecordSink>(
    sc: &mut Scanner<'_, R>,
    context: &'static str,
    fields: usize,
    block: usize,
    one_thread: bool,
    sink: &mut S,
) -> Result<u64, HeapError> {
    let fields = fields.max(1);
    let mut records: u64 = 0;
    let mut resumed = false;
    if block > 0 {
        loop {
            let avail = sc.ensure(block)?;
            let bytes = sc.unread();
            let region = &bytes[..avail.min(bytes.len())];
            // The array's end stops the parallel phase (the pieces reject any other stray byte).
            let limit = memchr::memchr(b']', region).unwrap_or(region.len());
            if limit < block / 2 {
                break;
            }
            let cuts = piece_cuts(&region[..limit], fields, PIECES);
            let Some(&(end, end_records)) = cuts.last() else { break };
            let base = sc.offset();
            share_pieces(&region[..end], &cuts, fields, one_thread, sink)
                .map_err(|(at, message)| HeapError::corrupt(base + at as u64, format!("{context}: {message}")))?;
            records += end_records;
            sc.consume(end);
            resumed = true;
        }
    }
    let mut k = 0usize;
    let mut values = vec![0u64; fields];
    sc.read_uint_array_resumed(context, resumed, |v| {
        values[k] = v;
        k += 1;
        if k == fields {
            sink.record(records, &values)?;
            k = 0;
            records += 1;
        }
        Ok(())
    })?;
    if k != 0 {
        return Err(sc.corrupt(format!("{context} array length is not a multiple of its fields ({fields})")));
    }
    Ok(records)
}

/// Pieces a block is cut into: few enough that handing them out costs nothing, enough that
/// a thread the scheduler holds back leaves its share to the other.
const PIECES: usize = 16;

/// Cuts `body` (digits, commas, whitespace; starting at a record) into about `pieces` pieces of
/// whole records: each cut is just after the record-ending comma at or past an even share of the
/// bytes, the last after the last record-ending comma. Returns the cuts as (end offset, records
/// up to it), increasing; empty when `body` holds no whole record.
fn piece_cuts(body: &[u8], fields: usize, pieces: usize) -> Vec<(usize, u64)> {
    let mut cuts = Vec::with_capacity(pieces);
    let (mut start, mut commas) = (0usize, 0usize);
    for p in 1..pieces {
        let target = body.len() * p / pieces;
        if target <= start {
            continue;
        }
        let mut count = commas + count_commas(&body[start..target]);
        let mut found = None;
        for (i, &b) in body[target..].iter().enumerate() {
            if b == b',' {
                count += 1;
                if count.is_multiple_of(fields) {
                    found = Some(target + i + 1);
                    break;
                }
            }
        }
        let Some(end) = found else { break };
        cuts.push((end, (count / fields) as u64));
        (start, commas) = (end, count);
    }
    let rest = &body[start..];
    if let Some((end, rest_commas)) = last_record_end(rest, count_commas(rest), fields) {
        cuts.push((start + end, ((commas + rest_commas) / fields) as u64));
    }
    cuts
}

/// Parses the pieces of `body` (ending at `cuts`) into windows of `sink`: this thread takes
/// pieces from the front, a scoped thread (unless `one_thread`) from the back. Errors carry the
/// offset within `body`; of two, the front's (the earlier one).
fn share_pieces<S: RecordSink>(
    body: &[u8],
    cuts: &[(usize, u64)],
    fields: usize,
    one_thread: bool,
    sink: &mut S,
) -> Result<(), (usize, String)> {
    let counts: Vec<usize> = cuts
        .iter()
        .scan(0u64, |prev, &(_, upto)| {
            let n = upto - *prev;
            *prev = upto;
            Some(n as usize)
        })
        .collect();
    // Unclaimed pieces: front..back, each with its window.
    let windows: Vec<Option<S::Window<'_>>> = sink.windows(&counts).into_iter().map(Some).collect();
    let claims = Mutex::new((0usize, cuts.len(), windows));
    let claim = |from_back: bool| {
        let mut c = claims.lock().ok()?;
        if c.0 >= c.1 {
            return None;
        }
        let i = if from_back {
            c.1 -= 1;
            c.1
        } else {
            c.0 += 1;
            c.0 - 1
        };
        c.2[i].take().map(|w| (i, w))
    };
    let parse = |i: usize, window: &mut S::Window<'_>| {
        let from = if i == 0 { 0 } else { cuts[i - 1].0 };
        parse_half(&body[from..cuts[i].0], fields, window).map_err(|(at, m)| (from + at, m))
    };
    let work = |from_back: bool| {
        while let Some((i, mut window)) = claim(from_back) {
            parse(i, &mut window)?;
        }
        Ok(())
    };
    let (front, back) = std::thread::scope(|s| {
        let back = (!one_thread).then(|| s.spawn(|| work(true)));
        let front = work(false);
        (front, back.map(|b| b.join()))
    });
    front?;
    match back {
        Some(Ok(r)) => r,
        Some(Err(_)) => Err((0, "parser thread panicked".to_string())),
        None => Ok(()),
    }
}

/// Number of commas in `s`. Counted in byte-wide lanes, 255 bytes at a time (what keeps the
/// compiler's vectorised loop from widening every comparison to 64 bits).
fn count_commas(s: &[u8]) -> usize {
    s.chunks(255).map(|c| usize::from(c.iter().fold(0u8, |n, &b| n + u8::from(b == b',')))).sum()
}

/// The offset just after the last comma of `s` that ends a record (`commas` is the number of
/// commas in `s`), with the number of commas up to it. None when no record ends in `s`.
fn last_record_end(s: &[u8], commas: usize, fields: usize) -> Option<(usize, usize)> {
    let want = commas - commas % fields;
    if want == 0 {
        return None;
    }
    // Walk back over the commas of the unfinished record.
    let mut seen = commas;
    for (i, &b) in s.iter().enumerate().rev() {
        if b == b',' {
            if seen == want {
                return Some((i + 1, want));
            }
            seen -= 1;
        }
    }
    None
}

/// Parses one half: whole records, each value followed by a comma. Errors carry the offset
/// within `body`.
///
/// This is the hottest loop of the analysis (a 1 GB snapshot holds ~250 M numbers), so the
/// record layouts V8 writes get a copy of [`parse_records`] of their own ([`parse_fixed`]) with the field count
/// known at compile time (one record per iteration, no field counter), and values are read
/// eight bytes at a time ([`digits8`]).
fn parse_half<W: RecordWindow>(body: &[u8], fields: usize, sink: &mut W) -> Result<(), (usize, String)> {
    match fields {
        1 => parse_fixed::<1, W>(body, sink),
        3 => parse_fixed::<3, W>(body, sink),
        4 => parse_fixed::<4, W>(body, sink),
        5 => parse_fixed::<5, W>(body, sink),
        6 => parse_fixed::<6, W>(body, sink),
        7 => parse_fixed::<7, W>(body, sink),
        8 => parse_fixed::<8, W>(body, sink),
        _ => parse_records(body, &mut vec![0; fields], sink),
    }
}

/// [`parse_records`] with a record buffer of `F` fields (a function of its own per layout).
fn parse_fixed<const F: usize, W: RecordWindow>(body: &[u8], sink: &mut W) -> Result<(), (usize, String)> {
    parse_records(body, &mut [0; F], sink)
}

/// [`parse_half`] for records of `values.len()` fields (`values` is the buffer of one record).
#[inline(always)]
fn parse_records<W: RecordWindow>(body: &[u8], values: &mut [u64], sink: &mut W) -> Result<(), (usize, String)> {
    let mut i = 0;
    while i < body.len() {
        let record_start = i;
        for slot in values.iter_mut() {
            *slot = value_and_comma(body, &mut i)?;
        }
        sink.record(values).map_err(|m| (record_start, m))?;
    }
    Ok(())
}

/// The value at `*i` and the comma after it (whitespace allowed around both); leaves `*i` after
/// the comma. Numbers of up to 15 digits are read from one 16-byte window ([`digits16`]),
/// others (and whitespace) by [`scalar_value`].
#[inline(always)]
fn value_and_comma(body: &[u8], i: &mut usize) -> Result<u64, (usize, String)> {
    let (v, len) = body.get(*i..*i + 16).map_or((0, 0), digits16);
    let v = if len > 0 && len < 16 {
        *i += len;
        v
    } else {
        scalar_value(body, i)?
    };
    // V8 ends every record with "\n,": both separators are taken here, anything else below.
    match (body.get(*i), body.get(*i + 1)) {
        (Some(b','), _) => *i += 1,
        (Some(b'\n'), Some(b',')) => *i += 2,
        _ => comma_after_whitespace(body, i)?,
    }
    Ok(v)
}

/// Skips whitespace at `*i`, then expects the comma that ends a value.
#[cold]
fn comma_after_whitespace(body: &[u8], i: &mut usize) -> Result<(), (usize, String)> {
    while *i < body.len() && is_ws(body[*i]) {
        *i += 1;
    }
    match body.get(*i) {
        Some(b',') => {
            *i += 1;
            Ok(())
        }
        Some(b) if b.is_ascii_digit() => Err((*i, "missing ','".into())),
        Some(&b) => Err((*i, unexpected(b))),
        None => Err((*i, "expected ','".into())),
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn unexpected(b: u8) -> String {
    format!("unexpected byte 0x{b:02x} (only non-negative integers expected)")
}

/// The value at `*i` read byte by byte, skipping whitespace before it; leaves `*i` after its last
/// digit.
fn scalar_value(body: &[u8], i: &mut usize) -> Result<u64, (usize, String)> {
    while *i < body.len() && is_ws(body[*i]) {
        *i += 1;
    }
    let start = *i;
    let mut v: u64 = 0;
    while *i < body.len() && body[*i].is_ascii_digit() {
        v = v.wrapping_mul(10).wrapping_add(u64::from(body[*i] - b'0'));
        *i += 1;
    }
    match *i - start {
        0 => match body.get(start) {
            Some(b',') => Err((start, "unexpected ','".into())),
            Some(&b) => Err((start, unexpected(b))),
            None => Err((start, "value expected".into())),
        },
        len if len > 19 => Err((start, "integer too large".into())),
        _ => Ok(v),
    }
}

/// The number at the start of `w` (16 bytes) and its length in digits; a length of 0 (no digit
/// first) or 16 (maybe longer) leaves it to [`scalar_value`].
#[inline]
fn digits16(w: &[u8]) -> (u64, usize) {
    let lo = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
    let (v, len) = digits8(lo);
    if len < 8 {
        return (v, len);
    }
    let hi = u64::from_le_bytes([w[8], w[9], w[10], w[11], w[12], w[13], w[14], w[15]]);
    let (v2, len2) = digits8(hi);
    (v * POW10[len2] + v2, 8 + len2)
}

const POW10: [u64; 9] = [1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// The leading decimal digits of the eight bytes of `w` (first byte lowest): their value and count.
#[inline]
fn digits8(w: u64) -> (u64, usize) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    // Each byte minus '0': a digit becomes 0..=9. A byte is not a digit if that is > 9, i.e. if
    // adding 0x76 sets its top bit (bytes with the top bit already set are not digits either).
    let d = w ^ (0x30 * ONES);
    let low7 = d & (0x7f * ONES);
    let non_digit = ((low7 + 0x76 * ONES) | d) & (0x80 * ONES);
    let len = (non_digit.trailing_zeros() / 8) as usize;
    if len == 0 {
        return (0, 0);
    }
    // Left-align the digits (zeros in front are leading zeros), then the classic SWAR
    // conversion: pairs, then quads, then the two halves.
    let x = d << (8 * (8 - len));
    let x = (x & (0x0f * ONES)).wrapping_mul(10 * 256 + 1) >> 8;
    let x = (x & 0x00ff_00ff_00ff_00ff).wrapping_mul(100 * 65536 + 1) >> 16;
    let x = (x & 0x0000_ffff_0000_ffff).wrapping_mul(10_000 * (1 << 32) + 1) >> 32;
    (x, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects `(field, record, value)` triples.
    #[derive(Default, Debug, PartialEq)]
    struct Triples(Vec<(usize, u64, u64)>);

    /// Records as rows, in place (what the real sinks do with their columns).
    #[derive(Default)]
    struct Rows(Vec<Vec<u64>>);

    struct RowWindow<'w>(std::slice::IterMut<'w, Vec<u64>>);

    fn check(values: &[u64]) -> Result<(), String> {
        match values.contains(&666) {
            true => Err("the number of the beast".into()),
            false => Ok(()),
        }
    }

    impl RecordSink for Rows {
        type Window<'w> = RowWindow<'w>;
        fn record(&mut self, record: u64, values: &[u64]) -> Result<(), String> {
            assert_eq!(record, self.0.len() as u64, "records come in order");
            check(values)?;
            self.0.push(values.to_vec());
            Ok(())
        }
        fn windows(&mut self, counts: &[usize]) -> Vec<RowWindow<'_>> {
            let start = self.0.len();
            self.0.resize(start + counts.iter().sum::<usize>(), Vec::new());
            crate::column::windows(&mut self.0[start..], counts).into_iter().map(|w| RowWindow(w.iter_mut())).collect()
        }
    }

    impl RecordWindow for RowWindow<'_> {
        fn record(&mut self, values: &[u64]) -> Result<(), String> {
            check(values)?;
            let row = self.0.next().ok_or("window full")?;
            *row = values.to_vec();
            Ok(())
        }
    }

    impl Rows {
        fn triples(&self) -> Triples {
            let rows = self.0.iter().enumerate();
            Triples(rows.flat_map(|(r, vs)| vs.iter().enumerate().map(move |(f, &v)| (f, r as u64, v))).collect())
        }
    }

    /// Reads `json` (the array after its `[`) with a reader that returns `chunk` bytes at a time.
    fn read(json: &str, fields: usize, block: usize, chunk: usize) -> Result<(u64, Triples, String), HeapError> {
        let reader = Trickle { data: json.as_bytes(), chunk };
        let mut progress = |_| {};
        let mut sc = Scanner::new(reader, 0, &mut progress);
        let mut sink = Rows::default();
        let n = read_records(&mut sc, "test", fields, block, false, &mut sink)?;
        let mut rest = Vec::new();
        while let Some(b) = sc.peek_non_ws()? {
            rest.push(b);
            sc.bump();
        }
        Ok((n, sink.triples(), String::from_utf8_lossy(&rest).into_owned()))
    }

    /// A reader handing out at most `chunk` bytes per call (chunk boundaries everywhere).
    struct Trickle<'a> {
        data: &'a [u8],
        chunk: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.chunk.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn expected(values: &[u64], fields: usize) -> Triples {
        Triples(values.iter().enumerate().map(|(i, &v)| (i % fields, (i / fields) as u64, v)).collect())
    }

    /// An array of `n` values with varied widths and whitespace, as V8 and hand-written JSON have them.
    fn array(n: usize) -> (String, Vec<u64>) {
        let values: Vec<u64> = (0..n as u64).map(|i| (i * 7919) % 100_003 * 10u64.pow((i % 5) as u32)).collect();
        let seps = [",", ",\n", " , ", ",\r\n\t"];
        let mut s = String::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                s.push_str(seps[i % seps.len()]);
            }
            s.push_str(&v.to_string());
        }
        s.push_str("]}");
        (s, values)
    }

    #[test]
    fn every_block_size_gives_the_sequential_result() {
        let (json, values) = array(300);
        for fields in [1, 3, 7] {
            let n = values.len() - values.len() % fields;
            let json = if n == values.len() { json.clone() } else { array(n).0 };
            let want = expected(&values[..n], fields);
            for block in (0..64).chain([100, 333, 1000, 1 << 20]) {
                for chunk in [1, 3, 4096] {
                    let (records, got, rest) = read(&json, fields, block, chunk).unwrap();
                    assert_eq!(records, (n / fields) as u64, "fields {fields} block {block} chunk {chunk}");
                    assert_eq!(got, want, "fields {fields} block {block} chunk {chunk}");
                    assert_eq!(rest, "}", "the scanner stops right after the ']'");
                }
            }
        }
    }

    #[test]
    fn eight_bytes_at_a_time_reads_what_bytewise_reads() {
        // Every length of number, followed by every kind of byte, and numbers at the edge of
        // the 16-byte window.
        let mut values = vec![0u64, 9, 10, 99, 100, 4_294_967_295, 99_999_999, 100_000_000];
        values.extend((1..=19).map(|d| 10u64.pow(d - 1)));
        values.extend((1..=19).map(|d| 10u64.pow(d - 1) * 9 + (10u64.pow(d - 1) - 1)));
        values.extend((0..2000u64).map(|i| i.wrapping_mul(2_654_435_761) % 10u64.pow((i % 19 + 1) as u32)));
        for &v in &values {
            for tail in [&b","[..], b"\n,", b"]", b"x", b" ", b"\xff", b"/", b":"] {
                let mut text = v.to_string().into_bytes();
                text.extend_from_slice(tail);
                text.extend_from_slice(b"0000000000000000");
                let digits = v.to_string().len();
                let (got, len) = digits16(&text[..16]);
                if digits < 16 {
                    assert_eq!((got, len), (v, digits), "{v} then {tail:?}");
                } else {
                    assert_eq!(len, 16, "{v}: left to the bytewise reader");
                }
                let mut i = 0;
                assert_eq!(scalar_value(&text, &mut i), Ok(v));
            }
        }
        for not_a_digit in [b',', b' ', b']', b'-', b'a', 0x80, 0xb0, 0x2f, 0x3a] {
            let mut w = [b'7'; 16];
            w[0] = not_a_digit;
            assert_eq!(digits16(&w).1, 0, "{not_a_digit:#x} is not a digit");
        }
    }

    #[test]
    fn empty_and_tiny_arrays() {
        for block in [0, 1, 2, 8] {
            assert_eq!(read("]", 3, block, 1).unwrap().0, 0);
            assert_eq!(read("  \n]", 3, block, 1).unwrap().0, 0);
            assert_eq!(read("1,2,3]", 3, block, 1).unwrap().1, expected(&[1, 2, 3], 3));
        }
    }

    #[test]
    fn errors_inside_a_block_are_found_in_either_half() {
        let (json, _) = array(120);
        let bytes = json.as_bytes();
        // Every comma, in turn, doubled or replaced by garbage: an error whichever half it lands in.
        let commas: Vec<usize> = bytes.iter().enumerate().filter(|(_, &b)| b == b',').map(|(i, _)| i).collect();
        for &at in &commas {
            for repl in [",,", "x", "1 2", "\"", "[", "-"] {
                let bad = format!("{}{}{}", &json[..at], repl, &json[at + 1..]);
                for block in [0, 16, 64, 200] {
                    let r = read(&bad, 3, block, 7);
                    let ok_shape = matches!(r, Err(HeapError::Corrupt { .. }));
                    // "1 2" in place of a comma removes the comma: also a missing-comma error.
                    assert!(ok_shape, "{repl:?} at {at} block {block}: {r:?}");
                }
            }
        }
        // A trailing comma, a missing ']', an unfinished record, a too-long number, a sink error.
        for bad in ["1,2,3,]", "1,2,3,4,5,6", "1,2,3,4]", "1,2,12345678901234567890]", "1,666,3]"] {
            for block in [0, 2, 4, 6] {
                assert!(read(bad, 3, block, 1).is_err(), "{bad} block {block}");
            }
        }
    }

    #[test]
    fn cuts_fall_after_record_ending_commas() {
        let body = b"1,2,3,4,5,6,7,8,9,";
        // Two pieces: the first cut is at the record end past the middle, the last at the end.
        assert_eq!(piece_cuts(body, 3, 2), vec![(12, 2), (18, 3)]);
        assert_eq!(&body[..12], b"1,2,3,4,5,6,");
        // More pieces than records: one cut per record.
        assert_eq!(piece_cuts(body, 3, 16), vec![(6, 1), (12, 2), (18, 3)]);
        // An unfinished record at the end stays for the next block.
        assert_eq!(piece_cuts(b"10,20,30,40,", 3, 2), vec![(9, 1)]);
        assert_eq!(piece_cuts(b"1,2,", 3, 4), vec![]);
        assert_eq!(piece_cuts(b"", 3, 4), vec![]);
    }

    #[test]
    fn pieces_parsed_on_either_thread_come_out_in_order() {
        // However the two threads share the pieces, the records come out in order.
        let (json, values) = array(3000);
        let body_end = json.rfind(',').map(|i| i + 1).unwrap_or(0);
        let body = &json.as_bytes()[..body_end];
        for pieces in [1, 2, 3, 16, 100] {
            for one_thread in [false, true] {
                let cuts = piece_cuts(body, 1, pieces);
                let mut sink = Rows::default();
                share_pieces(body, &cuts, 1, one_thread, &mut sink).unwrap();
                let n = cuts.last().map_or(0, |c| c.1 as usize);
                assert_eq!(sink.triples(), expected(&values[..n], 1), "{pieces} pieces");
            }
        }
    }
}
