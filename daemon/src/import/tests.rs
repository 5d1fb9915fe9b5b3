use orders_shared::Total;
use orders_shared::protocol::{CreateRequest, IdempotencyKey};
use serde_json::Value;

use super::*;
use crate::command::WriteCommand;
use crate::testing::Db;

/// A log with an order in every state: delivered, declined, cancelled after approval, awaiting
/// its payment, awaiting its delivery; one placed with an idempotency key.
fn mixed_log() -> (Db, OrderId, OrderId) {
    let mut db = Db::new();
    let delivered = db.create(2);
    db.decide(delivered);
    db.run(WriteCommand::Deliver(delivered)).expect("deliver");
    let declined = db.create(3);
    db.decide(declined);
    let cancelled = db.create(4);
    db.decide(cancelled);
    db.run(WriteCommand::Cancel(cancelled)).expect("cancel");
    let awaiting_payment = db.create(6);
    let keyed = db
        .run(WriteCommand::Create(CreateRequest {
            user: "bob".parse().expect("user"),
            total: Total::try_from(8).expect("total"),
            idempotency_key: Some(IdempotencyKey::try_from("k-1".to_owned()).expect("key")),
        }))
        .expect("create")
        .id;
    db.decide(keyed);
    (db, awaiting_payment, keyed)
}

/// Loads `text` into `db`; its read model must be whole at once.
fn load_into<S: Store>(db: &mut Db<S>, text: impl AsRef<[u8]>) -> Result<Loaded, ImportError> {
    let loaded = load(&mut db.store, &mut text.as_ref())?;
    assert_eq!(db.store.checkpoint().expect("checkpoint"), db.store.head().expect("head"));
    Ok(loaded)
}

#[test]
fn an_export_imported_exports_byte_for_byte_with_its_open_steps_and_a_clean_check() {
    let (mut db, awaiting_payment, awaiting_delivery) = mixed_log();
    let text = db.export();
    assert!(text.contains(r#""idempotency_key":"k-1""#), "{text}");

    let mut sqlite = Db::new();
    let loaded = load_into(&mut sqlite, &text).expect("import");
    assert_eq!(
        loaded,
        Loaded { events: text.lines().count() as u64 - 1, orders: 5, open_payments: 1, open_deliveries: 1 }
    );
    assert_eq!(sqlite.export(), text, "the export of the import is the export");
    assert_eq!(sqlite.read(crate::check::check).problems, 0);
    assert_eq!(sqlite.open_payment(awaiting_payment), db.open_payment(awaiting_payment));
    assert_eq!(sqlite.timer(awaiting_delivery), db.timer(awaiting_delivery));
    assert!(sqlite.timer(awaiting_delivery).is_some());
    assert_eq!(sqlite.view(awaiting_delivery), db.view(awaiting_delivery), "the read model is rebuilt");

    let mut memory = Db::memory();
    load_into(&mut memory, &text).expect("import into memory");
    assert_eq!(memory.export(), text);
    assert_eq!(memory.read(crate::check::check).problems, 0);
}

/// The lines of the mixed log's export, each as a JSON value to edit.
fn lines() -> Vec<Value> {
    mixed_log().0.export().lines().map(|line| serde_json::from_str(line).expect("json")).collect()
}

fn text_of(lines: &[Value]) -> String {
    lines.iter().map(|line| format!("{line}\n")).collect()
}

/// Imports `text` into an empty store: the refusal's words, after proving nothing was kept.
fn refusal(text: impl AsRef<[u8]>) -> String {
    let mut db = Db::new();
    let error = load_into(&mut db, text).expect_err("refused");
    assert_eq!(db.read(|reads| reads.counts()).head, Position::START, "nothing was kept");
    assert!(db.store.open_steps().expect("steps").payments.is_empty());
    error.to_string()
}

/// The first line whose `type` is `event_type`.
fn index_of(lines: &[Value], event_type: &str) -> usize {
    lines.iter().position(|line| line["type"] == event_type).expect("that type is in the log")
}

#[test]
fn a_gap_a_repeat_or_a_partial_log_is_refused_with_its_line() {
    let mut gap = lines();
    gap.remove(2);
    assert_eq!(refusal(text_of(&gap)), "line 3: position 4 where 3 was due: positions 3 to 3 are missing");

    let mut repeated = lines();
    repeated.insert(2, repeated[1].clone());
    assert!(refusal(text_of(&repeated)).starts_with("line 3: position 2 is there twice"));

    let partial = lines()[1..].to_vec();
    assert!(refusal(text_of(&partial)).contains("line 1: the log starts at position 2"));
}

#[test]
fn an_illegal_transition_is_refused_with_its_line() {
    let mut lines = lines();
    let approved = index_of(&lines, "OrderApproved");
    lines[approved]["type"] = "OrderDelivered".into();
    let said = refusal(text_of(&lines));
    assert!(said.starts_with(&format!("line {}: order-", approved + 1)), "{said}");
    assert!(said.contains("OrderDelivered breaks the rules"), "{said}");
}

#[test]
fn a_duplicate_event_id_stream_version_or_key_is_refused_with_its_line() {
    let mut ids = lines();
    ids[4]["event_id"] = ids[1]["event_id"].clone();
    assert!(refusal(text_of(&ids)).starts_with("line 5: event id "), "{}", refusal(text_of(&ids)));

    let mut versions = lines();
    let approved = index_of(&versions, "OrderApproved");
    versions[approved]["version"] = 1.into();
    let said = refusal(text_of(&versions));
    assert!(
        said.starts_with(&format!("line {}: ", approved + 1)) && said.contains("has a version 1 already")
    );

    let mut jump = lines();
    jump[approved]["version"] = 3.into();
    assert!(refusal(text_of(&jump)).contains("jumps to version 3 where 2 was due"));

    let mut keys = lines();
    let keyed =
        keys.iter().position(|line| line["metadata"].get("idempotency_key").is_some()).expect("a key");
    keys[0]["metadata"]["idempotency_key"] = "k-1".into();
    let said = refusal(text_of(&keys));
    assert_eq!(said, format!("line {}: the idempotency key 'k-1' is there twice", keyed + 1));
}

#[test]
fn lines_that_are_no_events_are_refused_with_their_line() {
    let valid = text_of(&lines());
    let first = valid.lines().next().expect("a line");
    for (text, expected) in [
        (format!("{first}\n{{hello\n"), "line 2: not an exported event: key must be a string (at column 2)"),
        (format!("{first}\n[1,2]\n"), "line 2: not an exported event: each line is a JSON object"),
        (first.replace(r#""position":1,"#, r#""position":1,"shard":1,"#), "unknown field `shard`"),
        (
            first.replace(r#""type":"OrderPlaced""#, r#""type":"OrderShipped""#),
            "unknown event type 'OrderShipped'",
        ),
        (first.replace(r#""schema_version":1"#, r#""schema_version":9"#), "unknown schema version 9"),
        (first.replace(r#""total":2"#, r#""total":0"#), "line 1: malformed payload of event 'OrderPlaced'"),
        (format!("{}\n", "x".repeat(MAX_LINE_BYTES + 10)), "line 1: the line is longer than 1 MiB"),
    ] {
        let said = refusal(&text);
        assert!(said.contains(expected), "{expected:?} in {said:?}");
    }
    let gzip = [&[0x1f, 0x8b, 0x08, 0x00][..], first.as_bytes()].concat();
    assert!(refusal(gzip).starts_with("line 1: the input is gzip-compressed"));
}

/// The end line of an export of `events` events.
fn end_line(events: i64) -> Value {
    end_of_piece(1, events)
}

/// The end line of a piece of an export, from position `first` to `last`.
fn end_of_piece(first: i64, last: i64) -> Value {
    let events = last - first + 1;
    let cursor = |position: i64| (events > 0).then(|| position.to_string());
    serde_json::json!({"end": {"events": events, "first": cursor(first), "last": cursor(last), "next": (last + 1).to_string()}})
}

#[test]
fn contexts_that_disagree_where_the_log_ends_are_refused_at_the_orders_last_line() {
    let all = lines();
    // Cut after the first event: placed, and its payment never requested.
    let said = refusal(text_of(&[all[0].clone(), end_line(1)]));
    assert!(
        said.starts_with("line 1: order ") && said.ends_with("placed, but no payment was requested"),
        "{said}"
    );
    // A payment stream without its order.
    let mut orphan = all[1].clone();
    orphan["position"] = 1.into();
    let said = refusal(text_of(&[orphan, end_line(1)]));
    assert!(said.ends_with("(this is its last line): has no order stream"), "{said}");
}

#[test]
fn an_export_cut_short_or_with_lines_after_its_end_is_refused() {
    let all = lines();
    let events = all.len() - 1;
    assert!(all[events].get("end").is_some(), "the last line is the end line");
    // Cut with `head`, at a commit boundary or not: no end line.
    for cut in [events, events - 3, 1] {
        let said = refusal(text_of(&all[..cut]));
        assert!(
            said.starts_with(&format!("the input ends at line {cut} without the export's end line")),
            "{said}"
        );
    }
    assert_eq!(refusal(""), "the input is empty: there is no export to import");
    // An end line that does not end this log: lines are missing before it.
    let mut short = all[..events - 1].to_vec();
    short.push(all[events].clone());
    assert!(refusal(text_of(&short)).contains("lines are missing"), "{}", refusal(text_of(&short)));
    // Two exports one after the other.
    let twice = format!("{}{}", text_of(&all), text_of(&all[..1]));
    assert!(refusal(twice).starts_with(&format!("line {}: position 1 is there twice", events + 2)));
    // An end line edited, or with a key no end line has.
    let mut edited = all.clone();
    edited[events]["end"]["first"] = "9".into();
    assert!(refusal(text_of(&edited)).contains("was edited"));
    edited[events]["end"]["first"] = "1".into();
    edited[events]["end"]["pieces"] = 2.into();
    let said = refusal(text_of(&edited));
    assert!(said.contains("the export's end line is malformed: unknown field `pieces`"), "{said}");
    // Cut in the middle of a line.
    let text = text_of(&all);
    let said = refusal(&text[..text.len() - 30]);
    assert!(said.ends_with("the line is cut short: the export was cut in the middle of it"), "{said}");
}

/// `orders export --to K`, then `orders export --from K+1`: the pieces joined in order import as
/// the whole export would.
#[test]
fn pieces_of_an_export_joined_in_order_import_as_the_whole() {
    let all = lines();
    let events = all.len() - 1;
    let k = events / 2;
    let mut pieces = all[..k].to_vec();
    pieces.push(end_of_piece(1, k as i64));
    pieces.extend_from_slice(&all[k..events]);
    pieces.push(end_of_piece(k as i64 + 1, events as i64));
    let mut db = Db::new();
    load_into(&mut db, text_of(&pieces)).expect("the pieces import");
    let exported: Vec<Value> =
        db.export().lines().map(|line| serde_json::from_str(line).expect("json")).collect();
    assert_eq!(exported, all, "the import of the pieces is the whole log");
    // The last piece's end line is still required.
    assert!(refusal(text_of(&pieces[..pieces.len() - 1])).contains("without the export's end line"));
}

#[test]
fn what_the_daemon_never_writes_is_refused_with_its_line() {
    let all = lines();
    let placed = index_of(&all, "OrderPlaced");
    let requested = index_of(&all, "PaymentRequested");
    let mut key = all.clone();
    key[requested]["metadata"]["idempotency_key"] = "k-9".into();
    let said = refusal(text_of(&key));
    assert!(
        said.starts_with(&format!("line {}: an idempotency key on a PaymentRequested", requested + 1)),
        "{said}"
    );

    let mut extra = all.clone();
    extra[placed]["data"]["note"] = "hi".into();
    assert!(refusal(text_of(&extra)).contains(r#"a field "note", which no OrderPlaced event has"#));

    let declined = index_of(&all, "PaymentDeclined");
    let long = "x".repeat(2000);
    for reason in ["\u{1b}[2Jgone", "", long.as_str()] {
        let mut odd = all.clone();
        odd[declined]["data"]["reason"] = reason.into();
        let said = refusal(text_of(&odd));
        assert!(said.starts_with(&format!("line {}: a decline's reason", declined + 1)), "{said}");
    }

    let scheduled = all.iter().rposition(|line| line["type"] == "DeliveryScheduled").expect("a delivery");
    let mut early = all.clone();
    early[scheduled]["data"]["due_at"] = "1969-01-01T00:00:00Z".into();
    let said = refusal(text_of(&early));
    assert!(said.contains("before 1970"), "{said}");
}

#[test]
fn blank_lines_a_byte_order_mark_and_the_export_of_an_empty_store_are_fine() {
    let text = format!("\u{feff}{}", text_of(&lines()).replace('\n', "\n\n"));
    let mut db = Db::new();
    let loaded = load_into(&mut db, &text).expect("import");
    assert_eq!(loaded.orders, 5);
    let mut empty = Db::memory();
    let export = Db::memory().export();
    assert_eq!(load_into(&mut empty, export).expect("nothing to import"), Loaded::default());
}

#[test]
fn a_store_with_events_is_refused() {
    let text = text_of(&lines());
    let mut db = Db::memory().with_order(2);
    let error = load_into(&mut db, &text).expect_err("not empty");
    assert!(matches!(error, ImportError::NotEmpty(_)), "{error}");
    assert_eq!(db.orders().len(), 1);
}

/// An event of an older schema version is exported as it was stored, not upcast, and imported
/// so: the export of the import is still the export.
#[test]
fn an_old_schema_version_is_exported_and_imported_as_stored() {
    let mut db = Db::new();
    let order = db.create(2);
    db.run(WriteCommand::Cancel(order)).expect("cancel");
    // As the first release wrote a customer's cancel: version 1, no reason.
    db.conn()
        .execute_batch(
            "DROP TRIGGER events_are_append_only_update;
             UPDATE events SET schema_version = 1, payload = '{}' WHERE type = 'OrderCancelled';",
        )
        .expect("an old event");
    let text = db.export();
    let cancelled = text.lines().find(|line| line.contains("OrderCancelled")).expect("the cancel");
    assert!(cancelled.contains(r#""type":"OrderCancelled","schema_version":1,"data":{}"#), "{cancelled}");
    let mut fresh = Db::new();
    load_into(&mut fresh, &text).expect("import");
    assert_eq!(fresh.export(), text);
    assert_eq!(fresh.read(crate::check::check).problems, 0);
}
