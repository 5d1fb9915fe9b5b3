//! A daemon among those sharing the database (issue 20), on a connection of its own: it listens
//! for the others' commits, beats, lists the daemons, and finds the saga steps no live daemon is
//! carrying out.
//!
//! - **Waking.** Every batch that appends events notifies `orders_commits` with an empty payload
//!   as it commits (see `write`); this connection listens, and a daemon's followers and waiters
//!   re-read the log when woken. A notification only says "look again": the log is the truth,
//!   and the daemon also looks once a second whatever it heard (a lost connection, a notification
//!   lost with it).
//! - **Delivery timers** are not claimed: a daemon delivers the timers it armed when they fall
//!   due, and every daemon also takes the timers overdue by more than a grace period — those of
//!   a daemon that is gone. A delivery runs under the writers' lock and records nothing for an
//!   order delivered already, so a timer taken by two daemons is delivered once.
//! - **Payment steps** call the provider outside any transaction, so they are leased: the daemon
//!   that opens a step holds it until `lease_until`; an expired lease is claimed by another
//!   daemon (under the writers' lock, so that no batch decides the step meanwhile), which then
//!   asks the provider. A daemon whose step was taken over does not record its decision.

use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use super::connect::Target;
use super::reads::{TIMERS, stored_delivery};
use super::schema::{self, NOW_MS};
use super::sql::{self, Link, Statements};
use orders_shared::protocol::ClusterDaemon;

use crate::store::{Cluster, OpenSteps, StoreError, StoredPayment, StoredValue};

/// The channel every commit is announced on.
pub const CHANNEL: &str = "orders_commits";

/// The most orphaned steps taken at once (the rest at the next look).
const MOST: i64 = 1000;

/// This daemon's own connection for the cluster's business.
pub struct Presence {
    target: Target,
    me: String,
    data_dir: String,
    lease: Duration,
    conn: Option<(Link, Statements)>,
}

impl Presence {
    pub fn new(target: Target, me: String, data_dir: String, lease: Duration) -> Presence {
        Presence { target, me, data_dir, lease, conn: None }
    }

    /// The connection, listening; opened again when the database closed it.
    fn connection(&mut self) -> Result<(&mut Client, &mut Statements), StoreError> {
        if self.conn.as_ref().is_some_and(|(client, _)| client.is_closed()) {
            self.conn = None;
        }
        if self.conn.is_none() {
            let mut client = Link::new(self.target.connect("cluster")?)?;
            // It claims payment steps under the writers' lock: frozen there, it must not hold
            // the other daemons back longer than the writer's session would.
            client.batch_execute(sql::WRITER_SESSION)?;
            client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
            self.conn = Some((client, Statements::default()));
        }
        let (client, statements) = self.conn.as_mut().expect("connected above");
        Ok((client, statements))
    }

    /// Runs `work` on the connection; one the database closed meanwhile is dropped.
    fn with<T>(
        &mut self,
        work: impl FnOnce(&mut Client, &mut Statements) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let (client, statements) = self.connection()?;
        let result = work(client, statements);
        if result.is_err() {
            self.conn = None;
        }
        result
    }
}

impl Cluster for Presence {
    fn wait(&mut self, timeout: Duration) -> Result<bool, StoreError> {
        self.with(|client, _| {
            let mut notifications = client.notifications();
            let woken = notifications.timeout_iter(timeout).next()?.is_some();
            // Whatever else came meanwhile says the same.
            while notifications.iter().next()?.is_some() {}
            Ok(woken)
        })
    }

    fn heartbeat(&mut self) -> Result<Vec<ClusterDaemon>, StoreError> {
        let (me, data_dir) = (self.me.clone(), self.data_dir.clone());
        self.with(|client, _| {
            schema::heartbeat(client, &schema::Me { id: &me, data_dir: &data_dir })?;
            schema::members(client, &me)
        })
    }

    fn orphaned_steps(&mut self, grace: Duration) -> Result<OpenSteps, StoreError> {
        let (me, lease) = (self.me.clone(), self.lease);
        let grace = i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.with(|client, statements| {
            let mut steps = OpenSteps::default();
            for row in statements.query(
                client,
                &format!("{TIMERS} WHERE due_at < (SELECT {NOW_MS}) - $1 ORDER BY due_at, order_id LIMIT $2"),
                &[&grace, &MOST],
            )? {
                steps.deliveries.push(stored_delivery(&row)?);
            }
            steps.payments = claim_payments(client, statements, &me, lease)?;
            Ok(steps)
        })
    }

    fn leave(&mut self) {
        let me = self.me.clone();
        if let Err(error) = self.with(|client, _| schema::leave(client, &me)) {
            tracing::debug!(%error, "could not remove this daemon from the database's list");
        }
    }
}

/// Claims for `me` the payment steps whose lease has expired (or that never had one: imported),
/// leased for `lease` from now; returns them. The claim takes the writers' lock, so that no
/// batch of another daemon decides one of them between its look at the lease and its commit.
pub fn claim_payments(
    client: &mut Client,
    statements: &mut Statements,
    me: &str,
    lease: Duration,
) -> Result<Vec<StoredPayment>, StoreError> {
    // The clock read once (an init plan), so that the index on `lease_until` serves.
    let expired = format!("(lease_until IS NULL OR lease_until < (SELECT {NOW_MS}))");
    let any: bool = statements
        .query_one(
            client,
            // `min` reads one end of the index; an `EXISTS` of `<` was planned as a scan.
            &format!(
                "SELECT coalesce((SELECT min(lease_until) FROM payment_requests) < {NOW_MS}, false) \
                     OR EXISTS (SELECT 1 FROM payment_requests WHERE lease_until IS NULL)"
            ),
            &[],
        )?
        .try_get(0)?;
    if !any {
        return Ok(Vec::new());
    }
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let mut tx = client.transaction()?;
    sql::lock_writers(statements, &mut tx)?;
    let rows = statements.query(
        &mut tx,
        &format!(
            "UPDATE payment_requests t SET claimed_by = $1, lease_until = {NOW_MS} + $2 \
             WHERE order_id IN (SELECT order_id FROM payment_requests WHERE {expired} \
                 ORDER BY requested_at, order_id LIMIT $3) \
             RETURNING order_id, amount, requested_at, EXISTS (SELECT 1 FROM events \
                 WHERE stream_id = 'order-' || t.order_id AND version = 1)"
        ),
        &[&me, &lease, &MOST],
    )?;
    tx.commit()?;
    let mut claimed: Vec<(i64, StoredPayment)> = rows
        .iter()
        .map(|row| {
            Ok((
                row.try_get(2)?,
                StoredPayment {
                    order: StoredValue::text(row.try_get(0)?),
                    amount: StoredValue::Integer(row.try_get(1)?),
                    known: row.try_get(3)?,
                },
            ))
        })
        .collect::<Result<_, StoreError>>()?;
    claimed.sort_by_key(|(requested, _)| *requested);
    if !claimed.is_empty() {
        tracing::info!(steps = claimed.len(), "took over payment steps whose lease had expired");
    }
    Ok(claimed.into_iter().map(|(_, payment)| payment).collect())
}
