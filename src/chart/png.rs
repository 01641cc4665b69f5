//! The chart as PNG, for places that show images but not SVG (chat cards, mail, slides).
//!
//! Rendering SVG needs a rasteriser (`resvg`, with the system's fonts for the labels); it is
//! behind the off-by-default cargo feature `png` (`cargo build --features png`) because its ~57
//! crates took 78 s of a clean debug build here, more than the default build may grow by. With
//! the feature, the controller stores `<result>.png` next to every SVG chart and `sqlctl results
//! NAME --chart FILE.png` writes it; without it, the SVG is stored alone and `--chart FILE.png`
//! says how to get PNGs. A machine without fonts (the distroless image) renders the marks but
//! no text: install fonts there, or use the SVG.

/// Whether this build renders PNG.
pub const AVAILABLE: bool = cfg!(feature = "png");

/// The SVG chart `svg` rendered as PNG at its own size, or why it cannot be.
#[cfg(feature = "png")]
pub fn render(svg: &[u8]) -> Result<Vec<u8>, String> {
    use std::sync::{Arc, LazyLock};

    use resvg::{tiny_skia, usvg};
    // Loading the system's fonts reads every font file: once per process.
    static FONTS: LazyLock<Arc<usvg::fontdb::Database>> = LazyLock::new(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_system_fonts();
        // The charts ask for `sans-serif` last; fontdb maps it to Arial, which a Linux host
        // rarely has: use a sans face the system does have (DejaVu Sans, Liberation Sans, …).
        let sans = db
            .faces()
            .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
            .filter(|n| n.contains("Sans") && !n.contains("Mono"))
            .min_by_key(|n| (n.contains("Condensed"), n.len()));
        if let Some(sans) = sans {
            db.set_sans_serif_family(sans);
        }
        Arc::new(db)
    });
    let options = usvg::Options { fontdb: Arc::clone(&FONTS), ..usvg::Options::default() };
    let tree = usvg::Tree::from_data(svg, &options).map_err(|e| format!("reading the SVG chart: {e}"))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| format!("a {}×{} chart cannot be rendered", size.width(), size.height()))?;
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(|e| format!("encoding the PNG: {e}"))
}

/// Without the `png` feature: says how to get PNG charts.
#[cfg(not(feature = "png"))]
pub fn render(svg: &[u8]) -> Result<Vec<u8>, String> {
    let _ = svg;
    Err("this sqlctl was built without PNG charts (build it with `--features png`); write the chart as .svg".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_renders_as_png_when_the_feature_is_on() {
        let chart = crate::chart::draw(b"r,n\nA,1\nB,2\n", &Default::default(), "t").unwrap();
        match (render(chart.svg.as_bytes()), AVAILABLE) {
            (Ok(png), true) => {
                assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
                // IHDR: 800 × 450.
                assert_eq!(u32::from_be_bytes(png[16..20].try_into().unwrap()), 800);
                assert_eq!(u32::from_be_bytes(png[20..24].try_into().unwrap()), 450);
            }
            (Err(why), false) => assert!(why.contains("--features png"), "{why}"),
            (other, available) => panic!("png available: {available}, rendered: {:?}", other.map(|p| p.len())),
        }
    }
}
