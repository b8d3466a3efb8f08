//! The whole path: open a profile, detect its format, fold it, render the SVG to a file.
//!
//! Text inputs (perf script, folded) are streamed; JSON profiles are read whole.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cpuprofile::fold_cpuprofile;
use crate::detect::{json_kind, sniff, InputFormat, Sniff};
use crate::error::FlameError;
use crate::folded::{pass_through, summarize, FoldedSummary};
use crate::heapprofile::fold_heapprofile;
use crate::perf_script::{collapse_perf_script, weight_name};
use crate::render::{render_svg_str, RenderOptions};

/// How much of the input is looked at to detect its format.
const SNIFF_BYTES: usize = 64 * 1024;
const READ_BUFFER: usize = 256 * 1024;

/// Folded stacks in memory plus what they came from.
#[derive(Debug, Clone)]
pub struct FoldOutput {
    pub format: InputFormat,
    /// Folded-stack text (`a;b;c 12` lines).
    pub folded: Vec<u8>,
    pub summary: FoldedSummary,
    /// What the weights count: "samples", "bytes", or for perf script with periods "ns"/"events".
    pub count_name: &'static str,
    /// Bytes of input read.
    pub input_bytes: u64,
}

/// What [`render_file`] did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Stats {
    pub format: InputFormat,
    pub input_bytes: u64,
    /// Distinct stacks.
    pub stacks: usize,
    /// Total weight, in `count_name` units.
    pub total: u64,
    /// "samples", "bytes" (heap profiles), or "ns"/"events" (perf script with periods).
    pub count_name: &'static str,
    pub svg_bytes: u64,
    pub fold_time: Duration,
    pub render_time: Duration,
}

/// Folds any supported input; `format` = `None` detects it from the content.
pub fn fold_reader<R: Read>(input: R, format: Option<InputFormat>) -> Result<FoldOutput, FlameError> {
    let mut counted = CountingReader { inner: input, count: 0 };
    let prefix = read_prefix(&mut counted)?;
    let format = match format {
        Some(f) => f,
        None => match sniff(&prefix) {
            Sniff::Text(f) => f,
            Sniff::Json => InputFormat::CpuProfile, // refined below once the document is whole
            Sniff::Unknown => return Err(FlameError::UnknownFormat),
        },
    };
    let mut count_name = format.count_name();
    let (format, folded) = match format {
        InputFormat::CpuProfile | InputFormat::HeapProfile => fold_json(prefix, &mut counted, format)?,
        InputFormat::PerfScript => {
            ensure_perf_script(&prefix)?;
            count_name = weight_name(&String::from_utf8_lossy(&prefix));
            let mut out = Vec::new();
            let stream = BufReader::with_capacity(READ_BUFFER, Cursor::new(prefix).chain(&mut counted));
            collapse_perf_script(stream, &mut out)?;
            (format, out)
        }
        InputFormat::Folded => {
            let mut out = Vec::new();
            let stream = BufReader::with_capacity(READ_BUFFER, Cursor::new(prefix).chain(&mut counted));
            pass_through(stream, &mut out).map_err(|e| FlameError::io("reading folded stacks", e))?;
            (format, out)
        }
    };
    let summary = summarize(&folded);
    if format == InputFormat::HeapProfile {
        count_name = format.count_name();
    }
    Ok(FoldOutput { format, count_name, folded, summary, input_bytes: counted.count })
}

/// inferno's collapser asserts on some non-perf input: check the first record ourselves
/// (only matters when the caller forced the format; detection already did this).
fn ensure_perf_script(prefix: &[u8]) -> Result<(), FlameError> {
    if prefix.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match sniff(prefix) {
        Sniff::Text(InputFormat::PerfScript) => Ok(()),
        _ => Err(FlameError::invalid("perf script", "the first record is not a perf script event")),
    }
}

/// Reads the rest of a JSON document and folds it as the detected V8 profile kind.
fn fold_json<R: Read>(mut doc: Vec<u8>, rest: &mut R, hint: InputFormat) -> Result<(InputFormat, Vec<u8>), FlameError> {
    rest.read_to_end(&mut doc).map_err(|e| FlameError::io("reading the profile", e))?;
    let format = if sniff(&doc) == Sniff::Json { json_kind(&doc).ok_or(FlameError::UnknownFormat)? } else { hint };
    let folded = match format {
        InputFormat::HeapProfile => fold_heapprofile(&doc)?,
        _ => fold_cpuprofile(&doc)?,
    };
    Ok((format, folded.to_bytes()))
}

fn read_prefix<R: Read>(input: &mut R) -> Result<Vec<u8>, FlameError> {
    let mut prefix = Vec::with_capacity(SNIFF_BYTES);
    input.take(SNIFF_BYTES as u64).read_to_end(&mut prefix).map_err(|e| FlameError::io("reading the profile", e))?;
    Ok(prefix)
}

/// Folds the file at `input` (format detected from its content).
pub fn fold_file(input: &Path) -> Result<FoldOutput, FlameError> {
    let file = File::open(input).map_err(|e| FlameError::io(format!("opening {}", input.display()), e))?;
    fold_reader(file, None)
}

/// Renders folded stacks into `output` (written to a temporary name, then renamed).
/// Returns the SVG size in bytes.
pub fn write_svg(fold: &FoldOutput, output: &Path, opts: &RenderOptions) -> Result<u64, FlameError> {
    if fold.summary.total == 0 {
        return Err(FlameError::NoSamples);
    }
    let tmp = tmp_path(output);
    let result = write_svg_to(fold, &tmp, opts);
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return result;
    }
    std::fs::rename(&tmp, output).map_err(|e| FlameError::io(format!("writing {}", output.display()), e))?;
    result
}

fn write_svg_to(fold: &FoldOutput, path: &Path, opts: &RenderOptions) -> Result<u64, FlameError> {
    let file = File::create(path).map_err(|e| FlameError::io(format!("creating {}", path.display()), e))?;
    let mut out = CountingWriter { inner: BufWriter::new(file), count: 0 };
    let mut opts = opts.clone();
    opts.count_name.get_or_insert_with(|| fold.count_name.to_string());
    let text = String::from_utf8_lossy(&fold.folded);
    render_svg_str(&text, &mut out, fold.format, &opts)?;
    out.flush().map_err(|e| FlameError::io(format!("writing {}", path.display()), e))?;
    Ok(out.count)
}

fn tmp_path(output: &Path) -> PathBuf {
    let mut name = output.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// `perf-hub flamegraph PROFILE -o out.svg`: detect, fold, render.
pub fn render_file(input: &Path, output: &Path, opts: &RenderOptions) -> Result<Stats, FlameError> {
    let started = Instant::now();
    let fold = fold_file(input)?;
    let fold_time = started.elapsed();
    let started = Instant::now();
    let svg_bytes = write_svg(&fold, output, opts)?;
    Ok(Stats {
        format: fold.format,
        input_bytes: fold.input_bytes,
        stacks: fold.summary.stacks,
        total: fold.summary.total,
        count_name: fold.count_name,
        svg_bytes,
        fold_time,
        render_time: started.elapsed(),
    })
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

struct CountingWriter<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_each_kind_from_a_reader() {
        let cpu = br#"{"nodes":[{"id":1,"callFrame":{"functionName":"(root)"},"children":[2]},
            {"id":2,"callFrame":{"functionName":"work","url":"/a.js","lineNumber":1}}],"samples":[2,2]}"#;
        let out = fold_reader(&cpu[..], None).unwrap();
        assert_eq!(out.format, InputFormat::CpuProfile);
        assert_eq!(out.folded, b"work (/a.js:2) 2\n");
        assert_eq!(out.input_bytes, cpu.len() as u64);

        let heap = br#"{"head":{"callFrame":{"functionName":"(root)"},"children":[
            {"callFrame":{"functionName":"alloc"},"selfSize":10}]}}"#;
        let out = fold_reader(&heap[..], None).unwrap();
        assert_eq!(out.format, InputFormat::HeapProfile);
        assert_eq!(out.folded, b"alloc 10\n");

        let out = fold_reader(&b"a;b 2\n\na 1\n"[..], None).unwrap();
        assert_eq!(out.format, InputFormat::Folded);
        assert_eq!(out.summary, FoldedSummary { stacks: 2, total: 3 });
    }

    #[test]
    fn large_perf_input_streams_past_the_sniff_prefix() {
        let event = "node 7 [000] 1.000001: 1 cpu-clock: \n\tf1 leaf (/bin/x)\n\tf2 main (/bin/x)\n\n";
        let text = event.repeat(SNIFF_BYTES / event.len() * 3);
        let out = fold_reader(text.as_bytes(), None).unwrap();
        assert_eq!(out.format, InputFormat::PerfScript);
        assert_eq!(out.summary.total, (SNIFF_BYTES / event.len() * 3) as u64);
        assert_eq!(out.input_bytes, text.len() as u64);
    }

    #[test]
    fn errors_not_panics() {
        assert!(matches!(fold_reader(&b"hello\n"[..], None), Err(FlameError::UnknownFormat)));
        assert!(matches!(fold_reader(&b"{\"x\":1}"[..], None), Err(FlameError::UnknownFormat)));
        assert!(matches!(fold_reader(&b"{\"nodes\":[1]}"[..], None), Err(FlameError::Json { .. })));
        assert!(matches!(fold_reader(&b""[..], None), Err(FlameError::UnknownFormat)));
        let forced = fold_reader(&b"garbage\nmore\n\nx\n"[..], Some(InputFormat::PerfScript));
        assert!(matches!(forced, Err(FlameError::InvalidProfile { .. })), "{forced:?}");
    }

    #[test]
    fn render_file_writes_svg() {
        let dir = std::env::temp_dir().join(format!("flame-pipeline-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.folded");
        std::fs::write(&input, "main;hotFunction 5\n").unwrap();
        let output = dir.join("out.svg");
        let stats = render_file(&input, &output, &RenderOptions::default()).unwrap();
        assert_eq!((stats.format, stats.total), (InputFormat::Folded, 5));
        let svg = std::fs::read_to_string(&output).unwrap();
        assert!(svg.contains("hotFunction"));
        assert_eq!(svg.len() as u64, stats.svg_bytes);
        assert!(!tmp_path(&output).exists());
        std::fs::write(&input, "").unwrap();
        assert!(render_file(&input, &output, &RenderOptions::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
