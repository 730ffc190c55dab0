//! PNG plots of a run: one per plot name, every series of that name on it (CDFs on a log-scaled latency axis).

use crate::Series;
use plotters::prelude::*;
use std::path::Path;

fn font() -> Result<(), String> {
    let font = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
    ]
    .iter()
    .find_map(|p| std::fs::read(p).ok())
    .ok_or("no DejaVuSans.ttf to draw text with")?;
    let font: &'static [u8] = Box::leak(font.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, font)
        .map_err(|_| "bad font".into())
}

pub fn all(series: &[Series], dir: &Path) -> Result<Vec<String>, String> {
    font()?;
    let mut names: Vec<&str> = series.iter().map(|s| s.plot).collect();
    names.dedup();
    let mut files = Vec::new();
    for name in names {
        let of: Vec<&Series> = series.iter().filter(|s| s.plot == name).collect();
        let path = dir.join(format!("{name}.png"));
        draw(name, &of, &path)?;
        files.push(path.display().to_string());
    }
    Ok(files)
}

/// Every series as a line with its legend entry (the chart's axes differ in type, so this is a macro).
macro_rules! lines {
    ($c:expr, $series:expr, $colors:expr, $e:expr) => {
        for (i, s) in $series.iter().enumerate() {
            let color = $colors[i % $colors.len()];
            $c.draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err($e)?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        $c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err($e)?;
    };
}

fn draw(name: &str, series: &[&Series], path: &Path) -> Result<(), String> {
    let e = |e: DrawingAreaErrorKind<_>| e.to_string();
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;
    let cdf = series.iter().all(|s| s.cdf);
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let x_max = xs.clone().fold(f64::MIN, f64::max).max(1.0) * 1.1;
    let x_min = xs.fold(f64::MAX, f64::min).max(0.01);
    let y_max = if cdf {
        1.0
    } else {
        ys.fold(0.0, f64::max) * 1.15
    };
    let colors = [
        RGBColor(60, 120, 200),
        RGBColor(200, 80, 60),
        RGBColor(60, 160, 90),
    ];
    let caption = match name {
        "detection" => "detection latency: failing status written -> seen (CDF)",
        "ingest" => "reflexion-api: report POST latency under load (CDF)",
        "watcher-rss" => "watcher RSS after a restart that lists every pod",
        other => other,
    };
    let mut chart = ChartBuilder::on(&root);
    chart
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(55);
    if cdf {
        let mut c = chart
            .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..1f64)
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("milliseconds (log scale)")
            .y_desc("fraction")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(e)?;
        lines!(c, series, colors, e);
    } else {
        let mut c = chart
            .build_cartesian_2d(0f64..x_max, 0f64..y_max.max(1.0))
            .map_err(e)?;
        c.configure_mesh()
            .x_desc("seconds")
            .y_desc("MiB")
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(e)?;
        lines!(c, series, colors, e);
    }
    root.present().map_err(e)
}
