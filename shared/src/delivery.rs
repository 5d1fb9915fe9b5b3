//! The delivery context: one delivery per order, in its own stream (`delivery-<order id>`).
//!
//! An approved order is scheduled for delivery at a due time; when it comes, the order is
//! delivered and the delivery completed. A cancelled order cancels its scheduled delivery.

use jiff::Timestamp;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryCommand {
    Schedule { due_at: Timestamp },
    Complete,
    Cancel,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryEvent {
    Scheduled { due_at: Timestamp },
    Completed,
    Cancelled,
}

impl DeliveryEvent {
    /// The command that records exactly this event (see `OrderEvent::as_command`).
    pub fn as_command(&self) -> DeliveryCommand {
        match self {
            DeliveryEvent::Scheduled { due_at } => DeliveryCommand::Schedule { due_at: *due_at },
            DeliveryEvent::Completed => DeliveryCommand::Complete,
            DeliveryEvent::Cancelled => DeliveryCommand::Cancel,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    #[default]
    Absent,
    Scheduled {
        due_at: Timestamp,
    },
    Completed,
    Cancelled,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a delivery that is {state}")]
pub struct DeliveryError {
    pub action: &'static str,
    pub state: &'static str,
}

impl Delivery {
    pub fn is_scheduled(&self) -> bool {
        matches!(self, Delivery::Scheduled { .. })
    }

    pub fn decide(&self, command: &DeliveryCommand) -> Result<Vec<DeliveryEvent>, DeliveryError> {
        match (self, command) {
            (Delivery::Absent, DeliveryCommand::Schedule { due_at }) => {
                Ok(vec![DeliveryEvent::Scheduled { due_at: *due_at }])
            }
            (Delivery::Scheduled { .. }, DeliveryCommand::Complete) => Ok(vec![DeliveryEvent::Completed]),
            (Delivery::Scheduled { .. }, DeliveryCommand::Cancel) => Ok(vec![DeliveryEvent::Cancelled]),
            (state, command) => Err(DeliveryError {
                action: match command {
                    DeliveryCommand::Schedule { .. } => "schedule",
                    DeliveryCommand::Complete => "complete",
                    DeliveryCommand::Cancel => "cancel",
                },
                state: match state {
                    Delivery::Absent => "not scheduled",
                    Delivery::Scheduled { .. } => "scheduled",
                    Delivery::Completed => "completed",
                    Delivery::Cancelled => "cancelled",
                },
            }),
        }
    }

    pub fn evolve(self, event: &DeliveryEvent) -> Delivery {
        match event {
            DeliveryEvent::Scheduled { due_at } => Delivery::Scheduled { due_at: *due_at },
            DeliveryEvent::Completed => Delivery::Completed,
            DeliveryEvent::Cancelled => Delivery::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scheduled() -> DeliveryEvent {
        DeliveryEvent::Scheduled { due_at: Timestamp::from_second(1_800_000_000).expect("valid time") }
    }

    fn given(events: &[DeliveryEvent]) -> Delivery {
        events.iter().fold(Delivery::Absent, Delivery::evolve)
    }

    #[test]
    fn a_delivery_is_scheduled_once() {
        let DeliveryEvent::Scheduled { due_at } = scheduled() else { unreachable!() };
        let schedule = DeliveryCommand::Schedule { due_at };
        assert_eq!(given(&[]).decide(&schedule), Ok(vec![scheduled()]));
        assert!(given(&[scheduled()]).decide(&schedule).is_err());
    }

    #[test]
    fn a_scheduled_delivery_completes_or_is_cancelled_once() {
        assert_eq!(
            given(&[scheduled()]).decide(&DeliveryCommand::Complete),
            Ok(vec![DeliveryEvent::Completed])
        );
        assert_eq!(
            given(&[scheduled()]).decide(&DeliveryCommand::Cancel),
            Ok(vec![DeliveryEvent::Cancelled])
        );
        for done in [DeliveryEvent::Completed, DeliveryEvent::Cancelled] {
            let state = given(&[scheduled(), done]);
            assert!(state.decide(&DeliveryCommand::Complete).is_err());
            assert!(state.decide(&DeliveryCommand::Cancel).is_err());
        }
        assert!(given(&[]).decide(&DeliveryCommand::Complete).is_err());
    }
}
