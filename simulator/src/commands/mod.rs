//! One runner per command: `compare` (compare and replay: policies side by
//! side, the table, JSON and the report), `ope` (off-policy estimates on a
//! logged dataset) and `live` (drive, load and campaign-config: the commands
//! that work with a live server).

pub(crate) mod compare;
pub(crate) mod live;
pub(crate) mod ope;
