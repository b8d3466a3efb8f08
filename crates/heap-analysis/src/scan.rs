//! Hand-rolled JSON byte scanner over any `Read`, tuned for heap snapshots.
//!
//! A `.heapsnapshot` is one JSON object whose bulk is a few flat arrays of non-negative integers
//! (`nodes`, `edges`) and one array of strings. Going through a generic JSON value tree costs
//! several times the file size in memory and most of the time; this scanner instead reads fixed
//! chunks into one buffer and parses integers and strings straight out of it, handing each value
//! to a caller-supplied sink. Tokens that straddle a chunk boundary are handled by moving the
//! unread tail to the front of the buffer and reading more.
//!
//! The scanner also reports read progress (bytes consumed / total) through a callback, at most
//! once per [`PROGRESS_STEP`] bytes.

use std::io::{ErrorKind, Read};

use crate::error::HeapError;

/// Size of the read buffer.
const BUF_SIZE: usize = 1 << 20;
/// Minimum number of bytes between two progress reports.
pub const PROGRESS_STEP: u64 = 8 << 20;
/// Largest value of a captured raw JSON value (the `snapshot` header).
const MAX_CAPTURE: usize = 4 << 20;

/// Chunked reader with JSON token helpers.
pub struct Scanner<'p, R: Read> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
    last_report: u64,
    on_progress: &'p mut dyn FnMut(u64),
}

impl<'p, R: Read> Scanner<'p, R> {
    /// Wraps `inner` (of `size_hint` bytes, 0 if unknown); `on_progress` receives the number
    /// of bytes consumed so far.
    pub fn new(inner: R, size_hint: u64, on_progress: &'p mut dyn FnMut(u64)) -> Self {
        let len = if size_hint == 0 { BUF_SIZE } else { (size_hint as usize).clamp(64, BUF_SIZE) };
        Scanner { inner, buf: vec![0; len], pos: 0, end: 0, base: 0, eof: false, last_report: 0, on_progress }
    }

    /// Stream offset of the next unread byte.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Error for input that ended too early.
    pub fn truncated(&self, context: &'static str) -> HeapError {
        HeapError::Truncated { offset: self.offset(), context }
    }

    /// Error for unexpected content at the current offset.
    pub fn corrupt(&self, message: impl Into<String>) -> HeapError {
        HeapError::corrupt(self.offset(), message)
    }

    /// Moves the unread tail to the front and reads more. Returns false at end of input
    /// when nothing new could be read.
    fn refill(&mut self) -> Result<bool, HeapError> {
        if self.eof {
            return Ok(false);
        }
        let tail = self.end - self.pos;
        self.buf.copy_within(self.pos..self.end, 0);
        self.base += self.pos as u64;
        self.pos = 0;
        self.end = tail;
        if self.end == self.buf.len() {
            // A single token larger than the buffer (a huge string): grow.
            let new_len = self.buf.len() * 2;
            self.buf.resize(new_len, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    self.report();
                    return Ok(true);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(HeapError::Read(e)),
            }
        }
    }

    fn report(&mut self) {
        let off = self.base + self.end as u64;
        if off >= self.last_report + PROGRESS_STEP {
            self.last_report = off;
            (self.on_progress)(off);
        }
    }

    /// Makes at least `n` unread bytes available if the input has them. Returns the number
    /// of available bytes (less than `n` only at end of input).
    pub fn ensure(&mut self, n: usize) -> Result<usize, HeapError> {
        while self.end - self.pos < n {
            if !self.refill()? {
                break;
            }
        }
        Ok(self.end - self.pos)
    }

    /// Skips JSON whitespace and returns the next byte without consuming it.
    pub fn peek_non_ws(&mut self) -> Result<Option<u8>, HeapError> {
        loop {
            while self.pos < self.end {
                let b = self.buf[self.pos];
                if !is_ws(b) {
                    return Ok(Some(b));
                }
                self.pos += 1;
            }
            if !self.refill()? {
                return Ok(None);
            }
        }
    }

    /// Consumes the next non-whitespace byte, which must be `want`.
    pub fn expect(&mut self, want: u8, context: &'static str) -> Result<(), HeapError> {
        match self.peek_non_ws()? {
            Some(b) if b == want => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(self.corrupt(format!("expected '{}' in {context}, found '{}'", want as char, printable(b)))),
            None => Err(self.truncated(context)),
        }
    }

    /// The bytes read but not consumed yet.
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Consumes `n` of the [`Scanner::unread`] bytes.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.end);
    }

    /// Consumes one byte (after `peek*` returned it).
    pub fn bump(&mut self) {
        if self.pos < self.end {
            self.pos += 1;
        }
    }

    /// Reads the elements of an integer array whose `[` has been consumed, up to and including
    /// the closing `]`, handing each value to `sink`. Returns the number of values. (The parser
    /// goes through [`crate::split::read_records`], which ends here resumed.)
    #[cfg(test)]
    pub fn read_uint_array(
        &mut self,
        context: &'static str,
        sink: impl FnMut(u64) -> Result<(), String>,
    ) -> Result<u64, HeapError> {
        self.read_uint_array_resumed(context, false, sink)
    }

    /// [`Scanner::read_uint_array`] for an array of which some values and the comma after the
    /// last of them were consumed already (`resumed`), so a value must come next. Returns the
    /// number of values read here.
    pub fn read_uint_array_resumed(
        &mut self,
        context: &'static str,
        resumed: bool,
        mut sink: impl FnMut(u64) -> Result<(), String>,
    ) -> Result<u64, HeapError> {
        let mut count = u64::from(resumed);
        // true when a value (not a ',' or ']') must come next.
        let mut want_value = resumed;
        loop {
            if self.pos >= self.end && !self.refill()? {
                return Err(self.truncated(context));
            }
            let mut i = self.pos;
            let end = self.end;
            while i < end {
                let b = self.buf[i];
                if b.is_ascii_digit() {
                    if !want_value && count > 0 {
                        self.pos = i;
                        return Err(self.corrupt(format!("missing ',' in {context}")));
                    }
                    let start = i;
                    let mut v: u64 = 0;
                    while i < end && self.buf[i].is_ascii_digit() {
                        v = v.wrapping_mul(10).wrapping_add(u64::from(self.buf[i] - b'0'));
                        i += 1;
                    }
                    if i == end && self.eof {
                        // An array cannot end in a digit: the input was cut inside this number
                        // (what the sink gets would be a wrong value, not a corrupt file).
                        self.pos = start;
                        return Err(self.truncated(context));
                    }
                    if i == end {
                        // The number may continue in the next chunk: re-read it whole.
                        self.pos = start;
                        if !self.refill()? {
                            return Err(self.truncated(context));
                        }
                        i = self.pos;
                        // Restart the scan of this chunk (the number is parsed again).
                        break;
                    }
                    if i - start > 19 {
                        self.pos = start;
                        return Err(self.corrupt(format!("integer too large in {context}")));
                    }
                    if let Err(message) = sink(v) {
                        self.pos = start;
                        return Err(self.corrupt(format!("{context}: {message}")));
                    }
                    count += 1;
                    want_value = false;
                } else if b == b',' {
                    if want_value || count == 0 {
                        self.pos = i;
                        return Err(self.corrupt(format!("unexpected ',' in {context}")));
                    }
                    want_value = true;
                    i += 1;
                } else if is_ws(b) {
                    i += 1;
                } else if b == b']' {
                    if want_value {
                        self.pos = i;
                        return Err(self.corrupt(format!("trailing ',' in {context}")));
                    }
                    self.pos = i + 1;
                    return Ok(count - u64::from(resumed));
                } else {
                    self.pos = i;
                    return Err(self.corrupt(format!(
                        "unexpected '{}' in {context} (only non-negative integers expected)",
                        printable(b)
                    )));
                }
            }
            if i >= self.pos {
                self.pos = i;
            }
        }
    }

    /// Reads a JSON string whose opening `"` has been consumed, unescaping it into `out`
    /// (appended, UTF-8). Lone surrogates become U+FFFD.
    pub fn read_string_into(&mut self, out: &mut Vec<u8>) -> Result<(), HeapError> {
        loop {
            if self.pos >= self.end && !self.refill()? {
                return Err(self.truncated("string"));
            }
            // Fast path: copy the run up to the next quote or backslash.
            let chunk = &self.buf[self.pos..self.end];
            let stop = chunk.iter().position(|&b| b == b'"' || b == b'\\');
            match stop {
                None => {
                    out.extend_from_slice(chunk);
                    self.pos = self.end;
                }
                Some(k) => {
                    out.extend_from_slice(&chunk[..k]);
                    let b = chunk[k];
                    self.pos += k + 1;
                    if b == b'"' {
                        return Ok(());
                    }
                    self.read_escape(out)?;
                }
            }
        }
    }

    /// Decodes one escape sequence (after the backslash).
    fn read_escape(&mut self, out: &mut Vec<u8>) -> Result<(), HeapError> {
        if self.ensure(1)? == 0 {
            return Err(self.truncated("string escape"));
        }
        let c = self.buf[self.pos];
        self.pos += 1;
        let simple = match c {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            other => {
                self.pos -= 1;
                return Err(self.corrupt(format!("bad escape '\\{}' in string", printable(other))));
            }
        };
        if let Some(b) = simple {
            out.push(b);
            return Ok(());
        }
        let unit = self.read_hex4()?;
        let ch = if (0xD800..0xDC00).contains(&unit) {
            // High surrogate: combine with a following low surrogate escape if there is one.
            let avail = self.ensure(6)?;
            let next = &self.buf[self.pos..self.pos + avail.min(6)];
            if next.len() == 6 && next[0] == b'\\' && next[1] == b'u' {
                let low = hex4(&next[2..6]);
                match low {
                    Some(low) if (0xDC00..0xE000).contains(&low) => {
                        self.pos += 6;
                        let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                        char::from_u32(cp).unwrap_or(char::REPLACEMENT_CHARACTER)
                    }
                    _ => char::REPLACEMENT_CHARACTER,
                }
            } else {
                char::REPLACEMENT_CHARACTER
            }
        } else {
            // Lone low surrogates map to U+FFFD via from_u32.
            char::from_u32(unit).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
        let mut tmp = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
        Ok(())
    }

    fn read_hex4(&mut self) -> Result<u32, HeapError> {
        if self.ensure(4)? < 4 {
            return Err(self.truncated("\\u escape"));
        }
        match hex4(&self.buf[self.pos..self.pos + 4]) {
            Some(v) => {
                self.pos += 4;
                Ok(v)
            }
            None => Err(self.corrupt("bad \\u escape in string")),
        }
    }

    /// Skips one JSON value of any kind (iteratively, no recursion).
    pub fn skip_value(&mut self, context: &'static str) -> Result<(), HeapError> {
        self.skip_or_capture(context, None)
    }

    /// Reads one JSON value of any kind and returns its raw bytes (bounded size).
    pub fn capture_value(&mut self, context: &'static str) -> Result<Vec<u8>, HeapError> {
        let mut out = Vec::new();
        self.skip_or_capture(context, Some(&mut out))?;
        Ok(out)
    }

    fn skip_or_capture(&mut self, context: &'static str, mut capture: Option<&mut Vec<u8>>) -> Result<(), HeapError> {
        let mut depth: u64 = 0;
        let mut in_string = false;
        let mut escaped = false;
        let mut started = false;
        loop {
            if self.pos >= self.end && !self.refill()? {
                // A bare scalar at depth 0 may legitimately end at EOF; nothing in a snapshot does.
                return Err(self.truncated(context));
            }
            let start = self.pos;
            let mut i = self.pos;
            let mut done = false;
            while i < self.end {
                let b = self.buf[i];
                i += 1;
                if in_string {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_string = false;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    continue;
                }
                match b {
                    b'"' => {
                        in_string = true;
                        started = true;
                    }
                    b'[' | b'{' => {
                        depth += 1;
                        started = true;
                    }
                    b']' | b'}' => {
                        if depth == 0 {
                            // End of the enclosing container: the scalar before it is complete.
                            if !started {
                                self.pos = i - 1;
                                return Err(self.corrupt(format!("missing value in {context}")));
                            }
                            i -= 1;
                            done = true;
                            break;
                        }
                        depth -= 1;
                        if depth == 0 {
                            done = true;
                            break;
                        }
                    }
                    b',' if depth == 0 => {
                        if !started {
                            self.pos = i - 1;
                            return Err(self.corrupt(format!("missing value in {context}")));
                        }
                        i -= 1;
                        done = true;
                        break;
                    }
                    _ if is_ws(b) => {
                        if depth == 0 && started {
                            i -= 1;
                            done = true;
                            break;
                        }
                    }
                    _ => started = true,
                }
            }
            if let Some(out) = capture.as_deref_mut() {
                out.extend_from_slice(&self.buf[start..i]);
                if out.len() > MAX_CAPTURE {
                    return Err(HeapError::Unsupported(format!("{context} is larger than {MAX_CAPTURE} bytes")));
                }
            }
            self.pos = i;
            if done {
                return Ok(());
            }
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn hex4(s: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &b in s {
        let d = (b as char).to_digit(16)?;
        v = v * 16 + d;
    }
    Some(v)
}

fn printable(b: u8) -> String {
    if b.is_ascii_graphic() {
        (b as char).to_string()
    } else {
        format!("\\x{b:02x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanner(input: &[u8]) -> Scanner<'static, &[u8]> {
        let cb: &'static mut dyn FnMut(u64) = Box::leak(Box::new(|_| {}));
        Scanner::new(input, 0, cb)
    }

    fn string_of(json: &str) -> Result<String, HeapError> {
        let mut s = scanner(json.as_bytes());
        s.expect(b'"', "test")?;
        let mut out = Vec::new();
        s.read_string_into(&mut out)?;
        Ok(String::from_utf8(out).unwrap_or_default())
    }

    #[test]
    fn unescapes_strings() {
        assert_eq!(string_of(r#""a\"b\\c\/d\n\t""#).unwrap(), "a\"b\\c/d\n\t");
        assert_eq!(string_of(r#""\u00e9\u4e2d""#).unwrap(), "é中");
        assert_eq!(string_of(r#""\ud83d\ude00!""#).unwrap(), "😀!");
        assert_eq!(string_of(r#""x\ud83dy""#).unwrap(), "x\u{fffd}y");
        assert_eq!(string_of(r#""\ude00""#).unwrap(), "\u{fffd}");
        assert_eq!(string_of(r#""\ud83d\u0041""#).unwrap(), "\u{fffd}A");
        assert_eq!(string_of("\"raw é\"").unwrap(), "raw é");
    }

    #[test]
    fn bad_strings_are_errors() {
        assert!(matches!(string_of(r#""abc"#), Err(HeapError::Truncated { .. })));
        assert!(matches!(string_of(r#""a\q""#), Err(HeapError::Corrupt { .. })));
        assert!(matches!(string_of(r#""\u12G4""#), Err(HeapError::Corrupt { .. })));
        assert!(matches!(string_of(r#""\u12"#), Err(HeapError::Truncated { .. })));
    }

    fn ints(json: &str) -> Result<Vec<u64>, HeapError> {
        let mut s = scanner(json.as_bytes());
        s.expect(b'[', "test")?;
        let mut v = Vec::new();
        s.read_uint_array("test", |x| {
            v.push(x);
            Ok(())
        })?;
        Ok(v)
    }

    #[test]
    fn reads_integer_arrays() {
        assert_eq!(ints("[1,2, 3 ,\n44]").unwrap(), vec![1, 2, 3, 44]);
        assert_eq!(ints("[]").unwrap(), Vec::<u64>::new());
        assert!(ints("[1,,2]").is_err());
        assert!(ints("[1 2]").is_err());
        assert!(ints("[1,]").is_err());
        assert!(ints("[1,-2]").is_err());
        assert!(matches!(ints("[1,2"), Err(HeapError::Truncated { .. })));
        assert!(ints("[99999999999999999999999]").is_err());
    }

    #[test]
    fn integers_across_chunk_boundaries() {
        // Build an array longer than the buffer so numbers straddle refills.
        let n = 400_000u64;
        let mut json = String::from("[");
        for i in 0..n {
            if i > 0 {
                json.push(',');
            }
            json.push_str(&(i * 7919).to_string());
        }
        json.push(']');
        let v = ints(&json).unwrap();
        assert_eq!(v.len() as u64, n);
        assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64 * 7919));
    }

    #[test]
    fn skips_and_captures_values() {
        let mut s = scanner(br#"{"a":[1,{"b":"]}\""}],"c":2} ,7]"#);
        let raw = s.capture_value("test").unwrap();
        assert_eq!(raw, br#"{"a":[1,{"b":"]}\""}],"c":2}"#);
        s.expect(b',', "test").unwrap();
        s.skip_value("test").unwrap();
        assert!(scanner(b"[1,[2").skip_value("t").is_err());
    }
}
