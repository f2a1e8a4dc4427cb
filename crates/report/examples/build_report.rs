//! Times rebuilding the report of a run folder (no training):
//! `cargo run --release -p cxr-report --example build_report -- RUN_DIR [REPEATS]`.

use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: build_report RUN_DIR [REPEATS]")?;
    let repeats: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(5);
    let mut seconds = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let files = cxr_report::write_report(std::path::Path::new(&dir))?;
        seconds.push(start.elapsed().as_secs_f64());
        if seconds.len() == 1 {
            println!(
                "{} figures, {}, {}, {}",
                files.figures.len(),
                files.markdown.display(),
                files.html.display(),
                files.parquet.display()
            );
        }
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "report of {dir}: median {:.3} s, min {:.3} s, max {:.3} s over {} builds",
        seconds[seconds.len() / 2],
        seconds[0],
        seconds[seconds.len() - 1],
        seconds.len()
    );
    Ok(())
}
