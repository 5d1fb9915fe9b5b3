//! The man pages in `man/` are generated from the clap definitions; this test fails when they
//! are stale. Regenerate them with `UPDATE_MAN=1 cargo test -p orders man_pages`.

use std::path::Path;

use clap::CommandFactory;

use crate::args::Cli;

#[test]
fn man_pages_match_the_command_line() {
    let generated = tempfile::tempdir().expect("tempdir");
    clap_mangen::generate_to(Cli::command(), generated.path()).expect("render the man pages");
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    if std::env::var_os("UPDATE_MAN").is_some() {
        let _ = std::fs::remove_dir_all(&man);
        std::fs::create_dir_all(&man).expect("create man/");
        for page in std::fs::read_dir(generated.path()).expect("read pages") {
            let page = page.expect("page");
            std::fs::copy(page.path(), man.join(page.file_name())).expect("copy page");
        }
        return;
    }
    let names = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map(|entries| entries.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        names.sort();
        names
    };
    let stale =
        "man/ is out of date with the command line: run `UPDATE_MAN=1 cargo test -p orders man_pages`";
    assert_eq!(names(generated.path()), names(&man), "{stale}");
    for name in names(generated.path()) {
        let want = std::fs::read_to_string(generated.path().join(&name)).expect("generated page");
        let have = std::fs::read_to_string(man.join(&name)).expect("committed page");
        assert!(want == have, "{} differs. {stale}", name.to_string_lossy());
    }
}
