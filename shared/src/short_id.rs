//! Short ids: what tables show of an order id, and what commands accept in its place (issue 18).
//!
//! Order ids are UUIDv7: they begin with their creation time, so orders placed in the same minute
//! share their first 8 hex digits and a prefix would be a poor short form. Their end is random.
//! A short id is therefore the end of the id: the shortest suffix of its 32 hex digits, at least
//! [`MIN_DIGITS`] long, that no other order's id ends with (as git and docker shorten hashes,
//! from the other side). It is unique when it is shown; an order placed later may share it, and
//! then a command given it lists both and asks for more digits.

use std::fmt;
use std::str::FromStr;

use crate::OrderId;

/// The fewest hex digits a short id has.
pub const MIN_DIGITS: usize = 8;

/// The hex digits of an order id.
pub const ID_DIGITS: usize = 32;

/// An order named on the command line: a whole id, or the end of one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderRef {
    Id(OrderId),
    /// 8 to 31 lowercase hex digits, the end of an id.
    Suffix(String),
}

/// What is wrong with an order reference, said for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    #[error(
        "not an order id: give a whole id (36 characters, as `orders list -q` prints it) or at least \
         {MIN_DIGITS} hex digits of its end (as `orders list` shows it)"
    )]
    NotHex,
    #[error("{0} hex digits are too few: a short id has at least {MIN_DIGITS} (the end of the id)")]
    TooShort(usize),
    #[error("{0} hex digits are too many: an order id has {ID_DIGITS}")]
    TooLong(usize),
}

impl OrderRef {
    /// Reads a whole id (with or without its dashes, any case) or the hex digits of its end.
    pub fn parse(text: &str) -> Result<OrderRef, RefError> {
        let text = text.trim();
        if let Ok(id) = text.parse::<OrderId>() {
            return Ok(OrderRef::Id(id));
        }
        // Dashes belong to whole ids only: a short id is hex digits alone, as tables show it.
        if text.is_empty() || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(RefError::NotHex);
        }
        let digits = text.to_ascii_lowercase();
        match digits.len() {
            n if n < MIN_DIGITS => Err(RefError::TooShort(n)),
            n if n >= ID_DIGITS => Err(RefError::TooLong(n)),
            _ => Ok(OrderRef::Suffix(digits)),
        }
    }
}

impl FromStr for OrderRef {
    type Err = RefError;

    fn from_str(text: &str) -> Result<OrderRef, RefError> {
        OrderRef::parse(text)
    }
}

impl fmt::Display for OrderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrderRef::Id(id) => id.fmt(f),
            OrderRef::Suffix(digits) => f.write_str(digits),
        }
    }
}

/// The 32 hex digits of an id, without dashes.
pub fn digits(id: OrderId) -> String {
    id.to_string().chars().filter(|c| *c != '-').collect()
}

/// Whether `id` ends with `suffix` (hex digits, lowercase).
pub fn ends_with(id: OrderId, suffix: &str) -> bool {
    digits(id).ends_with(suffix)
}

/// The short id of `id` among `others`: every order whose id ends with the same
/// [`MIN_DIGITS`] digits (`id` itself may be among them). The shortest suffix of at least
/// [`MIN_DIGITS`] digits that none of the others ends with.
pub fn shortest_unique(id: OrderId, others: &[OrderId]) -> String {
    let mine = digits(id);
    let longest_shared = others
        .iter()
        .filter(|other| **other != id)
        .map(|other| common_suffix(&mine, &digits(*other)))
        .max()
        .unwrap_or(0);
    let length = (longest_shared + 1).clamp(MIN_DIGITS, ID_DIGITS);
    mine[ID_DIGITS - length..].to_owned()
}

fn common_suffix(a: &str, b: &str) -> usize {
    a.bytes().rev().zip(b.bytes().rev()).take_while(|(a, b)| a == b).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> OrderId {
        text.parse().expect("an id")
    }

    #[test]
    fn a_reference_is_a_whole_id_or_the_end_of_one() {
        let whole = id("01a23c7b-553d-74b9-a343-07169aac6db2");
        assert_eq!(OrderRef::parse("01a23c7b-553d-74b9-a343-07169aac6db2"), Ok(OrderRef::Id(whole)));
        assert_eq!(OrderRef::parse("01A23C7B553D74B9A34307169AAC6DB2"), Ok(OrderRef::Id(whole)));
        assert_eq!(OrderRef::parse("9aac6db2"), Ok(OrderRef::Suffix("9aac6db2".into())));
        assert_eq!(OrderRef::parse(" 169AAC6DB2 "), Ok(OrderRef::Suffix("169aac6db2".into())));
        assert_eq!(OrderRef::parse("a343-07169aac6db2"), Err(RefError::NotHex), "dashes: a whole id only");
        assert_eq!(
            OrderRef::parse("019a6b2e-6f3c-7d21-9a4b-1c2d3e4f5a6"),
            Err(RefError::NotHex),
            "one short"
        );
        assert_eq!(OrderRef::parse("aac6db2"), Err(RefError::TooShort(7)));
        assert_eq!(OrderRef::parse("xyz12345678"), Err(RefError::NotHex));
        assert_eq!(OrderRef::parse(""), Err(RefError::NotHex));
        assert_eq!(OrderRef::parse("9aac6db2%"), Err(RefError::NotHex));
        assert_eq!(OrderRef::parse(&"a".repeat(33)), Err(RefError::TooLong(33)));
    }

    #[test]
    fn a_short_id_is_the_shortest_unique_end_of_at_least_eight_digits() {
        let mine = id("01a23c7b-553d-74b9-a343-07169aac6db2");
        assert_eq!(shortest_unique(mine, &[]), "9aac6db2");
        assert_eq!(shortest_unique(mine, &[mine]), "9aac6db2", "itself is no other");
        let shares_nine = id("01a23c7b-5536-7572-9e5b-2d3f9aac6db2");
        assert_eq!(shortest_unique(mine, &[mine, shares_nine]), "69aac6db2");
        assert_eq!(shortest_unique(shares_nine, &[mine, shares_nine]), "f9aac6db2");
        let shares_all_but_one = id("11a23c7b-553d-74b9-a343-07169aac6db2");
        assert_eq!(shortest_unique(mine, &[shares_all_but_one]), digits(mine));
        for short in [shortest_unique(mine, &[shares_nine]), shortest_unique(shares_nine, &[mine])] {
            assert!(short.len() >= MIN_DIGITS);
            let matching = [mine, shares_nine].into_iter().filter(|id| ends_with(*id, &short)).count();
            assert_eq!(matching, 1, "{short} names one order");
        }
    }
}
