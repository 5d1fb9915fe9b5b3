//! The PostgreSQL backend's own tests: what the conformance suite cannot reach through the seam.

use orders_shared::protocol::CreateRequest;

use crate::command::WriteCommand;
use crate::testing::Db;

fn create(user: &str, total: i64) -> WriteCommand {
    WriteCommand::Create(CreateRequest {
        user: user.parse().expect("user"),
        total: total.try_into().expect("total"),
        idempotency_key: None,
    })
}

/// A constraint the batch's plan knew nothing of (one added by hand) fails the batch's writes;
/// the batch then runs a unit per transaction, and only the unit at fault is refused.
#[test]
fn a_unit_refused_by_a_constraint_fails_alone() {
    let Some(mut db) = Db::postgres() else { return };
    db.store
        .execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (payload NOT LIKE '%poison%')")
        .expect("a constraint of the operator's");
    let answers = db.run_batch(vec![create("alice", 2), create("poison", 2), create("bob", 3)]);
    let refused: Vec<bool> = answers.iter().map(Result::is_err).collect();
    assert_eq!(refused, [false, true, false], "{answers:?}");
    let listed = db.read(|reads| reads.counts());
    assert_eq!(listed.orders, 2);
}
