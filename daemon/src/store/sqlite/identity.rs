//! The store's identity as SQLite keeps it: one row of `store_identity` (schema migration 6),
//! and `PRAGMA application_id` marking the file as an orders database. What the daemon does with
//! it is `crate::identity`'s business.

use rusqlite::{Connection, OptionalExtension};

use super::events::EventStore;
use crate::identity::{Found, StoreId};
use crate::store::StoreError;

/// `PRAGMA application_id` of an orders database: "ordr".
pub const APPLICATION_ID: i32 = 0x6F72_6472;

/// What the database says about itself, read before migrating it (an older schema has no
/// identity table, a new database no tables at all).
pub fn found(conn: &Connection) -> Result<Found, StoreError> {
    let table = |name: &str| -> Result<bool, StoreError> {
        let exists = conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1")?
            .query_row([name], |_| Ok(()))
            .optional()?;
        Ok(exists.is_some())
    };
    let id = if table("store_identity")? { stored_id(conn)? } else { None };
    let head = if table("events")? { EventStore::new(conn).head()?.get() } else { 0 };
    Ok(Found { id, head })
}

fn stored_id(conn: &Connection) -> Result<Option<StoreId>, StoreError> {
    let text: Option<String> =
        conn.query_row("SELECT id FROM store_identity", [], |row| row.get(0)).optional()?;
    text.map(|text| {
        text.parse().map_err(|_| StoreError::Corrupt(format!("the store identity '{text}' is no UUID")))
    })
    .transpose()
}

/// The database's identity after migrating it: the one it has, or a new one when it has none
/// (a new database, or one of an older version) or `mint` asks for it (a change accepted).
pub fn ensure(conn: &Connection, mint: bool) -> Result<StoreId, StoreError> {
    if !mint && let Some(id) = stored_id(conn)? {
        return Ok(id);
    }
    let id = StoreId::new();
    conn.execute("INSERT OR REPLACE INTO store_identity (singleton, id) VALUES (1, ?1)", [id.to_string()])?;
    tracing::info!(store = %id, "the store has a new identity");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::{open_writer, schema};

    #[test]
    fn a_new_database_has_no_identity_until_migrated_and_keeps_the_one_it_gets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_writer(&dir.path().join("t.db")).expect("open");
        assert_eq!(found(&conn).expect("found"), Found { id: None, head: 0 });
        schema::migrate(&mut conn).expect("migrate");
        let id = ensure(&conn, false).expect("ensure");
        assert_eq!(ensure(&conn, false).expect("again"), id);
        assert_eq!(found(&conn).expect("found"), Found { id: Some(id), head: 0 });
        let minted = ensure(&conn, true).expect("mint");
        assert_ne!(minted, id);
        assert_eq!(found(&conn).expect("found").id, Some(minted));
        let app: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0)).expect("pragma");
        assert_eq!(app, APPLICATION_ID);
    }

    #[test]
    fn a_database_of_an_older_version_is_found_without_identity_and_given_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = open_writer(&dir.path().join("t.db")).expect("open");
        schema::migrate_to(&mut conn, 5).expect("schema 5");
        assert_eq!(found(&conn).expect("found"), Found { id: None, head: 0 });
        schema::migrate(&mut conn).expect("migrate");
        let id = ensure(&conn, false).expect("ensure");
        assert_eq!(found(&conn).expect("found").id, Some(id));
    }
}
