//! Message ⇄ request target: wire format v1.
//!
//! A request target is `<path>?<query>`, and the query is the percent-encoded message followed
//! by optional extensions, each `&<key>=<value>`, always in this order:
//!
//! | key | value | present when |
//! |---|---|---|
//! | `i` | message id: 1–64 bytes of `A-Z a-z 0-9 - _ .` | `--ids`, and on every fragment |
//! | `q` | `<sender>.<number>`: the sending process and its message counter | `--sequence` |
//! | `f` | `<index>.<count>`: this fragment's place, from 1 | the message is split |
//! | `m` | 32 lower-case hex digits: HMAC-SHA256 truncated to 128 bits | `--sign-key` |
//!
//! The message is encoded as JavaScript's `encodeURIComponent` does: every byte outside
//! `A-Z a-z 0-9 - _ . ! ~ * ' ( )` becomes `%XX` with upper-case hex, bytes that are not UTF-8
//! included. So the encoded message never contains `&` or `=`: a reader that knows only the
//! original format takes the part before the first `&` and still finds the message, and with no
//! extension the target is byte-identical to the original drifter-rsyslog's.
//!
//! ```
//! use drifter_rsyslog::wire::{Fields, TargetFormat};
//!
//! let format = TargetFormat::new("/", 8192, None);
//! assert_eq!(
//!     format.target(b"disk full: /var (98%)", &Fields::default()),
//!     "/?disk%20full%3A%20%2Fvar%20(98%25)"
//! );
//! ```
//!
//! A message whose target would exceed the budget (`--max-url-bytes`) is split into fragments,
//! each its own request within the budget. The split falls between bytes of the message, never
//! inside a `%XX` escape (and not necessarily between UTF-8 characters: the decoder joins bytes).
//! Every fragment carries the message's id (one is made up when `--ids` is off), its sequence
//! number if any, and `f`; `m` signs each fragment on its own:
//!
//! ```
//! use drifter_rsyslog::wire::{Fields, Fragment, Sequence, Signer, TargetFormat};
//!
//! let signer = Signer::new(b"correct horse battery staple");
//! let format = TargetFormat::new("/app", 48, Some(signer));
//! let fields = Fields {
//!     id: Some("6F1C"),
//!     sequence: Some(Sequence { sender: "a1b2", number: 7 }),
//!     fragment: Some(Fragment { index: 1, count: 2 }),
//! };
//! assert_eq!(
//!     format.target(b"hello ", &fields),
//!     "/app?hello%20&i=6F1C&q=a1b2.7&f=1.2&m=b1b6561b78b14ba3de5081d403a4030a"
//! );
//! ```
//!
//! The MAC covers the query up to (not including) `&m=`: the encoded piece of the message, the
//! id, the sequence number and the fragment position. The path is not covered, so the same key
//! verifies requests sent to any path.

mod encode;
mod fields;
mod mac;
mod parse;
mod percent;

pub use encode::{
    BudgetError, Pieces, Split, TargetFormat, encode_target, encoded_len, target_len,
};
pub use fields::{Fields, Fragment, MAX_ID_BYTES, Sequence, is_valid_id};
pub use mac::{MAC_BYTES, Signer};
pub use parse::{ParsedQuery, WireError, parse_query};
pub use percent::{decode_query, percent_decode_strict};
