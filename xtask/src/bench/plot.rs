//! `throughput.svg`: throughput against CPU count, one line per variant.
//!
//! Hand-written SVG (a few elements, no plotting crate). The y axis is logarithmic:
//! the variants differ by orders of magnitude (a shootdown per pair against a direct
//! access), and on a linear axis every slow variant would lie flat on zero. Equal
//! slopes then mean equal scaling, which is what the plot is for.

use std::fmt::Write as _;

use super::figures::VariantFigures;

const WIDTH: f64 = 900.0;
const HEIGHT: f64 = 540.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 230.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 70.0;

/// Distinguishable colours (Tableau 10 plus eleven), in variant order: one per variant.
const PALETTE: [&str; 21] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#555555", "#17becf", "#bcbd22", "#222222", "#aec7e8", "#ffbb78", "#98df8a",
    "#ff9896", "#c5b0d5", "#c49c94", "#8c564b", "#dbdb8d",
];
const _: () = assert!(PALETTE.len() >= super::lines::VARIANTS.len());

/// The SVG document for `figures`' throughput (pairs/s by CPU count).
pub fn throughput_svg(figures: &[VariantFigures]) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let mut cpus: Vec<u32> = figures
        .iter()
        .flat_map(|f| f.throughput.iter().map(|&(c, _)| c))
        .collect();
    cpus.sort_unstable();
    cpus.dedup();
    let values: Vec<f64> = figures
        .iter()
        .flat_map(|f| f.throughput.iter().map(|&(_, t)| t))
        .filter(|t| *t > 0.0)
        .collect();
    // Whole decades around the data.
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(0.0, f64::max);
    let (decade_low, decade_high) = if values.is_empty() {
        (0, 1)
    } else {
        let low = low.log10().floor() as i32;
        (low, (high.log10().ceil() as i32).max(low + 1))
    };
    let (cpu_min, cpu_max) = match (cpus.first(), cpus.last()) {
        (Some(&a), Some(&b)) if a != b => (f64::from(a), f64::from(b)),
        // One CPU count (or none): centre it.
        (Some(&a), _) => (f64::from(a) - 1.0, f64::from(a) + 1.0),
        _ => (0.0, 1.0),
    };
    let x = |c: f64| LEFT + (c - cpu_min) / (cpu_max - cpu_min) * plot_w;
    let y = |t: f64| {
        let span = f64::from(decade_high - decade_low);
        TOP + plot_h - (t.log10() - f64::from(decade_low)) / span * plot_h
    };

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="13">"##
    );
    let _ = writeln!(
        svg,
        r##"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"##
    );
    let _ = writeln!(
        svg,
        r##"<text x="{}" y="28" text-anchor="middle" font-size="17" font-weight="bold">quickmap benchmark: throughput against CPUs</text>"##,
        LEFT + plot_w / 2.0
    );
    // Horizontal grid and y labels, one per decade plus 2x and 5x ticks.
    for decade in decade_low..=decade_high {
        for (step, major) in [(1.0, true), (2.0, false), (5.0, false)] {
            let value = step * 10f64.powi(decade);
            if decade == decade_high && step > 1.0 {
                continue;
            }
            let yy = y(value);
            let (stroke, label) = if major {
                ("#cccccc", decade_label(decade))
            } else {
                ("#eeeeee", String::new())
            };
            let _ = writeln!(
                svg,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{stroke}"/>"##,
                LEFT + plot_w
            );
            if major {
                let _ = writeln!(
                    svg,
                    r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
                    LEFT - 8.0,
                    yy + 4.0
                );
            }
        }
    }
    // Vertical grid and x labels at each measured CPU count.
    for &c in &cpus {
        let xx = x(f64::from(c));
        let _ = writeln!(
            svg,
            r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{:.1}" stroke="#eeeeee"/>"##,
            TOP + plot_h
        );
        let _ = writeln!(
            svg,
            r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle">{c}</text>"##,
            TOP + plot_h + 20.0
        );
    }
    // Axes and their titles.
    let _ = writeln!(
        svg,
        r##"<path d="M{LEFT},{TOP} V{:.1} H{:.1}" fill="none" stroke="black"/>"##,
        TOP + plot_h,
        LEFT + plot_w
    );
    let _ = writeln!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">CPUs</text>"##,
        LEFT + plot_w / 2.0,
        HEIGHT - 22.0
    );
    let _ = writeln!(
        svg,
        r##"<text transform="translate(22,{:.1}) rotate(-90)" text-anchor="middle">enter+access+remove pairs per second (log scale)</text>"##,
        TOP + plot_h / 2.0
    );
    // One polyline with point markers per variant, and its legend entry.
    for (i, f) in figures.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> = f
            .throughput
            .iter()
            .filter(|(_, t)| *t > 0.0)
            .map(|&(c, t)| (x(f64::from(c)), y(t)))
            .collect();
        let path: Vec<String> = points
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = writeln!(
            svg,
            r##"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"##,
            path.join(" ")
        );
        for (px, py) in &points {
            let _ = writeln!(
                svg,
                r##"<circle cx="{px:.1}" cy="{py:.1}" r="3.5" fill="{colour}"/>"##
            );
        }
        let ly = TOP + 10.0 + i as f64 * 22.0;
        let lx = WIDTH - RIGHT + 20.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"/>"##,
            lx + 24.0
        );
        let _ = writeln!(
            svg,
            r##"<text x="{}" y="{:.1}">{}</text>"##,
            lx + 32.0,
            ly + 4.0,
            escape(&f.name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// `10^decade` as an axis label: `1`, `10`, `100`, `1k` ... `100M`, `1G`.
fn decade_label(decade: i32) -> String {
    const UNITS: [(i32, &str); 4] = [(9, "G"), (6, "M"), (3, "k"), (0, "")];
    match UNITS.iter().find(|(power, _)| decade >= *power) {
        Some((power, unit)) => format!("{}{unit}", 10u64.pow((decade - power) as u32)),
        // Below 1 pair per second: plain decimals.
        None => format!("{}", 10f64.powi(decade)),
    }
}

/// Text content escaped for XML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::figures::{Cost, EventsPerPair};

    fn variant(name: &str, throughput: &[(u32, f64)]) -> VariantFigures {
        VariantFigures {
            name: name.into(),
            checked: Cost::same_events(0.0, EventsPerPair::default()),
            lean: None,
            throughput: throughput.to_vec(),
            scaling: Vec::new(),
            vs_window: Vec::new(),
        }
    }

    #[test]
    fn lines_axes_and_legend() {
        let svg = throughput_svg(&[
            variant("quickmap-window", &[(1, 1e5), (2, 2e5), (4, 4e5)]),
            variant("shootdown-map", &[(1, 1e3), (2, 500.0), (4, 250.0)]),
        ]);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert!(svg.contains(">quickmap-window</text>"));
        assert!(svg.contains(">CPUs</text>"));
        assert!(svg.contains("(log scale)</text>"));
        // Decades 10^2 .. 10^6 labelled.
        for label in [">100<", ">1k<", ">10k<", ">100k<", ">1M<"] {
            assert!(svg.contains(label), "{label}");
        }
        // x = 1 is the left edge, x = 4 the right; 1e6 is the top, 1e2 the bottom.
        assert!(svg.contains("<circle cx=\"90.0\" cy=\"155.0\""), "{svg}");
        assert!(svg.contains("<circle cx=\"670.0\" cy=\""), "{svg}");
    }

    #[test]
    fn degenerate_inputs_still_draw() {
        let svg = throughput_svg(&[variant("only", &[(2, 1234.0)])]);
        assert!(svg.contains("<circle cx=\"380.0\""), "centred: {svg}");
        let empty = throughput_svg(&[]);
        assert!(empty.contains("</svg>"));
        assert!(!empty.contains("NaN") && !svg.contains("NaN"));
        assert_eq!(escape("a<b>&"), "a&lt;b&gt;&amp;");
        let labels: Vec<String> = [-1, 0, 2, 3, 5, 6, 9, 10].map(decade_label).into();
        assert_eq!(labels, ["0.1", "1", "100", "1k", "100k", "1M", "1G", "10G"]);
    }
}
