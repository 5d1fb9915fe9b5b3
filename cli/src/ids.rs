//! Short ids (issue 18): a command given the end of an id asks the daemon which order it names;
//! a table asks the daemon for the shortest unique end of each id it shows. The rule is in
//! `orders_shared::short_id`.

use std::collections::HashSet;

use orders_shared::OrderId;
use orders_shared::protocol::{Request, ResolveRequest, Resolved, ShortIdsRequest};
use orders_shared::short_id::OrderRef;

use crate::client::Client;
use crate::failure::{Exit, Failure};
use crate::output::ShortIds;

/// The order a reference names: a whole id as it is (the request made with it says whether the
/// order exists), the end of one through the daemon's index. An end that names no order is
/// `not found` (exit 3); one that names several is a usage error (exit 2) listing them.
pub async fn resolve(client: &mut Client, reference: OrderRef) -> Result<OrderId, Failure> {
    let suffix = match reference {
        OrderRef::Id(id) => return Ok(id),
        OrderRef::Suffix(suffix) => suffix,
    };
    let found: Resolved = client.call(&Request::Resolve(ResolveRequest { id: suffix.clone() })).await?;
    match found.ids.as_slice() {
        [] => Err(Failure::new(Exit::NotFound, format!("no order's id ends with {suffix}"))),
        [id] => Ok(*id),
        ids => {
            let listed: Vec<String> = ids.iter().map(|id| format!("  {id}")).collect();
            let more = if found.more { "\n  ... and more" } else { "" };
            Err(Failure::new(
                Exit::Usage,
                format!(
                    "the short id {suffix} names {} orders; give more digits of the one you mean:\n{}{more}",
                    if found.more { format!("more than {}", ids.len()) } else { ids.len().to_string() },
                    listed.join("\n")
                ),
            ))
        }
    }
}

/// Learns the short ids of `ids` that `known` lacks, in as few requests as it takes.
pub async fn learn(
    client: &mut Client,
    known: &mut ShortIds,
    ids: impl IntoIterator<Item = OrderId>,
) -> Result<(), Failure> {
    let mut seen = HashSet::new();
    let wanted: Vec<OrderId> =
        ids.into_iter().filter(|id| !known.contains_key(id) && seen.insert(*id)).collect();
    for page in wanted.chunks(ShortIdsRequest::MAX_IDS) {
        let short: Vec<String> =
            client.call(&Request::ShortIds(ShortIdsRequest { ids: page.to_vec() })).await?;
        known.extend(page.iter().copied().zip(short));
    }
    Ok(())
}
