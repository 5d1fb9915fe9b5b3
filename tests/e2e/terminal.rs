//! Commands run on a real pseudo-terminal, for what `orders` does only on a terminal: colour,
//! short ids and table widths, progress, feedback on stderr. The screen is rendered by a
//! terminal emulator of the given size, so a test sees what a person would, wrapped lines and all.

use std::io::Read;
use std::process::{Command, ExitStatus};
use std::time::Duration;

/// What a command left on a terminal of `columns` columns.
pub struct Screen {
    /// The bytes it wrote, escape sequences included.
    pub raw: String,
    /// Its exit status.
    pub status: ExitStatus,
    parser: vt100::Parser,
}

/// Rows enough that nothing a test prints scrolls away.
const ROWS: u16 = 1000;

impl Screen {
    /// Runs `command` with its stdin, stdout and stderr on a new terminal of `columns` columns,
    /// until it exits and the terminal has nothing more to read.
    pub fn run(command: &Command, columns: u16) -> Screen {
        Self::run_with(command, columns, |command| command)
    }

    /// Like [`run`](Self::run), with a change to the command as it goes onto the terminal (stderr
    /// elsewhere, say).
    pub fn run_with(
        command: &Command,
        columns: u16,
        change: impl FnOnce(pty_process::blocking::Command) -> pty_process::blocking::Command,
    ) -> Screen {
        let (mut pty, pts) = pty_process::blocking::open().expect("open a pseudo-terminal");
        pty.resize(pty_process::Size::new(ROWS, columns)).expect("size the terminal");
        let mut on_terminal = pty_process::blocking::Command::new(command.get_program())
            .args(command.get_args())
            .env("TERM", "xterm-256color");
        for (key, value) in command.get_envs() {
            on_terminal = match value {
                Some(value) => on_terminal.env(key, value),
                None => on_terminal.env_remove(key),
            };
        }
        if let Some(dir) = command.get_current_dir() {
            on_terminal = on_terminal.current_dir(dir);
        }
        let mut child = change(on_terminal).spawn(pts).expect("start on the terminal");
        // The terminal ends (EIO) once every process holding its other side has closed it.
        let (sender, read) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let mut chunk = [0u8; 4096];
            while let Ok(read) = pty.read(&mut chunk) {
                if read == 0 {
                    break;
                }
                bytes.extend_from_slice(&chunk[..read]);
            }
            let _ = sender.send(bytes);
        });
        let status = crate::fixture::wait_timeout(&mut child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("{:?} did not end on the terminal", command.get_args()));
        // A process the command started that keeps the terminal open (a daemon that did not let
        // go of its stdio) is a failure, not a test that hangs.
        let bytes = read.recv_timeout(Duration::from_secs(10)).unwrap_or_else(|_| {
            panic!("{:?} ended, but something it started still holds the terminal", command.get_args())
        });
        let size = |n: u16| std::num::NonZero::new(n).expect("a size above 0");
        let mut parser = vt100::Parser::new(size(ROWS), size(columns), 0);
        parser.process(&bytes);
        Screen { raw: String::from_utf8_lossy(&bytes).into_owned(), status, parser }
    }

    /// The text on the screen, without colours, trailing blank lines left out.
    pub fn text(&self) -> String {
        self.parser.screen().contents().trim_end().to_owned()
    }

    /// The rows that ran past the right edge and went on in the next row.
    pub fn wrapped_rows(&self) -> Vec<String> {
        let screen = self.parser.screen();
        let (_, columns) = screen.size();
        screen
            .rows(0, columns.get())
            .enumerate()
            .filter(|(row, _)| screen.row_wrapped(*row as u16))
            .map(|(_, text)| text)
            .collect()
    }

    /// The exit code.
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}
