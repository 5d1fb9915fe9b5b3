//! The benchmark's results: a table on stdout and a JSON file.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Figure {
    pub name: String,
    pub unit: String,
    /// The daemon's figure.
    pub ours: f64,
    /// What it is compared with, measured in the same run: the raw SQLite ceiling for the same
    /// rows and batch sizes (`raw`), the raw PostgreSQL one (`raw pg`), the daemon on SQLite
    /// (`sqlite`, for its figures on PostgreSQL), the cqrs-es + sqlite-es peer (`peer`), and for
    /// several daemons on one PostgreSQL database (issue 20): one daemon (`1 daemon`), the raw
    /// writers without the global writer lock (`no lock`), a follower on the writing daemon
    /// itself (`same daemon`).
    pub reference: Option<f64>,
    pub reference_kind: Option<String>,
    /// `ours / reference`: what the machines' noise cancels out of.
    pub ratio: Option<f64>,
    pub note: String,
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub quick: bool,
    pub figures: Vec<Figure>,
    /// Memory and descriptors sampled during a soak run, if one ran.
    pub soak: Vec<SoakSample>,
}

#[derive(Debug, Serialize)]
pub struct SoakSample {
    pub seconds: u64,
    pub rss_kib: u64,
    /// Of which anonymous memory (the heap), as opposed to mapped files.
    pub anon_kib: u64,
    pub fds: usize,
    pub settled: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub sqlite: String,
    /// The server of the `postgres` section, when it ran.
    pub postgresql: Option<String>,
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
            postgresql: None,
        }
    }
}

impl Report {
    /// A figure compared with the raw SQLite ceiling, or with nothing.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        unit: &str,
        ours: f64,
        ceiling: Option<f64>,
        note: impl Into<String>,
    ) {
        self.push(name.into(), unit, ours, ceiling.map(|c| (c, "raw")), note.into());
    }

    /// A figure compared with another reference measured in the same run (`kind` names it).
    pub fn add_vs(
        &mut self,
        name: impl Into<String>,
        unit: &str,
        ours: f64,
        reference: f64,
        kind: &'static str,
        note: impl Into<String>,
    ) {
        self.push(name.into(), unit, ours, Some((reference, kind)), note.into());
    }

    /// A figure compared with the cqrs-es + sqlite-es peer.
    pub fn add_vs_peer(
        &mut self,
        name: impl Into<String>,
        unit: &str,
        ours: f64,
        peer: f64,
        note: impl Into<String>,
    ) {
        self.push(name.into(), unit, ours, Some((peer, "peer")), note.into());
    }

    fn push(&mut self, name: String, unit: &str, ours: f64, reference: Option<(f64, &str)>, note: String) {
        let figure = Figure {
            name,
            unit: unit.to_owned(),
            ours,
            reference: reference.map(|(value, _)| value),
            reference_kind: reference.map(|(_, kind)| kind.to_owned()),
            ratio: reference.filter(|(value, _)| *value > 0.0).map(|(value, _)| ours / value),
            note,
        };
        println!("{}", row(&figure));
        self.figures.push(figure);
    }

    pub fn header() {
        println!("{:<48} {:>12} {:>16} {:>7}  unit", "figure", "ours", "reference", "ratio");
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
    let number = |n: f64| if n >= 100.0 { format!("{n:.0}") } else { format!("{n:.3}") };
    let reference = match (figure.reference, figure.reference_kind.as_deref()) {
        (Some(value), Some(kind)) => format!("{} {kind}", number(value)),
        _ => String::new(),
    };
    format!(
        "{:<48} {:>12} {:>16} {:>7}  {}",
        figure.name,
        number(figure.ours),
        reference,
        figure.ratio.map(|r| format!("{r:.2}")).unwrap_or_default(),
        figure.unit
    )
}
