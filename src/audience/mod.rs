//! Who a segment reaches: segments compiled into one program (`evaluate`) and run over
//! endpoint records (`records`), the rows of imported segments' sources (`sources`, read by
//! `rows`, the one CSV/NDJSON import reader the server's import jobs share, from files or
//! through `s3`), and a plan's audience impact (`impact`). Used by the command line and by
//! the server.

pub mod evaluate;
pub mod impact;
pub mod profiles_impact;
pub mod profiles_of;
pub mod records;
pub mod rows;
pub mod s3;
pub mod sources;
