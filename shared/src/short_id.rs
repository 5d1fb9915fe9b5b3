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

/// The most orders whose ids end with the same [`MIN_DIGITS`] digits that the daemon sorts out
/// for short ids. Ids are random there, so two share them once in 4 billion; only ids made
/// for it (an import) share them by the thousand, and those are shown whole.
pub const MAX_SHARING: usize = 10_000;

/// The short id of each order of `group` — distinct orders whose ids end with the same
/// [`MIN_DIGITS`] digits — in the group's order: the shortest end of at least [`MIN_DIGITS`] digits that no other
/// id of the group ends with. Sorted by their digits read backwards, an id shares its longest end
/// with a neighbour, so the whole group takes one sort.
pub fn shortest_unique(group: &[OrderId]) -> Vec<String> {
    let mut backwards: Vec<(Vec<u8>, usize)> =
        group.iter().enumerate().map(|(at, id)| (digits(*id).bytes().rev().collect(), at)).collect();
    backwards.sort_unstable();
    let shared = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(a, b)| a == b).count();
    let mut length = vec![MIN_DIGITS; group.len()];
    for (at, (mine, index)) in backwards.iter().enumerate() {
        let before = at.checked_sub(1).map_or(0, |before| shared(mine, &backwards[before].0));
        let after = backwards.get(at + 1).map_or(0, |after| shared(mine, &after.0));
        length[*index] = (before.max(after) + 1).clamp(MIN_DIGITS, ID_DIGITS);
    }
    group.iter().zip(length).map(|(id, length)| digits(*id)[ID_DIGITS - length..].to_owned()).collect()
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
        assert_eq!(shortest_unique(&[mine]), ["9aac6db2"]);
        let shares_nine = id("01a23c7b-5536-7572-9e5b-2d3f9aac6db2");
        assert_eq!(shortest_unique(&[mine, shares_nine]), ["69aac6db2", "f9aac6db2"]);
        let shares_all_but_one = id("11a23c7b-553d-74b9-a343-07169aac6db2");
        let group = [shares_nine, mine, shares_all_but_one];
        assert_eq!(
            shortest_unique(&group),
            ["f9aac6db2".to_owned(), digits(mine), digits(shares_all_but_one)]
        );
    }

    /// Against the definition, on groups of ids that share ends of every length.
    #[test]
    fn every_short_id_names_its_order_alone_and_one_digit_less_would_not() {
        let base = "01a23c7b553d74b9a34307169aac6db2";
        let mut group = Vec::new();
        for (at, digit) in (0..24).zip("0123456789abcdef0123456789abcdef".chars().cycle()) {
            let mut digits: Vec<char> = base.chars().collect();
            digits[at] = if digits[at] == digit { 'f' } else { digit };
            let text: String = digits.into_iter().collect();
            group.push(
                OrderRef::parse(&text)
                    .map(|parsed| match parsed {
                        OrderRef::Id(id) => id,
                        OrderRef::Suffix(_) => unreachable!("32 digits are a whole id"),
                    })
                    .expect("an id"),
            );
        }
        group.push(id("01a23c7b-553d-74b9-a343-07169aac6db2"));
        for (id, short) in group.iter().zip(shortest_unique(&group)) {
            let naming = |end: &str| group.iter().filter(|other| ends_with(**other, end)).count();
            assert_eq!(naming(&short), 1, "{short} names {id} alone");
            if short.len() > MIN_DIGITS {
                assert!(naming(&short[1..]) > 1, "{short} is longer than it needs to be");
            }
        }
    }
}
