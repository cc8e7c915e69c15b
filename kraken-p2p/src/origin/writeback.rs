//! The durable write-back queue.
