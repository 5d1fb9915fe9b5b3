//! The payment context: one payment per order, in its own stream (`payment-<order id>`).
//!
//! It talks to the order only through events: an order placed requests a payment; the
//! provider's decision approves or declines it; a cancelled order refunds an approved payment.
//! The decision itself sits behind [`PaymentProvider`], so a real provider can replace the
//! even/odd rule.

use std::fmt;

use crate::order::{OrderId, Total};

/// What can be asked of a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentCommand {
    Request {
        amount: Total,
    },
    Approve,
    Decline {
        reason: String,
    },
    /// Give the money back: the order was cancelled after (or while) it was paid.
    Refund,
}

/// What happened to a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    Requested { amount: Total },
    Approved { amount: Total },
    Declined { reason: String },
    Refunded { amount: Total },
}

impl PaymentEvent {
    /// The command that records exactly this event (see `OrderEvent::as_command`).
    pub fn as_command(&self) -> PaymentCommand {
        match self {
            PaymentEvent::Requested { amount } => PaymentCommand::Request { amount: *amount },
            PaymentEvent::Approved { .. } => PaymentCommand::Approve,
            PaymentEvent::Declined { reason } => PaymentCommand::Decline { reason: reason.clone() },
            PaymentEvent::Refunded { .. } => PaymentCommand::Refund,
        }
    }
}

/// The state of one payment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Payment {
    #[default]
    Absent,
    /// Waiting for the provider's decision.
    Requested {
        amount: Total,
    },
    Approved {
        amount: Total,
    },
    Declined,
    Refunded {
        amount: Total,
    },
}

/// Why a payment refused a command.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action} a payment that is {state}")]
pub struct PaymentError {
    pub action: &'static str,
    pub state: &'static str,
}

impl Payment {
    fn state_name(&self) -> &'static str {
        match self {
            Payment::Absent => "not requested",
            Payment::Requested { .. } => "requested",
            Payment::Approved { .. } => "approved",
            Payment::Declined => "declined",
            Payment::Refunded { .. } => "refunded",
        }
    }

    /// The provider has not decided yet.
    pub fn is_pending(&self) -> bool {
        matches!(self, Payment::Requested { .. })
    }

    pub fn decide(&self, command: &PaymentCommand) -> Result<Vec<PaymentEvent>, PaymentError> {
        match (self, command) {
            (Payment::Absent, PaymentCommand::Request { amount }) => {
                Ok(vec![PaymentEvent::Requested { amount: *amount }])
            }
            (Payment::Requested { amount }, PaymentCommand::Approve) => {
                Ok(vec![PaymentEvent::Approved { amount: *amount }])
            }
            (Payment::Requested { .. }, PaymentCommand::Decline { reason }) => {
                Ok(vec![PaymentEvent::Declined { reason: reason.clone() }])
            }
            (Payment::Approved { amount }, PaymentCommand::Refund) => {
                Ok(vec![PaymentEvent::Refunded { amount: *amount }])
            }
            (state, command) => Err(PaymentError {
                action: match command {
                    PaymentCommand::Request { .. } => "request",
                    PaymentCommand::Approve => "approve",
                    PaymentCommand::Decline { .. } => "decline",
                    PaymentCommand::Refund => "refund",
                },
                state: state.state_name(),
            }),
        }
    }

    pub fn evolve(self, event: &PaymentEvent) -> Payment {
        match event {
            PaymentEvent::Requested { amount } => Payment::Requested { amount: *amount },
            PaymentEvent::Approved { amount } => Payment::Approved { amount: *amount },
            PaymentEvent::Declined { .. } => Payment::Declined,
            PaymentEvent::Refunded { amount } => Payment::Refunded { amount: *amount },
        }
    }
}

/// A payment provider's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentDecision {
    Approved,
    Declined { reason: String },
}

impl PaymentDecision {
    pub fn as_command(&self) -> PaymentCommand {
        match self {
            PaymentDecision::Approved => PaymentCommand::Approve,
            PaymentDecision::Declined { reason } => PaymentCommand::Decline { reason: reason.clone() },
        }
    }
}

/// Decides whether a payment goes through. A real provider (a card processor) would implement
/// this; the daemon calls it outside any database transaction.
pub trait PaymentProvider: Send + Sync + fmt::Debug {
    fn decide(&self, order: OrderId, amount: Total) -> PaymentDecision;
}

/// The business rule of this shop: an even total is approved, an odd one declined.
#[derive(Clone, Copy, Debug, Default)]
pub struct EvenOddProvider;

impl PaymentProvider for EvenOddProvider {
    fn decide(&self, _order: OrderId, amount: Total) -> PaymentDecision {
        if amount.is_even() {
            PaymentDecision::Approved
        } else {
            PaymentDecision::Declined { reason: format!("odd total {amount}") }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(n: i64) -> Total {
        Total::try_from(n).expect("valid total")
    }

    fn given(events: &[PaymentEvent]) -> Payment {
        events.iter().fold(Payment::Absent, Payment::evolve)
    }

    fn requested() -> PaymentEvent {
        PaymentEvent::Requested { amount: amount(2) }
    }

    #[test]
    fn a_payment_is_requested_once() {
        let request = PaymentCommand::Request { amount: amount(2) };
        assert_eq!(given(&[]).decide(&request), Ok(vec![requested()]));
        assert!(given(&[requested()]).decide(&request).is_err());
        assert!(given(&[requested()]).is_pending());
    }

    #[test]
    fn a_requested_payment_is_approved_or_declined_once() {
        let approved = PaymentEvent::Approved { amount: amount(2) };
        assert_eq!(given(&[requested()]).decide(&PaymentCommand::Approve), Ok(vec![approved.clone()]));
        let decline = PaymentCommand::Decline { reason: "no".into() };
        assert_eq!(
            given(&[requested()]).decide(&decline),
            Ok(vec![PaymentEvent::Declined { reason: "no".into() }])
        );
        for decided in [approved, PaymentEvent::Declined { reason: "no".into() }] {
            let state = given(&[requested(), decided]);
            assert!(!state.is_pending());
            assert!(state.decide(&PaymentCommand::Approve).is_err(), "decided once");
            assert!(state.decide(&decline).is_err(), "decided once");
        }
    }

    #[test]
    fn only_an_approved_payment_is_refunded_and_only_once() {
        let approved = PaymentEvent::Approved { amount: amount(2) };
        let refunded = PaymentEvent::Refunded { amount: amount(2) };
        assert_eq!(
            given(&[requested(), approved.clone()]).decide(&PaymentCommand::Refund),
            Ok(vec![refunded.clone()])
        );
        assert!(given(&[requested(), approved, refunded]).decide(&PaymentCommand::Refund).is_err());
        assert!(given(&[requested()]).decide(&PaymentCommand::Refund).is_err());
        assert!(given(&[]).decide(&PaymentCommand::Refund).is_err());
        let declined = PaymentEvent::Declined { reason: "no".into() };
        assert!(given(&[requested(), declined]).decide(&PaymentCommand::Refund).is_err());
    }

    #[test]
    fn even_totals_are_approved_and_odd_ones_declined() {
        let order = OrderId::from_uuid(uuid::Uuid::nil());
        for even in [2, 4, 6, 8, 1_000_000, i64::MAX - 1] {
            assert_eq!(EvenOddProvider.decide(order, amount(even)), PaymentDecision::Approved);
        }
        for odd in [1, 3, 5, 7, i64::MAX] {
            assert!(matches!(EvenOddProvider.decide(order, amount(odd)), PaymentDecision::Declined { .. }));
        }
    }
}
