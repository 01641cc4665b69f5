//! The chart as PNG, for places that show images but not SVG (chat cards, mail, slides).
//!
//! Rendering SVG needs a rasteriser (`resvg`); it is behind the off-by-default cargo feature
//! `png` so the default build stays as fast as it was. Without it, `sqlctl results NAME --chart
//! FILE.png` says how to get it and the controller stores the SVG alone.

/// Whether this build renders PNG.
pub const AVAILABLE: bool = false;

/// The SVG chart `svg` rendered as PNG, or why it cannot be.
pub fn render(svg: &[u8]) -> Result<Vec<u8>, String> {
    let _ = svg;
    Err("this sqlctl was built without PNG charts (the cargo feature `png`); write the chart as .svg".into())
}
