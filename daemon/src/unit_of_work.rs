//! The work of one command inside the writer's transaction.
//!
//! A [`UnitOfWork`] loads aggregates from their streams, records what the domain decided —
//! appending at the version the aggregate was loaded at (the optimistic-concurrency check),
//! applying each event to the read model — and lets the [policies](crate::policies) react to
//! every event it records, all in the same transaction: a command and every consequence of it
//! commit together or not at all. It knows the store only as a [`WriteTx`].

use jiff::Timestamp;
use orders_shared::protocol::OrderView;
use orders_shared::{Aggregate, DomainEvent, OrderError, OrderId, StreamId, Total};

use crate::command::{CommandError, Policy, Refusal};
use crate::policies::{self, Loaded, Reactions};
use crate::store::{Metadata, RecordedEvent, StoreError, WriteTx};

pub struct UnitOfWork<'t> {
    tx: &'t mut dyn WriteTx,
    now: Timestamp,
    policy: &'t Policy,
    recorded: Vec<RecordedEvent>,
    /// Whether it wrote anything: a command that fails after writing must be rolled back.
    wrote: bool,
}

impl<'t> UnitOfWork<'t> {
    pub fn new(tx: &'t mut dyn WriteTx, now: Timestamp, policy: &'t Policy) -> Self {
        Self { tx, now, policy, recorded: Vec::new(), wrote: false }
    }

    /// The events this unit recorded, in log order.
    pub fn into_recorded(self) -> Vec<RecordedEvent> {
        self.recorded
    }

    /// Whether it changed the store (a refusal decided before any write leaves it unchanged).
    pub fn wrote(&self) -> bool {
        self.wrote
    }

    /// The store, for what a handler reads besides aggregates.
    pub fn tx(&mut self) -> &mut dyn WriteTx {
        self.tx
    }

    /// An order as the read model shows it after this unit's writes.
    pub fn view(&mut self, id: OrderId) -> Result<OrderView, CommandError> {
        self.tx.order(id)?.ok_or(CommandError::Order { id, source: OrderError::NotFound })
    }

    /// Appends events at the version they were decided on, projects them and lets the policies
    /// react to each.
    fn record(
        &mut self,
        stream: StreamId,
        loaded_at: crate::store::Version,
        events: Vec<DomainEvent>,
        metadata: &Metadata,
    ) -> Result<(), CommandError> {
        self.wrote = true;
        let recorded = self.tx.append(stream, loaded_at, &events, metadata, self.now)?;
        for event in &recorded {
            self.tx.project(event)?;
        }
        self.recorded.extend(recorded.iter().cloned());
        for event in &recorded {
            policies::react(self, event)?;
        }
        Ok(())
    }
}

impl Reactions for UnitOfWork<'_> {
    fn now(&self) -> Timestamp {
        self.now
    }

    fn policy(&self) -> &Policy {
        self.policy
    }

    fn load<A: Aggregate>(&mut self, order: OrderId) -> Result<Loaded<A>, CommandError> {
        let events = self.tx.read_stream(StreamId::new(A::KIND, order))?;
        let state =
            events.iter().filter_map(|recorded| A::event_of(&recorded.event)).fold(A::default(), A::evolve);
        Ok(Loaded {
            state,
            version: events.last().map_or(crate::store::Version::NONE, |e| e.version),
            last: events.into_iter().last(),
        })
    }

    fn execute<A>(
        &mut self,
        order: OrderId,
        aggregate: &Loaded<A>,
        command: &A::Command,
        metadata: &Metadata,
    ) -> Result<(), CommandError>
    where
        A: Aggregate,
        A::Error: Refusal,
    {
        let events = aggregate.state.decide(command).map_err(|refusal| refusal.refused(order))?;
        let events = events.into_iter().map(Into::into).collect();
        // A stream's times never go backwards (issue 12): the writer stamps no earlier than the
        // log's newest time, and this holds even for a stream recorded later than that (a log
        // written before the clamp, by a clock that jumped).
        if let Some(last) = &aggregate.last
            && last.recorded_at > self.now
        {
            self.now = last.recorded_at;
        }
        self.record(StreamId::new(A::KIND, order), aggregate.version, events, metadata)
    }

    fn open_payment_request(&mut self, order: OrderId, amount: Total) -> Result<(), StoreError> {
        self.wrote = true;
        self.tx.open_payment_request(order, amount, self.now)
    }

    fn close_payment_request(&mut self, order: OrderId) -> Result<(), StoreError> {
        self.wrote = true;
        self.tx.close_payment_request(order)
    }

    fn set_delivery_timer(&mut self, order: OrderId, due_at: Timestamp) -> Result<(), StoreError> {
        self.wrote = true;
        self.tx.set_delivery_timer(order, due_at)
    }

    fn clear_delivery_timer(&mut self, order: OrderId) -> Result<(), StoreError> {
        self.wrote = true;
        self.tx.clear_delivery_timer(order)
    }
}
