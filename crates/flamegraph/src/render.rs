//! Folded stacks → SVG flame graph, with inferno's renderer.

use std::io::{BufRead, Write};

use inferno::flamegraph::color::{BasicPalette, MultiPalette, Palette};
use inferno::flamegraph::{self, Options};

use crate::detect::InputFormat;
use crate::error::FlameError;

/// Rendering choices; `None` fields get a default for the input format.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// Title on top of the graph (default: per format, see [`InputFormat::default_title`]).
    pub title: Option<String>,
    /// Second line under the title (e.g. the process and duration).
    pub subtitle: Option<String>,
    /// What the weights count (default `"samples"`, `"bytes"` for heap profiles).
    pub count_name: Option<String>,
    /// Fixed width in pixels; `None` = fluid (fills the browser window).
    pub width: Option<usize>,
    /// Frames narrower than this many pixels are left out (keeps big graphs small).
    pub min_width: f64,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { title: None, subtitle: None, count_name: None, width: None, min_width: 0.1 }
    }
}

/// Renders folded stacks read from `folded` as an SVG flame graph on `out`.
///
/// `format` is the format the stacks came from; it picks defaults and the palette.
/// Empty input gives [`FlameError::NoSamples`].
pub fn render_svg<R: BufRead, W: Write>(
    folded: R,
    out: W,
    format: InputFormat,
    opts: &RenderOptions,
) -> Result<(), FlameError> {
    let mut options = inferno_options(format, opts);
    flamegraph::from_reader(&mut options, folded, out).map_err(map_render_error)
}

/// Like [`render_svg`] for folded text already in memory (no second copy of it is made).
pub fn render_svg_str<W: Write>(
    folded: &str,
    out: W,
    format: InputFormat,
    opts: &RenderOptions,
) -> Result<(), FlameError> {
    let mut options = inferno_options(format, opts);
    flamegraph::from_lines(&mut options, folded.lines(), out).map_err(map_render_error)
}

fn map_render_error(e: std::io::Error) -> FlameError {
    if e.kind() == std::io::ErrorKind::InvalidData {
        FlameError::NoSamples
    } else {
        FlameError::Render(e)
    }
}

fn inferno_options(format: InputFormat, opts: &RenderOptions) -> Options<'static> {
    let mut o = Options::default();
    o.title = opts.title.clone().unwrap_or_else(|| format.default_title().to_string());
    o.subtitle = opts.subtitle.clone();
    o.count_name = opts.count_name.clone().unwrap_or_else(|| format.count_name().to_string());
    o.image_width = opts.width;
    o.min_width = opts.min_width;
    o.colors = palette(format);
    // Same function, same colour: graphs of the same app stay comparable.
    o.hash = true;
    o
}

fn palette(format: InputFormat) -> Palette {
    match format {
        InputFormat::HeapProfile => Palette::Basic(BasicPalette::Mem),
        _ => Palette::Multi(MultiPalette::Js),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_svg_with_title_and_frames() {
        let mut svg = Vec::new();
        let opts = RenderOptions { title: Some("My title".into()), ..Default::default() };
        render_svg(&b"main;uniqueFrameName 3\nmain 1\n"[..], &mut svg, InputFormat::Folded, &opts).unwrap();
        let svg = String::from_utf8(svg).unwrap();
        assert!(svg.starts_with("<?xml"), "{}", &svg[..100]);
        assert!(svg.contains("My title"));
        assert!(svg.contains("uniqueFrameName"));
        assert!(svg.contains("samples"));
    }

    #[test]
    fn str_and_reader_render_the_same() {
        let folded = "b;c 2\na 1\nb 3\n";
        let (mut one, mut two) = (Vec::new(), Vec::new());
        let opts = RenderOptions::default();
        render_svg(folded.as_bytes(), &mut one, InputFormat::Folded, &opts).unwrap();
        render_svg_str(folded, &mut two, InputFormat::Folded, &opts).unwrap();
        assert_eq!(one, two);
    }

    #[test]
    fn heap_counts_bytes() {
        let mut svg = Vec::new();
        render_svg(&b"alloc 4096\n"[..], &mut svg, InputFormat::HeapProfile, &RenderOptions::default()).unwrap();
        assert!(String::from_utf8(svg).unwrap().contains("bytes"));
    }

    #[test]
    fn empty_input_is_no_samples() {
        let r = render_svg(&b""[..], std::io::sink(), InputFormat::Folded, &RenderOptions::default());
        assert!(matches!(r, Err(FlameError::NoSamples)), "{r:?}");
    }
}
