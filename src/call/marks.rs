//! The mark ledger: which outbound audio Twilio has confirmed as played.
//!
//! Every mark we send is named `{generation}:{cumulative_ms}:{item_id}` and queued here; Twilio
//! echoes marks in order as the audio before them finishes playing, and echoes all pending marks at
//! once when we send `clear`. Bumping the generation on `clear` is what tells those flushed echoes
//! (not heard) apart from played ones. This module owns only that bookkeeping; it must not decide
//! what a barge-in does.
//!
//! A mark costs no allocation: the ledger keeps the item id as the shared [`Arc<str>`] its audio
//! item already holds and the position as a number, and the name is only ever written (into the
//! outgoing message, [`MarkName::write_into`]) or parsed back (an echo), never stored as a string.

use std::collections::VecDeque;
use std::fmt::{self, Write as _};
use std::sync::Arc;

/// A mark we sent and Twilio has not yet echoed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMark {
    pub item_id: Arc<str>,
    /// Milliseconds of the item's audio sent up to this mark.
    pub cum_ms: u64,
}

/// The name of a mark to send: `{generation}:{cum_ms}:{item_id}` on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkName {
    pub generation: u32,
    pub cum_ms: u64,
    pub item_id: Arc<str>,
}

impl MarkName {
    /// Writes the wire name into `scratch` (cleared first) and returns it: no allocation once
    /// `scratch` holds the longest name so far.
    pub fn write_into<'a>(&self, scratch: &'a mut String) -> &'a str {
        scratch.clear();
        let _ = write!(scratch, "{self}");
        scratch.as_str()
    }
}

impl fmt::Display for MarkName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.generation, self.cum_ms, self.item_id)
    }
}

/// What an echoed mark means.
#[derive(Debug, PartialEq, Eq)]
pub enum MarkEcho {
    /// The audio up to `cum_ms` of `item_id` has played.
    Played { item_id: Arc<str>, cum_ms: u64 },
    /// An echo from before the last `clear`: flushed, not heard.
    Stale,
    /// A name we never sent (or already consumed) in this generation.
    Unknown,
}

#[derive(Debug, Default)]
pub struct MarkLedger {
    generation: u32,
    pending: VecDeque<PendingMark>,
}

/// The number a mark name carries, only in the form [`MarkName`]'s `Display` writes it (ASCII
/// digits, no sign, no leading zero): any other spelling is not a name we sent.
fn canonical_number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text.len() == 1 || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

impl MarkLedger {
    pub fn generation(&self) -> u32 {
        self.generation
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The oldest mark not yet echoed.
    pub fn front(&self) -> Option<&PendingMark> {
        self.pending.front()
    }

    /// The first pending mark of `item_id`: the caller cannot have heard that item past its `cum_ms`.
    pub fn next_for_item(&self, item_id: &str) -> Option<&PendingMark> {
        self.pending.iter().find(|m| *m.item_id == *item_id)
    }

    /// Records a mark for `item_id` at `cum_ms` and returns the name to send.
    pub fn push(&mut self, item_id: &Arc<str>, cum_ms: u64) -> MarkName {
        self.pending.push_back(PendingMark {
            item_id: Arc::clone(item_id),
            cum_ms,
        });
        MarkName {
            generation: self.generation,
            cum_ms,
            item_id: Arc::clone(item_id),
        }
    }

    /// Interprets an echo from Twilio.
    pub fn echo(&mut self, name: &str) -> MarkEcho {
        let mut parts = name.splitn(3, ':');
        let g_text = parts.next().unwrap_or_default();
        let generation = g_text.parse::<u32>().ok();
        match generation {
            Some(g) if g != self.generation => return MarkEcho::Stale,
            Some(_) => {}
            None => return MarkEcho::Unknown,
        }
        // Exactly the names `push` hands out in this generation.
        let (Some(cum_ms), Some(item_id)) = (parts.next().and_then(canonical_number), parts.next())
        else {
            return MarkEcho::Unknown;
        };
        if canonical_number(g_text) != Some(u64::from(self.generation)) {
            return MarkEcho::Unknown;
        }
        let Some(position) = self
            .pending
            .iter()
            .position(|m| m.cum_ms == cum_ms && *m.item_id == *item_id)
        else {
            return MarkEcho::Unknown;
        };
        // Echoes come back in order, so every earlier mark has played too.
        let mut played = None;
        for _ in 0..=position {
            played = self.pending.pop_front();
        }
        let Some(played) = played else {
            return MarkEcho::Unknown;
        };
        MarkEcho::Played {
            item_id: played.item_id,
            cum_ms: played.cum_ms,
        }
    }

    /// Forgets every pending mark and starts a new generation (call when sending `clear`).
    pub fn clear(&mut self) {
        self.pending.clear();
        self.generation = self.generation.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Arc<str> {
        Arc::from(id)
    }

    #[test]
    fn echoes_in_order_and_skips_lost_ones() {
        let mut ledger = MarkLedger::default();
        let a = ledger.push(&item("item_1"), 100).to_string();
        let _b = ledger.push(&item("item_1"), 200);
        let c = ledger.push(&item("item_1"), 300).to_string();
        assert_eq!(a, "0:100:item_1");
        assert_eq!(
            ledger.echo(&a),
            MarkEcho::Played {
                item_id: "item_1".into(),
                cum_ms: 100
            }
        );
        // b's echo never arrives; c implies b played.
        assert_eq!(
            ledger.echo(&c),
            MarkEcho::Played {
                item_id: "item_1".into(),
                cum_ms: 300
            }
        );
        assert!(ledger.is_empty());
        assert_eq!(ledger.echo(&c), MarkEcho::Unknown);
    }

    #[test]
    fn clear_makes_old_echoes_stale() {
        let mut ledger = MarkLedger::default();
        let a = ledger.push(&item("item_1"), 100).to_string();
        ledger.clear();
        assert_eq!(ledger.echo(&a), MarkEcho::Stale);
        assert_eq!(ledger.echo("garbage"), MarkEcho::Unknown);
        assert_eq!(ledger.echo("1:100:item_9"), MarkEcho::Unknown);
        let b = ledger.push(&item("item_2"), 20);
        assert!(b.to_string().starts_with("1:"));
    }

    #[test]
    fn only_the_exact_names_sent_are_echoes() {
        let mut ledger = MarkLedger::default();
        let id = item("item:with:colons");
        let name = ledger.push(&id, 40);
        let mut scratch = String::new();
        assert_eq!(name.write_into(&mut scratch), "0:40:item:with:colons");
        for other in [
            "0:040:item:with:colons",
            "0:+40:item:with:colons",
            "00:40:item:with:colons",
            "+0:40:item:with:colons",
            "0:40",
            "0:40:item",
            "0:41:item:with:colons",
        ] {
            assert_eq!(ledger.echo(other), MarkEcho::Unknown, "{other}");
        }
        assert_eq!(
            ledger.echo("0:40:item:with:colons"),
            MarkEcho::Played {
                item_id: id,
                cum_ms: 40
            }
        );
    }
}
