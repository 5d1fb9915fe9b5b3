//! The benchmark's results: a table on stdout and a JSON file.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// The daemon's figure.
    pub ours: f64,
    /// The raw SQLite ceiling for the same rows and batch sizes, measured in the same run.
    pub ceiling: Option<f64>,
    /// `ours / ceiling`: what the machines' noise cancels out of.
    pub ratio: Option<f64>,
    pub note: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub figures: Vec<Figure>,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub sqlite: String,
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpu: cpuinfo
                .lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
                .unwrap_or_default(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            sqlite: rusqlite::version().to_owned(),
        }
    }
}

impl Report {
    pub fn add(
        &mut self,
        name: impl Into<String>,
        unit: &str,
        ours: f64,
        ceiling: Option<f64>,
        note: impl Into<String>,
    ) {
        let figure = Figure {
            name: name.into(),
            unit: unit.to_owned(),
            ours,
            ceiling,
            ratio: ceiling.filter(|c| *c > 0.0).map(|c| ours / c),
            note: note.into(),
        };
        println!("{}", row(&figure));
        self.figures.push(figure);
    }

    pub fn header() {
        println!("{:<44} {:>14} {:>14} {:>7}  unit", "figure", "ours", "raw ceiling", "ratio");
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        Ok(())
    }
}

fn row(figure: &Figure) -> String {
    let number = |n: f64| if n >= 100.0 { format!("{:.0}", n) } else { format!("{n:.3}") };
    format!(
        "{:<44} {:>14} {:>14} {:>7}  {}",
        figure.name,
        number(figure.ours),
        figure.ceiling.map(number).unwrap_or_default(),
        figure.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
        figure.unit
    )
}
