//! Tries a PostgreSQL URL as the daemon would read it (issue 19): prints the target as logs
//! show it, connects from a blocking thread of a multi-thread runtime (as the daemon's reads
//! do), and says who it is connected as and whether over TLS, or why it could not connect.
//!
//! `cargo run -p orders-daemon --example pg_connect -- 'postgres://user@host/db?sslmode=verify-full'`

use orders_daemon::store::postgres::connect::Target;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: pg_connect URL");
        return std::process::ExitCode::from(2);
    };
    let target = match Target::parse(&url) {
        Ok(target) => target,
        Err(error) => {
            eprintln!("refused: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    println!("target: {target}");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let outcome = runtime.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let mut client = target.connect("check")?;
            let row = client.query_one(
                "SELECT current_user::text, coalesce((SELECT ssl FROM pg_stat_ssl WHERE pid = \
                 pg_backend_pid()), false), current_setting('application_name')",
                &[],
            )?;
            Ok::<_, orders_daemon::store::StoreError>((
                row.get::<_, String>(0),
                row.get::<_, bool>(1),
                row.get::<_, String>(2),
            ))
        })
        .await
        .expect("the blocking task ran")
    });
    match outcome {
        Ok((user, tls, application)) => {
            println!("connected as {user}, tls: {tls}, application_name: {application}");
            std::process::ExitCode::SUCCESS
        }
        Err(error) => {
            let kind = match &error {
                orders_daemon::store::StoreError::Unavailable { reason, .. } => {
                    format!("unavailable ({reason})")
                }
                orders_daemon::store::StoreError::Failed(..) => "failed".to_owned(),
                other => format!("{other:?}"),
            };
            println!("error [{kind}]: {:#}", anyhow::Error::from(error));
            std::process::ExitCode::FAILURE
        }
    }
}
